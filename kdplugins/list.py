"""``python -m kdplugins.list``: what kdplugins registered into BasicSR's registries, by registry;
``python -m kdplugins.list --zoo``: the model zoo (name, file, source, sha256, size, licence)."""
import sys
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
from typing import Dict, List

import kdplugins  # noqa: F401
from kdplugins.runtime.custom_imports import import_from_command_line
from kdplugins.utils.model_zoo import zoo_table


def registered_by_kdplugins() -> Dict[str, List[str]]:
    registries = {'arch': ARCH_REGISTRY, 'model': MODEL_REGISTRY, 'loss': LOSS_REGISTRY, 'dataset': DATASET_REGISTRY}
    return {
        title: sorted(name for name, obj in registry if obj.__module__.startswith('kdplugins.'))
        for title, registry in registries.items()
    }


def registered_by(modules: List[str]) -> Dict[str, List[str]]:
    """What the given modules (and their submodules) registered, by registry."""
    registries = {'arch': ARCH_REGISTRY, 'model': MODEL_REGISTRY, 'loss': LOSS_REGISTRY, 'dataset': DATASET_REGISTRY}
    return {
        title:
        sorted(name for name, obj in registry if any(obj.__module__ == m or obj.__module__.startswith(m + '.')
                                                     for m in modules))
        for title, registry in registries.items()
    }


def main() -> None:
    """``python -m kdplugins.list [--import MODULE ...]``: kdplugins' registrations, then those of each import;
    ``--zoo``: the model zoo's table (what ``python -m kdplugins.download`` fetches)."""
    if '--zoo' in sys.argv[1:]:
        print('\n'.join(zoo_table()))
        return
    imported = import_from_command_line()
    for title, names in registered_by_kdplugins().items():
        print(f'{title} ({len(names)}): ' + ', '.join(names))
    for title, names in (registered_by(imported).items() if imported else ()):
        print(f'{title} from --import ({len(names)}): ' + ', '.join(names))


if __name__ == '__main__':
    main()
