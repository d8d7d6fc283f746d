"""The papers' table rows as BasicSR option files: ``options/train/paper/*.yml`` are generated from the data below.

Sources (the papers' texts, :data:`PAPER_FILES`): AugKD (Tables 1, 2, 3, 10, 11, App. A.1), CSD (Table 1, Algorithm 1,
Sec. 4.1) and MemSR (Sec. 4.1, Table 4). The recipes are data, in one place: :data:`BACKBONES` (teacher / student
networks and the public teacher checkpoints), :data:`FEATURE_KD_WEIGHTS` and :data:`METHODS` (per-method losses),
:data:`SCHEDULES` (per-paper optimisation and data) and :data:`PAPER_ROWS` (which rows exist and their published
numbers). ``python scripts/make_paper_options.py`` writes one file per row; ``tests/test_paper_recipes.py`` checks that
the committed files are exactly what this module writes, that basicsr parses them and that each model builds, loads its
teacher and trains.

Loss weights (the project's convention): BasicSR images are in [0, 1]; pixel and KD terms are L1 with weight 1 unless
a paper says otherwise; a published weight tuned next to an L1 pixel loss on [0, 255] images is divided by 255 (CSD's
λ_C 200, FAKD's 10).
"""
import os
import yaml
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

from kdplugins.losses.csd_loss import CSD_LAYER_WEIGHTS, CSD_NUM_NEGATIVES
from kdplugins.losses.memsr_loss import MEMSR_EPSILON, MEMSR_LAMBDA
from kdplugins.losses.published_weights import (AT_WEIGHT_DEFAULT, CRD_WEIGHT_DEFAULT, CSD_LAMBDA_C_DEFAULT,
                                                FAKD_WEIGHT_DEFAULT, RKD_WEIGHT_DEFAULT)
from kdplugins.memsr.convert import DEFAULT_OFFSET
from kdplugins.models.augkd_model import AUGKD_OPTIONS
from kdplugins.models.csd_model import CSD_OPTIONS
from kdplugins.utils.declared_options import defaults

SCALES = (2, 3, 4)
RGB_MEAN = [0.4488, 0.4371, 0.4040]  # DIV2K mean of BasicSR's EDSR / RCAN

# ---------------------------------------------------------------------------------------------------------------------
# Backbones: AugKD Table 1 (x4: EDSR 43.09 M -> 2.70 M, RCAN 15.59 M -> 5.17 M, SwinIR 11.90 M -> 1.24 M parameters;
# the networks below have exactly these counts at x4). Teachers are the public checkpoints (AugKD App. A.4), named as
# BasicSR's model zoo / option files and the SwinIR release name them.


def edsr(num_feat: int, num_block: int, res_scale: float) -> dict:
    return {
        'type': 'EDSR',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': num_feat,
        'num_block': num_block,
        'res_scale': res_scale,
        'img_range': 255.0,
        'rgb_mean': list(RGB_MEAN)
    }


def rcan(num_group: int, num_block: int) -> dict:
    return {
        'type': 'RCAN',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 64,
        'num_group': num_group,
        'num_block': num_block,
        'squeeze_factor': 16,
        'res_scale': 1,
        'img_range': 255.0,
        'rgb_mean': list(RGB_MEAN)
    }


def swinir(embed_dim: int, num_rstb: int) -> dict:
    """SwinIR for classical SR (6 Swin layers and 6 heads per RSTB, window 8, pixel-shuffle upsampler)."""
    return {
        'type': 'SwinIR',
        'in_chans': 3,
        'img_size': 48,  # the s48 checkpoints: img_size sets the shape of the saved attn_mask buffers
        'window_size': 8,
        'img_range': 1.0,
        'depths': [6] * num_rstb,
        'embed_dim': embed_dim,
        'num_heads': [6] * num_rstb,
        'mlp_ratio': 2,
        'upsampler': 'pixelshuffle',
        'resi_connection': '1conv'
    }


BACKBONES = {
    'EDSR': {
        'teacher': edsr(256, 32, 0.1),  # EDSR-L, BasicSR EDSR_Lx*_f256b32
        # 64 x 32 with res_scale 0.1: the width-0.25 slice of EDSR-L, i.e. the CSD student of the same table
        'student': edsr(64, 32, 0.1),
        'teacher_units': 32,  # residual blocks body.0 .. body.31 (feature taps, FAKD thirds)
        'student_units': 32,
        'checkpoint': 'experiments/pretrained_models/EDSR/EDSR_Lx{scale}_f256b32_DIV2K_official-{tag}.pth',
        'checkpoint_tags': {
            2: 'be38e77d',
            3: '3660f70d',
            4: '76ee1c8f'
        },
        'param_key': 'params',
        'checkpoint_source': "BasicSR docs/ModelZoo.md (official models) and options/test/EDSR/test_EDSR_Lx*.yml",
    },
    'RCAN': {
        'teacher':
        rcan(10, 20),
        'student':
        rcan(10, 6),
        'teacher_units':
        10,  # residual groups body.0 .. body.9 (the same count in the student)
        'student_units':
        10,
        'checkpoint':
        'experiments/pretrained_models/RCAN_BIX{scale}-official.pth',
        'checkpoint_tags': {},
        'param_key':
        'params',
        'checkpoint_source':
        "BasicSR options/test/RCAN/test_RCAN.yml (RCAN_BIX4-official.pth, the official RCAN "
        "release converted to BasicSR names; x2/x3 named alike)",
    },
    'SwinIR': {
        'teacher':
        swinir(180, 6),  # SwinIR-M, classical SR
        'student':
        swinir(60, 4),  # 60 channels, 4 RSTBs of 6 layers: 1.24 M at x4 (4 x 4 RSTBs would be 1.30 M)
        'teacher_units':
        6,
        'student_units':
        4,
        'checkpoint':
        'experiments/pretrained_models/SwinIR/001_classicalSR_DIV2K_s48w8_SwinIR-M_x{scale}.pth',
        'checkpoint_tags': {},
        'param_key':
        'params',
        'checkpoint_source':
        "SwinIR release v0.0 (DIV2K-trained, 48x48 LR patches, window 8; main_test_swinir.py "
        "loads key 'params'); BasicSR options/test/SwinIR use the same names",
    },
}

