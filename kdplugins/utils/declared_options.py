"""Options declared once: a block of named options (``train.augkd``, ``train.csd``, ``train.memsr``,
``train.crosskd``, ``train.speed``, a feature loss's constructor arguments) with defaults, types, allowed values and
ranges, read by the model and checked before anything is built by :mod:`kdplugins.runtime.option_schema`, both with
:func:`block_problems`.

A method declares its block as ``{name: Option(default, ...)}``; :func:`read_block` returns the given values over
the defaults (a mapping given for a mapping option replaces the default mapping), or raises one ``ValueError`` that
lists every problem with the option's full name, close names for unknown keys and the valid values.

An option that moved keeps its old name declared with ``replaced_by`` (the new name): it is checked but never filled
in, and :func:`deprecated_value` reads it with a logged deprecation warning.
"""
import difflib
import inspect
from basicsr.utils import get_root_logger
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

REQUIRED = object()  # the default of an option that must be given
MISSING = object()  # what :func:`nested_value` returns for an option that is not given


class Option:
    """One declared option.

    Args:
        default: its value when not given (:data:`REQUIRED`: must be given); the type of a given value must be the
            default's (an int is a valid float; a default of None accepts anything).
        choices: allowed values (for a list option: allowed items; for a mapping option: allowed keys).
        minimum, maximum: range of a number (for a mapping option: of each value).
        help: one line for the docs.
        replaced_by: for a deprecated option, the full name of the option that replaces it (``default`` then only
            gives the type of a given value: a deprecated option is never filled in).
    """

    def __init__(self,
                 default: Any,
                 choices: Optional[Iterable] = None,
                 minimum: Optional[float] = None,
                 maximum: Optional[float] = None,
                 help: str = '',
                 replaced_by: Optional[str] = None):
        self.default = default
        self.choices = tuple(choices) if choices is not None else None
        self.minimum = minimum
        self.maximum = maximum
        self.help = help
        self.replaced_by = replaced_by

    def problems(self, value: Any, where: str) -> List[str]:
        if value is None or self.default is None or self.default is REQUIRED:
            return []
        found = type_problem(value, self.default, where)
        if found:
            return found
        items: Sequence[Tuple[str, Any]] = [(where, value)]
        if isinstance(value, Mapping):
            if self.choices is not None:
                found += unknown_keys(value, self.choices, where)
            items = [(f'{where}.{k}', v) for k, v in value.items()]
        elif isinstance(value, list):
            if self.choices is not None:
                found += [
                    f'{where}: {item!r} is not one of {", ".join(map(str, self.choices))}.' for item in value
                    if item not in self.choices
                ]
            return found
        elif self.choices is not None and value not in self.choices:
            found.append(f'{where}: {value!r} is not one of {", ".join(map(repr, self.choices))}.')
        for name, number in items:
            if isinstance(number, bool) or not isinstance(number, (int, float)):
                continue
            if self.minimum is not None and number < self.minimum:
                found.append(f'{name}: {number} is below the minimum {self.minimum:g}.')
            if self.maximum is not None and number > self.maximum:
                found.append(f'{name}: {number} is above the maximum {self.maximum:g}.')
        return found


Block = Mapping[str, Option]


def defaults(block: Block) -> Dict[str, Any]:
    """``{name: default}`` of a block (required and deprecated options left out)."""
    return {
        name: option.default
        for name, option in block.items() if option.default is not REQUIRED and option.replaced_by is None
    }


def nested_value(tree: Mapping, name: str) -> Any:
    """The value of the option ``name`` (dotted: ``train.csd.lambda_c``) in nested mappings, or :data:`MISSING`."""
    value: Any = tree
    for key in name.split('.'):
        if not isinstance(value, Mapping) or value.get(key) is None:
            return MISSING
        value = value[key]
    return value


