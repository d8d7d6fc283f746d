"""The reproduction's recipe, the options of every run and their training (scripts/reproduce.py: its command line).

x4 super-resolution, trained on T91 + BSD200 (256x256 HR sub-images, LR by MATLAB bicubic), validated on Set5 and Set14
(bundled LR, PSNR/SSIM on Y, border 4), all read from the data root (:func:`configure`). Three claims (``CLAIMS``):
distillation from the pretrained RFDN of the data root's ``checkpoints`` (scratch, KD, AugKD, CRD+KD, FitNet, FAKD), CSD
against joint training on a slimmable EDSR, and MemSR's plain student (winning initialization + feature distillation,
random initialization, initialization only) of a PixelShuffleEDSR teacher trained first. Every run shares ``RECIPE``
(student size, patch, batch, iterations, schedule, seeds) except where documented (``CSD``, the MemSR teacher and
schedule). Runs go through ``python -m kdplugins.train --auto_resume`` (an interrupted run resumes; a finished one is
skipped) with option files written to ``experiments/reproduce_options/``. Paths are relative to the repository root
(:data:`ROOT`), the current directory while the reproduction runs (:func:`enter_repository`).

:mod:`kdplugins.experiments.reproduction_logs` reads the runs' logs, :mod:`kdplugins.experiments.reproduction_report`
writes ``docs/results.md`` from them.
"""
import os
import subprocess
import sys
import time
import yaml
from typing import Callable, Dict, List, Optional

from kdplugins.data.paired_lmdb import list_images, paired_samples, write_paired_lmdb
from kdplugins.experiments.method_options import feature_settings, method_options
from kdplugins.experiments.reproduction_logs import finished, last_iteration


