"""Small-scale reproduction on real data: does every method beat its baseline with a real teacher?

    python scripts/reproduce.py                 # everything: data, all runs (resumable), docs/results.md
    python scripts/reproduce.py --only scratch kd augkd --seeds 0
    python scripts/reproduce.py --report-only   # tables and plots from the runs that finished

x4 super-resolution, trained on T91 + BSD200 (256x256 HR sub-images, LR by MATLAB bicubic), validated on Set5 and
Set14 (bundled LR, PSNR/SSIM on Y, border 4). Three claims (``CLAIMS``): distillation from the pretrained RFDN of
``../shared/data/checkpoints`` (scratch, KD, AugKD, CRD+KD, FitNet, FAKD), CSD against joint training on a slimmable
EDSR, and MemSR's plain student (winning initialization + feature distillation, random initialization,
initialization only) of a PixelShuffleEDSR teacher trained first. Every run shares ``RECIPE`` (student size, patch,
batch, iterations, schedule, seeds) except where documented (``CSD``, the MemSR teacher and schedule). Runs go
through ``python -m kdplugins.train --auto_resume`` (an interrupted run resumes; a finished one is skipped) with
option files written to ``experiments/reproduce_options/``. The report (``docs/results.md``, plots in
``docs/figures/results/``) is built from the runs' logs and the efficiency benchmark; docs/reproduction.md explains
the choices.
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

import kdplugins  # noqa: F401  (shims and registration before basicsr is used)

# isort: split
from kdplugins.data.paired_lmdb import list_images, paired_samples, write_paired_lmdb

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

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
}

# CSD: student width and contrastive weight as in options/train/CSD; the negatives are the other LR images of the batch
# (upsampled), so at most batch - 1 of them (the paper's 10 need a batch of 11). The VGG-19 of the contrastive loss
# needs ImageNet weights that are not on this machine: 'random' runs an untrained VGG-19 (not the paper's loss; the
# report says which was used), --vgg-weights PATH loads the real ones. The VGG-19 passes (anchor, positive and
# negatives of every sample) make a CSD step at the recipe's 256x256 patches about 30 s here, so CSD and J-T share
# smaller patches (64x64 HR) with the recipe's batch, iterations and seeds.
CSD = {
    'gt_size': 64,
    'width_mult': 0.5,
    'lambda_c': 200.0 / 255,  # the paper's 200 on [0, 255] pixels (docs/conventions.md)
    'num_negatives': RECIPE['batch_size'] - 1,
    'vgg_weights': 'random'
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


FEATURE_KD_OPTIONS = {
    'crd': os.path.join(ROOT, 'options', 'train', 'CRD', 'train_CRD_RFDN_EDSR_x4.yml'),
    'fitnet': os.path.join(ROOT, 'options', 'train', 'FeatureKD', 'train_FitNet_RFDN_EDSR_x4.yml'),
    'fakd': os.path.join(ROOT, 'options', 'train', 'FeatureKD', 'train_FAKD_RFDN_EDSR_x4.yml'),
    'at': os.path.join(ROOT, 'options', 'train', 'FeatureKD', 'train_AT_RFDN_EDSR_x4.yml'),
    'rkd': os.path.join(ROOT, 'options', 'train', 'FeatureKD', 'train_RKD_RFDN_EDSR_x4.yml'),
}


def with_feature_kd(opt: dict, method: str) -> dict:
    """The feature distillation of the method's option file (its ``feature_losses``: taps, weights and settings,
    its pixel and output-KD terms, its dataset type) with the RFDN teacher on the recipe's student and data."""
    with open(FEATURE_KD_OPTIONS[method]) as f:
        reference = yaml.safe_load(f)
    opt = with_rfdn_teacher(opt, kd_weight=(reference['train'].get('kd_opt') or {}).get('loss_weight'))
    opt['train']['pixel_opt'] = dict(reference['train']['pixel_opt'])
    opt['train']['feature_losses'] = reference['train']['feature_losses']
    opt['datasets']['train']['type'] = reference['datasets']['train']['type']
    return opt


def with_feature_weight(opt: dict, weight: float) -> dict:
    """A diagnostic: the method's one feature loss at another weight (its balance against the pixel and KD terms);
    for RKD the ``loss_weight`` that multiplies its distance and angle weights; every tap of the method gets it."""
    for loss in opt['train']['feature_losses']:
        loss['loss_weight'] = weight
    return opt