# ---------------------------------------------------------------------------------------------------------------------
# Feature-KD weights of FitNet, AT, RKD and CRD: ONE place, being recalibrated by the project (regenerate after a
# change). Current values: options/train/FeatureKD/*.yml and options/train/CRD/train_CRD_RFDN_EDSR_x4.yml.
FEATURE_KD_WEIGHTS = {
    'FitNet': {
        'pixel': 1.0,
        'kd': 1.0,
        'loss': {
            'type': 'FitNetLoss',
            'loss_weight': 1e-3
        }
    },
    'AT': {
        'pixel': 1.0,
        'kd': 1.0,
        'loss': {
            'type': 'ATLoss',
            'loss_weight': AT_WEIGHT_DEFAULT,
            'p': 2
        }
    },
    'RKD': {
        'pixel': 1.0,
        'kd': 1.0,
        'loss': {
            'type': 'RKDLoss',
            'distance_weight': 25.0,
            'angle_weight': 50.0,
            'loss_weight': RKD_WEIGHT_DEFAULT,
            'pool_size': 1
        }
    },
    'CRD': {
        'pixel': 1.0,
        'kd': 1.0,
        'loss': {
            'type': 'CRDLoss',
            'loss_weight': CRD_WEIGHT_DEFAULT,
            'feat_dim': 128,
            'nce_k': 16384,
            'nce_k_cap': True,
            'nce_t': 0.07,
            'nce_m': 0.5,
            'n_data': 'auto',
            'pool_size': 1
        }
    },
}

# Methods (AugKD Sec. 4.1 baselines). taps: 'end' = the end of the body of both networks (the deepest LR features,
# before conv_after_body); 'thirds' = after a third and two thirds of the body and at its end (FAKD's three taps).
METHODS = {
    'Scratch': {
        'model_type': 'SRModel',
        'pixel': 1.0
    },
    'KD': {
        'model_type': 'KDModel',
        'pixel': 1.0,
        'kd': 1.0
    },
    'FitNet': dict(FEATURE_KD_WEIGHTS['FitNet'], model_type='KDModel', taps='end'),
    'AT': dict(FEATURE_KD_WEIGHTS['AT'], model_type='KDModel', taps='end'),
    'RKD': dict(FEATURE_KD_WEIGHTS['RKD'], model_type='KDModel', taps='end'),
    'FAKD': {
        'model_type': 'KDModel',
        'pixel': 0.5,
        'kd': 0.5,
        'loss': {
            'type': 'FAKDLoss',
            'loss_weight': FAKD_WEIGHT_DEFAULT,  # FAKD code: 10 per tap, next to an L1 pixel loss on [0, 255]
            'criterion': 'l1'
        },
        'taps': 'thirds'
    },
    # CrossKD (Fang et al. 2023; AugKD Table 3): the student's features through the teacher's upsampling tail; the paper
    # gives no weights: pixel, KD and cross terms at 1 each, as KD's (this project's choice)
    'CrossKD': {
        'model_type': 'CrossKDModel',
        'pixel': 1.0,
        'kd': 1.0,
        'crosskd': {
            'student_layer': 'upsample',
            'teacher_layer': 'upsample'
        },
        'crosskd_opt': {
            'type': 'CrossKDLoss',
            'loss_weight': 1.0
        }
    },
    'AugKD': {
        'model_type': 'AugKDModel',
        'pixel': 1.0,
        'kd': 1.0,
        'augkd': 1.0,
        'options': defaults(AUGKD_OPTIONS),  # the model's defaults (docs/augkd.md); zoom-out off for SwinIR (App. A.1)
        'no_zoom_out': ('SwinIR', )
    },
    'CSD': {
        'model_type': 'CSDModel',
        'lambda_t': 1.0,  # CSD Eq. 3: the teacher's L1 term, next to the student's of the same range
        'csd': {
            'width_mult': CSD_OPTIONS['width_mult'].default,
            'detach_teacher': True
        },
        'contrastive': {
            'type': 'CSDContrastiveLoss',
            'loss_weight': CSD_LAMBDA_C_DEFAULT,  # CSD Sec. 4.1: 200, next to an L1 pixel loss on [0, 255]
            'num_negatives': CSD_NUM_NEGATIVES,
            'negatives_include_own': False,
            'layer_weights': dict(CSD_LAYER_WEIGHTS),
            'vgg_weights': None,
            'vgg_input_range': 1.0,
            'vgg_input_norm': True
        }
    },
    'JT': {  # CSD's joint-training baseline J-T: Eq. 1 only
        'model_type': 'CSDModel',
        'lambda_t': 1.0,
        'csd': {
            'width_mult': CSD_OPTIONS['width_mult'].default,
            'detach_teacher': True
        },
        'contrastive': {
            'type': 'CSDContrastiveLoss',
            'loss_weight': 0.0
        }
    },
    'Baseline': {  # CSD's individually trained student (EDSR+ 0.25x alone)
        'model_type': 'SRModel',
        'pixel': 1.0
    },
    'TeacherM': {
        'model_type': 'SRModel',
        'pixel': 1.0
    },
    'PlainM': {
        'model_type': 'MemSRModel',
        'pixel': 1.0,
        'memsr_opt': {
            'type': 'MemSRLoss',
            'loss_weight': MEMSR_LAMBDA,
            'epsilon': MEMSR_EPSILON
        },
        'memsr': {
            'offset': DEFAULT_OFFSET
        }
    },
}

