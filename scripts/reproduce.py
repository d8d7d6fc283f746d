"""Small-scale reproduction on real data: does every method beat its baseline with a real teacher?

    python scripts/reproduce.py                 # everything: data, all runs (resumable), docs/results.md
    python scripts/reproduce.py --only scratch kd augkd --seeds 0
    python scripts/reproduce.py --report-only   # tables and plots from the runs that finished

x4 super-resolution, trained on T91 + BSD200 (256x256 HR sub-images, LR by MATLAB bicubic), validated on Set5 and
Set14 (bundled LR, PSNR/SSIM on Y, border 4), every run with the same student, patch, batch, iterations, schedule
and seeds (``RECIPE``), the teacher being the pretrained RFDN of ``../shared/data/checkpoints``. Runs go through
``python -m kdplugins.train --auto_resume`` (an interrupted run resumes; a finished one is skipped) with option
files written to ``experiments/reproduce_options/``. The report (``docs/results.md``, plots in
``docs/figures/results/``) is built from the runs' logs and the efficiency benchmark.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time
import yaml
from typing import Callable, Dict, List, Optional, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import kdplugins  # noqa: E402,F401  (compat fixes and registration before basicsr is used)

# isort: split
from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY  # noqa: E402

from kdplugins.data.paired_lmdb import list_images, paired_samples, write_paired_lmdb  # noqa: E402

SHARED = os.path.join(ROOT, '..', 'shared', 'data')
DATA = os.path.join('datasets', 'reproduce')
OPTIONS_DIR = os.path.join('experiments', 'reproduce_options')
RFDN_CHECKPOINT = os.path.join('..', 'shared', 'data', 'checkpoints', 'RFDN_AIM_x4.pth')

# The recipe shared by every run (chosen so that the most expensive method, AugKD, trains in about 15 minutes on
# 2 CPU cores). LR patches are 64x64: RFDN needs inputs of at least 15x15 and AugKD zooms out by 4.
RECIPE = {
    'scale': 4,
    'student': {
        'type': 'EDSR',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 16,
        'num_block': 4,
        'upscale': 4,
        'res_scale': 1,
        'img_range': 255.,
        'rgb_mean': [0.4488, 0.4371, 0.4040]
    },
    'teacher': {
        'type': 'RFDN',
        'upscale': 4
    },
    'gt_size': 256,
    'batch_size': 8,
    'total_iter': 700,
    'lr': 5e-4,
    'milestones': [500],
    'val_freq': 100,
    'seeds': [0, 1],
    # feature taps: the deep features before the upsampler (EDSR's conv_after_body output is summed in place with
    # the shallow features, so the tap is the residual body; RFDN's fused block outputs)
    'student_layer': 'body',
    'teacher_layer': 'c',
}


# ------------------------------------------------------------------------------------------------------------------
# data
def build_data() -> Dict[str, str]:
    """Train and validation LMDBs under datasets/reproduce (built once)."""
    paths = {
        'train_hr': os.path.join(DATA, 'T91_BSD200_HR_sub256.lmdb'),
        'train_lr': os.path.join(DATA, 'T91_BSD200_LR_bicubic_X4_sub256.lmdb'),
    }
    if not os.path.exists(paths['train_hr']):
        hr_images = list_images(os.path.join(SHARED, 'train', 'T91', 'HR'))
        hr_images += list_images(os.path.join(SHARED, 'train', 'BSD200', 'HR'))
        count = write_paired_lmdb(
            paired_samples(hr_images, 4, crop_size=256, step=128), paths['train_hr'], paths['train_lr'])
        print(f'train: {count} HR/LR pairs in {paths["train_hr"]}', flush=True)
    for name in ('Set5', 'Set14'):
        paths[f'{name}_hr'] = os.path.join(DATA, f'{name}_HR_X4.lmdb')
        paths[f'{name}_lr'] = os.path.join(DATA, f'{name}_LR_bicubic_X4.lmdb')
        if not os.path.exists(paths[f'{name}_hr']):
            folder = os.path.join(SHARED, 'val', name)
            samples = paired_samples(
                list_images(os.path.join(folder, 'HR')), 4, os.path.join(folder, 'LR_bicubic', 'X4'), '{}x4')
            count = write_paired_lmdb(samples, paths[f'{name}_hr'], paths[f'{name}_lr'])
            print(f'{name}: {count} HR/LR pairs', flush=True)
    return paths


# ------------------------------------------------------------------------------------------------------------------
# options of each run
def base_options(name: str, seed: int, data: Dict[str, str]) -> dict:
    """Student trained alone (SRModel) with the shared recipe; methods patch it."""
    val_sets = {
        f'val_{i}': {
            'name': name_,
            'type': 'PairedImageDataset',
            'dataroot_gt': data[f'{name_}_hr'],
            'dataroot_lq': data[f'{name_}_lr'],
            'io_backend': {
                'type': 'lmdb'
            }
        }
        for i, name_ in enumerate(('Set5', 'Set14'), start=1)
    }
    return {
        'name': name,
        'model_type': 'SRModel',
        'scale': RECIPE['scale'],
        'num_gpu': 'auto',
        'manual_seed': seed,
        'datasets': {
            'train': {
                'name': 'T91_BSD200',
                'type': 'PairedImageDataset',
                'dataroot_gt': data['train_hr'],
                'dataroot_lq': data['train_lr'],
                'io_backend': {
                    'type': 'lmdb'
                },
                'gt_size': RECIPE['gt_size'],
                'use_hflip': True,
                'use_rot': True,
                'num_worker_per_gpu': 1,
                'persistent_workers': True,
                'batch_size_per_gpu': RECIPE['batch_size'],
                'dataset_enlarge_ratio': 10
            },
            **val_sets
        },
        'network_g': dict(RECIPE['student']),
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None
        },
        'train': {
            'ema_decay': 0,
            'optim_g': {
                'type': 'Adam',
                'lr': RECIPE['lr'],
                'betas': [0.9, 0.99]
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': RECIPE['milestones'],
                'gamma': 0.5
            },
            'total_iter': RECIPE['total_iter'],
            'warmup_iter': -1,
            'pixel_opt': {
                'type': 'L1Loss',
                'loss_weight': 1.0
            }
        },
        'val': {
            'val_freq': RECIPE['val_freq'],
            'save_img': False,
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 4,
                    'test_y_channel': True
                },
                'ssim': {
                    'type': 'calculate_ssim',
                    'crop_border': 4,
                    'test_y_channel': True
                }
            }
        },
        'logger': {
            'print_freq': RECIPE['val_freq'] // 4,
            'save_checkpoint_freq': RECIPE['val_freq'],
            'use_tb_logger': False
        },
    }


def with_rfdn_teacher(opt: dict, model_type: str = 'KDModel', kd_weight: Optional[float] = 1.0) -> dict:
    opt['model_type'] = model_type
    opt['network_t'] = dict(RECIPE['teacher'])
    opt['path'].update(pretrain_network_t=RFDN_CHECKPOINT, param_key_t=None, strict_load_t=True)
    if kd_weight:
        opt['train']['kd_opt'] = {'type': 'L1Loss', 'loss_weight': kd_weight}
    return opt


def with_feature_loss(opt: dict, loss: dict, needs_index: bool = False) -> dict:
    opt['train']['feature_losses'] = [{
        'student_layer': RECIPE['student_layer'],
        'teacher_layer': RECIPE['teacher_layer'],
        **loss
    }]
    if needs_index:
        opt['datasets']['train']['type'] = 'PairedImageDatasetWithIndex'
    return opt


# method: (what it needs registered, how it patches the base options)
METHODS: Dict[str, Tuple[List[str], Callable[[dict], dict]]] = {
    'scratch': ([], lambda opt: opt),
    'kd': ([], lambda opt: with_rfdn_teacher(opt)),
    'augkd': (['AugKDModel'], lambda opt: with_rfdn_teacher(opt, 'AugKDModel')),
    'crd': (['CRDLoss'], lambda opt: with_feature_loss(
        with_rfdn_teacher(opt), {
            'type': 'CRDLoss',
            'loss_weight': 0.8,
            'n_data': 'auto',
            'nce_k': 1024
        },
        needs_index=True)),
    'fitnet':
    (['FitNetLoss'],
     lambda opt: with_feature_loss(with_rfdn_teacher(opt, kd_weight=None), {
         'type': 'FitNetLoss',
         'loss_weight': 1e-4
     })),
    'fakd':
    (['FAKDLoss'],
     lambda opt: with_feature_loss(with_rfdn_teacher(opt, kd_weight=None), {
         'type': 'FAKDLoss',
         'loss_weight': 1.0
     })),
}
BASELINE = 'scratch'


def missing_types(names: List[str]) -> List[str]:
    registered = set(MODEL_REGISTRY._obj_map) | set(LOSS_REGISTRY._obj_map)
    return [name for name in names if name not in registered]


# ------------------------------------------------------------------------------------------------------------------
# running
def run_name(method: str, seed: int) -> str:
    return f'reproduce_{method}_it{RECIPE["total_iter"]}_seed{seed}'


def finished(name: str) -> bool:
    return os.path.isfile(os.path.join('experiments', name, 'models', 'net_g_latest.pth'))


def train(method: str, seed: int, data: Dict[str, str]) -> None:
    name = run_name(method, seed)
    if finished(name):
        print(f'{name}: done', flush=True)
        return
    opt = METHODS[method][1](base_options(name, seed, data))
    os.makedirs(OPTIONS_DIR, exist_ok=True)
    opt_path = os.path.join(OPTIONS_DIR, f'{name}.yml')
    with open(opt_path, 'w') as f:
        yaml.safe_dump(opt, f, sort_keys=False)
    command = [sys.executable, '-m', 'kdplugins.train', '-opt', opt_path, '--auto_resume']
    print(f'{name}: training ({" ".join(command)})', flush=True)
    start = time.time()
    with open(os.path.join(OPTIONS_DIR, f'{name}.out'), 'a') as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        last_report = start
        while process.poll() is None:
            time.sleep(1)
            if time.time() - last_report >= 60:
                last_report = time.time()
                print(
                    f'{name}: iter {last_iteration(name)}/{RECIPE["total_iter"]}, {last_report - start:.0f} s',
                    flush=True)
    if process.returncode != 0:
        raise SystemExit(f'{name} failed (exit {process.returncode}); see {OPTIONS_DIR}/{name}.out')
    print(f'{name}: finished in {time.time() - start:.0f} s', flush=True)


# ------------------------------------------------------------------------------------------------------------------
# reading the logs
ITER_LINE = re.compile(r'\[epoch:\s*\d+, iter:\s*([\d,]+), lr:.*time \(data\): ([0-9.]+)')
VALIDATION = re.compile(r'Validation (\w+)\n\t # psnr: ([0-9.]+).*\n\t # ssim: ([0-9.]+)')
TEACHER = re.compile(r'Teacher \(network_t\) on (\w+): psnr: ([0-9.]+), ssim: ([0-9.]+)')


def read_log(name: str) -> str:
    folder = os.path.join('experiments', name)
    if not os.path.isdir(folder):
        return ''
    return ''.join(open(os.path.join(folder, f)).read() for f in sorted(os.listdir(folder)) if f.startswith('train_'))


def last_iteration(name: str) -> int:
    found = ITER_LINE.findall(read_log(name))
    return int(found[-1][0].replace(',', '')) if found else 0


def history(name: str) -> Dict[str, List[Tuple[int, float, float]]]:
    """``{dataset: [(iter, psnr, ssim), ...]}`` from the validations in the log (the last iter logged before each)."""
    log = read_log(name)
    curves: Dict[str, Dict[int, Tuple[float, float]]] = {}
    for match in VALIDATION.finditer(log):
        before = ITER_LINE.findall(log[:match.start()])
        iteration = int(before[-1][0].replace(',', '')) if before else 0
        curves.setdefault(match.group(1), {})[iteration] = (float(match.group(2)), float(match.group(3)))
    return {dataset: [(i, *values) for i, values in sorted(points.items())] for dataset, points in curves.items()}


def step_time(name: str) -> Optional[float]:
    """Median of the iteration times basicsr logs (each an average over its recent iterations)."""
    times = [float(t) for _, t in ITER_LINE.findall(read_log(name))]
    return statistics.median(times) if times else None


def teacher_scores(name: str) -> Dict[str, Tuple[float, float]]:
    return {dataset: (float(psnr), float(ssim)) for dataset, psnr, ssim in TEACHER.findall(read_log(name))}


# ------------------------------------------------------------------------------------------------------------------
# report
def mean_spread(values: List[float]) -> str:
    if not values:
        return 'n/a'
    if len(values) == 1:
        return f'{values[0]:.4f}'
    return f'{statistics.mean(values):.4f} ± {(max(values) - min(values)) / 2:.4f}'


def final_scores(method: str, seeds: List[int]) -> Dict[str, Dict[str, List[float]]]:
    scores: Dict[str, Dict[str, List[float]]] = {}
    for seed in seeds:
        name = run_name(method, seed)
        if not finished(name):
            continue
        for dataset, points in history(name).items():
            _, psnr, ssim = points[-1]
            scores.setdefault(dataset, {'psnr': [], 'ssim': []})
            scores[dataset]['psnr'].append(psnr)
            scores[dataset]['ssim'].append(ssim)
    return scores


def method_table(methods: List[str], seeds: List[int]) -> str:
    scratch_time = statistics.median([t for t in (step_time(run_name(BASELINE, s)) for s in seeds) if t] or [0])
    lines = [
        '| method | runs | Set5 PSNR | Set5 SSIM | Set14 PSNR | Set14 SSIM | step time / scratch |',
        '|---|---:|---:|---:|---:|---:|---:|'
    ]
    for method in methods:
        scores = final_scores(method, seeds)
        runs = sum(finished(run_name(method, s)) for s in seeds)
        times = [t for t in (step_time(run_name(method, s)) for s in seeds) if t]
        ratio = f'{statistics.median(times) / scratch_time:.2f}' if times and scratch_time else 'n/a'
        cells = [mean_spread(scores.get(d, {}).get(m, [])) for d in ('Set5', 'Set14') for m in ('psnr', 'ssim')]
        lines.append(f'| {method} | {runs} | ' + ' | '.join(cells) + f' | {ratio} |')
    return '\n'.join(lines)


def write_report(methods: List[str], seeds: List[int], command: str) -> None:
    from kdplugins.utils.plots import curves_plot
    figures = os.path.join('docs', 'figures', 'results')
    os.makedirs(figures, exist_ok=True)
    for dataset in ('Set5', 'Set14'):
        curves = {}
        for method in methods:
            for seed in seeds:
                points = history(run_name(method, seed)).get(dataset)
                if points:
                    curves[f'{method} (seed {seed})'] = [(i, psnr) for i, psnr, _ in points]
        if curves:
            curves_plot(curves, os.path.join(figures, f'psnr_{dataset}.png'), 'iteration', f'{dataset} PSNR-Y [dB]')
    teacher = {}
    for seed in seeds:
        teacher.update(teacher_scores(run_name('kd', seed)))
    teacher_line = ', '.join(f'{d} {p:.4f} / {s:.4f}' for d, (p, s) in teacher.items()) or 'n/a'
    text = f"""# Small-scale reproduction (x4, T91 + BSD200, 2 CPU cores)