# ------------------------------------------------------------------------------------------------------------------
# CSD against joint training (J-T): a slimmable EDSR whose width-0.5 part is the recipe's student
def slim_edsr() -> dict:
    return {**RECIPE['student'], 'type': 'SlimEDSR', 'num_feat': 2 * RECIPE['student']['num_feat']}


def csd_init_file(seed: int) -> str:
    """One initialization per seed, written once and loaded by both J-T and CSD (same initialization for both)."""
    path = os.path.join('experiments', 'reproduce_init', f'SlimEDSR_seed{seed}.pth')
    if not os.path.isfile(path):
        import torch
        from basicsr.archs import build_network
        torch.manual_seed(seed)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.save({'params': build_network(slim_edsr()).state_dict()}, path)
    return path


def with_csd(opt: dict, seed: int, contrastive: bool) -> dict:
    opt['model_type'] = 'CSDModel'
    opt['datasets']['train']['gt_size'] = CSD['gt_size']
    opt['network_g'] = slim_edsr()
    opt['path']['pretrain_network_g'] = csd_init_file(seed)
    opt['train']['csd'] = {
        'width_mult': CSD['width_mult'],
        'lambda_t': 1.0,
        'lambda_c': CSD['lambda_c'] if contrastive else 0.0,
        'detach_teacher': True
    }
    if contrastive:
        opt['train']['contrastive_opt'] = {
            'type': 'CSDContrastiveLoss',
            'num_negatives': CSD['num_negatives'],
            'vgg_weights': CSD['vgg_weights'],
        }
    opt['val']['width_mult'] = CSD['width_mult']
    return opt


# ------------------------------------------------------------------------------------------------------------------
# MemSR: a PixelShuffleEDSR teacher trained first, then plain students of its plain equivalent's depth
MEMSR_OPTIONS = os.path.join(ROOT, 'options', 'train', 'MemSR', 'train_MemSR_PlainS_f32_x4.yml')


def memsr_init_file() -> str:
    """The winning initialization computed from the teacher run (named after it)."""
    return os.path.join('experiments', 'reproduce_init', f'MemSR_init_from_{run_name("memsr_teacher", 0)}.pth')


# the teacher is trained first, alone, with the recipe's schedule stretched MEMSR_TEACHER_ITER_FACTOR times: with the
# recipe's iterations it stays below bicubic on Set5 (28.20 dB at 700 iterations, bicubic 28.42)
MEMSR_TEACHER_ITER_FACTOR = 4


def memsr_teacher(opt: dict) -> dict:
    """PixelShuffleEDSR with the recipe student's width and depth, trained alone with the recipe's optimizer and
    schedule over ``MEMSR_TEACHER_ITER_FACTOR`` times the iterations."""
    opt['train']['total_iter'] = iterations('memsr_teacher')
    opt['train']['scheduler']['milestones'] = [m * MEMSR_TEACHER_ITER_FACTOR for m in RECIPE['milestones']]
    opt['network_g'] = memsr_network()
    return opt


def memsr_network() -> dict:
    """The MemSR teacher: PixelShuffleEDSR with the recipe student's width and depth."""
    student = RECIPE['student']
    return {
        'type': 'PixelShuffleEDSR',
        'num_feat': student['num_feat'],
        'num_block': student['num_block'],
        'upscale': RECIPE['scale']
    }


def memsr_student(opt: dict, winning_init: bool, distill: bool) -> dict:
    """The settings of options/train/MemSR (MemSRModel, one-cycle lr, lambda, epsilon, C, bridges from Algorithm 1)
    with the recipe's data, patch, batch and iterations; the student has one width per plain teacher layer."""
    with open(MEMSR_OPTIONS) as f:
        memsr = yaml.safe_load(f)
    teacher = memsr_network()
    opt['model_type'] = memsr['model_type']
    opt['network_t'] = teacher
    opt['network_g'] = {**memsr['network_g'], 'widths': [teacher['num_feat']] * (2 * teacher['num_block'] + 2)}
    opt['path'].update(
        pretrain_network_t=os.path.join('experiments', run_name('memsr_teacher', 0), 'models', 'net_g_latest.pth'),
        param_key_t='params',
        pretrain_network_g=memsr_init_file() if winning_init else None,
        param_key_g='params')
    opt['train'].update(optim_g=memsr['train']['optim_g'], scheduler=memsr['train']['scheduler'])
    opt['train']['memsr'] = {**memsr['train']['memsr'], 'bridges': memsr_init_file()}
    if not distill:
        opt['train']['memsr']['lambda'] = 0.0
    return opt


