"""The options of Real-ESRGAN's second-order degradations as basicsr 1.4.2 reads them, declared once, and their checks.

Two places read them (Wang et al., Real-ESRGAN, ICCVW 2021, Sec. 3; basicsr's ``data/realesrgan_dataset.py`` and
``models/realesrnet_model.py`` / ``realesrgan_model.py``):

- ``RealESRGANDataset`` (the ``datasets.train`` block) draws the blur kernels of both stages and the final sinc
  filter on the CPU: :data:`REALESRGAN_DATASET`.
- the model's ``feed_data`` reads resize, noise and JPEG settings, ``gt_size``, ``queue_size`` and the USM switches
  from the *top level* of the options: :data:`DEGRADATION_TOP_LEVEL` (ESRNet stage) and :data:`GAN_TOP_LEVEL`
  (ESRGAN stage).

basicsr reads almost all of them as ``opt[key]``: a missing one is a ``KeyError`` in the first ``feed_data``, a wrong
one (a resize range that does not hold 1, a JPEG quality above 100) a crash or silently wrong data thousands of
iterations in. :func:`degradation_problems` names each problem with the option and the fix, before anything is built.
"""
import numbers
from typing import Any, Dict, List, Mapping, Optional, Tuple

# kind, smallest, largest, required (basicsr reads it without a default)
Spec = Tuple[str, Optional[float], Optional[float], bool]
# The top-level options RealESRNetModel.feed_data reads (basicsr/models/realesrnet_model.py)
DEGRADATION_TOP_LEVEL: Dict[str, Spec] = {
    'high_order_degradation': ('bool', None, None, False),
    'resize_prob': ('choice3', 0, None, True),  # weights of up, down, keep
    'resize_range': ('around1', 0, None, True),  # up: uniform(1, high); down: uniform(low, 1)
    'gaussian_noise_prob': ('number', 0, 1, True),
    'noise_range': ('range', 0, None, True),  # Gaussian sigma on [0, 255]
    'poisson_scale_range': ('range', 0, None, True),
    'gray_noise_prob': ('number', 0, 1, True),
    'jpeg_range': ('range', 1, 100, True),  # JPEG quality
    'second_blur_prob': ('number', 0, 1, True),
    'resize_prob2': ('choice3', 0, None, True),
    'resize_range2': ('around1', 0, None, True),
    'gaussian_noise_prob2': ('number', 0, 1, True),
    'noise_range2': ('range', 0, None, True),
    'poisson_scale_range2': ('range', 0, None, True),
    'gray_noise_prob2': ('number', 0, 1, True),
    'jpeg_range2': ('range', 1, 100, True),
    'gt_size': ('count', 1, 400, True),  # RealESRGANDataset crops or pads every image to 400x400
    'queue_size': ('count', 1, None, False),  # the training pair pool; basicsr's default 180
}
# RealESRNetModel sharpens the HR itself with gt_usm; RealESRGANModel always sharpens a copy and reads per loss
# whether its target is the sharpened one (basicsr/models/realesrgan_model.py)
ESRNET_TOP_LEVEL: Dict[str, Spec] = {**DEGRADATION_TOP_LEVEL, 'gt_usm': ('bool', None, None, True)}
GAN_TOP_LEVEL: Dict[str, Spec] = {
    **DEGRADATION_TOP_LEVEL,
    'l1_gt_usm': ('bool', None, None, True),
    'percep_gt_usm': ('bool', None, None, True),
    'gan_gt_usm': ('bool', None, None, True),
}
KERNEL_TYPES = ('iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso')
# RealESRGANDataset (basicsr/data/realesrgan_dataset.py) besides the dataloader's keys
REALESRGAN_DATASET: Dict[str, Spec] = {
    'blur_kernel_size': ('odd', 21, 21, True),  # its kernels are padded to 21x21 (kernel sizes 7 to 21)
    'kernel_list': ('kernels', None, None, True),
    'kernel_prob': ('weights', 0, None, True),
    'blur_sigma': ('range', 0, None, True),
    'betag_range': ('range', 0, None, True),
    'betap_range': ('range', 0, None, True),
    'sinc_prob': ('number', 0, 1, True),
    'blur_kernel_size2': ('odd', 21, 21, True),
    'kernel_list2': ('kernels', None, None, True),
    'kernel_prob2': ('weights', 0, None, True),
    'blur_sigma2': ('range', 0, None, True),
    'betag_range2': ('range', 0, None, True),
    'betap_range2': ('range', 0, None, True),
    'sinc_prob2': ('number', 0, 1, True),
    'final_sinc_prob': ('number', 0, 1, True),
    'use_hflip': ('bool', None, None, True),
    'use_rot': ('bool', None, None, True),
    'meta_info': ('text', None, None, False),  # read by the disk backend (an LMDB has its own meta_info.txt)
}
REALESRGAN_DATASET_OTHER = {
    'name', 'type', 'dataroot_gt', 'io_backend', 'gt_size', 'use_shuffle', 'num_worker_per_gpu', 'batch_size_per_gpu',
    'dataset_enlarge_ratio', 'prefetch_mode', 'num_prefetch_queue', 'pin_memory', 'persistent_workers', 'phase',
    'scale', 'skip_unreadable'
}


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def value_problem(value: Any, spec: Spec, where: str) -> Optional[str]:
    """What is wrong with one value of a declaration, or None."""
    kind, low, high, _ = spec
    if kind == 'bool':
        return None if isinstance(value, bool) else f'{where}: {value!r} is not true or false.'
    if kind == 'text':
        return None if isinstance(value, str) else f'{where}: {value!r} is not a path.'
    if kind == 'kernels':
        if not isinstance(value, list) or not value or any(item not in KERNEL_TYPES for item in value):
            return f'{where}: {value!r} is not a list of blur kernel types; use some of {", ".join(KERNEL_TYPES)}.'
        return None
    if kind in ('range', 'around1'):
        if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(map(_is_number, value)):
            return f'{where}: {value!r} is not a range [low, high] of two numbers.'
        if value[0] > value[1]:
            return f'{where}: {list(value)} has its low end above its high end; write [{value[1]}, {value[0]}].'
        if kind == 'around1' and not (value[0] <= 1 <= value[1]):
            return (f'{where}: {list(value)} must hold 1 (basicsr scales up by uniform(1, high) and down by '
                    'uniform(low, 1)); e.g. [0.15, 1.5] as Real-ESRGAN.')
        values = value
    elif kind in ('choice3', 'weights'):
        count = 3 if kind == 'choice3' else None
        if (not isinstance(value, (list, tuple)) or (count and len(value) != count) or not value
                or not all(map(_is_number, value))):
            what = 'three weights [up, down, keep]' if count else 'a list of weights, one per kernel type'
            return f'{where}: {value!r} is not {what}.'
        if sum(value) <= 0:
            return f'{where}: {list(value)} sums to 0; at least one choice needs a positive weight.'
        values = value
    elif kind in ('count', 'odd'):
        if not isinstance(value, int) or isinstance(value, bool):
            return f'{where}: {value!r} is not a whole number.'
        if kind == 'odd' and value != 21:
            return f'{where}: {value} is not 21; RealESRGANDataset pads its kernels (7 to 21 pixels) to 21x21.'
        values = [value]
    else:
        if not _is_number(value):
            return f'{where}: {value!r} is not a number.'
        values = [value]
    for item in values:
        if low is not None and item < low:
            return f'{where}: {value!r} holds {item}, below {low}. Use values of at least {low}.'
        if high is not None and item > high:
            return f'{where}: {value!r} holds {item}, above {high}. Use values of at most {high}.'
    return None


