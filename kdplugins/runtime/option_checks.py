"""Checks of parsed training/test options that run before basicsr creates folders, datasets or networks.

Each problem is reported with the option that holds it and how to fix it, instead of a ``KeyError`` or an
``lmdb.Error`` deep inside basicsr (or a run that trains without what the user asked for), all of them in one message:
registered type names, every key and value against the declarations of :mod:`kdplugins.runtime.option_schema`,
data paths, checkpoints, devices, and sizes (an epoch without a batch, validation pairs of another scale).
"""
import difflib
import os
import sys
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY, Registry
from typing import Dict, Iterator, List, Optional, Tuple

from kdplugins.runtime.option_schema import option_problems
from kdplugins.utils.errors import ConfigurationError
from kdplugins.utils.model_zoo import zoo_hint
from kdplugins.utils.registry import lookup


class OptionError(ConfigurationError, ValueError):
    """A YAML option has a value that cannot work; the message names the option and the fix."""


def unknown_type_message(registry: Registry, name: str, option: str) -> str:
    close = difflib.get_close_matches(name, list(registry.keys()), n=5, cutoff=0.5)
    hint = f" Close registered names: {', '.join(close)}." if close else ' No registered name is close.'
    return (f"{option}: unknown {registry._name} type '{name}'.{hint} `python -m kdplugins.list` lists what kdplugins "
            'registers. A type of your own project must be imported first: add its module to the option file '
            '(custom_imports: [my_project.archs]) or pass --import my_project.archs.')


def _declared_types(opt: dict) -> Iterator[Tuple[Registry, str, str]]:
    """(registry, type name, option path) of every ``type`` in the options."""
    if 'model_type' in opt:
        yield MODEL_REGISTRY, opt['model_type'], 'model_type'
    for key, value in opt.items():
        if key.startswith('network_') and isinstance(value, dict) and 'type' in value:
            yield ARCH_REGISTRY, value['type'], f'{key}.type'
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        yield DATASET_REGISTRY, dataset_opt.get('type'), f'datasets.{phase}.type'
    for key, value in (opt.get('train') or {}).items():
        if key.endswith('_opt') and isinstance(value, dict) and 'type' in value:
            yield LOSS_REGISTRY, value['type'], f'train.{key}.type'
        if key == 'feature_losses':
            for i, loss_opt in enumerate(value or []):
                yield LOSS_REGISTRY, loss_opt.get('type'), f'train.feature_losses[{i}].type'


def type_problems(opt: dict) -> List[str]:
    return [
        unknown_type_message(registry, str(name), option) for registry, name, option in _declared_types(opt)
        if lookup(registry, str(name)) is None
    ]


def dataset_problems(opt: dict) -> List[str]:
    problems = []
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        is_lmdb = (dataset_opt.get('io_backend') or {}).get('type') == 'lmdb'
        for key in ('dataroot_gt', 'dataroot_lq'):
            root = dataset_opt.get(key)
            if root is None:
                continue
            option = f'datasets.{phase}.{key}'
            if not os.path.exists(root):
                problems.append(f'{option}: {root!r} does not exist (relative paths are resolved from the current '
                                f'directory {os.getcwd()!r}). Fix the path or start from the right folder.')
            elif is_lmdb and not os.path.isfile(os.path.join(root, 'meta_info.txt')):
                problems.append(f'{option}: the LMDB folder {root!r} has no meta_info.txt, which basicsr needs to '
                                'list its keys. Build the LMDB with python -m kdplugins.create_lmdb (it writes '
                                'meta_info.txt), or set io_backend.type to disk for an image folder.')
            elif is_lmdb and not root.endswith('.lmdb'):
                problems.append(f"{option}: basicsr requires LMDB folders to end with '.lmdb', got {root!r}.")
            else:
                problems += readable_data_problems(option, root, is_lmdb)
    return problems


IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm')


def readable_data_problems(option: str, root: str, is_lmdb: bool) -> List[str]:
    """An empty data set, and LMDB keys that ``meta_info.txt`` lists but the LMDB lacks (read at the first batch
    that draws them, thousands of iterations in, otherwise)."""
    if not is_lmdb:
        if os.path.isdir(root) and not any(name.lower().endswith(IMAGE_SUFFIXES) for name in os.listdir(root)):
            return [
                f'{option}: the folder {root!r} holds no image ({", ".join(IMAGE_SUFFIXES)}): an empty data set. '
                'Fix the path, or fill the folder.'
            ]
        return []
    from kdplugins.runtime.compat import open_lmdb
    with open(os.path.join(root, 'meta_info.txt')) as f:
        keys = [line.split('.png')[0] for line in f if line.strip()]
    if not keys:
        return [
            f'{option}: {root}/meta_info.txt lists no image: an empty data set. Rebuild the LMDB with '
            'python -m kdplugins.create_lmdb.'
        ]
    env = open_lmdb(root, readonly=True, lock=False, readahead=False)  # as basicsr's LmdbBackend opens it
    with env.begin(write=False) as txn:
        missing = [key for key in keys if txn.get(key.encode('ascii')) is None]
    if missing:
        return [
            f'{option}: {root}/meta_info.txt lists {len(missing)} key(s) the LMDB does not hold '
            f'({", ".join(missing[:5])}{" ..." if len(missing) > 5 else ""}): a batch drawing them would stop '
            'the run. Rebuild the LMDB with python -m kdplugins.create_lmdb (it writes both), or remove those lines.'
        ]
    return []