def prepare_memsr_init(data: Dict[str, str]) -> None:
    """Train the teacher (once), then scripts/memsr_init.py writes the student's and the bridges' initialization."""
    if os.path.isfile(memsr_init_file()):
        return
    train('memsr_teacher', 0, data)
    opt_path = os.path.join(OPTIONS_DIR, 'memsr_init.yml')
    with open(opt_path, 'w') as f:
        yaml.safe_dump(METHODS['memsr'](base_options('memsr_init', 0, data), 0), f, sort_keys=False)
    command = [sys.executable, os.path.join('scripts', 'memsr_init.py'), '-opt', opt_path, '--out', memsr_init_file()]
    print(f'MemSR winning initialization: {" ".join(command)}', flush=True)
    subprocess.run(command, check=True)


# method: how it patches the base options of a seed
METHODS: Dict[str, Callable[[dict, int], dict]] = {
    'scratch': lambda opt, seed: opt,
    'kd': lambda opt, seed: with_rfdn_teacher(opt),
    'augkd': lambda opt, seed: with_rfdn_teacher(opt, 'AugKDModel'),
    'crd': lambda opt, seed: with_feature_kd(opt, 'crd'),
    'fitnet': lambda opt, seed: with_feature_kd(opt, 'fitnet'),
    'fakd': lambda opt, seed: with_feature_kd(opt, 'fakd'),
    'jt': lambda opt, seed: with_csd(opt, seed, contrastive=False),
    'csd': lambda opt, seed: with_csd(opt, seed, contrastive=True),
    'memsr_teacher': lambda opt, seed: memsr_teacher(opt),
    'memsr': lambda opt, seed: memsr_student(opt, winning_init=True, distill=True),
    'memsr_random': lambda opt, seed: memsr_student(opt, winning_init=False, distill=True),
    'memsr_init_only': lambda opt, seed: memsr_student(opt, winning_init=True, distill=False),
    **{
        f'{loss}_weight_{weight:g}': (lambda loss, weight: lambda opt, seed: with_feature_weight(
            with_feature_kd(opt, loss), weight))(loss, weight)
        for loss, weights in (('at', (1000, 200)), ('rkd', (1, 1e-3)))
        for weight in weights
    },
}
# diagnostic runs (not the papers' settings; trained only when named with --only): the claim run each one varies and
# what it changes
DIAGNOSTICS = {
    'at_weight_1000': ('kd', 'AT+KD at the published AT weight 1000 (a classification setting, CRD Sec. 6.4)'),
    'rkd_weight_1': ('kd', 'RKD+KD at the published RKD weights (distance 25, angle 50; classification, CRD Sec. 6.4)'),
    'at_weight_200': ('kd', 'AT+KD at 200: the published 1000 times a third over the AT term / pixel term of the '
                      'at_weight_1000 run (1.75)'),
    'rkd_weight_0.001': ('kd', 'RKD+KD with loss_weight 1e-3 (distance 0.025, angle 0.05): a third over the RKD term / '
                         'pixel term of the rkd_weight_1 run (about 300)'),
}
# (key, title, methods, baseline) of each paper claim; the MemSR teacher is trained once (seed 0)
CLAIMS = [
    ('rfdn', 'Distillation from the pretrained RFDN against the student trained alone',
     ['scratch', 'kd', 'augkd', 'crd', 'fitnet', 'fakd'], 'scratch'),
    ('csd', 'CSD against joint training (J-T), same slimmable EDSR and initialization', ['jt', 'csd'], 'jt'),
    ('memsr', 'MemSR: plain student, winning initialization + feature distillation',
     ['memsr_random', 'memsr_init_only', 'memsr'], 'memsr_random'),
]
# the papers' comparisons other than against a claim's baseline: AugKD over KD, MemSR's distillation over its
# initialization alone
PAIRWISE = [('augkd', 'kd'), ('memsr', 'memsr_init_only')]
SINGLE_SEED = {'memsr_teacher'}
# what a method needs before its options can be used (trained teachers, initialization files)
PREPARE: Dict[str, Callable[[Dict[str, str]], None]] = {
    'memsr': prepare_memsr_init,
    'memsr_random': prepare_memsr_init,
    'memsr_init_only': prepare_memsr_init
}
BASELINE = 'scratch'