# ---------------------------------------------------------------------------------------------------------------------
# Schedules (per paper). gt_size: HR patch side; lq_size: LR patch side (gt_size = lq_size * scale).
SCHEDULES = {
    'AugKD': {  # App. A.1
        'source': 'AugKD App. A.1: DIV2K 800 images, LR patch 48, flips and rotations, Adam (0.9, 0.99, 1e-8), '
        'batch 16, 2.5e5 updates, lr 1e-4 divided by 10 every 1e5 iterations; x4 students start from the x2 ones',
        'lq_size': 48,
        'batch': 16,
        'lr': 1e-4,
        'betas': [0.9, 0.99],
        'eps': 1e-8,
        'scheduler': {
            'type': 'MultiStepLR',
            'milestones': [100000, 200000],
            'gamma': 0.1
        },
        'total_iter': 250000,
        'init_from_x2': (4, ),  # App. A.1 names x4 only ("The x4 scale SR models are initialized from ... x2")
        'manual_seed': 0,
    },
    'CSD': {  # Sec. 4.1
        'source': 'CSD Sec. 4.1: DIV2K 800 images, fixed 192x192 HR patches, flips and rotations, Adam (0.9, 0.999, '
        '1e-8), batch 16, lr 1e-4 divided by 10 every 2e5 iterations, 300 epochs (read as 3e5 iterations)',
        'gt_size': 192,
        'batch': 16,
        'lr': 1e-4,
        'betas': [0.9, 0.999],
        'eps': 1e-8,
        'scheduler': {
            'type': 'MultiStepLR',
            'milestones': [200000],
            'gamma': 0.1
        },
        'total_iter': 300000,
        'init_from_x2': (),
        'manual_seed': 0,
    },
    'MemSR': {  # Sec. 4.1
        'source': 'MemSR Sec. 4.1: DIV2K, 192x192 HR patches, rotation and horizontal flip, batch 16, 1e6 '
        'iterations, Adam (0.9, 0.999), one-cycle lr with max 2e-4, seeds 233-236 (233 here), beta 3, C 1000, '
        'lambda 0.3, epsilon 1e-5',
        'gt_size': 192,
        'batch': 16,
        'lr': 2e-4,
        'betas': [0.9, 0.999],
        'eps': 1e-8,
        'scheduler': {
            'type': 'OneCycleLR',
            'max_lr': 2e-4,
            'cycle_momentum': False
        },
        # SRModel (the teacher) has no one-cycle schedule in basicsr 1.4.2: cosine annealing from 2e-4 instead
        'teacher_scheduler': {
            'type': 'CosineAnnealingRestartLR',
            'periods': [1000000],
            'restart_weights': [1],
            'eta_min': 1e-7
        },
        'total_iter': 1000000,
        'init_from_x2': (),
        'manual_seed': 233,
    },
}

# MemSR networks (Sec. 4.1, App. C Tables 8-9): Teacher-M = PixelShuffleEDSR 64 x 16, Plain-M = 34 layers of 64.
MEMSR_TEACHER = {'type': 'PixelShuffleEDSR', 'preset': 'Teacher-M'}
MEMSR_STUDENT = {'type': 'PlainSR', 'preset': 'Plain-M', 'one_pad': True}

