"""``python -m kdplugins.list``: what kdplugins registered into BasicSR's registries, by registry."""
from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
from typing import Dict, List

import kdplugins  # noqa: F401


def registered_by_kdplugins() -> Dict[str, List[str]]:
    registries = {'arch': ARCH_REGISTRY, 'model': MODEL_REGISTRY, 'loss': LOSS_REGISTRY, 'dataset': DATASET_REGISTRY}
    return {
        title: sorted(name for name, obj in registry if obj.__module__.startswith('kdplugins.'))
        for title, registry in registries.items()
    }


def main() -> None:
    for title, names in registered_by_kdplugins().items():
        print(f'{title} ({len(names)}): ' + ', '.join(names))


if __name__ == '__main__':
    main()