# ------------------------------------------------------------------------------------------------------------------
# running
def iterations(method: str) -> int:
    return RECIPE['total_iter'] * (MEMSR_TEACHER_ITER_FACTOR if method == 'memsr_teacher' else 1)


def run_name(method: str, seed: int) -> str:
    return f'reproduce_{method}_it{iterations(method)}_seed{seed}'


def finished(name: str) -> bool:
    return os.path.isfile(os.path.join('experiments', name, 'models', 'net_g_latest.pth'))


def train(method: str, seed: int, data: Dict[str, str], name: Optional[str] = None) -> None:
    """Train ``method`` with ``seed`` as run ``name`` (default ``run_name``), or resume it; skip it if finished."""
    name = name or run_name(method, seed)
    if finished(name):
        print(f'{name}: done', flush=True)
        return
    if method in PREPARE:
        PREPARE[method](data)
    opt = METHODS[method](base_options(name, seed, data), seed)
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
                    f'{name}: iter {last_iteration(name)}/{iterations(method)}, {last_report - start:.0f} s',
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


LOSS_TERM = re.compile(r'(l_\w+): ([0-9.e+-]+)')


def final_losses(name: str, points: int = 4) -> Dict[str, float]:
    """Each logged loss term, averaged over the last ``points`` iteration lines of the log."""
    lines = [line for line in read_log(name).splitlines() if ITER_LINE.search(line)][-points:]
    terms: Dict[str, List[float]] = {}
    for line in lines:
        for term, value in LOSS_TERM.findall(line.split('] ', 2)[-1]):
            terms.setdefault(term, []).append(float(value))
    return {term: statistics.mean(values) for term, values in terms.items()}


def feature_term_fraction(name: str) -> Optional[float]:
    """The feature-distillation terms (all but ``l_pix`` and ``l_kd``) over the pixel term, at the end of a run."""
    losses = final_losses(name)
    if 'l_pix' not in losses:
        return None
    return sum(v for k, v in losses.items() if k not in ('l_pix', 'l_kd')) / losses['l_pix']


def step_time(name: str) -> Optional[float]:
    """Median of the iteration times basicsr logs (each an average over its recent iterations)."""
    times = [float(t) for _, t in ITER_LINE.findall(read_log(name))]
    return statistics.median(times) if times else None


def teacher_scores(name: str) -> Dict[str, Tuple[float, float]]:
    return {dataset: (float(psnr), float(ssim)) for dataset, psnr, ssim in TEACHER.findall(read_log(name))}


# ------------------------------------------------------------------------------------------------------------------
# tables
def mean_spread(values: List[float]) -> str:
    if not values:
        return 'n/a'
    if len(values) == 1:
        return f'{values[0]:.4f}'
    return f'{statistics.mean(values):.4f} ± {(max(values) - min(values)) / 2:.4f}'


def final_scores(method: str, seeds: List[int]) -> Dict[str, Dict[str, List[float]]]:
    """``{dataset: {'psnr': [...], 'ssim': [...]}}`` at the last validation of each finished run."""
    scores: Dict[str, Dict[str, List[float]]] = {}
    for seed in run_seeds(method, seeds):
        name = run_name(method, seed)
        if not finished(name):
            continue
        for dataset, points in history(name).items():
            _, psnr, ssim = points[-1]
            scores.setdefault(dataset, {'psnr': [], 'ssim': []})
            scores[dataset]['psnr'].append(psnr)
            scores[dataset]['ssim'].append(ssim)
    return scores


def rerun_name(method: str, seed: int) -> str:
    return run_name(method, seed) + '_rerun'


def rerun_lines(seeds: List[int]) -> str:
    """Final PSNR of every configuration trained a second time (``--rerun``) next to its first run."""
    lines = []
    for method in METHODS:
        for seed in run_seeds(method, seeds):
            names = run_name(method, seed), rerun_name(method, seed)
            if not all(finished(name) for name in names):
                continue
            cells = []
            for dataset in ('Set5', 'Set14'):
                first, second = (final_psnr(name, dataset) for name in names)
                cells.append(f'{dataset} {first:.4f} / {second:.4f} dB (difference {second - first:+.4f})')
            lines.append(f'* {method}, seed {seed}: ' + ', '.join(cells))
    return '\n'.join(lines)


def rerun_section(seeds: List[int]) -> str:
    lines = rerun_lines(seeds)
    if not lines:
        return ''
    return ('\n## Re-run check\n\nConfigurations trained a second time from nothing (`--rerun`), final PSNR-Y of the '
            f'first run / of the re-run:\n\n{lines}\n')