def block_problems(given: Mapping, declared: Dict[str, Spec], where: str) -> List[str]:
    """Missing required options and wrong values of ``given`` against ``declared`` (``where``: the prefix)."""
    problems = []
    for key, spec in declared.items():
        if key not in given:
            if spec[3]:
                problems.append(f'{where}{key}: missing; basicsr reads it without a default (Real-ESRGAN\'s option '
                                'files set it: see docs/realworld_kd.md).')
            continue
        problem = value_problem(given[key], spec, f'{where}{key}')
        if problem:
            problems.append(problem)
    return problems


def degradation_problems(opt: Mapping, declared: Dict[str, Spec]) -> List[str]:
    """Every problem of a real-world model's options: its top-level degradation options (``declared``), the
    ``RealESRGANDataset`` block, the pair pool against the batch, and the crop against the scale."""
    train = (opt.get('datasets') or {}).get('train') or {}
    if opt.get('high_order_degradation', True) is False:  # given pairs: no degradation option is read
        optional = {k: (*spec[:3], False) if k in DEGRADATION_TOP_LEVEL else spec for k, spec in declared.items()}
        return block_problems(opt, optional, '')
    problems = block_problems(opt, declared, '')
    if train.get('type') == 'RealESRGANDataset':
        problems += block_problems(train, REALESRGAN_DATASET, 'datasets.train.')
        for stage in ('', '2'):
            kernels, weights = train.get(f'kernel_list{stage}'), train.get(f'kernel_prob{stage}')
            if isinstance(kernels, list) and isinstance(weights, list) and len(kernels) != len(weights):
                problems.append(f'datasets.train.kernel_prob{stage}: {len(weights)} weights for the '
                                f'{len(kernels)} kernel types of kernel_list{stage}; give one weight per type.')
        if (train.get('io_backend') or {}).get('type') != 'lmdb' and 'meta_info' not in train:
            problems.append('datasets.train.meta_info: missing; RealESRGANDataset reads the image list from it with a '
                            'disk backend (one path relative to dataroot_gt a line; scripts/generate_meta_info.py '
                            'of Real-ESRGAN writes it).')
    elif train:
        problems.append(f'datasets.train.type: {train.get("type")!r}; a real-world model synthesises its LR from the '
                        'HR and the kernels of RealESRGANDataset. Use type: RealESRGANDataset, or set '
                        'high_order_degradation: false to train on given pairs.')
    queue, batch = opt.get('queue_size', 180), train.get('batch_size_per_gpu')
    if isinstance(queue, int) and isinstance(batch, int) and batch > 0 and queue % batch:
        problems.append(f'queue_size: {queue} is not a multiple of datasets.train.batch_size_per_gpu ({batch}); the '
                        f'pair pool swaps whole batches. Use e.g. {max(batch, queue - queue % batch)}.')
    gt_size, scale = opt.get('gt_size'), opt.get('scale')
    if isinstance(gt_size, int) and isinstance(scale, int) and scale > 0 and gt_size % scale:
        problems.append(f'gt_size: {gt_size} is not a multiple of the scale {scale}; the LR crop would be '
                        f'{gt_size / scale:g} pixels. Use e.g. {gt_size - gt_size % scale}.')
    return problems
