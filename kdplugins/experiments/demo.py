"""``make demo``: MemSR's winning initialization against random initialization, on photos bundled with scikit-image.

What it shows (Wu et al., ICML 2022, Sec. 3.3-3.4, Table 1 at CPU scale): a plain student (10 x [3x3 conv + ReLU], no
skip connection) of a residual teacher, started from the winning initialization, is close to its teacher before any
training and stays there, while the same student from PyTorch's default initialization, trained the same way, is far
behind after the same iterations; the plain student needs less memory than its residual teacher.

Steps (each finished step is kept and skipped on the next run; delete ``experiments/demo_*``,
``experiments/pretrained/demo_*`` and ``datasets/demo`` to start over):

1. LMDBs from scikit-image's photos: training sub-images of 5 photos, validation ``chelsea.png``; LR made with
   MATLAB-style bicubic x2 (:func:`build_demo_lmdbs`);
2. the teacher, PixelShuffleEDSR 32 x 4 blocks (``train_Teacher_PixelShuffleEDSR_f32b4_x2_demo.yml``);
3. the winning initialization of the plain student (``scripts/memsr_init.py``, Algorithm 1);
4. the student trained from it and from random weights with the same feature distillation, data order, schedule and
   iterations (``train_MemSR_PlainS_f32_x2_demo.yml`` and ``..._random.yml``);
5. PSNR-Y of every network on the validation photo, the efficiency of teacher and student (AIM 2020 counting, peak
   memory, runtime on a 3x256x256 LR input) and ``demo.png``: crops of bicubic, students, teacher and HR with their
   PSNR beside the PSNR / runtime / memory trade-off.
"""
import contextlib
import io
import numpy as np
import os
import subprocess
import sys
import torch
import yaml
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from kdplugins.data.paired_lmdb import list_images, paired_samples, write_paired_lmdb
from kdplugins.pipeline import train_pipeline

TRAIN_PHOTOS = ('astronaut.png', 'coffee.png', 'rocket.jpg', 'motorcycle_left.png', 'ihc.png')
VAL_PHOTO = 'chelsea.png'
SCALE = 2
CROP_BORDER = SCALE
TEACHER_FILE = 'train_Teacher_PixelShuffleEDSR_f32b4_x2_demo.yml'
STUDENT_FILE = 'train_MemSR_PlainS_f32_x2_demo.yml'
RANDOM_FILE = 'train_MemSR_PlainS_f32_x2_demo_random.yml'
EFFICIENCY_INPUT = 256  # AIM 2020: one LR image of 3x256x256


