"""The option tree kdplugins and basicsr read, declared once, and the checks of every key and value against it.

Declarations: the keys basicsr 1.4.2 reads at each level (``BASICSR_*`` below, from its ``train.py``, ``models``,
``data`` and ``utils``), the ``train`` options of each model (``TRAIN_OPTIONS`` of ``SRModel`` here and of each
kdplugins model class, whose nested blocks are the very declarations the models read with
:func:`kdplugins.utils.declared_options.read_block`: ``AUGKD_OPTIONS``, ``CSD_OPTIONS``, ``MEMSR_OPTIONS``,
``CROSSKD_OPTIONS``, ``SPEED_OPTIONS``), and the constructor signatures of registered archs and losses
(:func:`~kdplugins.utils.declared_options.signature_block`). Levels whose reader is not known (a model, dataset
or arch of another project) are not checked key by key.

:func:`option_problems` returns every problem found (not only the first); :mod:`kdplugins.runtime.option_checks`
raises them together before anything is built. Every device.
"""
import fnmatch
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY, LOSS_REGISTRY, METRIC_REGISTRY, MODEL_REGISTRY
from typing import Any, Dict, Iterable, Iterator, List, Mapping, Optional, Tuple

from kdplugins.data.degradation_options import (ESRNET_TOP_LEVEL, GAN_TOP_LEVEL, REALESRGAN_DATASET,
                                                REALESRGAN_DATASET_OTHER, Spec, degradation_problems)
from kdplugins.distill.conv_lora import LoRAOptionError, match_modules
from kdplugins.distill.teacher import img_range_option, teacher_networks
from kdplugins.utils.basicsr_options import (BASICSR_LOGGER, BASICSR_METRIC, BASICSR_NUMBERS, BASICSR_PAIRED_DATASET,
                                             BASICSR_PARSED_FIRST, BASICSR_PATH_FIXED, BASICSR_PATH_PREFIXES,
                                             BASICSR_REQUIRED, BASICSR_TOP_LEVEL, BASICSR_VAL, SR_TRAIN_OPTIONS)
from kdplugins.utils.declared_options import (MISSING, block_problems, close_names, nested_value, number_text_hint,
                                              signature_block, type_problem, unknown_keys)
from kdplugins.utils.registry import lookup

KDPLUGINS_TOP_LEVEL = {'custom_imports'}
KDPLUGINS_DATASET = {'skip_unreadable'}  # read by kdplugins' pipeline (runtime/samples.py)
# per-network path keys (``<prefix><label>`` of ``network_<label>``): basicsr's and kdplugins' ``strip_prefix_``
NETWORK_PATH_PREFIXES = BASICSR_PATH_PREFIXES + ('strip_prefix_', )
PAIRED_DATASET_TYPES = {'PairedImageDataset', 'PairedImageDatasetWithIndex'}
# the top-level degradation options of basicsr's own real-world models (kdplugins' declare TOP_LEVEL_OPTIONS)
BASICSR_REALWORLD_MODELS = {'RealESRNetModel': ESRNET_TOP_LEVEL, 'RealESRGANModel': GAN_TOP_LEVEL}
# loss options whose constructor keywords the model fills in itself (CSD: the detached positive)
PROVIDED_BY_MODEL = {'contrastive_opt': ('detach_positive', )}


def train_options_of(model_type: str) -> Optional[Dict[str, object]]:
    """The declared ``train`` options of a model type, or None for a model this project does not know."""
    if model_type == 'SRModel':
        return SR_TRAIN_OPTIONS
    if model_type in MODEL_REGISTRY:
        return getattr(MODEL_REGISTRY.get(model_type), 'TRAIN_OPTIONS', None)
    return None


def top_level_options_of(model_type: str) -> Optional[Dict[str, Spec]]:
    """The top-level options a model reads besides basicsr's (real-world models: the degradation settings), or None."""
    if model_type in BASICSR_REALWORLD_MODELS:
        return BASICSR_REALWORLD_MODELS[model_type]
    if model_type in MODEL_REGISTRY:
        return getattr(MODEL_REGISTRY.get(model_type), 'TOP_LEVEL_OPTIONS', None)
    return None