# ---------------------------------------------------------------------------------------------------------------------
# Rows. Numbers: (Set5 PSNR, Set5 SSIM, Urban100 PSNR, Urban100 SSIM) on Y, copied from the extracted paper text.
_AUGKD_T2 = {  # AugKD Table 2, EDSR; '*' in the paper: the authors' reproduction (FAKD, CSD at x2/x3)
    2: {
        'Scratch': (38.00, 0.9605, 31.96, 0.9268),
        'KD': (38.04, 0.9606, 31.98, 0.9269),
        'FitNet': (37.59, 0.9589, 30.46, 0.9111),
        'AT': (37.96, 0.9603, 31.71, 0.9241),
        'RKD': (38.03, 0.9606, 31.96, 0.9270),
        'FAKD': (37.99, 0.9606, 32.04, 0.9275),
        'CSD': (38.06, 0.9607, 32.26, 0.9300),
        'AugKD': (38.15, 0.9610, 32.53, 0.9320)
    },
    3: {
        'Scratch': (34.39, 0.9270, 27.99, 0.8489),
        'KD': (34.43, 0.9273, 28.00, 0.8491),
        'FitNet': (33.35, 0.9178, 26.61, 0.8167),
        'AT': (34.29, 0.9262, 27.76, 0.8443),
        'RKD': (34.43, 0.9274, 27.96, 0.8493),
        'FAKD': (34.39, 0.9272, 28.07, 0.8511),
        'CSD': (34.45, 0.9275, 28.21, 0.8549),
        'AugKD': (34.59, 0.9287, 28.44, 0.8578)
    },
    4: {
        'Scratch': (32.29, 0.8965, 26.21, 0.7893),
        'KD': (32.30, 0.8965, 26.21, 0.7897),
        'FitNet': (31.65, 0.8873, 25.40, 0.7637),
        'AT': (32.22, 0.8952, 25.97, 0.7825),
        'RKD': (32.30, 0.8965, 26.20, 0.7899),
        'FAKD': (32.27, 0.8960, 26.18, 0.7895),
        'CSD': (32.34, 0.8974, 26.34, 0.7948),
        'AugKD': (32.47, 0.8981, 26.45, 0.7963)
    },
}
_AUGKD_T3 = {  # AugKD Table 3, RCAN (CSD: not applicable, Sec. 4.1)
    2: {
        'Scratch': (38.13, 0.9610, 32.63, 0.9327),
        'KD': (38.18, 0.9611, 32.67, 0.9329),
        'FitNet': (37.97, 0.9602, 32.06, 0.9279),
        'AT': (38.13, 0.9610, 32.48, 0.9313),
        'RKD': (38.18, 0.9612, 32.70, 0.9330),
        'FAKD': (38.17, 0.9612, 32.65, 0.9330),
        'CrossKD': (38.18, 0.9612, 32.66, 0.9332),
        'AugKD': (38.23, 0.9614, 32.87, 0.9349)
    },
    3: {
        'Scratch': (34.61, 0.9288, 28.59, 0.8610),
        'KD': (34.61, 0.9291, 28.62, 0.8612),
        'FitNet': (34.21, 0.9248, 27.89, 0.8472),
        'AT': (34.55, 0.9287, 28.43, 0.8577),
        'RKD': (34.67, 0.9292, 28.60, 0.8610),
        'FAKD': (34.63, 0.9290, 28.62, 0.8612),
        'CrossKD': (34.65, 0.9290, 28.60, 0.8610),
        'AugKD': (34.74, 0.9296, 28.79, 0.8646)
    },
    4: {
        'Scratch': (32.31, 0.8966, 26.37, 0.7949),
        'KD': (32.45, 0.8980, 26.49, 0.7980),
        'FitNet': (31.99, 0.8899, 25.90, 0.7791),
        'AT': (32.31, 0.8967, 26.29, 0.7927),
        'RKD': (32.39, 0.8974, 26.47, 0.7981),
        'FAKD': (32.46, 0.8980, 26.50, 0.7980),
        'CrossKD': (32.46, 0.8984, 26.52, 0.7992),
        'AugKD': (32.56, 0.8990, 26.62, 0.8020)
    },
}
_AUGKD_T10 = {  # AugKD Table 10, SwinIR (the only rows the paper gives: scratch, KD, AugKD)
    2: {
        'Scratch': (38.01, 0.9607, 32.05, 0.9279),
        'KD': (38.04, 0.9608, 32.09, 0.9282),
        'AugKD': (38.13, 0.9610, 32.63, 0.9327)
    },
    3: {
        'Scratch': (34.41, 0.9273, 28.20, 0.8537),
        'KD': (34.44, 0.9275, 28.23, 0.8545),
        'AugKD': (34.55, 0.9285, 28.53, 0.8604)
    },
    4: {
        'Scratch': (32.31, 0.8955, 26.15, 0.7884),
        'KD': (32.27, 0.8954, 26.15, 0.7887),
        'AugKD': (32.41, 0.8973, 26.43, 0.7972)
    },
}
_CSD_T1 = {  # CSD Table 1, EDSR+ 0.25x (S) rows; the CSD and J-T runs also validate the 1.0x network (T rows)
    2: {
        'Baseline': (38.07, 0.9607, 32.28, 0.9298),
        'JT': (38.09, 0.9608, 32.26, 0.9296),
        'CSD': (38.19, 0.9612, 32.55, 0.9327)
    },
    4: {
        'Baseline': (32.23, 0.8957, 26.07, 0.7851),
        'JT': (32.22, 0.8958, 26.06, 0.7852),
        'CSD': (32.34, 0.8974, 26.34, 0.7948)
    },
}
_CSD_T1_TEACHER = {  # CSD Table 1, EDSR+ 1.0x (T) rows of the same runs
    2: {
        'JT': (38.29, 0.9615, 32.13, 0.9371),  # Urban100 32.13 as extracted (below the 33.10 baseline; likely 33.13)
        'CSD': (38.31, 0.9617, 33.17, 0.9375)
    },
    4: {
        'JT': (32.59, 0.8997, 26.73, 0.8055),
        'CSD': (32.60, 0.9000, 26.79, 0.8063)
    },
}
_MEMSR_T4 = {  # MemSR Table 4, Plain-M (Teacher-M has no row)
    2: (37.99, 0.9606, 32.10, 0.9284),
    3: (34.34, 0.9269, 28.10, 0.8513),
    4: (32.10, 0.8938, 25.99, 0.7830),
}
# AugKD Table 11 (x2 EDSR, seconds per training step; the device is not stated, App. A.1 trains on 4 V100 GPUs)
TABLE11_SECONDS_PER_STEP = {'KD': 0.49, 'FitNet': 0.56, 'FAKD': 0.56, 'CSD': 1.18, 'AugKD': 0.70}