def diagnostics_section(seeds: List[int]) -> str:
    """The diagnostic runs that finished, with the claim runs they vary, against scratch."""
    trained = [m for m in DIAGNOSTICS if any(finished(run_name(m, s)) for s in seeds)]
    if not trained:
        return ''
    varied = list(dict.fromkeys(DIAGNOSTICS[m][0] for m in trained))
    fractions = {m: [feature_term_fraction(run_name(m, s)) for s in seeds if finished(run_name(m, s))] for m in trained}
    changes = '\n'.join(f'* `{m}`: {DIAGNOSTICS[m][1]}; feature term / pixel term over the last 4 logged iterations: ' +
                        ', '.join(f'{f:.3g}' for f in fractions[m]) for m in trained)
    return (f"\n## Diagnostics (not the papers' settings)\n\n{changes}\n\n"
            f'{method_table([BASELINE] + varied + trained, seeds)}\n\nPSNR gain over {BASELINE}, seed by seed:\n\n'
            f'{differences(varied + trained, BASELINE, seeds)}\n')


def calibration_table(seeds: List[int]) -> str:
    """The feature-loss weight runs (``<loss>_weight_<w>``) that finished: the feature term over the pixel term at the
    end, and the final PSNR-Y, seed by seed (docs/conventions.md, "Calibration")."""
    lines = [
        '| run | loss | weight | seed | feature term / pixel term | Set5 PSNR | Set14 PSNR |',
        '|---|---|---:|---:|---:|---:|---:|'
    ]
    for method in DIAGNOSTICS:
        loss, weight = method.split('_weight_')
        for seed in seeds:
            name = run_name(method, seed)
            if finished(name):
                psnr = [final_psnr(name, d) for d in ('Set5', 'Set14')]
                lines.append(f'| `{method}` | {loss.upper()} | {float(weight):g} | {seed} | '
                             f'{feature_term_fraction(name):.3g} | {psnr[0]:.4f} | {psnr[1]:.4f} |')
    return '\n'.join(lines)


def run_seeds(method: str, seeds: List[int]) -> List[int]:
    return [0] if method in SINGLE_SEED else seeds


def median_step_time(method: str, seeds: List[int]) -> Optional[float]:
    times = [t for t in (step_time(run_name(method, s)) for s in run_seeds(method, seeds)) if t]
    return statistics.median(times) if times else None


def method_table(methods: List[str], seeds: List[int], datasets: Tuple[str, str] = ('Set5', 'Set14')) -> str:
    scratch_time = median_step_time(BASELINE, seeds)
    lines = [
        f'| method | runs | {datasets[0]} PSNR | {datasets[0]} SSIM | {datasets[1]} PSNR | {datasets[1]} SSIM '
        '| step time / scratch |', '|---|---:|---:|---:|---:|---:|---:|'
    ]
    for method in methods:
        scores = final_scores(method, seeds)
        runs = sum(finished(run_name(method, s)) for s in run_seeds(method, seeds))
        time = median_step_time(method, seeds)
        ratio = f'{time / scratch_time:.2f}' if time and scratch_time else 'n/a'
        cells = [mean_spread(scores.get(d, {}).get(m, [])) for d in datasets for m in ('psnr', 'ssim')]
        lines.append(f'| {method} | {runs} | ' + ' | '.join(cells) + f' | {ratio} |')
    return '\n'.join(lines)


def final_psnr(name: str, dataset: str) -> Optional[float]:
    """PSNR at the last validation of a finished run (None if it has not finished)."""
    points = history(name).get(dataset) if finished(name) else None
    return points[-1][1] if points else None


def differences(methods: List[str], baseline: str, seeds: List[int]) -> str:
    """PSNR gain over the baseline of the same seed (same data order): mean ± half the range, then seed by seed."""
    lines = []
    for method in methods:
        if method == baseline:
            continue
        cells = []
        for dataset in ('Set5', 'Set14'):
            pairs = {seed: tuple(final_psnr(run_name(m, seed), dataset) for m in (method, baseline)) for seed in seeds}
            gains = {seed: a - b for seed, (a, b) in pairs.items() if a is not None and b is not None}
            by_seed = ', '.join(f'seed {seed}: {gain:+.4f}' for seed, gain in gains.items())
            cells.append(f'{dataset} {mean_spread(list(gains.values()))} dB ({by_seed})' if gains else f'{dataset} n/a')
        lines.append(f'* {method} - {baseline}: ' + ', '.join(cells))
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------------------------
# efficiency of every student and teacher (the AIM 2020 protocol of kdplugins.utils.efficiency)
EFFICIENCY_CACHE = os.path.join('experiments', 'reproduce_efficiency.json')


