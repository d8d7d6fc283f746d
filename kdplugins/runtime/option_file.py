"""The option file as written, with the ``--force_yml`` overrides applied as basicsr will apply them, checked before
basicsr reads it: basicsr's loader drops a duplicate key's first block without a word, stops at a YAML merge key
(``<<``) with a constructor error, and computes with whatever type YAML gave a value (``lr: 1e-3`` is text in YAML
1.1) until something deep inside basicsr or torch fails; ``dist_params`` are checked here too, before basicsr starts the
process group with them. Every problem is named with its line and the fix, in one
:class:`~kdplugins.runtime.option_checks.OptionError`, before anything is created. *Every device.*
"""
import argparse
import yaml
from basicsr.utils.options import _postprocess_yml_value, ordered_yaml
from typing import List, Optional, Sequence, Tuple

from kdplugins.runtime.option_checks import OptionError
from kdplugins.runtime.option_schema import dist_params_problems, number_problems, parse_problems

MERGE_TAG = 'tag:yaml.org,2002:merge'


def structure_problems(text: str, path: str) -> List[str]:
    """Syntax errors, duplicate keys and merge keys of a YAML text, with their line numbers."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # nodes only: any tag basicsr's loader accepts is fine
    except yaml.YAMLError as error:
        return [f'{path}: not valid YAML: {" ".join(str(error).split())}. Fix the file at that line.']
    problems: List[str] = []

    def walk(node, where: str) -> None:
        if isinstance(node, yaml.MappingNode):
            first_line = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if key_node.tag == MERGE_TAG:
                    problems.append(f'{path}, line {line}: a YAML merge key (<<) in {where or "the top level"}: '
                                    "basicsr's option loader cannot read it. Write the merged keys out in that block.")
                    continue
                key = str(key_node.value)
                name = f'{where}.{key}' if where else key
                if key in first_line:
                    problems.append(
                        f'{path}, line {line}: duplicate key {name} (first at line {first_line[key]}): YAML keeps the '
                        f'last one only, so the one at line {first_line[key]} would be dropped without a word. '
                        'Merge the two into one, or remove one.')
                else:
                    first_line[key] = line
                walk(value_node, name)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f'{where}[{i}]')

    if root is not None:
        walk(root, '')
    return problems


def command_line(argv: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """(``-opt``, the ``--force_yml`` entries) of basicsr's command line, the rest ignored."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument('-opt', type=str)
    parser.add_argument('--force_yml', nargs='+', default=[])
    args, _ = parser.parse_known_args(list(argv))
    return args.opt, list(args.force_yml or [])


def apply_force_yml(opt: dict, entries: Sequence[str]) -> List[str]:
    """basicsr's ``--force_yml key:key=value`` applied to ``opt`` (same value conversion); problems for an entry
    without ``=`` or whose keys are not in the file."""
    problems = []
    for entry in entries:
        if entry.count('=') != 1:
            problems.append(f'--force_yml {entry}: write key:key=value (one =), e.g. train:ema_decay=0.999.')
            continue
        keys, value = (part.strip() for part in entry.split('='))
        *parents, last = keys.split(':')
        block = opt
        for depth, key in enumerate(parents):
            if not isinstance(block, dict) or key not in block:
                problems.append(f'--force_yml {entry}: the option file has no {":".join(parents[:depth + 1])}; '
                                'basicsr only overrides options the file has. Check the keys.')
                break
            block = block[key]
        else:
            if not isinstance(block, dict):
                problems.append(f'--force_yml {entry}: {":".join(parents)} is not a block of options.')
                continue
            try:
                block[last] = _postprocess_yml_value(value)
            except Exception as error:  # noqa: B902  (basicsr evaluates lists with eval)
                problems.append(f'--force_yml {entry}: the value cannot be read ({type(error).__name__}: {error}).')
    return problems


def check_option_file(argv: Sequence[str]) -> None:
    """Check the option file named by ``-opt`` in ``argv`` with its ``--force_yml`` overrides (module docstring);
    raises :class:`OptionError` naming every problem. A missing ``-opt`` is left to basicsr's own usage message."""
    path, force_yml = command_line(argv)
    if path is None:
        return
    try:
        with open(path) as f:
            text = f.read()
    except OSError as error:
        raise OptionError(f'-opt {path}: the option file cannot be read ({error.strerror}). Check the path '
                          '(relative paths are resolved from the current directory).') from None
    problems = structure_problems(text, path)
    if not problems:
        opt = yaml.load(text, Loader=ordered_yaml()[0]) if text.strip() else None  # as basicsr loads it
        if not isinstance(opt, dict):
            problems = [f'{path}: an option file is a mapping of options (name:, model_type:, ...), got {opt!r}.']
        else:
            problems = (
                apply_force_yml(opt, force_yml) + parse_problems(opt) + number_problems(opt) +
                dist_params_problems(opt))
    if len(problems) == 1:
        raise OptionError(problems[0])
    if problems:
        raise OptionError(f'{len(problems)} problems in {path}:\n' + '\n'.join(f'  - {p}' for p in problems))