PAPER_FILES = {
    'AugKD': 'augkd_augmentations_kd.txt',
    'CSD': 'csd_contrastive_self_distillation.txt',
    'MemSR': 'memsr_plain_student.txt'
}
DATA_README = 'docs/paper_recipes.md#preparing-the-data'


@dataclass(frozen=True)
class Row:
    """One table row at one scale: the unit of one option file."""
    paper: str  # AugKD, CSD, MemSR (whose schedule it follows: see schedule_of)
    table: str  # e.g. 'AugKD Table 2'
    backbone: str  # EDSR, RCAN, SwinIR, MemSR
    method: str  # a key of METHODS
    scale: int
    numbers: Optional[Tuple[float, float, float, float]]  # Set5 PSNR/SSIM, Urban100 PSNR/SSIM; None: not reported
    also: str = ''  # other table rows the same run reproduces

    @property
    def name(self) -> str:
        return experiment_name(self.method, self.backbone, self.scale)

    @property
    def file_name(self) -> str:
        return f'train_{self.method}_{self.backbone}_x{self.scale}.yml'


def experiment_name(method: str, backbone: str, scale: int) -> str:
    """``name`` of a run (its ``experiments/<name>`` folder): prefixed so as not to collide with other option files."""
    return f'paper_{method}_{backbone}_x{scale}'


def schedule_of(row: Row) -> dict:
    """AugKD's baselines follow AugKD App. A.1, except CSD whose original settings the paper keeps (App. A.1)."""
    if row.method in ('CSD', 'JT', 'Baseline'):
        return SCHEDULES['CSD']
    return SCHEDULES[row.paper]


def augkd_rows() -> List[Row]:
    rows = []
    for table, backbone, numbers in (('AugKD Table 2', 'EDSR', _AUGKD_T2), ('AugKD Table 3', 'RCAN', _AUGKD_T3),
                                     ('AugKD Table 10', 'SwinIR', _AUGKD_T10)):
        for scale in SCALES:
            for method, values in numbers[scale].items():
                also = f'CSD Table 1 "CSD" x{scale}' if method == 'CSD' and scale in _CSD_T1 else ''
                rows.append(Row('AugKD', table, backbone, method, scale, values, also))
    return rows


def csd_rows() -> List[Row]:
    """CSD Table 1 rows not already written for AugKD Table 2 (its CSD rows are the same runs)."""
    return [
        Row('CSD', 'CSD Table 1', 'EDSR', method, scale, _CSD_T1[scale][method]) for scale in sorted(_CSD_T1)
        for method in ('Baseline', 'JT')
    ]


def memsr_rows() -> List[Row]:
    rows = []
    for scale in SCALES:
        rows.append(Row('MemSR', 'MemSR Table 4', 'MemSR', 'TeacherM', scale, None))
        rows.append(Row('MemSR', 'MemSR Table 4', 'MemSR', 'PlainM', scale, _MEMSR_T4[scale]))
    return rows


PAPER_ROWS = augkd_rows() + csd_rows() + memsr_rows()


# ---------------------------------------------------------------------------------------------------------------------
# option sections
def train_dataset(scale: int, schedule: dict) -> dict:
    gt_size = schedule.get('gt_size') or schedule['lq_size'] * scale
    return {
        'name': 'DIV2K',
        'type': 'PairedImageDataset',
        'dataroot_gt': 'datasets/DIV2K/DIV2K_train_HR_sub.lmdb',
        'dataroot_lq': f'datasets/DIV2K/DIV2K_train_LR_bicubic_X{scale}_sub.lmdb',
        'filename_tmpl': '{}',
        'io_backend': {
            'type': 'lmdb'
        },
        'gt_size': gt_size,
        'use_hflip': True,
        'use_rot': True,
        'num_worker_per_gpu': 6,
        'persistent_workers': True,
        'batch_size_per_gpu': schedule['batch'],
        'dataset_enlarge_ratio': 1,
        'prefetch_mode': None
    }


def val_dataset(scale: int) -> dict:
    return {
        'name': 'Set5',
        'type': 'PairedImageDataset',
        'dataroot_gt': 'datasets/Set5/GTmod12',
        'dataroot_lq': f'datasets/Set5/LRbicx{scale}',
        'io_backend': {
            'type': 'disk'
        }
    }


