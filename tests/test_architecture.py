"""The distillation base and its pieces; training results stay those of tests/training_digests.json."""
import gc
import json
import os
import pytest
import re
import subprocess
import sys
import torch
from conftest import REPO, build, kd_options, save_teacher
from pathlib import Path

from kdplugins.distill import loss_inputs
from kdplugins.distill.recorder import FeatureRecorder, InputSubstitution
from kdplugins.utils.declared_options import REQUIRED, Option, block_problems, read_block

STORED_DIGESTS = REPO / 'tests' / 'training_digests.json'
WRITE_DIGESTS = 'KDPLUGINS_WRITE_TRAINING_DIGESTS'
REGENERATE = f'{WRITE_DIGESTS}=1 python -m pytest -q tests/test_architecture.py -k stored_digests'


def training_digests(workdir: Path, lmdbs: dict) -> dict:
    """The output of tests/run_training_digests.py, run in a fresh process on ``lmdbs``."""
    workdir.mkdir()
    lmdb_file = workdir / 'lmdbs.json'
    lmdb_file.write_text(json.dumps(lmdbs))
    result = subprocess.run(
        [sys.executable, str(REPO / 'tests' / 'run_training_digests.py'),
         str(workdir), str(lmdb_file)],
        cwd=workdir,
        capture_output=True,
        text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def write_stored_digests(methods: dict) -> None:
    from run_training_digests import THREADS
    commit = subprocess.run(['git', '-C', str(REPO), 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True)
    changed = subprocess.run(['git', '-C', str(REPO), 'status', '--porcelain', 'kdplugins'],
                             capture_output=True,
                             text=True)
    header = {
        'command': REGENERATE,
        'commit': commit.stdout.strip() + ('+uncommitted kdplugins changes' if changed.stdout.strip() else ''),
        'torch': torch.__version__,
        'torch_threads': THREADS,
        'cpu_capability': torch.backends.cpu.get_cpu_capability(),
    }
    STORED_DIGESTS.write_text(json.dumps({'made_by': header, 'methods': methods}, indent=2) + '\n')


def digest_differences(stored: dict, now: dict) -> list:
    problems = [f'{method}: stored, not run now' for method in stored if method not in now]
    problems += [f'{method}: run now, not stored' for method in now if method not in stored]
    for method in (m for m in stored if m in now):
        if stored[method]['weights'] != now[method]['weights']:
            problems.append(f"{method}: weights differ (stored {stored[method]['weights'][:16]}..., "
                            f"now {now[method]['weights'][:16]}...)")
        old, new = stored[method]['losses'], now[method]['losses']
        if old != new:
            names = [name for name in dict.fromkeys([*old, *new]) if old.get(name) != new.get(name)]
            differ = '; '.join(f'{name} stored {old.get(name)}, now {new.get(name)}' for name in names)
            problems.append(f'{method}: losses differ ({differ})')
    return problems


def test_kd_augkd_csd_memsr_and_crosskd_train_to_the_stored_digests(tmp_path, tiny_lmdbs):
    """Three steps of KD (+FitNet, CRD), AugKD (+FAKD), CSD, MemSR and CrossKD (tests/run_training_digests.py, in a
    fresh process, one torch thread) give bitwise the student weights and logged losses stored in
    tests/training_digests.json, made by the code of the commit in its header: a change of the package that changes a
    result fails here. When a change of results is intended, regenerate the file (and say why in the commit):

        KDPLUGINS_WRITE_TRAINING_DIGESTS=1 python -m pytest -q tests/test_architecture.py -k stored_digests
    """
    now = training_digests(tmp_path / 'run', tiny_lmdbs)
    assert set(now) == {'kd', 'augkd', 'csd', 'memsr', 'crosskd'}
    if os.environ.get(WRITE_DIGESTS) == '1':
        write_stored_digests(now)
    stored = json.loads(STORED_DIGESTS.read_text())
    problems = digest_differences(stored['methods'], now)
    made_by = stored['made_by']
    here = {'torch': torch.__version__, 'cpu_capability': torch.backends.cpu.get_cpu_capability()}
    elsewhere = '; '.join(f'{key} {made_by.get(key)} there, {value} here' for key, value in here.items()
                          if made_by.get(key) != value)
    if elsewhere:
        elsewhere = f' (not this machine: {elsewhere}; bitwise needs the same torch and CPU vector instructions)'
    assert not problems, ('\n'.join(problems) + f'\nThe stored digests were made by {made_by}{elsewhere}.\n'
                          f'Only if the change of results is intended, regenerate them with: {REGENERATE}')


# ----------------------------------------------------------------------------------------------------------------
# scoped feature taps
def tiny_net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))


def test_a_recorder_records_inside_its_block_only_and_hands_the_features_over():
    net = tiny_net()
    recorder = FeatureRecorder(net, ['0', '2'], 'student')
    x = torch.rand(2, 3, 8, 8)
    net(x)  # outside a block: nothing kept
    assert recorder._store == {}
    with recorder.recording() as features:
        out = net(x)
        assert features == {}  # handed over when the block ends
    assert list(features) == ['0', '2'] and torch.equal(features['2'], out)
    assert torch.equal(features['0'], net[0](x))
    with recorder.recording() as again:
        pass
    assert again == {} and recorder._store == {}