def check_constructor(opt: Mapping, cls, where: str, provided: Iterable[str] = ()) -> List[str]:
    """``opt`` against the constructor of ``cls`` (its declaration: :func:`signature_block`); ``provided``: keywords
    the caller fills in or reads itself."""
    block = signature_block(cls, skip=provided)
    if block is None:
        return []
    return block_problems({k: v for k, v in opt.items() if k != 'type' and k not in provided}, block, where)


def check_weights(opt: Mapping, where: str) -> List[str]:
    """Negative loss weights, anywhere under ``where``."""
    problems = []
    for key, value in opt.items():
        if isinstance(value, Mapping):
            problems += check_weights(value, f'{where}.{key}')
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    problems += check_weights(item, f'{where}.{key}[{i}]')
        elif (key.endswith('weight') or key.startswith('lambda')) and isinstance(value, (int, float)) and value < 0:
            problems.append(f'{where}.{key}: {value} is negative; loss weights must be >= 0 (0 switches a term off).')
    return problems


def check_train(opt: dict) -> List[str]:
    train = opt.get('train')
    if not isinstance(train, Mapping):
        return []
    problems = check_weights(train, 'train')
    declared = train_options_of(str(opt.get('model_type', 'SRModel')))
    if declared is not None and 'teacher_img_range' in declared:  # the value range of each further teacher
        declared = {**declared, **{img_range_option(network): 1.0 for network in teacher_networks(opt)}}
    if declared is not None:
        problems += unknown_keys(train, declared, 'train')
        for key, default in declared.items():
            if key not in train:
                continue
            if isinstance(default, Mapping):  # a declared block (train.augkd, train.csd, train.speed, ...)
                problems += block_problems(train[key], default, f'train.{key}')
                problems += [
                    f'train.{key}.{name} and {option.replaced_by} are both given: train.{key}.{name} is the deprecated '
                    f'name of the same setting. Remove train.{key}.{name}.' for name, option in default.items()
                    if getattr(option, 'replaced_by', None) and isinstance(train[key], Mapping) and name in train[key]
                    and nested_value(opt, option.replaced_by) is not MISSING
                ]
            else:
                problems += type_problem(train[key], default, f'train.{key}')
    for key, value in train.items():
        if key.endswith('_opt') and isinstance(value, Mapping) and value.get('type') in LOSS_REGISTRY:
            loss_cls = LOSS_REGISTRY.get(value['type'])
            provided = PROVIDED_BY_MODEL.get(key, ()) + tuple(getattr(loss_cls, 'BUILD_INPUTS', ()))
            problems += check_constructor(value, loss_cls, f'train.{key}', provided=provided)
    for i, loss_opt in enumerate(train.get('feature_losses') or []):
        if isinstance(loss_opt, Mapping) and loss_opt.get('type') in LOSS_REGISTRY:
            loss_cls = LOSS_REGISTRY.get(loss_opt['type'])
            provided = ('student_layer', 'teacher_layer') + tuple(getattr(loss_cls, 'BUILD_INPUTS', ()))
            problems += check_constructor(loss_opt, loss_cls, f'train.feature_losses[{i}]', provided=provided)
    return problems


def check_datasets(opt: dict) -> List[str]:
    problems = []
    scale = opt.get('scale')
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        where = f'datasets.{phase}'
        if opt.get('is_train', True) and phase != 'train' and phase.split('_')[0] != 'val':
            problems.append(f"{where}: unknown phase '{phase}'; basicsr reads 'train', 'val' and 'val_<anything>'.")
        if dataset_opt.get('type') in PAIRED_DATASET_TYPES:
            problems += unknown_keys(dataset_opt, BASICSR_PAIRED_DATASET | KDPLUGINS_DATASET, where)
        if dataset_opt.get('type') == 'RealESRGANDataset':
            problems += unknown_keys(dataset_opt, set(REALESRGAN_DATASET) | REALESRGAN_DATASET_OTHER, where)
        if phase != 'train' and 'skip_unreadable' in dataset_opt:
            problems.append(f'{where}.skip_unreadable: only the training set can skip unreadable samples (a validation '
                            'set is scored whole); replace or remove the image instead.')
        elif 'skip_unreadable' in dataset_opt:
            problems += type_problem(dataset_opt['skip_unreadable'], False, f'{where}.skip_unreadable')
        gt_size = dataset_opt.get('gt_size')
        if phase == 'train' and isinstance(gt_size, int) and isinstance(scale, int) and gt_size % scale:
            problems.append(f'{where}.gt_size: {gt_size} is not a multiple of the scale {scale}: the LR patch would be '
                            f'{gt_size / scale:g} pixels. Use a multiple of {scale}, e.g. {gt_size - gt_size % scale}.')
    return problems