Produced by `{command}` (scripts/reproduce.py); every number below comes from the logs of its runs.

Recipe shared by every run: student `{RECIPE['student']['type']}` ({RECIPE['student']['num_feat']} features,
{RECIPE['student']['num_block']} blocks), HR patch {RECIPE['gt_size']}x{RECIPE['gt_size']}, batch
{RECIPE['batch_size']}, {RECIPE['total_iter']} iterations, Adam lr {RECIPE['lr']} halved at {RECIPE['milestones']},
seeds {seeds}. Teacher: pretrained RFDN x4 (PSNR / SSIM-Y: {teacher_line}). Validation: PSNR/SSIM on Y, border 4,
mean ± half the range over seeds, at the last iteration.

## Distillation with the RFDN teacher against the student trained alone

{method_table(methods, seeds)}

![PSNR against iteration on Set5](figures/results/psnr_Set5.png)
"""
    with open(os.path.join('docs', 'results.md'), 'w') as f:
        f.write(text)
    print(f'wrote docs/results.md and {figures}/', flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', nargs='+', choices=list(METHODS), help='methods to run (default: all)')
    parser.add_argument('--seeds', nargs='+', type=int, default=RECIPE['seeds'])
    parser.add_argument('--report-only', action='store_true', help='only rebuild docs/results.md from finished runs')
    parser.add_argument(
        '--total-iter',
        type=int,
        default=RECIPE['total_iter'],
        help='iterations per run (a quick check of the pipeline; runs are named by it)')
    args = parser.parse_args()
    if args.total_iter != RECIPE['total_iter']:
        scale = args.total_iter / RECIPE['total_iter']
        RECIPE.update(
            total_iter=args.total_iter,
            milestones=[max(1, int(m * scale)) for m in RECIPE['milestones']],
            val_freq=max(4, int(RECIPE['val_freq'] * scale)))
    os.chdir(ROOT)
    if not os.path.isdir(SHARED):
        raise SystemExit(f'{SHARED} not found: the reproduction needs ../shared/data (images and checkpoints).')
    methods = args.only or list(METHODS)
    if not args.report_only:
        data = build_data()
        for seed in args.seeds:
            for method in methods:
                missing = missing_types(METHODS[method][0])
                if missing:
                    print(f'{method}: skipped, {missing} not registered', flush=True)
                    continue
                train(method, seed, data)
    write_report(methods, args.seeds, 'python scripts/reproduce.py ' + ' '.join(sys.argv[1:]))


if __name__ == '__main__':
    main()