def build_demo_lmdbs(data: str = os.path.join('datasets', 'demo')) -> None:
    """Paired x2 LMDBs of scikit-image's photos (training: 96x96 HR sub-images with step 48; validation: whole)."""
    import cv2
    import skimage.data
    photos = os.path.dirname(skimage.data.__file__)
    for split, names, crop in (('train', TRAIN_PHOTOS, 96), ('val', (VAL_PHOTO, ), 0)):
        hr_lmdb = os.path.join(data, f'{split}_HR{"_sub" if crop else ""}.lmdb')
        if os.path.exists(hr_lmdb):
            continue
        folder = os.path.join(data, f'{split}_photos')
        os.makedirs(folder, exist_ok=True)
        for name in names:
            cv2.imwrite(
                os.path.join(folder,
                             os.path.splitext(name)[0] + '.png'), cv2.imread(os.path.join(photos, name)))
        lr_lmdb = os.path.join(data, f'{split}_LR_bicubic_X{SCALE}{"_sub" if crop else ""}.lmdb')
        count = write_paired_lmdb(
            paired_samples(list_images(folder), SCALE, crop_size=crop, step=crop // 2), hr_lmdb, lr_lmdb)
        print(f'{split}: {count} HR/LR pairs in {hr_lmdb}, {lr_lmdb}')


def read_options(path: str) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def latest(name: str) -> str:
    return os.path.join('experiments', name, 'models', 'net_g_latest.pth')


def train(options_file: str, force: Sequence[str] = ()) -> None:
    """What ``python -m kdplugins.train -opt options_file --auto_resume`` does (in this process), unless the run
    already finished."""
    name = read_options(options_file)['name']
    if os.path.isfile(latest(name)):
        print(f'{name}: already trained')
        return
    print(f'training {name} ...', flush=True)
    argv = ['-opt', options_file, '--auto_resume'] + (['--force_yml', *force] if force else [])
    console = io.StringIO()  # basicsr's banners, option dump and log lines: kept in the run's log file
    try:
        with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
            train_pipeline(os.getcwd(), argv)
    except BaseException:
        sys.stderr.write(console.getvalue()[-5000:])
        raise
    print(f'  done: log and checkpoints in experiments/{name}/', flush=True)


def winning_initialization(options_file: str, script: str) -> None:
    """``scripts/memsr_init.py`` (Algorithm 1), unless its checkpoint is already there."""
    out = read_options(options_file)['path']['pretrain_network_g']
    if os.path.isfile(out):
        print(f'{out}: already computed')
        return
    subprocess.run([sys.executable, script, '-opt', options_file], check=True, stdout=subprocess.DEVNULL)
    print(f'winning initialization written to {out}')


@dataclass
class Result:
    """One network's super-resolved validation photo (RGB uint8) and its PSNR-Y."""
    title: str
    image: np.ndarray
    psnr: float


def load_network(options: dict, checkpoint: str) -> torch.nn.Module:
    from basicsr.archs import build_network

    from kdplugins.utils.checkpoint import load_state_dict_checked, read_state_dict
    net = build_network(dict(options)).eval()
    load_state_dict_checked(net, read_state_dict(checkpoint, 'params', 'module.', checkpoint), what=checkpoint)
    return net


def validation_pair(data: str) -> Tuple[np.ndarray, np.ndarray]:
    """The validation photo's HR and LR (BGR uint8) from the demo LMDBs, as basicsr's validation reads them."""
    from basicsr.utils import FileClient, imfrombytes
    images = []
    for kind in ('HR', f'LR_bicubic_X{SCALE}'):
        path = os.path.join(data, f'val_{kind}.lmdb')
        client = FileClient('lmdb', db_paths=[path], client_keys=['default'])
        images.append(imfrombytes(client.get(os.path.splitext(VAL_PHOTO)[0], 'default'), float32=False))
    return images[0], images[1]


def super_resolve(net: torch.nn.Module, lr_bgr: np.ndarray) -> np.ndarray:
    """basicsr's pipeline: RGB float in [0, 1], forward, clamp, round to uint8 (BGR out)."""
    from basicsr.utils import img2tensor, tensor2img
    x = img2tensor(lr_bgr.astype(np.float32) / 255., bgr2rgb=True, float32=True).unsqueeze(0)
    with torch.no_grad():
        return tensor2img(net(x), rgb2bgr=True, min_max=(0, 1))


def psnr_y(image_bgr: np.ndarray, hr_bgr: np.ndarray) -> float:
    from basicsr.metrics import calculate_psnr
    return float(calculate_psnr(image_bgr, hr_bgr, crop_border=CROP_BORDER, test_y_channel=True))


def bicubic_upscale(lr_bgr: np.ndarray) -> np.ndarray:
    """MATLAB-style bicubic x2 upscaling (the interpolation baseline)."""
    from kdplugins.utils.matlab_resize import matlab_resize
    x = torch.from_numpy(lr_bgr.astype(np.float64)).permute(2, 0, 1).unsqueeze(0)
    y = matlab_resize(x, SCALE)[0].permute(1, 2, 0).numpy()
    return np.clip(np.round(y), 0, 255).astype(np.uint8)


def evaluate(options_dir: str, data: str, iterations: Tuple[int, int]) -> Tuple[List[Result], np.ndarray]:
    """Results of bicubic, the two students, the initialization alone and the teacher; the HR photo (BGR)."""
    teacher_opt = read_options(os.path.join(options_dir, TEACHER_FILE))
    student_opt = read_options(os.path.join(options_dir, STUDENT_FILE))
    random_opt = read_options(os.path.join(options_dir, RANDOM_FILE))
    iters = dict(zip('ts', iterations))
    hr, lr = validation_pair(data)
    networks = [
        (f'plain student, random init + FD ({iters["s"]} it)', student_opt['network_g'], latest(random_opt['name'])),
        ('plain student, winning init (0 it)', student_opt['network_g'], student_opt['path']['pretrain_network_g']),
        (f'plain student, winning init + FD ({iters["s"]} it)', student_opt['network_g'], latest(student_opt['name'])),
        (f'teacher PixelShuffleEDSR ({iters["t"]} it)', teacher_opt['network_g'], latest(teacher_opt['name'])),
    ]
    bicubic = bicubic_upscale(lr)
    results = [Result('bicubic', bicubic[..., ::-1], psnr_y(bicubic, hr))]
    for title, options, checkpoint in networks:
        sr = super_resolve(load_network(options, checkpoint), lr)
        results.append(Result(title, sr[..., ::-1], psnr_y(sr, hr)))
    return results, hr


def efficiency_reports(options_dir: str, rounds: int = 15, warmup: int = 2) -> Dict[str, object]:
    """AIM 2020 metrics of teacher and plain student on one 3x256x256 LR input (weights do not change them); the
    runtimes are taken in turns (:func:`~kdplugins.utils.efficiency.measure_in_turns`), so that machine load slows
    both alike, and compared by their medians."""
    from kdplugins.utils import efficiency
    student_opt = read_options(os.path.join(options_dir, STUDENT_FILE))
    teacher, student = efficiency.measure_in_turns([('teacher PixelShuffleEDSR 32x4', student_opt['network_t']),
                                                    ('plain student PlainSR 10x32', student_opt['network_g'])],
                                                   EFFICIENCY_INPUT, torch.device('cpu'), rounds, warmup)
    return {'teacher': teacher, 'student': student}


def strongest_crop(bicubic_rgb: np.ndarray, hr_rgb: np.ndarray, size: int = 96, stride: int = 8) -> Tuple[int, int]:
    """Top-left corner of the ``size`` square where bicubic interpolation loses most (largest squared error)."""
    error = ((bicubic_rgb.astype(np.float64) - hr_rgb.astype(np.float64))**2).sum(axis=2)
    integral = np.pad(error.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, corner = -1.0, (0, 0)
    for top in range(0, error.shape[0] - size + 1, stride):
        for left in range(0, error.shape[1] - size + 1, stride):
            total = (
                integral[top + size, left + size] - integral[top, left + size] - integral[top + size, left] +
                integral[top, left])
            if total > best:
                best, corner = total, (top, left)
    return corner


def iteration_overrides(teacher: int, student: int) -> Tuple[List[str], List[str]]:
    """``--force_yml`` entries that train teacher and students for these many iterations (validated and saved at the
    end only; the students' check that the teacher beats bicubic is off, since a teacher of a few iterations does
    not)."""
    force_t = [
        f'train:total_iter={teacher}', f'train:scheduler:periods=[{teacher}]', f'val:val_freq={teacher}',
        f'logger:save_checkpoint_freq={teacher}'
    ]
    force_s = [
        f'train:total_iter={student}', f'val:val_freq={student}', f'logger:save_checkpoint_freq={student}',
        'train:teacher_check=false'
    ]
    return force_t, force_s


def run(options_dir: str,
        init_script: str,
        out: str,
        iterations: Optional[Tuple[int, int]] = None) -> Tuple[List[Result], Dict[str, object]]:
    """Every step of the demo; returns the results and efficiency reports and writes ``out/demo.png``.

    ``iterations``: (teacher, students) instead of the option files' ``total_iter`` (a quick check, not the demo).
    """
    from kdplugins.utils.plots import demo_figure
    data = os.path.join('datasets', 'demo')
    build_demo_lmdbs(data)
    force_t, force_s = iteration_overrides(*iterations) if iterations else ((), ())
    iterations = iterations or tuple(
        read_options(os.path.join(options_dir, f))['train']['total_iter'] for f in (TEACHER_FILE, STUDENT_FILE))
    train(os.path.join(options_dir, TEACHER_FILE), force_t)
    winning_initialization(os.path.join(options_dir, STUDENT_FILE), init_script)
    for options_file in (STUDENT_FILE, RANDOM_FILE):
        train(os.path.join(options_dir, options_file), force_s)
    results, hr = evaluate(options_dir, data, iterations)
    reports = efficiency_reports(options_dir)
    top, left = strongest_crop(results[0].image, hr[..., ::-1])
    crops = [(r.title, r.image, r.psnr) for r in results] + [('HR', hr[..., ::-1], None)]
    teacher, student = reports['teacher'], reports['student']
    points = [(r.title, reports['teacher' if r.title.startswith('teacher') else 'student'], r.psnr) for r in results[1:]
              if 'winning init (0 it)' not in r.title]
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, 'demo.png')
    demo_figure(
        crops, (top, left, 96),
        [(title, rep.runtime_median_s * 1e3, psnr, rep.peak_memory_bytes / 2**20) for title, rep, psnr in points],
        path,
        psnr_label=f'PSNR-Y on {VAL_PHOTO} x{SCALE} [dB]',
        runtime_label=f'runtime on a 3x{EFFICIENCY_INPUT}x{EFFICIENCY_INPUT} LR input, CPU, median of rounds taken '
        'in turns [ms]',
        notes='FD: feature distillation, MemSR\'s loss on the student\'s features against the teacher\'s (Eq. 12-14). '
        'Winning init: MemSR\'s initialization of the plain student\nfrom the trained teacher (Algorithm 1); '
        '"(0 it)" is that student before any training step.')
    print(f'\nPSNR-Y on {VAL_PHOTO} (x{SCALE}, border {CROP_BORDER}):')
    for r in results:
        print(f'  {r.title:44s} {r.psnr:.4f} dB')
    from kdplugins.utils.efficiency import markdown_table
    print('\n' + markdown_table([teacher, student]))
    print(f'student / teacher: parameters {student.counts.params / teacher.counts.params:.3f}, FLOPs '
          f'{student.counts.flops / teacher.counts.flops:.3f}, peak memory '
          f'{student.peak_memory_bytes / teacher.peak_memory_bytes:.3f}, runtime '
          f'{student.runtime_median_s / teacher.runtime_median_s:.3f}')
    print(f'\nwrote {path}')
    return results, reports


def main(argv: Optional[Sequence[str]] = None, repository: Optional[str] = None) -> None:
    """``python scripts/demo.py [--out DIR] [--iterations TEACHER STUDENT]``, run from the folder that gets
    ``datasets/`` and ``experiments/`` (the repository root for ``make demo``)."""
    import argparse
    repository = repository or os.getcwd()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=os.path.join('experiments', 'demo'), help='folder of demo.png.')
    parser.add_argument(
        '--iterations',
        nargs=2,
        type=int,
        metavar=('TEACHER', 'STUDENT'),
        help='train for these many iterations instead of the option files\' (a quick check; not the demo).')
    args = parser.parse_args(argv)
    run(
        os.path.join(repository, 'options', 'train', 'MemSR'), os.path.join(repository, 'scripts', 'memsr_init.py'),
        args.out,
        tuple(args.iterations) if args.iterations else None)