def efficiency_networks() -> Dict[str, dict]:
    student = RECIPE['student']
    teacher = memsr_network()
    return {
        'RFDN (teacher)':
        dict(RECIPE['teacher']),
        f'EDSR {student["num_feat"]}x{student["num_block"]} (student; CSD student at width {CSD["width_mult"]})':
        dict(student),
        'SlimEDSR at width 1.0 (CSD teacher)':
        slim_edsr(),
        'PixelShuffleEDSR (MemSR teacher)':
        teacher,
        'PlainSR one_pad (MemSR student)': {
            'type': 'PlainSR',
            'widths': [teacher['num_feat']] * (2 * teacher['num_block'] + 2),
            'upscale': RECIPE['scale'],
            'one_pad': True
        },
    }


def efficiency_rows() -> List[dict]:
    """Measured once (LR input 3x256x256, median of 5 forwards) and cached; delete the cache to measure again."""
    import json
    if os.path.isfile(EFFICIENCY_CACHE):
        with open(EFFICIENCY_CACHE) as f:
            return json.load(f)
    import torch

    from kdplugins.utils.efficiency import measure
    rows = []
    for label, options in efficiency_networks().items():
        report = measure(label, options, 256, torch.device('cpu'), repeat=5, warmup=1)
        rows.append({
            'name': label,
            'params': report.counts.params,
            'flops_g': report.counts.flops / 1e9,
            'activations_m': report.counts.activations / 1e6,
            'memory_mib': report.peak_memory_bytes / 2**20,
            'runtime_ms': report.runtime_median_s * 1e3
        })
        print(f'efficiency: {label}: {rows[-1]}', flush=True)
    with open(EFFICIENCY_CACHE, 'w') as f:
        json.dump(rows, f, indent=1)
    return rows


def efficiency_table(rows: List[dict]) -> str:
    lines = [
        '| network | #Params | FLOPs [G] | #Activations [M] | CPU peak memory [MiB] | CPU runtime [ms] |',
        '|---|---:|---:|---:|---:|---:|'
    ]
    for row in rows:
        lines.append(f"| {row['name']} | {row['params']:,} | {row['flops_g']:.2f} | {row['activations_m']:.2f} "
                     f"| {row['memory_mib']:.1f} | {row['runtime_ms']:.0f} |")
    return '\n'.join(lines)


# ------------------------------------------------------------------------------------------------------------------
# checks
def teacher_on_training_crops(data: Dict[str, str], count: int = 64) -> Tuple[float, float]:
    """Mean PSNR-Y (border 4) of the RFDN teacher and of MATLAB bicubic on the first ``count`` training pairs, read
    as the students read them: a check that the teacher is loaded, scaled and aligned on the training data."""
    import torch
    from basicsr.data.paired_image_dataset import PairedImageDataset
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img

    from kdplugins.distill.teacher import build_teacher
    from kdplugins.utils.matlab_resize import matlab_resize
    teacher = build_teacher(with_rfdn_teacher(base_options('check', 0, data)), torch.device('cpu'))
    dataset = PairedImageDataset({
        'dataroot_gt': data['train_hr'],
        'dataroot_lq': data['train_lr'],
        'io_backend': {
            'type': 'lmdb'
        },
        'phase': 'val',
        'scale': RECIPE['scale']
    })
    psnr_teacher, psnr_bicubic = [], []
    with torch.no_grad():
        for index in range(min(count, len(dataset))):
            sample = dataset[index]
            lq, gt = sample['lq'][None], tensor2img(sample['gt'])
            for output, scores in ((teacher(lq), psnr_teacher), (matlab_resize(lq, RECIPE['scale']), psnr_bicubic)):
                scores.append(calculate_psnr(tensor2img(output), gt, RECIPE['scale'], test_y_channel=True))
    return float(statistics.mean(psnr_teacher)), float(statistics.mean(psnr_bicubic))


