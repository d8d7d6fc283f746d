"""Demo: distill a small SR student from a briefly trained teacher, on images bundled with scikit-image (CPU).

1. builds LMDBs from scikit-image's sample photos (train: sub-images of 5 photos; validation: chelsea.png),
   LR made with MATLAB-style bicubic x2;
2. trains the teacher (options/train/KD/train_Teacher_MSRResNet_x2_demo.yml);
3. trains the tiny student alone and with distillation from the teacher (same data, iterations and seed);
4. prints the PSNR-Y of teacher, scratch student and distilled student on the validation image.

Run from the repository root: ``python scripts/demo.py`` (``make demo`` installs everything first). Runs that already
finished are not repeated; delete ``experiments/demo_*`` and ``datasets/demo`` to start over.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import kdplugins  # noqa: E402,F401
from kdplugins.data.paired_lmdb import list_images, paired_samples, write_paired_lmdb  # noqa: E402

DATA = os.path.join('datasets', 'demo')
TRAIN_PHOTOS = ('astronaut.png', 'coffee.png', 'rocket.jpg', 'motorcycle_left.png', 'ihc.png')
VAL_PHOTOS = ('chelsea.png', )
OPTIONS = 'options/train/KD'
RUNS = (('teacher', 'train_Teacher_MSRResNet_x2_demo.yml', 'demo_teacher_MSRResNet_x2'),
        ('student alone', 'train_Scratch_MSRResNet_x2_demo.yml', 'demo_scratch_MSRResNet_tiny_x2'),
        ('student distilled', 'train_KD_MSRResNet_x2_demo.yml', 'demo_KD_MSRResNet_tiny_x2'))


def build_demo_lmdbs(scale: int = 2) -> None:
    import cv2
    import skimage.data
    photos = os.path.dirname(skimage.data.__file__)
    for split, names, crop in (('train', TRAIN_PHOTOS, 96), ('val', VAL_PHOTOS, 0)):
        hr_lmdb = os.path.join(DATA, f'{split}_HR{"_sub" if crop else ""}.lmdb')
        if os.path.exists(hr_lmdb):
            continue
        folder = os.path.join(DATA, f'{split}_photos')
        os.makedirs(folder, exist_ok=True)
        for name in names:
            cv2.imwrite(
                os.path.join(folder,
                             os.path.splitext(name)[0] + '.png'), cv2.imread(os.path.join(photos, name)))
        lr_lmdb = os.path.join(DATA, f'{split}_LR_bicubic_X{scale}{"_sub" if crop else ""}.lmdb')
        count = write_paired_lmdb(
            paired_samples(list_images(folder), scale, crop_size=crop, step=crop // 2), hr_lmdb, lr_lmdb)
        print(f'{split}: {count} HR/LR pairs in {hr_lmdb}, {lr_lmdb}')


def train(options_file: str, name: str) -> None:
    if os.path.isfile(os.path.join('experiments', name, 'models', 'net_g_latest.pth')):
        print(f'{name}: already trained')
        return
    print(f'training {name} ...', flush=True)
    command = [sys.executable, '-m', 'kdplugins.train', '-opt', os.path.join(OPTIONS, options_file), '--auto_resume']
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)


def final_psnr(name: str) -> str:
    """PSNR-Y of the last validation, read from the run's log."""
    logs = sorted(f for f in os.listdir(os.path.join('experiments', name)) if f.startswith('train_'))
    lines = open(os.path.join('experiments', name, logs[-1])).read().splitlines()
    return [line.split('# psnr:')[1].split()[0] for line in lines if '# psnr:' in line][-1]


def main() -> None:
    os.chdir(ROOT)
    build_demo_lmdbs()
    for _, options_file, name in RUNS:
        train(options_file, name)
    print('\nPSNR-Y on chelsea.png (x2, border 2), after the same iterations:')
    for title, _, name in RUNS:
        print(f'  {title:18s} {final_psnr(name)} dB')


if __name__ == '__main__':
    main()
