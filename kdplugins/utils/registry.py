"""Registration into BasicSR's registries that is safe to repeat."""
import importlib
import os
from basicsr.utils.registry import Registry
from typing import Callable, List, Optional, TypeVar

T = TypeVar('T')


def register(registry: Registry) -> Callable[[T], T]:
    """Decorator like ``registry.register()`` that tolerates registering the same definition again.

    A module imported a second time under another name (``__main__`` and its package name, ``importlib.reload``,
    a spawned DataLoader worker re-importing the entry module) re-runs its decorators; basicsr's own decorator then
    fails with a duplicate-name assertion. Here the same qualified name replaces the old entry; a different object
    under a taken name (a clash with basicsr or another plugin) is still an error.
    """

    def deco(obj: T) -> T:
        name = obj.__name__
        if name in registry:
            existing = registry.get(name)
            if existing.__qualname__ != obj.__qualname__ or not _is_ours(existing):
                raise KeyError(f"'{name}' is already registered in basicsr's {registry._name} registry by "
                               f'{_qualified_name(existing)}; kdplugins cannot register {_qualified_name(obj)}.')
            registry._obj_map[name] = obj
        else:
            registry.register(obj)
        return obj

    return deco


def _is_ours(obj) -> bool:
    return obj.__module__.split('.')[0] in ('kdplugins', '__main__', '__mp_main__')


def _qualified_name(obj) -> str:
    return f'{obj.__module__}.{obj.__qualname__}'


def import_modules(package_file: str, package: str, suffix: str) -> List[object]:
    """Import every ``*<suffix>.py`` module next to ``package_file`` (BasicSR's scan-and-import convention)."""
    folder = os.path.dirname(os.path.abspath(package_file))
    names = sorted(name[:-3] for name in os.listdir(folder) if name.endswith(f'{suffix}.py'))
    return [importlib.import_module(f'{package}.{name}') for name in names]


def lookup(registry: Registry, name: str) -> Optional[object]:
    """What ``registry.get(name)`` returns, or None when it would fail, without basicsr's print: basicsr registers
    some of its classes as ``<name>_basicsr`` (``SRVGGNetCompact``, ``RealESRGANDataset``, ``RealESRNetModel``) and
    its ``get`` falls back to that name, so Real-ESRGAN's option files name them without the suffix."""
    found = registry._obj_map.get(name)
    return found if found is not None else registry._obj_map.get(f'{name}_basicsr')
