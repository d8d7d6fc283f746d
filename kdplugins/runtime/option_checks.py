"""Checks of parsed training/test options that run before basicsr creates folders, datasets or networks.

Each problem is reported with the option that holds it and how to fix it, instead of a ``KeyError`` or an
``lmdb.Error`` deep inside basicsr.
"""
import difflib
import os
import sys
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY, Registry
from typing import Iterator, Tuple


class OptionError(ValueError):
    """A YAML option has a value that cannot work; the message names the option and the fix."""


def unknown_type_message(registry: Registry, name: str, option: str) -> str:
    close = difflib.get_close_matches(name, list(registry.keys()), n=5, cutoff=0.5)
    hint = f" Close registered names: {', '.join(close)}." if close else ''
    return (f"{option}: unknown {registry._name} type '{name}'.{hint} `python -m kdplugins.list` lists what "
            'kdplugins registers; a type from another project needs that project imported first.')


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


def check_types(opt: dict) -> None:
    for registry, name, option in _declared_types(opt):
        if name not in registry:
            raise OptionError(unknown_type_message(registry, str(name), option))


def check_datasets(opt: dict) -> None:
    for phase, dataset_opt in (opt.get('datasets') or {}).items():
        is_lmdb = (dataset_opt.get('io_backend') or {}).get('type') == 'lmdb'
        for key in ('dataroot_gt', 'dataroot_lq'):
            root = dataset_opt.get(key)
            if root is None:
                continue
            option = f'datasets.{phase}.{key}'
            if not os.path.exists(root):
                raise OptionError(f'{option}: {root!r} does not exist (relative paths are resolved from the current '
                                  f'directory {os.getcwd()!r}). Fix the path or start from the right folder.')
            if is_lmdb and not os.path.isfile(os.path.join(root, 'meta_info.txt')):
                raise OptionError(
                    f'{option}: the LMDB folder {root!r} has no meta_info.txt, which basicsr needs to '
                    'list its keys. Build the LMDB with scripts/create_lmdb.py (it writes meta_info.txt), '
                    'or set io_backend.type to disk for an image folder.')
            if is_lmdb and not root.endswith('.lmdb'):
                raise OptionError(f"{option}: basicsr requires LMDB folders to end with '.lmdb', got {root!r}.")


def check_pretrained_paths(opt: dict) -> None:
    for key, value in (opt.get('path') or {}).items():
        if key.startswith('pretrain_network_') and value and not os.path.isfile(value):
            raise OptionError(f'path.{key}: checkpoint file not found: {value!r} (relative paths are resolved from '
                              f'{os.getcwd()!r}). Set path.{key} to an existing .pth file.')


def warn_about_archiving(opt: dict) -> None:
    root = opt['path'].get('experiments_root')
    if opt.get('is_train') and not opt.get('auto_resume') and not opt['path'].get('resume_state') and root and \
            os.path.isdir(os.path.join(root, 'training_states')) and os.listdir(os.path.join(root, 'training_states')):
        print(
            f'WARNING: {root} already holds training states and this run does not resume: basicsr will rename it '
            '(archive) and start from scratch. Add --auto_resume to continue it instead.',
            file=sys.stderr)


def check_options(opt: dict) -> None:
    """Run every check; raises :class:`OptionError` on the first problem."""
    check_types(opt)
    check_datasets(opt)
    check_pretrained_paths(opt)
    warn_about_archiving(opt)


def install_option_checks() -> None:
    """Make ``basicsr.train`` / ``basicsr.test`` check the options right after parsing them (entry points only)."""
    import basicsr.test
    import basicsr.train
    from basicsr.utils.options import parse_options

    def parse_and_check(root_path, is_train=True):
        opt, args = parse_options(root_path, is_train=is_train)
        check_options(opt)
        return opt, args

    basicsr.train.parse_options = parse_and_check
    basicsr.test.parse_options = parse_and_check