def val_options(scale: int, **extra) -> dict:
    metric = {'crop_border': scale, 'test_y_channel': True}
    return {
        'val_freq': 5000,
        'save_img': False,
        **extra, 'metrics': {
            'psnr': dict(type='calculate_psnr', **metric),
            'ssim': dict(type='calculate_ssim', **metric)
        }
    }


def l1(weight: float) -> dict:
    return {'type': 'L1Loss', 'loss_weight': weight}


def optimizer(schedule: dict) -> dict:
    return {'type': 'Adam', 'lr': schedule['lr'], 'betas': list(schedule['betas']), 'eps': schedule['eps']}


def network(backbone: str, role: str, scale: int) -> dict:
    """``network_g`` / ``network_t`` of a backbone (role 'teacher' or 'student') at ``scale``."""
    if backbone == 'MemSR':
        return dict(MEMSR_TEACHER if role == 'teacher' else MEMSR_STUDENT, upscale=scale)
    return dict(BACKBONES[backbone][role], upscale=scale)


def teacher_checkpoint(backbone: str, scale: int) -> str:
    spec = BACKBONES[backbone]
    return spec['checkpoint'].format(scale=scale, tag=spec['checkpoint_tags'].get(scale, ''))


def tap_pairs(backbone: str, taps: str) -> List[Tuple[str, str]]:
    """(student_layer, teacher_layer) module names: the end of the body, or its thirds and end (FAKD)."""
    if taps == 'end':
        return [('body', 'body')]
    spec = BACKBONES[backbone]
    pairs = []
    for fraction in (1 / 3, 2 / 3):
        student = round(spec['student_units'] * fraction) - 1
        teacher = round(spec['teacher_units'] * fraction) - 1
        pairs.append((f'body.{student}', f'body.{teacher}'))
    return pairs + [('body', 'body')]


def feature_losses(backbone: str, method: dict) -> List[dict]:
    return [
        dict(method['loss'], student_layer=student, teacher_layer=teacher)
        for student, teacher in tap_pairs(backbone, method['taps'])
    ]


def kd_train_options(row: Row, method: dict) -> dict:
    """Losses of Scratch / KD / FitNet / AT / RKD / FAKD / CrossKD / AugKD (AugKD Eq. 1-4 and the baselines of Sec.
    4.1)."""
    losses = {'pixel_opt': l1(method['pixel'])}
    if method.get('kd'):
        losses['kd_opt'] = l1(method['kd'])
    if method.get('taps'):
        losses['feature_losses'] = feature_losses(row.backbone, method)
    if method['model_type'] == 'CrossKDModel':
        losses.update(crosskd=dict(method['crosskd']), crosskd_opt=dict(method['crosskd_opt']))
    if method['model_type'] == 'AugKDModel':
        losses['augkd_opt'] = l1(method['augkd'])
        options = dict(method['options'])
        if row.backbone in method['no_zoom_out']:
            options['zoom_out'] = False
        losses['augkd'] = options
    return losses


def path_options(row: Row, method: dict) -> dict:
    schedule = schedule_of(row)
    path = {}
    if method['model_type'] in ('KDModel', 'AugKDModel', 'CrossKDModel'):
        path.update({
            'pretrain_network_t': teacher_checkpoint(row.backbone, row.scale),
            'param_key_t': BACKBONES[row.backbone]['param_key'],
            'strict_load_t': True
        })
    if method['model_type'] == 'MemSRModel':
        path.update({
            'pretrain_network_t': f'experiments/{experiment_name("TeacherM", "MemSR", row.scale)}/models/'
            'net_g_latest.pth',
            'param_key_t': 'params',
            'strict_load_t': True
        })
    path.update(student_init(row, method, schedule))
    path['resume_state'] = None
    return path


def memsr_init_path(scale: int) -> str:
    return f'experiments/pretrained/paper_MemSR_init_PlainM_x{scale}.pth'


def student_init(row: Row, method: dict, schedule: dict) -> dict:
    """``pretrain_network_g``: the x2 run of the same row (AugKD App. A.1), EDSR-L for CSD (Algorithm 1's
    pre-trained f_t), the winning initialization for MemSR, else none."""
    if row.method in ('CSD', 'JT'):
        return {
            'pretrain_network_g': teacher_checkpoint('EDSR', row.scale),
            'param_key_g': 'params',
            'strict_load_g': True
        }
    if row.method == 'PlainM':
        return {'pretrain_network_g': memsr_init_path(row.scale), 'param_key_g': 'params', 'strict_load_g': True}
    if row.scale in schedule['init_from_x2']:
        x2_run = experiment_name(row.method, row.backbone, 2)
        return {
            'pretrain_network_g': f'experiments/{x2_run}/models/net_g_latest.pth',
            'param_key_g': 'params',
            'strict_load_g': False
        }
    return {'pretrain_network_g': None, 'strict_load_g': True}


