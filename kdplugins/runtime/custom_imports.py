"""``custom_imports``: modules of the user's own project (archs, losses, datasets, models registered into BasicSR's
registries) imported before anything is built, so that option files can name them.

Two ways, both honoured by ``python -m kdplugins.train`` / ``kdplugins.test`` / ``kdplugins.list`` and the option
checks: a top-level YAML key ``custom_imports: [my_project.archs, ...]`` and ``--import MODULE`` on the command line
(repeatable; taken out of ``sys.argv`` before basicsr parses it). Modules are found on ``sys.path``: the current
directory, ``PYTHONPATH`` or an installed package. Every device; DataLoader workers started by ``spawn`` import a
dataset's module again by name, from the same ``sys.path``.
"""
import importlib
import sys
from typing import Iterable, List

from kdplugins.utils.errors import ConfigurationError


class CustomImportError(ConfigurationError, ImportError):
    """A module named in ``custom_imports`` / ``--import`` could not be imported."""


def import_modules(names: Iterable[str], origin: str) -> List[str]:
    """Import each module (once); an import that fails stops with the module, the error and ``sys.path``."""
    imported = []
    for name in names:
        if not isinstance(name, str) or not name:
            raise CustomImportError(
                f'{origin}: {name!r} is not a module name; write e.g. custom_imports: [my_project.archs].')
        try:
            importlib.import_module(name)
        except Exception as error:
            path = '\n  '.join(sys.path)
            raise CustomImportError(
                f'{origin}: cannot import {name!r}: {type(error).__name__}: {error}. Modules are looked up on sys.path '
                f'(run from the folder that holds the package, add it to PYTHONPATH, or pip install it):\n  {path}'
            ) from error
        imported.append(name)
    return imported


def take_import_arguments(argv: List[str]) -> List[str]:
    """Remove every ``--import MODULE`` (or ``--import=MODULE``) from ``argv`` (in place) and return the modules."""
    modules, kept, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == '--import':
            if i + 1 >= len(argv):
                raise CustomImportError('--import needs a module name, e.g. --import my_project.archs')
            modules.append(argv[i + 1])
            i += 2
            continue
        if arg.startswith('--import='):
            modules.append(arg.split('=', 1)[1])
        else:
            kept.append(arg)
        i += 1
    argv[:] = kept
    return modules


def add_import_argument(parser) -> None:
    """``--import MODULE`` (repeatable, into ``args.imports``) for command lines that parse their own arguments
    (``kdplugins.export``, ``kdplugins.infer``); the training entry points take it from ``sys.argv`` instead."""
    parser.add_argument(
        '--import',
        dest='imports',
        action='append',
        default=[],
        metavar='MODULE',
        help='module of your own project that registers archs (repeatable), as custom_imports')


def import_from_command_line() -> List[str]:
    """The entry points' ``--import`` modules, imported now."""
    return import_modules(take_import_arguments(sys.argv), '--import')


def import_from_options(opt: dict) -> List[str]:
    """The option file's ``custom_imports``, imported now (before the option checks look the types up)."""
    names = opt.get('custom_imports') or []
    if isinstance(names, str):
        names = [names]
    return import_modules(names, 'custom_imports')