# ------------------------------------------------------------------------------------------------------------------
# report
def mean_curve(method: str, seeds: List[int], dataset: str) -> List[Tuple[int, float]]:
    """Validation PSNR against iteration, averaged over the finished runs (at the iterations every one validated)."""
    names = [run_name(method, seed) for seed in run_seeds(method, seeds) if finished(run_name(method, seed))]
    runs = [dict((i, psnr) for i, psnr, _ in history(name).get(dataset, [])) for name in names]
    runs = [points for points in runs if points]
    if not runs:
        return []
    common = sorted(set.intersection(*(set(points) for points in runs)))
    return [(i, statistics.mean(points[i] for points in runs)) for i in common]


def write_curves(key: str, methods: List[str], seeds: List[int], figures: str) -> Optional[str]:
    """One PNG per claim: Set5 and Set14 PSNR against iteration, one line per method (mean over seeds)."""
    from kdplugins.utils.plots import curves_plot
    panels = {}
    for dataset in ('Set5', 'Set14'):
        curves = {method: mean_curve(method, seeds, dataset) for method in methods}
        panels[dataset] = {method: points for method, points in curves.items() if points}
    if not all(panels.values()):
        return None
    curves_plot(panels, os.path.join(figures, f'psnr_{key}.png'), 'iteration', 'PSNR-Y [dB], mean over seeds')
    return f'figures/results/psnr_{key}.png'


def write_tradeoff(rows: List[dict], seeds: List[int], figures: str) -> Optional[str]:
    """Set5 PSNR against CPU runtime (marker: peak memory) of the networks whose PSNR was measured."""
    from kdplugins.utils.plots import tradeoff_plot
    psnr_of = {
        'RFDN (teacher)': teacher_psnr('kd', 'Set5', seeds),
        'SlimEDSR at width 1.0 (CSD teacher)': mean_of(final_scores('jt', seeds), 'Set5_teacher'),
        'PixelShuffleEDSR (MemSR teacher)': mean_of(final_scores('memsr_teacher', seeds), 'Set5'),
        'PlainSR one_pad (MemSR student)': mean_of(final_scores('memsr', seeds), 'Set5'),
    }
    student = next(row['name'] for row in rows if row['name'].startswith('EDSR'))
    psnr_of[student] = mean_of(final_scores('kd', seeds), 'Set5')
    points = [(row['name'].split(' (')[0], row['runtime_ms'], psnr_of[row['name']], row['memory_mib']) for row in rows
              if psnr_of.get(row['name']) is not None]
    if len(points) < 2:
        return None
    tradeoff_plot(points, os.path.join(figures, 'tradeoff.png'), 'Set5 x4 PSNR-Y [dB]', 'CPU runtime, LR 256x256 [ms]')
    return 'figures/results/tradeoff.png'


def mean_of(scores: Dict[str, Dict[str, List[float]]], dataset: str) -> Optional[float]:
    values = scores.get(dataset, {}).get('psnr', [])
    return statistics.mean(values) if values else None


def teacher_psnr(method: str, dataset: str, seeds: List[int]) -> Optional[float]:
    for seed in seeds:
        found = teacher_scores(run_name(method, seed)).get(dataset)
        if found:
            return found[0]
    return None


def teacher_line(method: str, seeds: List[int]) -> str:
    scores: Dict[str, Tuple[float, float]] = {}
    for seed in seeds:
        scores.update(teacher_scores(run_name(method, seed)))
    return ', '.join(f'{d} {p:.4f} / {s:.4f}' for d, (p, s) in scores.items()) or 'n/a'