def test_a_recorder_refuses_two_forwards_nesting_and_unknown_layers_and_can_record_inputs():
    net = tiny_net()
    recorder = FeatureRecorder(net, ['2'], 'student (network_g)')
    with pytest.raises(RuntimeError, match='module 2 ran twice inside one recording'):
        with recorder.recording():
            net(torch.rand(1, 3, 4, 4))
            net(torch.rand(1, 3, 4, 4))
    with pytest.raises(RuntimeError, match='recordings do not nest'):
        with recorder.recording(), recorder.recording():
            pass
    with pytest.raises(KeyError, match="student has no module named 'body.9'"):
        FeatureRecorder(net, ['body.9'], 'student')
    inputs = FeatureRecorder(net, ['2'], 'student', record='input')
    x = torch.rand(1, 3, 4, 4)
    with inputs.recording() as features:
        net(x)
    assert torch.equal(features['2'], net[1](net[0](x)))
    recorder.remove(), inputs.remove()
    assert not net[2]._forward_hooks


def test_an_input_substitution_runs_the_tail_of_a_network_on_another_feature():
    net = tiny_net()
    substitution = InputSubstitution(net, '2', 'teacher')
    feature = torch.rand(1, 4, 4, 4)
    with substitution.substituting(feature):
        out = net(torch.rand(1, 3, 4, 4))
    assert torch.equal(out, net[2](feature))
    with pytest.raises(RuntimeError, match='never reached 2'):
        with substitution.substituting(feature):
            pass
    substitution.remove()
    assert not net[2]._forward_pre_hooks


def test_the_taps_of_a_model_are_removed_when_it_is_collected(tmp_path, monkeypatch, tiny_lmdbs):
    teacher = save_teacher(tmp_path / 'teacher.pth')
    opt = kd_options(
        tiny_lmdbs,
        teacher,
        feature_losses=[{
            'type': 'FitNetLoss',
            'student_layer': 'body.0',
            'teacher_layer': 'body.1',
            'loss_weight': 0.1
        }])
    model, _ = build(tmp_path, monkeypatch, opt)
    student, teacher_net = model.net_g, model.net_t.net
    assert student.body[0]._forward_hooks and teacher_net.body[1]._forward_hooks
    del model
    gc.collect()
    assert not student.body[0]._forward_hooks and not teacher_net.body[1]._forward_hooks


# ----------------------------------------------------------------------------------------------------------------
# options declared once
def test_a_declared_block_names_every_problem_with_the_fix():
    block = {
        'n': Option(1, minimum=0),
        'mode': Option('a', choices=('a', 'b')),
        'probabilities': Option({'x': 0.5}, choices=('x', 'y'), minimum=0, maximum=1),
        'samples': Option(['p'], choices=('p', 'q')),
        'layer': Option(REQUIRED),
    }
    problems = block_problems({
        'n': -1,
        'mode': 'c',
        'probabilities': {
            'x': 2,
            'z': 0
        },
        'samples': ['r'],
        'nn': 1
    }, block, 'train.m')
    assert problems == [
        'train.m.nn: unknown option (did you mean n?). Valid options: layer, mode, n, probabilities, samples.',
        'train.m.n: -1 is below the minimum 0.',
        "train.m.mode: 'c' is not one of 'a', 'b'.",
        'train.m.probabilities.z: unknown option. Valid options: x, y.',
        'train.m.probabilities.x: 2 is above the maximum 1.',
        "train.m.samples: 'r' is not one of p, q.",
        'train.m.layer: missing; it has no default.',
    ]
    assert block_problems({'n': 1.5, 'layer': 'x'}, block, 'b') == ['b.n: 1.5 is a float, expected a int (default 1).']
    assert read_block({
        'layer': 'body',
        'n': 3
    }, block, 'b') == {
        'n': 3,
        'mode': 'a',
        'probabilities': {
            'x': 0.5
        },
        'samples': ['p'],
        'layer': 'body'
    }
    with pytest.raises(ValueError, match='b.layer: missing'):
        read_block({}, block, 'b')


# The README's option lists: "`train.<block>`: `name` (default[; or : a comment]), ..." up to a ';' or '. ' outside
# parentheses. (section, model_type, block): the declared blocks, and the loss blocks that hold a method's weight.
README_LISTS = [('AugKD', 'AugKDModel', 'augkd'), ('CSD', 'CSDModel', 'csd'), ('CSD', 'CSDModel', 'contrastive_opt'),
                ('MemSR', 'MemSRModel', 'memsr'), ('MemSR', 'MemSRModel', 'memsr_opt'),
                ('CrossKD', 'CrossKDModel', 'crosskd'), ('CrossKD', 'CrossKDModel', 'crosskd_opt')]
README_ITEM = re.compile(r'`(\w+)`\s+\(((?:[^()]|\([^()]*\))*)\)')