def networks(row: Row, method: dict) -> dict:
    if row.method in ('CSD', 'JT'):
        return {'network_g': dict(network('EDSR', 'teacher', row.scale), type='SlimEDSR')}
    if row.method == 'TeacherM':
        return {'network_g': network('MemSR', 'teacher', row.scale)}
    nets = {'network_g': network(row.backbone, 'student', row.scale)}
    if method['model_type'] != 'SRModel':
        nets['network_t'] = network(row.backbone, 'teacher', row.scale)
    return nets


def train_options(row: Row, method: dict) -> dict:
    schedule = schedule_of(row)
    scheduler = schedule['scheduler']
    if row.method == 'TeacherM':
        scheduler = schedule['teacher_scheduler']
    train = {
        'ema_decay': 0,
        'optim_g': optimizer(schedule),
        'scheduler': dict(scheduler),
        'total_iter': schedule['total_iter'],
        'warmup_iter': -1
    }
    if row.method in ('CSD', 'JT'):
        train['pixel_opt'] = l1(1.0)
        train['teacher_pixel_opt'] = l1(method['lambda_t'])
        train['csd'] = dict(method['csd'])
        train['contrastive_opt'] = dict(method['contrastive'])
    elif row.method == 'PlainM':
        train['pixel_opt'] = l1(method['pixel'])
        train['memsr_opt'] = dict(method['memsr_opt'])
        train['memsr'] = dict(method['memsr'], bridges=memsr_init_path(row.scale))
    else:
        train.update(kd_train_options(row, method))
    return train


def options(row: Row) -> dict:
    """The full option dict of one row."""
    method = METHODS[row.method]
    schedule = schedule_of(row)
    val_extra = {'width_mult': method['csd']['width_mult']} if 'csd' in method else {}
    return {
        'name': row.name,
        'model_type': method['model_type'],
        'scale': row.scale,
        'num_gpu': 'auto',
        'manual_seed': schedule['manual_seed'],
        'datasets': {
            'train': train_dataset(row.scale, schedule),
            'val': val_dataset(row.scale)
        },
        **networks(row, method), 'path': path_options(row, method),
        'train': train_options(row, method),
        'val': val_options(row.scale, **val_extra),
        'logger': {
            'print_freq': 100,
            'save_checkpoint_freq': 5000,
            'use_tb_logger': True
        },
        'dist_params': {
            'backend': 'nccl',
            'port': 29500
        }
    }


# ---------------------------------------------------------------------------------------------------------------------
# header comments and rendering
def format_numbers(numbers: Optional[Tuple[float, float, float, float]]) -> str:
    if numbers is None:
        return 'not reported (the table has no row for it)'
    return f'Set5 {numbers[0]:.2f}/{numbers[1]:.4f}, Urban100 {numbers[2]:.2f}/{numbers[3]:.4f} (PSNR/SSIM, Y)'


def prerequisites(row: Row, opt: dict) -> List[str]:
    """What must exist before training: the teacher checkpoint, the x2 run, the MemSR teacher and initialization."""
    path, lines = opt['path'], []
    if row.backbone in BACKBONES and path.get('pretrain_network_t'):
        spec = BACKBONES[row.backbone]
        lines.append(f'Teacher: {path["pretrain_network_t"]} (param key {spec["param_key"]}; '
                     f'{spec["checkpoint_source"]}).')
    if row.method in ('CSD', 'JT'):
        lines.append(f'Start (Algorithm 1, pre-trained width 1.0): {path["pretrain_network_g"]} (BasicSR EDSR-L).')
        if row.method == 'CSD':
            lines.append('VGG-19: torchvision vgg19-dcbb9e9d.pth in the torch hub cache, or set '
                         'train.contrastive_opt.vgg_weights.')
    if path.get('strict_load_g') is False:
        lines.append(f'Init (App. A.1): train train_{row.method}_{row.backbone}_x2.yml first; its '
                     f'{path["pretrain_network_g"]} (upsampler keys of another shape are skipped).')
    if row.method == 'PlainM':
        lines.append(f'Teacher: python -m kdplugins.train -opt options/train/paper/train_TeacherM_MemSR_x{row.scale}'
                     '.yml first.')
        lines.append('Winning initialization (Algorithm 1, into path.pretrain_network_g): python scripts/memsr_init.py'
                     f' -opt options/train/paper/{row.file_name}')
    return lines


def recipe_line(row: Row) -> str:
    method = METHODS[row.method]
    if method.get('loss'):
        weights = ', '.join(f'{k} {v:g}' for k, v in method['loss'].items() if k != 'type' and not isinstance(v, str))
        return (f'Losses: L1 pixel {method["pixel"]:g} + L1 KD {method["kd"]:g} + {method["loss"]["type"]} '
                f'({weights}) on {len(tap_pairs(row.backbone, method["taps"]))} tap(s).')
    if row.method == 'CSD':
        return (f'Losses: L1(S) + lambda_T L1(T) + lambda_C CL, lambda_T {method["lambda_t"]:g}, lambda_C 200/255, K '
                f'{method["contrastive"]["num_negatives"]} negatives, width {method["csd"]["width_mult"]:g}.')
    return ''