def find_root() -> str:
    """The repository whose option files (options/train) and scripts the reproduction uses: the clone this package
    sits in (an editable install), else the current directory when it is a kdplugins clone (a regular install run
    from a clone); the package's parent otherwise (:func:`enter_repository` then stops with the fix)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for candidate in (package_parent, os.getcwd()):
        if os.path.isdir(os.path.join(candidate, 'options', 'train')):
            return candidate
    return package_parent


ROOT = find_root()

# The source data (train/T91/HR, train/BSD200/HR, val/Set5 and val/Set14 with HR and LR_bicubic/X4, and
# checkpoints/RFDN_AIM_x4.pth), relative to ROOT or absolute: set by configure(data_root=...) (scripts/reproduce.py
# --data-root, or the environment variable it reads, KDPLUGINS_DATA_ROOT).
DATA_ROOT: Optional[str] = None
DATA = os.path.join('datasets', 'reproduce')
OPTIONS_DIR = os.path.join('experiments', 'reproduce_options')

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
    'seeds': [0, 1, 2, 3, 4],
    'workers': 1,
    'run_prefix': 'reproduce_',
    'report': os.path.join('docs', 'results.md'),
    'title': 'Small-scale reproduction (x4, T91 + BSD200, 2 CPU cores)',
}
# A larger recipe for one CUDA GPU (scripts/reproduce.py --recipe gpu --only scratch kd augkd): BasicSR's EDSR
# baseline width with 8 blocks, batch 16, 1,500 iterations, 3 seeds: sized to stay under 8 minutes on one H200 for the
# three methods (estimated from step costs; never run so far: no session had a GPU). Its runs are named
# reproduce_gpu_*, its report is docs/results_gpu.md (a separate, labelled table). The LR patch stays 64: AugKD's
# zoom-out of a 48-pixel patch (12 px) is below RFDN's 15-pixel minimum.
GPU_RECIPE = {
    'student': {
        **RECIPE['student'], 'num_feat': 64,
        'num_block': 8
    },
    'batch_size': 16,
    'total_iter': 1500,
    'lr': 2e-4,
    'milestones': [1000],
    'val_freq': 500,
    'seeds': [0, 1, 2],
    'workers': 6,
    'run_prefix': 'reproduce_gpu_',
    'report': os.path.join('docs', 'results_gpu.md'),
    'title': 'GPU recipe (x4, T91 + BSD200, one CUDA GPU): scratch, KD and AugKD',
}

# CSD: student width as in options/train/CSD, the method's weights; the negatives are the other LR images of the batch
# (upsampled), so at most batch - 1 of them (the paper's 10 need a batch of 11). The VGG-19 of the contrastive loss
# needs ImageNet weights that are not on this machine: 'random' runs an untrained VGG-19 (not the paper's loss; the
# report says which was used), --vgg-weights PATH loads the real ones. The VGG-19 passes (anchor, positive and
# negatives of every sample) make a CSD step at the recipe's 256x256 patches about 30 s here, so CSD and J-T share
# smaller patches (64x64 HR) with the recipe's batch, iterations and seeds.
CSD = {'gt_size': 64, 'width_mult': 0.5, 'num_negatives': RECIPE['batch_size'] - 1, 'vgg_weights': 'random'}


# ------------------------------------------------------------------------------------------------------------------
# data
def data_path(*parts: str) -> str:
    """A path under the data root (relative to :data:`ROOT` unless the root is absolute)."""
    if DATA_ROOT is None:
        raise RuntimeError(
            'The reproduction\'s data root is not set: call configure(data_root=...) (scripts/reproduce.py '
            '--data-root PATH, or KDPLUGINS_DATA_ROOT=PATH).')
    return os.path.join(DATA_ROOT, *parts)


def build_data() -> Dict[str, str]:
    """Train and validation LMDBs under datasets/reproduce (built once)."""
    paths = {
        'train_hr': os.path.join(DATA, 'T91_BSD200_HR_sub256.lmdb'),
        'train_lr': os.path.join(DATA, 'T91_BSD200_LR_bicubic_X4_sub256.lmdb'),
    }
    if not os.path.exists(paths['train_hr']):
        hr_images = list_images(data_path('train', 'T91', 'HR'))
        hr_images += list_images(data_path('train', 'BSD200', 'HR'))
        count = write_paired_lmdb(
            paired_samples(hr_images, 4, crop_size=256, step=128), paths['train_hr'], paths['train_lr'])
        print(f'train: {count} HR/LR pairs in {paths["train_hr"]}', flush=True)
    for name in ('Set5', 'Set14'):
        paths[f'{name}_hr'] = os.path.join(DATA, f'{name}_HR_X4.lmdb')
        paths[f'{name}_lr'] = os.path.join(DATA, f'{name}_LR_bicubic_X4.lmdb')
        if not os.path.exists(paths[f'{name}_hr']):
            folder = data_path('val', name)
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
                'num_worker_per_gpu': RECIPE['workers'],
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


def with_method(opt: dict, method: str, taps=(), **settings) -> dict:
    """``opt`` with the model, the losses and the dataset type of ``method`` (a key of
    :data:`kdplugins.experiments.method_options.METHODS`; ``taps`` and ``settings``: :func:`method_options`)."""
    built = method_options(method, taps, **settings)
    opt['model_type'] = built.model_type
    opt['train'].update(built.train)
    if built.dataset_type:
        opt['datasets']['train']['type'] = built.dataset_type
    return opt


def with_rfdn_teacher(opt: dict) -> dict:
    """The pretrained RFDN of the data root as ``network_t``."""
    opt['network_t'] = dict(RECIPE['teacher'])
    opt['path'].update(
        pretrain_network_t=data_path('checkpoints', 'RFDN_AIM_x4.pth'), param_key_t=None, strict_load_t=True)
    return opt


# the further public x4 teachers of the multi-teacher runs (sections as options/test/teachers/*.yml), by section name
FURTHER_TEACHERS = {
    'network_t_imdn': ({
        'type': 'IMDN',
        'in_channels': 3,
        'channels': 64,
        'num_blocks': 6,
        'out_channels': 3,
        'upscale': 4
    }, 'IMDN_x4.pth'),
    'network_t_carnm': ({
        'type': 'CARNM',
        'scale': 4,
        'channels': 64,
        'group': 4
    }, 'CARN-M_x234.pth'),
}


def with_three_teachers(opt: dict, combine: str) -> dict:
    """KD from RFDN, IMDN and CARN-M x4 (the public checkpoints of the data root), their outputs combined as
    ``train.multi_teacher.combine`` says (:mod:`kdplugins.distill.multi_teacher`)."""
    opt = with_method(with_rfdn_teacher(opt), 'KD')
    for section, (network, checkpoint) in FURTHER_TEACHERS.items():
        label = section[len('network_'):]
        opt[section] = dict(network)
        opt['path'].update({
            f'pretrain_network_{label}': data_path('checkpoints', checkpoint),
            f'param_key_{label}': None,
            f'strict_load_{label}': True
        })
    opt['train']['multi_teacher'] = {'combine': combine}
    return opt


# the feature distillation runs: their method and the option file whose settings they take
FEATURE_KD_OPTIONS = {
    'crd': ('CRD', os.path.join(ROOT, 'options', 'train', 'CRD', 'train_CRD_RFDN_EDSR_x4.yml')),
    'fitnet': ('FitNet', os.path.join(ROOT, 'options', 'train', 'FeatureKD', 'train_FitNet_RFDN_EDSR_x4.yml')),
    'fakd': ('FAKD', os.path.join(ROOT, 'options', 'train', 'FeatureKD', 'train_FAKD_RFDN_EDSR_x4.yml')),
    'at': ('AT', os.path.join(ROOT, 'options', 'train', 'FeatureKD', 'train_AT_RFDN_EDSR_x4.yml')),
    'rkd': ('RKD', os.path.join(ROOT, 'options', 'train', 'FeatureKD', 'train_RKD_RFDN_EDSR_x4.yml')),
}


def with_feature_kd(opt: dict, run: str) -> dict:
    """The method of a feature distillation run with the RFDN teacher on the recipe's student and data, its taps and
    weights those of the method's option file (:func:`~kdplugins.experiments.method_options.feature_settings`)."""
    method, path = FEATURE_KD_OPTIONS[run]
    with open(path) as f:
        reference = yaml.safe_load(f)
    taps, settings = feature_settings(reference['train'])
    return with_method(with_rfdn_teacher(opt), method, taps, **settings)


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
    """CSD (``contrastive``) or J-T on the slimmable EDSR, from the seed's initialization, with the recipe's width
    and negatives."""
    opt['datasets']['train']['gt_size'] = CSD['gt_size']
    opt['network_g'] = slim_edsr()
    opt['path']['pretrain_network_g'] = csd_init_file(seed)
    opt['val']['width_mult'] = CSD['width_mult']
    settings = {'csd': {'width_mult': CSD['width_mult']}}
    if contrastive:
        settings['contrastive_opt'] = {'num_negatives': CSD['num_negatives'], 'vgg_weights': CSD['vgg_weights']}
    return with_method(opt, 'CSD' if contrastive else 'JT', **settings)


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
    """The settings of options/train/MemSR (MemSRModel, one-cycle lr, λ, ε, C, bridges from Algorithm 1)
    with the recipe's data, patch, batch and iterations; the student has one width per plain teacher layer."""
    with open(MEMSR_OPTIONS) as f:
        memsr = yaml.safe_load(f)
    teacher = memsr_network()
    opt['network_t'] = teacher
    opt['network_g'] = {**memsr['network_g'], 'widths': [teacher['num_feat']] * (2 * teacher['num_block'] + 2)}
    opt['path'].update(
        pretrain_network_t=os.path.join('experiments', run_name('memsr_teacher', 0), 'models', 'net_g_latest.pth'),
        param_key_t='params',
        pretrain_network_g=memsr_init_file() if winning_init else None,
        param_key_g='params')
    opt['train'].update(optim_g=memsr['train']['optim_g'], scheduler=memsr['train']['scheduler'])
    memsr_opt = dict(memsr['train']['memsr_opt'], **({} if distill else {'loss_weight': 0.0}))
    memsr_block = {**memsr['train']['memsr'], 'bridges': memsr_init_file()}
    return with_method(opt, 'MemSR', memsr_opt=memsr_opt, memsr=memsr_block)


