"""The options basicsr 1.4.2 reads, by level (from its ``train.py``, ``models``, ``data`` and ``utils``): data for the
option checks (:mod:`kdplugins.runtime.option_schema`) and the models' own declarations."""
from typing import Dict

BASICSR_TOP_LEVEL = {
    'name', 'model_type', 'scale', 'num_gpu', 'manual_seed', 'datasets', 'path', 'train', 'val', 'logger',
    'dist_params', 'find_unused_parameters', 'is_train', 'dist', 'rank', 'world_size', 'auto_resume', 'root_path'
}
# PairedImageDataset and the dataloader (basicsr/data/__init__.py, paired_image_dataset.py)
BASICSR_PAIRED_DATASET = {
    'name', 'type', 'dataroot_gt', 'dataroot_lq', 'meta_info_file', 'io_backend', 'filename_tmpl', 'gt_size',
    'use_hflip', 'use_rot', 'mean', 'std', 'color', 'num_worker_per_gpu', 'batch_size_per_gpu', 'dataset_enlarge_ratio',
    'prefetch_mode', 'num_prefetch_queue', 'pin_memory', 'persistent_workers', 'phase', 'scale'
}
BASICSR_PATH_FIXED = {
    'resume_state', 'ignore_resume_networks', 'experiments_root', 'models', 'training_states', 'log', 'visualization',
    'results_root', 'root'
}
BASICSR_PATH_PREFIXES = ('pretrain_network_', 'strict_load_', 'param_key_')
BASICSR_VAL = {'val_freq', 'save_img', 'metrics', 'suffix', 'pbar'}
BASICSR_LOGGER = {'print_freq', 'save_checkpoint_freq', 'use_tb_logger', 'wandb'}
BASICSR_METRIC = {'type', 'crop_border', 'test_y_channel', 'better', 'input_order'}
# SRModel (basicsr/models/sr_model.py); the values are defaults where basicsr has one
SR_TRAIN_OPTIONS: Dict[str, object] = {
    'ema_decay': 0,
    'optim_g': None,
    'scheduler': None,
    'total_iter': None,
    'warmup_iter': -1,
    'pixel_opt': None,
    'perceptual_opt': None
}
# keys basicsr reads with ``opt[key]`` (a KeyError, often thousands of iterations in, when missing)
BASICSR_REQUIRED = {
    'val': ('val_freq', 'save_img'),
    'logger': ('print_freq', 'save_checkpoint_freq'),
    'train': ('total_iter', 'optim_g'),
    'datasets.train': ('name', 'type', 'batch_size_per_gpu', 'num_worker_per_gpu'),
    'datasets.train.paired': ('dataroot_gt', 'dataroot_lq', 'io_backend', 'gt_size', 'use_hflip', 'use_rot'),
    'datasets.val': ('name', 'type'),
}
