"""The check to run wherever a CUDA GPU is at hand (not yet run on one); record its output in docs/gpu.md.

    python scripts/check_gpu.py [--iters 20] [--out gpu_check]

For each method's example option file (KD, AugKD, CSD, CRD, FitNet, CrossKD, MemSR, multi-teacher KD, MTKD's two
stages):

1. trains it for ``--iters`` iterations as GPU users launch it: ``torchrun --nproc_per_node=<GPUs, at most 2> -m
   kdplugins.train -opt <file> --launcher pytorch`` with the file's own data workers (6 per GPU), batch and patch size,
   validation and a checkpoint at the end. The data are real photos (scikit-image's bundled ones, cut into 256x256
   sub-images, MATLAB bicubic LR) in an LMDB; checkpoints that are not on the machine (teachers, MemSR's
   initialization, CSD's VGG-19) are replaced by seeded random weights, which is said in the output;
2. builds the model in this process and checks that the teacher is on the GPU, frozen (no parameter requires a
   gradient, eval mode) and not DDP-wrapped;
3. times ``feed_data`` + ``optimize_parameters`` against the same student trained alone, with the peak GPU memory of
   each, with kdplugins' defaults and with each ``--speed`` preset of ``train.speed`` (channels_last, bf16 / fp16
   autocast, the teacher's precision: :data:`kdplugins.experiments.speed_benchmark.SPEED_PRESETS`;
   ``scripts/benchmark_train_step.py --speed``): the table of docs/training.md "Faster steps" on the GPU.

Exits non-zero on the first failure. ``--cpu`` runs the same steps on the CPU with 2 iterations, 1 worker and batch 2
(CSD: 1 negative): a check of this script, not of a GPU.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import kdplugins  # noqa: F401  (shims and registration before basicsr is used)

# isort: split
import torch
from basicsr.archs import build_network
from basicsr.models import build_model
from torch.nn.parallel import DistributedDataParallel

from kdplugins.data.paired_lmdb import list_images, paired_samples, write_paired_lmdb
from kdplugins.experiments.speed_benchmark import speed_preset
from kdplugins.utils.option_files import apply_overrides, load_train_options

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

METHODS = {
    'KD': 'options/train/AugKD/train_KD_RFDN_EDSR_x4.yml',
    'AugKD': 'options/train/AugKD/train_AugKD_RFDN_EDSR_x4.yml',
    'CSD': 'options/train/CSD/train_CSD_EDSR_x4.yml',
    'CRD': 'options/train/CRD/train_CRD_RFDN_EDSR_x4.yml',
    'FitNet': 'options/train/FeatureKD/train_FitNet_RFDN_EDSR_x4.yml',
    'CrossKD': 'options/train/CrossKD/train_CrossKD_RFDN_EDSR_x4.yml',
    'MemSR': 'options/train/MemSR/train_MemSR_PlainM_x4_random.yml',
    'MultiKD': 'options/train/KD/train_MultiKD_RFDN_IMDN_CARNM_EDSR_x4.yml',
    'MTKD-aggregator': 'options/train/MTKD/train_MTKD_Aggregator_RFDN_IMDN_CARNM_x4.yml',
    'MTKD': 'options/train/MTKD/train_MTKD_RFDN_IMDN_CARNM_EDSR_x4.yml',
}
TRAIN_PHOTOS = ('astronaut.png', 'coffee.png', 'rocket.jpg', 'motorcycle_left.png', 'ihc.png', 'chelsea.png')
VAL_PHOTOS = ('camera.png', )


def build_lmdbs(out: str) -> dict:
    """x4 LMDBs of real photos: training sub-images of 256x256 (HR), one whole validation image."""
    import skimage.data
    photos = os.path.dirname(skimage.data.__file__)
    paths = {}
    for split, names, crop in (('train', TRAIN_PHOTOS, 256), ('val', VAL_PHOTOS, 0)):
        paths[split] = [os.path.join(out, f'{split}_{kind}.lmdb') for kind in ('HR', 'LR')]
        if not os.path.exists(paths[split][0]):
            folder = os.path.join(out, f'{split}_photos')
            os.makedirs(folder, exist_ok=True)
            for name in names:
                target = os.path.join(folder, name)
                if not os.path.exists(target):
                    os.symlink(os.path.join(photos, name), target)
            write_paired_lmdb(paired_samples(list_images(folder), 4, crop_size=crop, step=crop), *paths[split])
    return paths


def load_yaml(path: str) -> dict:
    import yaml
    from basicsr.utils.options import ordered_yaml
    with open(os.path.join(ROOT, path)) as f:
        return yaml.load(f, Loader=ordered_yaml()[0])


def overrides(method: str, opt: dict, lmdbs: dict, args, out: str) -> list:
    """``--force_yml`` entries: data, iterations and stand-ins for checkpoints that are not here."""
    sets = [
        f'name=gpu_check_{method}', f'datasets:train:dataroot_gt={lmdbs["train"][0]}',
        f'datasets:train:dataroot_lq={lmdbs["train"][1]}', f'train:total_iter={args.iters}',
        f'val:val_freq={args.iters}', f'logger:save_checkpoint_freq={args.iters}', 'logger:print_freq=5',
        'logger:use_tb_logger=false'
    ]
    for phase in opt['datasets']:
        if phase.startswith('val'):
            sets += [
                f'datasets:{phase}:dataroot_gt={lmdbs["val"][0]}', f'datasets:{phase}:dataroot_lq={lmdbs["val"][1]}',
                f'datasets:{phase}:io_backend:type=lmdb'
            ]
    if args.cpu:
        sets += ['num_gpu=0', 'datasets:train:num_worker_per_gpu=1', 'datasets:train:batch_size_per_gpu=2']
    path_opt = opt['path']
    for key in [k for k in path_opt if k.startswith('pretrain_network_')]:  # the student, every teacher, MTKD's agg
        checkpoint, label = path_opt.get(key), key[len('pretrain_network_'):]
        if checkpoint and not os.path.isfile(os.path.join(ROOT, checkpoint)):
            if label == 'g':
                sets.append(f'path:{key}=~')
            else:
                stand_in = os.path.join(out, f'{method}_random_{label}.pth')
                torch.manual_seed(0)
                torch.save({'params': build_network(dict(opt[f'network_{label}'])).state_dict()}, stand_in)
                sets += [f'path:{key}={stand_in}', f'path:param_key_{label}=params']
                if 'train:teacher_check=false' not in sets:
                    sets.append('train:teacher_check=false')
            print(f'  {method}: {checkpoint} not found: seeded random weights instead ({key})')
        elif checkpoint:
            sets.append(f'path:{key}={os.path.join(ROOT, checkpoint)}')
    bridges = (opt['train'].get('memsr') or {}).get('bridges')
    if bridges and not os.path.isfile(os.path.join(ROOT, bridges)):
        sets.append('train:memsr:bridges=~')
        print(f'  {method}: {bridges} not found: random bridges')
    contrastive = opt['train'].get('contrastive_opt')
    if contrastive is not None:
        hub = os.path.join(torch.hub.get_dir(), 'checkpoints', 'vgg19-dcbb9e9d.pth')
        if not contrastive.get('vgg_weights') and not os.path.isfile(hub):
            sets.append('train:contrastive_opt:vgg_weights=random')
            print(f'  {method}: ImageNet VGG-19 not found in {hub}: random VGG weights')
        if args.cpu:
            sets.append('train:contrastive_opt:num_negatives=1')  # batch 2 gives one negative per sample
    return sets


def train(method: str, sets: list, args, out: str) -> float:
    gpus = 0 if args.cpu else min(torch.cuda.device_count(), 2)
    command = [
        sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={max(gpus, 1)}', '--master_port=29517', '-m',
        'kdplugins.train', '-opt',
        os.path.join(ROOT, METHODS[method]), '--launcher', 'pytorch', '--force_yml', *sets
    ]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=out, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        print(result.stdout[-4000:] + result.stderr[-6000:])
        raise SystemExit(f'FAILED: {method} training ({" ".join(command)})')
    if not os.path.isfile(os.path.join(out, 'experiments', f'gpu_check_{method}', 'models', 'net_g_latest.pth')):
        raise SystemExit(f'FAILED: {method} training wrote no net_g_latest.pth')
    return seconds


def check_teacher(method: str, yml: str, sets: list, out: str) -> str:
    """Build the model as the trainer does (one process) and check its teacher."""
    opt = apply_overrides(load_train_options(yml, out), sets)
    model = build_model(opt)
    teacher = getattr(model, 'net_t', None)
    if teacher is None:
        return 'no separate teacher (CSD: the width-1.0 network is the teacher)'
    params = list(teacher.parameters())
    problems = []
    if isinstance(teacher, DistributedDataParallel):
        problems.append('DDP-wrapped')
    if any(p.requires_grad for p in params):
        problems.append('has parameters that require gradients')
    if teacher.training:
        problems.append('in training mode')
    device = model.device.type
    if any(p.device.type != device for p in params):
        problems.append(f'not on {device}')
    if problems:
        raise SystemExit(f'FAILED: {method} teacher ' + ', '.join(problems))
    return f'teacher on {device}, frozen, eval mode, not DDP-wrapped ({sum(p.numel() for p in params):,} parameters)'


NO_SEPARATE_TEACHER_PRECISION = ('CSD', 'MemSR')
NO_STUDENT_ALONE = ('MTKD-aggregator', )
GPU_SPEED_PRESETS = ('channels_last', 'bf16', 'fp16', 'teacher-bf16', 'teacher-fp16', 'channels_last+bf16+teacher-bf16'
                     )  # CSD has no separate teacher; MemSR's must stay fp32


def benchmark(method: str, yml: str, sets: list, args) -> str:
    speed = [s for s in args.speed if 'teacher' not in s or method not in NO_SEPARATE_TEACHER_PRECISION]
    command = [
        sys.executable,
        os.path.join(ROOT, 'scripts', 'benchmark_train_step.py'), '-opt', yml, '--repeat',
        str(2 if args.cpu else 20), '--warmup', '2', '--rounds',
        str(1 if args.cpu else 3), '--set', *sets
    ]
    if speed:
        command += ['--speed', *speed]
    result = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    if result.returncode != 0:
        print(result.stdout[-3000:] + result.stderr[-5000:])
        raise SystemExit(f'FAILED: benchmark of {yml}')
    return result.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--iters', type=int, default=20)
    parser.add_argument('--out', default='', help='working folder (default: a temporary one)')
    parser.add_argument('--only', nargs='+', choices=list(METHODS), default=list(METHODS))
    parser.add_argument('--cpu', action='store_true', help='run on the CPU (2 iterations): checks this script only')
    parser.add_argument(
        '--speed',
        nargs='*',
        help='train.speed presets timed against each method (scripts/benchmark_train_step.py --speed; teacher presets '
        'skipped for CSD and MemSR; default: GPU_SPEED_PRESETS, with --cpu only channels_last, as fp16 has no fast '
        'CPU kernels); --speed alone: only the defaults')
    args = parser.parse_args()
    if args.speed is None:
        args.speed = ['channels_last'] if args.cpu else list(GPU_SPEED_PRESETS)
    for name in args.speed:  # a misspelt preset stops here, not after the first method's training
        try:
            speed_preset(name)
        except ValueError as error:
            parser.error(str(error))
    if args.cpu:
        args.iters = 2
    elif not torch.cuda.is_available():
        raise SystemExit('No CUDA GPU: this check is for a GPU machine (--cpu checks the script itself).')
    out = os.path.abspath(args.out) if args.out else tempfile.mkdtemp(prefix='kdplugins_gpu_check_')
    os.makedirs(out, exist_ok=True)
    device = 'CPU' if args.cpu else f'{torch.cuda.get_device_name()} x {torch.cuda.device_count()}'
    print(f'kdplugins GPU check: {device}; torch {torch.__version__}; {args.iters} iterations per method; in {out}')
    lmdbs = build_lmdbs(out)
    for method in args.only:
        yml = os.path.join(ROOT, METHODS[method])
        print(f'== {method}: {METHODS[method]}')
        sets = overrides(method, load_yaml(METHODS[method]), lmdbs, args, out)
        seconds = train(method, sets, args, out)
        print(f'  torchrun training of {args.iters} iterations with data workers, validation, checkpoint: '
              f'{seconds:.1f} s')
        print('  ' + check_teacher(method, yml, sets, out))
        if method in NO_STUDENT_ALONE:
            print('  step benchmark: none (the aggregator takes the teachers\' outputs: no student-alone twin)')
        else:
            print('  ' + benchmark(method, yml, sets, args).replace('\n', '\n  '))
    print('ALL PASSED')


if __name__ == '__main__':
    main()