def write_report(seeds: List[int], data: Dict[str, str], command: str) -> None:
    figures = os.path.join('docs', 'figures', 'results')
    os.makedirs(figures, exist_ok=True)
    rows = efficiency_rows()
    crops_teacher, crops_bicubic = teacher_on_training_crops(data)
    tradeoff = write_tradeoff(rows, seeds, figures)
    student = RECIPE['student']
    sections = []
    for key, title, methods, baseline in CLAIMS:
        table = method_table(methods, seeds)
        if 'jt' in methods:
            table += '\n\nThe teacher (width 1.0) of the same runs:\n\n' + method_table(
                methods, seeds, ('Set5_teacher', 'Set14_teacher'))
        if 'memsr' in methods:
            table = method_table(['memsr_teacher'], seeds) + '\n\nStudents:\n\n' + table
        curves = write_curves(key, methods + (['memsr_teacher'] if 'memsr' in methods else []), seeds, figures)
        plot = f'\n![PSNR against iteration: {title}]({curves})\n' if curves else ''
        gains = '\n'.join([differences(methods, baseline, seeds)] +
                          [differences([m, b], b, seeds) for m, b in PAIRWISE if m in methods])
        sections.append(f'## {title}\n\n{table}\n\nPSNR gain over {baseline} (and the paper\'s other comparisons), '
                        f'seed by seed:\n\n{gains or "n/a"}\n{plot}')
    text = f"""# Small-scale reproduction (x4, T91 + BSD200, 2 CPU cores)

Produced by `{command}` (scripts/reproduce.py); every number below comes from the logs of its runs.

Recipe shared by every run: student `{student['type']}` ({student['num_feat']} features, {student['num_block']}
blocks), HR patch {RECIPE['gt_size']}x{RECIPE['gt_size']}, batch {RECIPE['batch_size']}, {RECIPE['total_iter']}
iterations, Adam lr {RECIPE['lr']} halved at {RECIPE['milestones']} (MemSR students: the one-cycle schedule of
options/train/MemSR), seeds {seeds}. Validation: PSNR/SSIM on Y, border 4, mean ± half the range over seeds, at the
last iteration. Step time: median of the logged iteration times, relative to scratch.
Teacher of the first table: pretrained RFDN x4 (PSNR / SSIM-Y: {teacher_line('kd', seeds)}); on the first 64
training pairs, read as the students read them: {crops_teacher:.2f} dB PSNR-Y against {crops_bicubic:.2f} dB for
MATLAB bicubic.
CSD and J-T: width {CSD['width_mult']} student of a SlimEDSR with twice the student's features, HR patch
{CSD['gt_size']}x{CSD['gt_size']}, lambda_c {CSD['lambda_c']}, {CSD['num_negatives']} negatives, VGG-19 weights:
`{CSD['vgg_weights']}`.

""" + '\n'.join(sections) + diagnostics_section(seeds) + rerun_section(seeds) + f"""
## Efficiency of the students and teachers

LR input 3x256x256, CPU (2 threads), CPU peak tensor memory (docs/efficiency.md), median of 5 forwards.

{efficiency_table(rows)}
""" + (f'\n![Set5 PSNR against CPU runtime, marker area = peak memory]({tradeoff})\n' if tradeoff else '')
    with open(os.path.join('docs', 'results.md'), 'w') as f:
        f.write(text)
    print(f'wrote docs/results.md and {figures}/', flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--only', nargs='+', choices=list(METHODS), help='methods to run (default: all)')
    parser.add_argument('--seeds', nargs='+', type=int, default=RECIPE['seeds'])
    parser.add_argument('--report-only', action='store_true', help='only rebuild docs/results.md from finished runs')
    parser.add_argument(
        '--calibration-table',
        action='store_true',
        help='only print the table of the feature-loss weight runs that finished (docs/conventions.md)')
    parser.add_argument(
        '--rerun',
        action='store_true',
        help='train the selected runs (--only, --seeds) a second time, as <run>_rerun, to check that they reproduce')
    parser.add_argument('--vgg-weights', default=CSD['vgg_weights'], help="CSD's VGG-19 weights (default: random)")
    parser.add_argument(
        '--total-iter',
        type=int,
        default=RECIPE['total_iter'],
        help='iterations per run (a quick check of the pipeline; runs are named by it)')
    args = parser.parse_args()
    CSD['vgg_weights'] = args.vgg_weights
    if args.total_iter != RECIPE['total_iter']:
        scale = args.total_iter / RECIPE['total_iter']
        RECIPE.update(
            total_iter=args.total_iter,
            milestones=[max(1, int(m * scale)) for m in RECIPE['milestones']],
            val_freq=max(4, int(RECIPE['val_freq'] * scale)))
    os.chdir(ROOT)
    if not os.path.isdir(SHARED):
        raise SystemExit(f'{SHARED} not found: the reproduction needs ../shared/data (images and checkpoints).')
    if args.calibration_table:
        print(calibration_table(args.seeds))
        return
    methods = args.only or [m for _, _, claim_methods, _ in CLAIMS for m in claim_methods]
    data = build_data()
    if not args.report_only:
        for seed in args.seeds:
            for method in methods:
                if seed in run_seeds(method, args.seeds):
                    train(method, seed, data, rerun_name(method, seed) if args.rerun else None)
    write_report(args.seeds, data, 'python scripts/reproduce.py ' + ' '.join(sys.argv[1:]))


if __name__ == '__main__':
    main()