def check_networks(opt: dict) -> List[str]:
    problems = []
    for key, value in opt.items():
        arch = lookup(ARCH_REGISTRY, str(value.get('type'))) if isinstance(value, Mapping) else None
        if key.startswith('network_') and arch is not None:
            problems += check_constructor(value, arch, key)
    return problems


def check_sections(opt: dict) -> List[str]:
    top_level = set(top_level_options_of(str(opt.get('model_type'))) or ())
    problems = unknown_keys({
        k: v
        for k, v in opt.items() if not k.startswith('network_')
    }, BASICSR_TOP_LEVEL | KDPLUGINS_TOP_LEVEL | top_level, 'options')
    path = opt.get('path') or {}
    problems += unknown_keys({
        k: v
        for k, v in path.items() if not k.startswith(NETWORK_PATH_PREFIXES)
    }, BASICSR_PATH_FIXED, 'path')
    networks = [key for key in opt if key.startswith('network_')]
    for key in path:
        prefix = next((p for p in NETWORK_PATH_PREFIXES if key.startswith(p)), None)
        if prefix and f'network_{key[len(prefix):]}' not in networks:
            close = close_names(key, [prefix + network[len('network_'):] for network in networks])
            problems.append(f'path.{key}: there is no network_{key[len(prefix):]} section it could apply to '
                            f'(networks: {", ".join(networks) or "none"}){close}. Fix the name, or remove the key.')
    val = opt.get('val') or {}
    model = MODEL_REGISTRY.get(opt['model_type']) if opt.get('model_type') in MODEL_REGISTRY else None
    problems += unknown_keys(val, BASICSR_VAL | set(getattr(model, 'VAL_OPTIONS', ())), 'val')
    for name, metric in (val.get('metrics') or {}).items():
        problems += unknown_keys(metric, BASICSR_METRIC, f'val.metrics.{name}')
        if metric.get('type') not in METRIC_REGISTRY:
            problems.append(f"val.metrics.{name}.type: unknown metric '{metric.get('type')}'"
                            f'{close_names(str(metric.get("type")), METRIC_REGISTRY.keys())}. Registered metrics: '
                            f'{", ".join(sorted(METRIC_REGISTRY.keys()))}.')
    problems += unknown_keys(opt.get('logger') or {}, BASICSR_LOGGER, 'logger')
    return problems


def missing_keys(given: Mapping, required: Iterable[str], where: str) -> List[str]:
    return [f'{where}.{key}: missing; basicsr reads it without a default.' for key in required if key not in given]


