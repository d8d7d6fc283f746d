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
    'ema_decay': 0.0,
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
    'val.test': ('save_img', ),  # the test run (basicsr/test.py)
    'logger': ('print_freq', 'save_checkpoint_freq'),
    'train': ('total_iter', 'optim_g'),
    'datasets.train': ('name', 'type', 'batch_size_per_gpu', 'num_worker_per_gpu'),
    'datasets.train.paired': ('gt_size', 'use_hflip', 'use_rot'),
    'datasets.val': ('name', 'type'),
    'datasets.paired': ('dataroot_gt', 'dataroot_lq', 'io_backend'),  # every phase (paired_image_dataset.py)
}
# what ``parse_options`` (basicsr/utils/options.py) reads before anything else, and the kind of value it needs there
BASICSR_PARSED_FIRST = {'name': str, 'num_gpu': (int, str), 'datasets': dict, 'path': dict}
# The numbers basicsr 1.4.2 computes with, by option path (``*`` matches any key at that level, ``optim_*`` any key
# starting so): (kind, smallest, largest, why the bound). Kinds: ``count`` an integer (an integral float, as
# basicsr's own files write ``!!float 5e3``, counts), ``number`` an int or a float, ``counts`` / ``numbers`` a list
# of such.
MODULO = 'basicsr takes the iteration modulo it (0: ZeroDivisionError after the first iteration)'
BASICSR_NUMBERS = {
    'scale': ('count', 1, None, ''),
    'manual_seed': ('count', 0, None, ''),
    'datasets.*.batch_size_per_gpu': ('count', 1, None, 'an epoch of batches of 0 samples never ends'),
    'datasets.*.num_worker_per_gpu': ('count', 0, None, ''),
    'datasets.*.dataset_enlarge_ratio': ('count', 1, None, 'basicsr divides by the epoch length it gives'),
    'datasets.*.gt_size': ('count', 1, None, ''),
    'datasets.*.num_prefetch_queue': ('count', 1, None, ''),
    'train.total_iter': ('count', 1, None, ''),
    'train.warmup_iter': ('count', -1, None, '-1 switches warm-up off'),
    'train.ema_decay': ('number', 0, 1, ''),
    'train.optim_*.lr': ('number', 0, None, ''),
    'train.optim_*.weight_decay': ('number', 0, None, ''),
    'train.optim_*.eps': ('number', 0, None, ''),
    'train.optim_*.momentum': ('number', 0, 1, ''),
    'train.optim_*.betas': ('numbers', 0, 1, ''),
    'train.scheduler.milestones': ('counts', 1, None, ''),
    'train.scheduler.gamma': ('number', 0, None, ''),
    'train.scheduler.periods': ('counts', 1, None, 'CosineAnnealingRestartLR divides by each period'),
    'train.scheduler.restart_weights': ('numbers', 0, None, ''),
    'train.scheduler.eta_min': ('number', 0, None, ''),
    'train.*_opt.loss_weight': ('number', None, None, ''),  # its sign: option_schema.check_weights
    'val.val_freq': ('count', 1, None, MODULO),
    'val.metrics.*.crop_border': ('count', 0, None, ''),
    'logger.print_freq': ('count', 1, None, MODULO),
    'logger.save_checkpoint_freq': ('count', 1, None, MODULO),
}