def prepare_memsr_init(data: Dict[str, str]) -> None:
    """Train the teacher (once), then scripts/memsr_init.py writes the student's and the bridges' initialization."""
    if os.path.isfile(memsr_init_file()):
        return
    train('memsr_teacher', 0, data)
    opt_path = os.path.join(OPTIONS_DIR, 'memsr_init.yml')
    with open(opt_path, 'w') as f:
        yaml.safe_dump(RUNS['memsr'](base_options('memsr_init', 0, data), 0), f, sort_keys=False)
    command = [sys.executable, os.path.join('scripts', 'memsr_init.py'), '-opt', opt_path, '--out', memsr_init_file()]
    print(f'MemSR winning initialization: {" ".join(command)}', flush=True)
    subprocess.run(command, check=True)


# run: how it patches the base options of a seed (the methods' options: kdplugins.experiments.method_options)
RUNS: Dict[str, Callable[[dict, int], dict]] = {
    'scratch': lambda opt, seed: with_method(opt, 'Scratch'),
    'kd': lambda opt, seed: with_method(with_rfdn_teacher(opt), 'KD'),
    'augkd': lambda opt, seed: with_method(with_rfdn_teacher(opt), 'AugKD'),
    'crd': lambda opt, seed: with_feature_kd(opt, 'crd'),
    'fitnet': lambda opt, seed: with_feature_kd(opt, 'fitnet'),
    'fakd': lambda opt, seed: with_feature_kd(opt, 'fakd'),
    'jt': lambda opt, seed: with_csd(opt, seed, contrastive=False),
    'csd': lambda opt, seed: with_csd(opt, seed, contrastive=True),
    'mt_mean': lambda opt, seed: with_three_teachers(opt, 'mean'),
    'mt_error': lambda opt, seed: with_three_teachers(opt, 'error'),
    'memsr_teacher': lambda opt, seed: with_method(memsr_teacher(opt), 'Scratch'),
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
    ('multi', 'Several teachers (RFDN, IMDN, CARN-M) against the best single one (RFDN)', ['kd', 'mt_mean',
                                                                                           'mt_error'], 'kd'),
]
# the papers' claims each table judges: (A, B, what "A - B > 0" would show), paired by seed; a claim's verdict line
# lists them in this order
COMPARISONS = {
    'rfdn': [('kd', 'scratch', 'KD beats the student trained alone'),
             ('augkd', 'kd', "AugKD beats KD (AugKD Table 2's headline)"),
             ('augkd', 'scratch', 'AugKD beats the student trained alone'),
             ('fakd', 'kd', 'FAKD+KD beats KD (three taps, converted weight)'),
             ('crd', 'kd', 'CRD+KD beats KD (calibrated weight)'), ('fitnet', 'kd', 'FitNet+KD beats KD')],
    'csd': [('csd', 'jt', 'CSD does not fall below J-T (with the untrained VGG-19: a stability check only)')],
    'memsr': [('memsr', 'memsr_random', "the winning initialization beats random initialization (MemSR's claim)"),
              ('memsr', 'memsr_init_only', 'feature distillation adds to the winning initialization')],
    'multi': [('mt_mean', 'kd', 'the mean of three teachers beats the best single teacher'),
              ('mt_error', 'kd', 'per-pixel error-weighted teachers beat the best single teacher'),
              ('mt_error', 'mt_mean', 'error weighting beats the plain mean')],
}
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
    """The recipe's iterations (``MEMSR_TEACHER_ITER_FACTOR`` times them for the MemSR teacher)."""
    return RECIPE['total_iter'] * (MEMSR_TEACHER_ITER_FACTOR if method == 'memsr_teacher' else 1)