def check_required(opt: dict) -> List[str]:
    """Keys basicsr reads without a default where their sections exist: a training run's, a test run's
    (``val.save_img``; ``val.suffix`` when it saves images) and every paired dataset's (``scale`` included)."""
    is_train = opt.get('is_train', True)
    problems = []
    for section in ('val', 'logger', 'train') if is_train else ():
        if isinstance(opt.get(section), Mapping):
            problems += missing_keys(opt[section], BASICSR_REQUIRED[section], section)
    if not is_train:
        val = opt.get('val')
        if not isinstance(val, Mapping):
            problems.append('val: missing; a test run reads val.save_img, and val.metrics to score. Add e.g. '
                            'val: {save_img: false, metrics: {psnr: {type: calculate_psnr, crop_border: 4}}}.')
        else:
            problems += missing_keys(val, BASICSR_REQUIRED['val.test'], 'val')
            if val.get('save_img') and 'suffix' not in val:
                problems.append('val.suffix: missing; a test run that saves images (val.save_img: true) reads it to '
                                'name the files (<image>_<suffix>.png, or <image>_<name>.png for suffix: ~). '
                                'Add val.suffix: ~ or a word.')
    paired = False
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        kind = 'train' if phase == 'train' else 'val'
        problems += missing_keys(dataset_opt, BASICSR_REQUIRED[f'datasets.{kind}'], f'datasets.{phase}')
        if dataset_opt.get('type') in PAIRED_DATASET_TYPES:
            paired = True
            problems += missing_keys(dataset_opt, BASICSR_REQUIRED['datasets.paired'], f'datasets.{phase}')
            if kind == 'train':
                problems += missing_keys(dataset_opt, BASICSR_REQUIRED['datasets.train.paired'], f'datasets.{phase}')
    if paired and 'scale' not in opt:
        problems.append('scale: missing; basicsr gives it to every paired dataset, which crops with it. Add e.g. '
                        'scale: 4.')
    return problems


def parse_problems(opt: Mapping) -> List[str]:
    """The keys basicsr's ``parse_options`` reads before anything else
    (:data:`~kdplugins.utils.basicsr_options.BASICSR_PARSED_FIRST`): missing, or of a kind it cannot use."""
    problems = []
    for key, kind in BASICSR_PARSED_FIRST.items():
        if key not in opt:
            problems.append(f'{key}: missing; basicsr reads it first, without a default. Add it (see any option '
                            'file under options/).')
        elif not isinstance(opt[key], kind):
            problems.append(
                f'{key}: {opt[key]!r} is a {type(opt[key]).__name__}; basicsr needs '
                f'{"a block of options" if kind is dict else "a text" if kind is str else "a number or auto"} '
                'there.')
    for phase, dataset_opt in (opt.get('datasets') or {}).items() if isinstance(opt.get('datasets'), dict) else ():
        if not isinstance(dataset_opt, dict):
            problems.append(f'datasets.{phase}: {dataset_opt!r} is not a block of dataset options (name:, type:, '
                            'dataroot_gt:, ...).')
    return problems


def values_at(opt: Mapping, pattern: str) -> Iterator[Tuple[str, Any]]:
    """(option path, value) of every option of ``opt`` that ``pattern`` (``a.*.b``, ``train.optim_*.lr``) names."""
    parts = pattern.split('.')

    def walk(node: Any, depth: int, where: str) -> Iterator[Tuple[str, Any]]:
        if depth == len(parts):
            yield where, node
        elif isinstance(node, Mapping):
            for key, value in node.items():
                if fnmatch.fnmatchcase(str(key), parts[depth]):
                    yield from walk(value, depth + 1, f'{where}.{key}' if where else str(key))

    return walk(opt, 0, '')


def number_problem(value: Any, kind: str, low: Optional[float], high: Optional[float], why: str,
                   where: str) -> Optional[str]:
    """What is wrong with one value of :data:`~kdplugins.utils.basicsr_options.BASICSR_NUMBERS`, or None."""
    if kind in ('counts', 'numbers'):
        if not isinstance(value, (list, tuple)):
            return f'{where}: {value!r} is not a list; write e.g. [{value}].'
        problems = (number_problem(item, kind[:-1], low, high, why, f'{where}[{i}]') for i, item in enumerate(value))
        return next((problem for problem in problems if problem), None)
    noun = 'whole number' if kind == 'count' else 'number'
    if value is None:
        return None
    if isinstance(value, str):
        return f'{where}: {value!r} is text, expected a {noun}.{number_text_hint(value)}'
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f'{where}: {value!r} is a {type(value).__name__}, expected a {noun}.'
    if kind == 'count' and float(value) != int(value):
        return f'{where}: {value!r} is not a whole number.'
    reason = f' ({why})' if why else ''
    if low is not None and value < low:
        return f'{where}: {value!r} is below {low}{reason}. Use a value of at least {low}.'
    if high is not None and value > high:
        return f'{where}: {value!r} is above {high}{reason}. Use a value of at most {high}.'
    return None