def deprecated_value(opt: Mapping, name: str, block: Block, convert: Callable[[Any], Any] = lambda value: value) -> Any:
    """The value of the deprecated option ``name`` (dotted from the top of ``opt``: ``train.csd.lambda_c``, declared
    in ``block`` with ``replaced_by``) as a value of the option that replaces it (``convert``), or None when it is not
    given. Given, a warning names the new option and the value to write; given together with it, a ``ValueError``
    names both."""
    value = nested_value(opt, name)
    if value is MISSING:
        return None
    new = block[name.rsplit('.', 1)[1]].replaced_by
    if nested_value(opt, new) is not MISSING:
        raise ValueError(f'{name} and {new} are both given: {name} is the deprecated name of the same setting. Remove '
                         f'{name}.')
    converted = convert(value)
    get_root_logger().warning(f'DeprecationWarning: {name} is deprecated and will be removed: write {new}: '
                              f'{converted} instead of {name}: {value}.')
    return converted


def close_names(name: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(valid), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(close)}?)" if close else ''


def unknown_keys(given: Mapping, valid: Iterable[str], where: str) -> List[str]:
    valid = set(valid)
    return [
        f'{where}.{key}: unknown option{close_names(str(key), valid)}. Valid options: {", ".join(sorted(valid))}.'
        for key in given if key not in valid
    ]


def number_text_hint(text: str) -> str:
    """The fix for a number that YAML read as text (``1e-3``: YAML 1.1 wants a dot in the mantissa), or ''."""
    try:
        number = float(text)
    except ValueError:
        return ''
    plain = str(int(number)) if number.is_integer() and 'e' in text.lower() else repr(number)
    return (f' YAML 1.1 reads {text} (an exponent without a dot) as text: write {plain} or !!float {text}, in the '
            'option file or in --force_yml.')


def type_problem(value, default, where: str) -> List[str]:
    """A value whose type differs from its declared default's (an int is a valid float; None: anything goes)."""
    if default is None or value is None or default is REQUIRED:
        return []
    if isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return []  # YAML has lists only
    expected = float if isinstance(default, float) else type(default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) if expected is float else (
        isinstance(value, expected) and (expected is bool or not isinstance(value, bool)))
    if ok:
        return []
    hint = number_text_hint(value) if isinstance(value, str) and expected in (int, float) else ''
    return [
        f'{where}: {value!r} is a {type(value).__name__}, expected a {expected.__name__} (default {default!r}).{hint}'
    ]


def block_problems(given: Optional[Mapping], block: Block, where: str) -> List[str]:
    """Every problem of ``given`` against ``block``: unknown keys (with close names), missing required options,
    types, allowed values and ranges."""
    given = given or {}
    if not isinstance(given, Mapping):
        return [f'{where}: expected a mapping of options, got {given!r}.']
    problems = unknown_keys(given, block, where)
    for name, option in block.items():
        if name in given:
            problems += option.problems(given[name], f'{where}.{name}')
        elif option.default is REQUIRED:
            problems.append(f'{where}.{name}: missing; it has no default.')
    return problems


def read_block(given: Optional[Mapping], block: Block, where: str) -> Dict[str, Any]:
    """``given`` over the defaults of ``block``; one ``ValueError`` listing every problem."""
    problems = block_problems(given, block, where)
    if problems:
        raise ValueError('\n'.join(problems))
    return {**defaults(block), **dict(given or {})}


def signature_block(cls, skip: Iterable[str] = ()) -> Optional[Dict[str, Option]]:
    """The declaration of a class's keyword arguments (a loss's or an arch's constructor): the names, and
    :data:`REQUIRED` for a parameter without a default; None when it takes ``**kwargs`` (anything goes). Values are
    not type-checked: signatures are not declarations of types (basicsr's EDSR has ``res_scale=1`` for a float)."""
    parameters = inspect.signature(cls).parameters
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return {
        name: Option(REQUIRED if p.default is inspect.Parameter.empty else None)
        for name, p in parameters.items() if name not in skip and p.kind != inspect.Parameter.VAR_POSITIONAL
    }