def run_name(method: str, seed: int) -> str:
    """``reproduce_<method>_it<iterations>_seed<seed>`` (``reproduce_gpu_...`` for the GPU recipe): the folder under
    experiments/ (runs are named by length)."""
    return f'{RECIPE["run_prefix"]}{method}_it{iterations(method)}_seed{seed}'


def train(method: str, seed: int, data: Dict[str, str], name: Optional[str] = None) -> None:
    """Train ``method`` with ``seed`` as run ``name`` (default ``run_name``), or resume it; skip it if finished."""
    name = name or run_name(method, seed)
    if finished(name):
        print(f'{name}: done', flush=True)
        return
    if method in PREPARE:
        PREPARE[method](data)
    opt = RUNS[method](base_options(name, seed, data), seed)
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


def rerun_name(method: str, seed: int) -> str:
    """The run that trains ``run_name(method, seed)`` a second time (``--rerun``)."""
    return run_name(method, seed) + '_rerun'


def run_seeds(method: str, seeds: List[int]) -> List[int]:
    """The seeds ``method`` is trained with: ``seeds``, or seed 0 only for :data:`SINGLE_SEED` methods."""
    return [0] if method in SINGLE_SEED else seeds


# ------------------------------------------------------------------------------------------------------------------
# the command line's steps (scripts/reproduce.py)
def configure(total_iter: Optional[int] = None,
              vgg_weights: Optional[str] = None,
              recipe: str = 'cpu',
              data_root: Optional[str] = None) -> None:
    """Choose the recipe (``cpu``: :data:`RECIPE`; ``gpu``: :data:`GPU_RECIPE` over it), set CSD's VGG-19 weights, the
    data root (a relative one is relative to the current directory and kept relative to :data:`ROOT`, where the runs
    start) and the iterations per run: a length other than the recipe's scales the milestones and the validation
    interval with it (``val_freq`` at least 4)."""
    global DATA_ROOT
    if data_root is not None:
        DATA_ROOT = data_root if os.path.isabs(data_root) else os.path.relpath(os.path.abspath(data_root), ROOT)
    if recipe == 'gpu':
        RECIPE.update(GPU_RECIPE)
    elif recipe != 'cpu':
        raise ValueError(f'recipe must be cpu or gpu, got {recipe!r}')
    if vgg_weights is not None:
        CSD['vgg_weights'] = vgg_weights
    if total_iter is not None and total_iter != RECIPE['total_iter']:
        scale = total_iter / RECIPE['total_iter']
        RECIPE.update(
            total_iter=total_iter,
            milestones=[max(1, int(m * scale)) for m in RECIPE['milestones']],
            val_freq=max(4, int(RECIPE['val_freq'] * scale)))