def readme_list(text: str, block: str) -> dict:
    """``{option: what its parentheses say}`` of the README's list of ``train.<block>``: from "`train.<block>`:" to
    the ';' or '. ' that ends it outside parentheses and code, or to the parenthesis that encloses it."""
    start = text.index(f'`train.{block}`:') + len(f'`train.{block}`:')
    depth, code, end = 0, False, start
    for end in range(start, len(text)):
        char = text[end]
        if char == '`':
            code = not code
        if code or char == '`':
            continue
        depth += {'(': 1, ')': -1}.get(char, 0)
        if depth < 0 or (depth == 0 and (char == ';' or text[end:end + 2] in ('. ', '.\n'))):
            break
    return dict(README_ITEM.findall(text[start:end]))


def readme_default(written: str):
    """The value an entry gives first: its code (``{hflip: 0.5}``) or its first word (``1; 0 = CSD-A``: 1), read as
    YAML (and ``1e-5``, a string to YAML, as a float)."""
    import yaml
    code = re.match(r'`([^`]*)`', written)
    value = yaml.safe_load(code.group(1) if code else re.match(r'[^;:,\s]+', written).group(0))
    return float(value) if isinstance(value, str) and re.fullmatch(r'[-+]?[\d.]+e[-+]?\d+', value) else value


def written_as(declared, written: str) -> bool:
    """Whether the README's ``written`` default is the declared one: a number to the digits written (0.784 for
    200 / 255), anything else equal."""
    value = readme_default(written)
    if isinstance(declared, bool) or not isinstance(declared, (int, float)) or isinstance(value, bool):
        return value == (list(declared) if isinstance(declared, tuple) else declared)
    mantissa = re.split('e', written.split()[0].rstrip(';:,'))[0]
    digits = len(re.sub(r'^[-+]?0*\.?0*', '', mantissa).replace('.', '')) or 1
    return isinstance(value, (int, float)) and float(f'{declared:.{digits}g}') == value


def declared_options(model_type: str, block: str) -> tuple:
    """``({option: Option}, complete)``: a declared block (every option must be listed), or for a loss block the
    defaults the model builds the loss with, its own over the loss's signature (only the weight must be listed)."""
    import inspect
    from basicsr.utils.registry import LOSS_REGISTRY, MODEL_REGISTRY

    from kdplugins.models.crosskd_model import CROSSKD_LOSS_DEFAULT
    from kdplugins.models.csd_model import CONTRASTIVE_DEFAULTS
    from kdplugins.models.memsr_model import MEMSR_LOSS_DEFAULTS
    declared = MODEL_REGISTRY.get(model_type).TRAIN_OPTIONS[block]
    if declared is not None:
        return declared, True
    model_defaults = {
        'contrastive_opt': CONTRASTIVE_DEFAULTS,
        'memsr_opt': MEMSR_LOSS_DEFAULTS,
        'crosskd_opt': CROSSKD_LOSS_DEFAULT
    }[block]
    parameters = inspect.signature(LOSS_REGISTRY.get(model_defaults['type'])).parameters
    defaults = {name: p.default for name, p in parameters.items() if p.default is not inspect.Parameter.empty}
    return {name: Option(value) for name, value in {**defaults, **model_defaults}.items()}, False


@pytest.mark.parametrize('section, model_type, block', README_LISTS)
def test_the_readme_lists_every_declared_option_of_a_method_with_its_default(section, model_type, block):
    """The README's section of each method lists every option of its declared blocks with the declared default
    (``required``; a deprecated one with the option that replaces it), and in its loss blocks the weight, each with the
    default the model builds the loss with; it lists no option that is not declared."""
    readme = (REPO / 'README.md').read_text()
    start = readme.index(f'### {section} (`model_type: {model_type}`)')
    listed = readme_list(re.split(r'\n##+ ', readme[start + 1:])[0], block)
    declared, complete = declared_options(model_type, block)
    assert set(listed) <= set(declared), (block, 'not declared:', set(listed) - set(declared))
    assert set(declared if complete else ['loss_weight']) <= set(listed), (block, 'not listed:',
                                                                           set(declared) - set(listed))
    for name, written in listed.items():
        option = declared[name]
        if option.replaced_by:
            assert written.startswith('deprecated') and f'`{option.replaced_by}`' in written, (block, name, written)
        elif option.default is REQUIRED:
            assert readme_default(written) == 'required', (block, name, written)
        else:
            assert written_as(option.default, written), (block, name, option.default, written)


def test_loss_inputs_are_declared_by_the_loss_and_checked():
    from kdplugins.losses.crd_loss import CRDLoss

    class AsksForTheMoon(torch.nn.Module):
        STEP_INPUTS = ('moon', )

    assert loss_inputs.requested(CRDLoss, 'STEP_INPUTS') == ('index', 'generator')
    assert loss_inputs.build_inputs(CRDLoss, {'num_train_images': 7}, {
        'student_channels': lambda: 3,
        'teacher_channels': lambda: 5,
        'num_train_images': lambda: 1 / 0
    }) == {
        'student_channels': 3,
        'teacher_channels': 5
    }
    with pytest.raises(ValueError, match=r"AsksForTheMoon.STEP_INPUTS asks for \['moon'\]"):
        loss_inputs.step_inputs(AsksForTheMoon, {})
