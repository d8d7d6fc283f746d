"""The papers' tables as data: the rows this project implements with their published numbers, the networks (AugKD
Table 1 and its public teacher checkpoints, MemSR's Teacher-M / Plain-M), each paper's schedule, and the settings a
paper spells out beyond a method's own. Plain data: :mod:`kdplugins.experiments.paper_recipes` builds the option files
``options/train/paper/*.yml`` from it and from the methods' losses and weights
(:mod:`kdplugins.experiments.method_options`).

Sources: AugKD (Tables 1, 2, 3, 10, 11, App. A.1), CSD (Wang et al., IJCAI 2021: Table 1, Algorithm 1, Sec. 4.1) and
MemSR (Wu, Lee, Ma, ICML 2022: Sec. 4.1, Table 4).
"""
from kdplugins.losses.csd_loss import CSD_LAYER_WEIGHTS, CSD_NUM_NEGATIVES

SCALES = (2, 3, 4)
RGB_MEAN = [0.4488, 0.4371, 0.4040]  # DIV2K mean of BasicSR's EDSR / RCAN

# ---------------------------------------------------------------------------------------------------------------------
# Backbones: AugKD Table 1 (x4: EDSR 43.09 M -> 2.70 M, RCAN 15.59 M -> 5.17 M, SwinIR 11.90 M -> 1.24 M parameters;
# the networks below have exactly these counts at x4, ``upscale`` being the row's scale). Teachers are the public
# checkpoints (AugKD App. A.4), named as BasicSR's model zoo / option files and the SwinIR release name them.
BACKBONES = {
    'EDSR': {
        'teacher': {  # EDSR-L, BasicSR EDSR_Lx*_f256b32
            'type': 'EDSR',
            'num_in_ch': 3,
            'num_out_ch': 3,
            'num_feat': 256,
            'num_block': 32,
            'res_scale': 0.1,
            'img_range': 255.0,
            'rgb_mean': RGB_MEAN
        },
        'student': {  # 64 x 32, res_scale 0.1: the width-0.25 slice of EDSR-L, i.e. the CSD student of the same table
            'type': 'EDSR',
            'num_in_ch': 3,
            'num_out_ch': 3,
            'num_feat': 64,
            'num_block': 32,
            'res_scale': 0.1,
            'img_range': 255.0,
            'rgb_mean': RGB_MEAN
        },
        'teacher_units': 32,  # residual blocks body.0 .. body.31 (feature taps, FAKD thirds)
        'student_units': 32,
        'checkpoint': 'experiments/pretrained_models/EDSR/EDSR_Lx{scale}_f256b32_DIV2K_official-{tag}.pth',
        'checkpoint_tags': {
            2: 'be38e77d',
            3: '3660f70d',
            4: '76ee1c8f'
        },
        'param_key': 'params',
        'checkpoint_source': 'BasicSR docs/ModelZoo.md (official models) and options/test/EDSR/test_EDSR_Lx*.yml',
    },
    'RCAN': {
        'teacher': {
            'type': 'RCAN',
            'num_in_ch': 3,
            'num_out_ch': 3,
            'num_feat': 64,
            'num_group': 10,
            'num_block': 20,
            'squeeze_factor': 16,
            'res_scale': 1,
            'img_range': 255.0,
            'rgb_mean': RGB_MEAN
        },
        'student': {
            'type': 'RCAN',
            'num_in_ch': 3,
            'num_out_ch': 3,
            'num_feat': 64,
            'num_group': 10,
            'num_block': 6,
            'squeeze_factor': 16,
            'res_scale': 1,
            'img_range': 255.0,
            'rgb_mean': RGB_MEAN
        },
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
        'BasicSR options/test/RCAN/test_RCAN.yml (RCAN_BIX4-official.pth, the official RCAN '
        'release converted to BasicSR names; x2/x3 named alike)',
    },
    'SwinIR': {
        'teacher': {  # SwinIR-M, classical SR: 6 RSTBs of 6 Swin layers and 6 heads, window 8, pixel-shuffle upsampler
            'type': 'SwinIR',
            'in_chans': 3,
            'img_size': 48,  # the s48 checkpoints: img_size sets the shape of the saved attn_mask buffers
            'window_size': 8,
            'img_range': 1.0,
            'depths': [6, 6, 6, 6, 6, 6],
            'embed_dim': 180,
            'num_heads': [6, 6, 6, 6, 6, 6],
            'mlp_ratio': 2,
            'upsampler': 'pixelshuffle',
            'resi_connection': '1conv'
        },
        'student': {  # 60 channels, 4 RSTBs of 6 layers: 1.24 M at x4 (4 x 4 RSTBs would be 1.30 M)
            'type': 'SwinIR',
            'in_chans': 3,
            'img_size': 48,
            'window_size': 8,
            'img_range': 1.0,
            'depths': [6, 6, 6, 6],
            'embed_dim': 60,
            'num_heads': [6, 6, 6, 6],
            'mlp_ratio': 2,
            'upsampler': 'pixelshuffle',
            'resi_connection': '1conv'
        },
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

# Rows. Numbers: (Set5 PSNR, Set5 SSIM, Urban100 PSNR, Urban100 SSIM) on Y, copied from the extracted paper text.
AUGKD_T2 = {  # AugKD Table 2, EDSR; '*' in the paper: the authors' reproduction (FAKD, CSD at x2/x3)
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
AUGKD_T3 = {  # AugKD Table 3, RCAN (CSD: not applicable, Sec. 4.1)
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
AUGKD_T10 = {  # AugKD Table 10, SwinIR (the only rows the paper gives: scratch, KD, AugKD)
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
CSD_T1 = {  # CSD Table 1, EDSR+ 0.25x (S) rows; the CSD and J-T runs also validate the 1.0x network (T rows)
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
CSD_T1_TEACHER = {  # CSD Table 1, EDSR+ 1.0x (T) rows of the same runs
    2: {
        'JT': (38.29, 0.9615, 32.13, 0.9371),  # Urban100 32.13 as extracted (below the 33.10 baseline; likely 33.13)
        'CSD': (38.31, 0.9617, 33.17, 0.9375)
    },
    4: {
        'JT': (32.59, 0.8997, 26.73, 0.8055),
        'CSD': (32.60, 0.9000, 26.79, 0.8063)
    },
}
MEMSR_T4 = {  # MemSR Table 4, Plain-M (Teacher-M has no row)
    2: (37.99, 0.9606, 32.10, 0.9284),
    3: (34.34, 0.9269, 28.10, 0.8513),
    4: (32.10, 0.8938, 25.99, 0.7830),
}
# AugKD Table 11 (x2 EDSR, seconds per training step; the device is not stated, App. A.1 trains on 4 V100 GPUs)
TABLE11_SECONDS_PER_STEP = {'KD': 0.49, 'FitNet': 0.56, 'FAKD': 0.56, 'CSD': 1.18, 'AugKD': 0.70}

# ---------------------------------------------------------------------------------------------------------------------
# The rows' methods: a key of kdplugins.experiments.method_options.METHODS, or one of these names
ROW_METHODS = {
    'Baseline': 'Scratch',  # CSD Table 1: the width-0.25 student trained alone
    'TeacherM': 'Scratch',  # MemSR: Teacher-M, trained first (the teacher of Plain-M)
    'PlainM': 'MemSR',
}
# What a paper spells out beyond the method's own options (method_options' settings), by row method
PAPER_SETTINGS = {
    'AugKD': {  # AugKD Eq. 4: the auxiliary terms' weight is not given (1); the augmentations: augkd_settings()
        'augkd_opt': {
            'type': 'L1Loss',
            'loss_weight': 1.0
        }
    },
    'CSD': {  # Sec. 4.1: K = 10 other samples of the batch; VGG-19 relu1_1 .. relu5_1 weighted 1/32 .. 1
        'contrastive_opt': {
            'num_negatives': CSD_NUM_NEGATIVES,
            'negatives_include_own': False,
            'layer_weights': CSD_LAYER_WEIGHTS,
            'vgg_weights': None,
            'vgg_input_range': 1.0,
            'vgg_input_norm': True
        }
    },
}
AUGKD_NO_ZOOM_OUT = ('SwinIR', )  # App. A.1: AugKD's zoom-out is off for SwinIR