def number_problems(opt: Mapping) -> List[str]:
    """Every number basicsr computes with (:data:`~kdplugins.utils.basicsr_options.BASICSR_NUMBERS`): its type after
    YAML (``1e-3`` is text) and ``--force_yml``, and its range (0 for a frequency divides by zero)."""
    problems = []
    for pattern, (kind, low, high, why) in BASICSR_NUMBERS.items():
        for where, value in values_at(opt, pattern):
            problem = number_problem(value, kind, low, high, why, where)
            if problem:
                problems.append(problem)
    num_gpu = opt.get('num_gpu', 'auto')
    if num_gpu != 'auto':
        problem = number_problem(num_gpu, 'count', 0, None, '', 'num_gpu')
        if problem:
            problems.append(problem + " Or write num_gpu: auto (every CUDA device).")
    return problems


DIST_BACKENDS = ('nccl', 'gloo')
DIST_PARAMS = {'backend', 'port', 'timeout_minutes'}  # read by kdplugins.runtime.distributed for both launchers


def dist_params_problems(opt: Mapping) -> List[str]:
    """``dist_params`` (:mod:`kdplugins.runtime.distributed`): known keys, a backend torch has, a TCP port, a
    timeout of more than 0 minutes."""
    params = opt.get('dist_params')
    if params is None:
        return []
    if not isinstance(params, Mapping):
        return [
            f'dist_params: {params!r} is not a block of options; write e.g. '
            'dist_params: {backend: nccl, port: 29500, timeout_minutes: 60}.'
        ]
    problems = unknown_keys(params, DIST_PARAMS, 'dist_params')
    if params.get('backend', 'nccl') not in DIST_BACKENDS:
        problems.append(f"dist_params.backend: {params['backend']!r} is not a backend kdplugins starts; use nccl "
                        '(GPUs; gloo is used without CUDA) or gloo.')
    checks = (('port', 'count', 1, 65535, 'a TCP port'), ('timeout_minutes', 'number', 0, None, 'minutes'))
    for key, kind, low, high, why in checks:
        problem = number_problem(params.get(key), kind, low, high, why, f'dist_params.{key}')
        if problem is None and key == 'timeout_minutes' and params.get(key) == 0:
            problem = 'dist_params.timeout_minutes: 0 minutes would fail every collective; give the minutes a rank ' \
                'may wait for the others, e.g. 60.'
        if problem:
            problems.append(problem)
    return problems


def check_model(opt: dict) -> List[str]:
    """The model's own checks of how its options fit together (its ``option_problems`` classmethod, if any)."""
    model = MODEL_REGISTRY.get(opt['model_type']) if opt.get('model_type') in MODEL_REGISTRY else None
    check = getattr(model, 'option_problems', None)
    return list(check(opt)) if check else []


def check_lora(opt: dict) -> List[str]:
    """``train.lora.modules`` against the convolutions of ``network_g`` (built on the CPU to list them) when the
    model declares ``lora`` and the rest of ``network_g`` is valid."""
    lora = (opt.get('train') or {}).get('lora')
    declared = train_options_of(str(opt.get('model_type', 'SRModel'))) or {}
    network = opt.get('network_g')
    if (not isinstance(lora, Mapping) or 'lora' not in declared or not isinstance(network, Mapping)
            or network.get('type') not in ARCH_REGISTRY or check_networks({'network_g': network})):
        return []
    try:
        match_modules(build_network(dict(network)), lora.get('modules'))
    except LoRAOptionError as error:
        return [str(error)]
    return []


def option_problems(opt: dict) -> List[str]:
    """Every problem of the option tree against the declarations, as messages naming the option and the fix."""
    realworld = top_level_options_of(str(opt.get('model_type')))
    return (number_problems(opt) + dist_params_problems(opt) + check_sections(opt) + check_required(opt) +
            check_datasets(opt) + check_networks(opt) + check_train(opt) + check_model(opt) + check_lora(opt) +
            (degradation_problems(opt, realworld) if realworld and opt.get('is_train', True) else []))