def enter_repository() -> None:
    """Make :data:`ROOT` the current directory; stop if the data root (images and checkpoints) is missing."""
    if not os.path.isdir(os.path.join(ROOT, 'options', 'train')):
        raise SystemExit(f'{ROOT} is not a kdplugins clone (no options/train): run the reproduction from the root of '
                         'a clone of the repository, which it reads option files and scripts from.')
    os.chdir(ROOT)
    if not os.path.isdir(data_path()):
        raise SystemExit(f'The data root {os.path.abspath(data_path())} is not a folder: the reproduction reads its '
                         'images and checkpoints there (train/T91/HR, train/BSD200/HR, val/Set5, val/Set14, '
                         'checkpoints/RFDN_AIM_x4.pth). Pass scripts/reproduce.py --data-root PATH or set '
                         'KDPLUGINS_DATA_ROOT=PATH.')


def claim_methods() -> List[str]:
    """The methods of every claim, in the order of :data:`CLAIMS` (the default of ``--only``)."""
    return [m for _, _, methods, _ in CLAIMS for m in methods]


def train_all(methods: List[str], seeds: List[int], data: Dict[str, str], rerun: bool = False) -> None:
    """Train (or resume) every method with every seed of :func:`run_seeds`, seed by seed; with ``rerun`` a second
    time, as :func:`rerun_name`."""
    for seed in seeds:
        for method in methods:
            if seed in run_seeds(method, seeds):
                train(method, seed, data, rerun_name(method, seed) if rerun else None)