def header(row: Row) -> str:
    opt = options(row)
    schedule = schedule_of(row)
    lines = [
        f'{row.table}, row "{row.method}", x{row.scale} ({row.backbone}): {describe(row)}.',
        f'Paper: {format_numbers(row.numbers)}.',
    ]
    if row.also:
        lines.append(f'Also reproduces {row.also}: {format_numbers(_CSD_T1[row.scale]["CSD"])}.')
    if row.method in ('CSD', 'JT') and row.scale in _CSD_T1_TEACHER:
        lines.append(f'Its width-1.0 network (logged as "Teacher (width 1.0) on Set5"), CSD Table 1 T row: '
                     f'{format_numbers(_CSD_T1_TEACHER[row.scale][row.method])}.')
    lines.append(f'Recipe: {schedule["source"]}.')
    recipe = recipe_line(row)
    if recipe:
        lines.append(recipe)
    lines.append(f'Data: DIV2K sub-image LMDBs and Set5 GTmod12/LRbicx{row.scale} ({DATA_README}).')
    lines += prerequisites(row, opt)
    lines.append(f'Train: python -m kdplugins.train -opt options/train/paper/{row.file_name} [--auto_resume]')
    lines.append('Generated by scripts/make_paper_options.py from kdplugins/experiments/paper_recipes.py: edit those.')
    return ''.join(f'# {line}\n' for line in wrap_lines(lines))


def describe(row: Row) -> str:
    if row.method in ('CSD', 'JT'):
        return 'SlimEDSR 256 x 32 with its width-0.25 student (64 x 32)'
    if row.method == 'Baseline':
        return 'EDSR 64 x 32 (the width-0.25 student) trained alone'
    if row.method == 'TeacherM':
        return 'Teacher-M (PixelShuffleEDSR 64 x 16), the teacher of Plain-M'
    if row.method == 'PlainM':
        return 'Teacher-M -> Plain-M (PlainSR 34 x 64, one_pad), winning init + feature distillation'
    sizes = {'EDSR': ('256 x 32', '64 x 32'), 'RCAN': ('10 x 20', '10 x 6'), 'SwinIR': ('180, 6 x 6', '60, 4 x 6')}
    teacher, student = sizes[row.backbone]
    if METHODS[row.method]['model_type'] == 'SRModel':
        return f'student {row.backbone} {student} trained alone'
    return f'teacher {row.backbone} {teacher} -> student {student}'


def wrap_lines(lines: List[str], width: int = 116) -> List[str]:
    """Lines of at most ``width`` characters (continuations indented by two spaces)."""
    out = []
    for line in lines:
        words, current = line.split(' '), ''
        for word in words:
            candidate = f'{current} {word}' if current else word
            if len(candidate) > width and current:
                out.append(current)
                current = '  ' + word
            else:
                current = candidate
        out.append(current)
    return out


class _Dumper(yaml.SafeDumper):
    """Block mappings, flow lists of scalars, no anchors/aliases."""

    def ignore_aliases(self, data) -> bool:
        return True


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(item, (dict, list)) for item in data)
    return dumper.represent_sequence('tag:yaml.org,2002:seq', data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def render(row: Row) -> str:
    """The text of one option file: header comments, then the options as YAML (stable key order)."""
    body = yaml.dump(options(row), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    return header(row) + body


def write_all(out_dir: str) -> List[str]:
    """(Re)write every option file into ``out_dir``; removes ``*.yml`` there that no row produces."""
    os.makedirs(out_dir, exist_ok=True)
    wanted = {row.file_name: render(row) for row in PAPER_ROWS}
    for stale in sorted(set(n for n in os.listdir(out_dir) if n.endswith('.yml')) - set(wanted)):
        os.remove(os.path.join(out_dir, stale))
    paths = []
    for file_name, text in wanted.items():
        path = os.path.join(out_dir, file_name)
        with open(path, 'w', newline='\n') as f:
            f.write(text)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------------------------------
# docs/paper_recipes.md table
def gpu_hours(row: Row) -> str:
    """Table 11's seconds per step x the row's iterations, for EDSR rows (Table 11 is x2 EDSR; the same LR patch
    and networks at x3/x4 are assumed to cost the same per step); other backbones and methods: not given."""
    seconds = TABLE11_SECONDS_PER_STEP.get(row.method)
    if row.backbone != 'EDSR' or seconds is None:
        return 'not given'
    iterations = schedule_of(row)['total_iter']
    return f'{seconds} s x {iterations:.1e} = {seconds * iterations / 3600:.1f} h'


def markdown_table() -> str:
    lines = ['| file | paper table, row | paper PSNR/SSIM (Y): Set5; Urban100 | time (Table 11) |', '|---|---|---|---|']
    for row in PAPER_ROWS:
        numbers = 'not reported' if row.numbers is None else (
            f'{row.numbers[0]:.2f}/{row.numbers[1]:.4f}; {row.numbers[2]:.2f}/{row.numbers[3]:.4f}')
        place = f'{row.table}, {row.method} x{row.scale}' + (f' (also {row.also})' if row.also else '')
        lines.append(f'| `{row.file_name}` | {place} | {numbers} | {gpu_hours(row)} |')
    return '\n'.join(lines) + '\n'


def rows_by_table() -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for row in PAPER_ROWS:
        counts[row.table] = counts.get(row.table, 0) + 1
    return counts