def pretrained_path_problems(opt: dict) -> List[str]:
    return [
        f'path.{key}: checkpoint file not found: {value!r} (relative paths are resolved from {os.getcwd()!r}). '
        f'Set path.{key} to an existing .pth file.' + zoo_hint(value) for key, value in (opt.get('path') or {}).items()
        if key.startswith('pretrain_network_') and value and not os.path.isfile(value)
    ]


def untrained_test_problems(opt: dict) -> List[str]:
    """A test run must load trained weights: without ``path.pretrain_network_g`` it would score random ones."""
    if opt.get('is_train', True) or (opt.get('path') or {}).get('pretrain_network_g'):
        return []
    return [
        'path.pretrain_network_g is not set: the test would evaluate network_g with random weights (is this a '
        'training option file?). Set it to the trained weights, e.g. experiments/<name>/models/net_g_latest.pth, '
        'as the files in options/test/ do.'
    ]


def device_problems(opt: dict) -> List[str]:
    import torch
    num_gpu, available = opt.get('num_gpu'), torch.cuda.device_count()
    if isinstance(num_gpu, int) and num_gpu > available and not opt.get('dist'):
        return [
            f'num_gpu: {num_gpu} but this machine has {available} CUDA device(s). Set num_gpu: auto (all of '
            'them), a number up to that, or 0 for the CPU.'
        ]
    return []


def data_size_problems(opt: dict) -> List[str]:
    """An epoch with no batch (basicsr would run 0 iterations and exit 0) and validation pairs of another scale, read
    from the LMDBs' ``meta_info.txt`` (image sizes) without decoding images."""
    problems = []
    scale = opt.get('scale')
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        sizes = {key: lmdb_image_sizes(dataset_opt, key) for key in ('dataroot_gt', 'dataroot_lq')}
        if phase == 'train' and sizes['dataroot_gt'] is not None:
            world = int(opt.get('world_size') or 1)
            samples = len(sizes['dataroot_gt']) * int(dataset_opt.get('dataset_enlarge_ratio', 1)) // world
            batch = int(dataset_opt.get('batch_size_per_gpu') or 0)
            if batch > samples:
                problems.append(
                    f'datasets.train.batch_size_per_gpu: {batch} is larger than the {samples} samples each process '
                    f'gets per epoch ({len(sizes["dataroot_gt"])} images x dataset_enlarge_ratio / {world} '
                    'processes): no batch would ever be drawn. Lower the batch or raise dataset_enlarge_ratio.')
        if phase.startswith('val') and isinstance(scale, int) and sizes['dataroot_gt'] and sizes['dataroot_lq']:
            for name, (h, w) in sizes['dataroot_lq'].items():
                gt = sizes['dataroot_gt'].get(name)
                if gt and not (h * scale <= gt[0] < (h + 1) * scale and w * scale <= gt[1] < (w + 1) * scale):
                    problems.append(
                        f'datasets.{phase}: LR {name} is {h}x{w} and its HR {gt[0]}x{gt[1]}: not a x{scale} '
                        f'pair. Check that dataroot_lq holds the x{scale} LR images (scale: {scale}).')
                    break
    return problems


def lmdb_image_sizes(dataset_opt: dict, key: str) -> Optional[Dict[str, Tuple[int, int]]]:
    """``{key: (height, width)}`` from an LMDB's ``meta_info.txt`` (``name.png (h,w,c) level`` lines), else None."""
    root = dataset_opt.get(key)
    if (dataset_opt.get('io_backend') or {}).get('type') != 'lmdb' or not root:
        return None
    meta = os.path.join(root, 'meta_info.txt')
    if not os.path.isfile(meta):
        return None
    sizes = {}
    with open(meta) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 2:
                h, w = parts[1].strip('()').split(',')[:2]
                sizes[os.path.splitext(parts[0])[0]] = (int(h), int(w))
    return sizes


def warn_about_archiving(opt: dict) -> None:
    root = opt['path'].get('experiments_root')
    if opt.get('is_train') and not opt.get('auto_resume') and not opt['path'].get('resume_state') and root and \
            os.path.isdir(os.path.join(root, 'training_states')) and os.listdir(os.path.join(root, 'training_states')):
        print(
            f'WARNING: {root} already holds training states and this run does not resume: basicsr will rename it '
            '(archive) and start from scratch. Add --auto_resume to continue it instead.',
            file=sys.stderr)


def name_problems(opt: dict) -> List[str]:
    """The experiment name becomes a folder (``experiments/<name>``), a log file name and a lock file name."""
    name = opt.get('name')
    if not isinstance(name, str) or not name.strip():
        return [f'name: {name!r} is not a name; write e.g. name: KD_MSRResNet_x2.']
    separators = [s for s in ('/', '\\', os.sep) if s in name]
    if separators or name in ('.', '..') or name != name.strip():
        fixed = name.strip().replace('/', '_').replace('\\', '_').strip('.') or 'run'
        return [
            f'name: {name!r} is not a folder name (path separators, dots or spaces at its ends): basicsr makes '
            f'experiments/<name>, its log file and tb_logger/<name> from it. Use e.g. {fixed!r}.'
        ]
    return []


def check_options(opt: dict) -> None:
    """Run every check; raises one :class:`OptionError` that lists every problem found."""
    problems = (
        name_problems(opt) + type_problems(opt) + option_problems(opt) + dataset_problems(opt) +
        pretrained_path_problems(opt) + untrained_test_problems(opt) + device_problems(opt) + data_size_problems(opt))
    if len(problems) == 1:
        raise OptionError(problems[0])
    if problems:
        raise OptionError(f'{len(problems)} problems in the options:\n' + '\n'.join(f'  - {p}' for p in problems))
