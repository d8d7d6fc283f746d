"""Which training state a run resumes from, and which network files come with it. *Every device*.

One lookup, :func:`load_resume_state`, used by kdplugins' pipeline and, through :mod:`kdplugins.runtime.compat`, by
basicsr's own ``train_pipeline`` in a host project:

- ``--auto_resume``: the training states of ``experiments/<name>/training_states`` newest first; a state that does not
  load, or whose network files (``net_<x>_<iter>.pth`` of the networks the model saves) are missing or do not load,
  is skipped with a warning naming the file and why. No state at all: a fresh start (None). States but none good:
  :class:`ResumeStateError`, before anything is created or archived.
- ``path.resume_state``: that state, which must load and be a training state.
- Either way the state is mapped to the current CUDA device with CUDA and to the CPU without (basicsr 1.4.2 maps it
  to CUDA only), and :func:`check_resume` points the saved networks at their ``net_<x>_<iter>.pth``.

Which networks a model saves is the model's to say: a model class may define ``saved_networks(opt)`` (kdplugins'
models save ``network_g``; their frozen teachers are never saved, so every teacher keeps its own checkpoint, key and
prefix across a resume). Without it, as in basicsr, every ``network_<x>`` is saved.
"""
import contextlib
import copy
import io
import os
import re
import sys
import torch
from basicsr.utils import check_resume as basicsr_check_resume
from basicsr.utils.registry import MODEL_REGISTRY
from typing import List, Optional, Tuple

from kdplugins.utils.errors import ConfigurationError

STATE_NAME = re.compile(r'^(\d+)\.state$')
# per-network keys of ``path`` that describe where a network's weights come from (``<key>_<label>``)
NETWORK_PATH_KEYS = ('pretrain_network', 'param_key', 'strict_load', 'strip_prefix')


class ResumeStateError(ConfigurationError, RuntimeError):
    """No training state can be resumed; the message names each state and why."""


def saved_networks(opt: dict) -> List[str]:
    """The ``network_<x>`` keys whose weights the run's model saves at each checkpoint."""
    networks = [key for key in opt if key.startswith('network_')]
    model_type = opt.get('model_type')
    declared = getattr(MODEL_REGISTRY.get(model_type), 'saved_networks', None) if model_type in MODEL_REGISTRY else None
    return [key for key in declared(opt) if key in networks] if declared else networks


def check_resume(opt: dict, resume_iter: int) -> None:
    """basicsr's ``check_resume`` for the networks the model saves (:func:`saved_networks`): their
    ``path.pretrain_network_<x>`` become ``net_<x>_<resume_iter>.pth``; the path options of the networks it does not
    save (frozen teachers) are left exactly as given."""
    path = opt['path']
    unsaved = [key for key in opt if key.startswith('network_') and key not in saved_networks(opt)]
    labels = [key[len('network_'):] for key in unsaved]
    kept = {
        f'{key}_{label}': path[f'{key}_{label}']
        for label in labels
        for key in NETWORK_PATH_KEYS if f'{key}_{label}' in path
    }
    ignored = path.get('ignore_resume_networks')
    path['ignore_resume_networks'] = list(ignored or []) + unsaved
    try:
        basicsr_check_resume(opt, resume_iter)
    finally:
        if ignored is None:
            del path['ignore_resume_networks']
        else:
            path['ignore_resume_networks'] = ignored
        path.update(kept)


def map_location():
    """As basicsr's ``load_resume_state`` with CUDA (the current device); the CPU without."""
    if torch.cuda.is_available():
        device_id = torch.cuda.current_device()
        return lambda storage, loc: storage.cuda(device_id)
    return 'cpu'


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def resumed_network_files(opt: dict, resume_iter: int, state_path: str) -> List[str]:
    """The ``net_<x>_<iter>.pth`` files that resuming from ``state_path`` loads (:func:`check_resume`)."""
    trial = copy.deepcopy(opt)
    trial['path']['resume_state'] = state_path
    with contextlib.redirect_stdout(io.StringIO()):  # basicsr's check_resume prints what it sets
        check_resume(trial, resume_iter)
    ignored = opt['path'].get('ignore_resume_networks') or []
    return [trial['path'][f'pretrain_{key}'] for key in saved_networks(opt) if key not in ignored]


def check_state(opt: dict, state_path: str, resume_iter: int) -> Tuple[Optional[dict], str]:
    """(the loaded state, '') when ``state_path`` and its networks load; (None, why not) otherwise."""
    try:
        networks = resumed_network_files(opt, resume_iter, state_path)
    except Exception as error:  # noqa: B902
        return None, f'its networks cannot be listed ({_short(error)})'
    missing = [path for path in networks if not os.path.isfile(path)]
    if missing:
        return None, f"its network file {', '.join(missing)} is missing"
    try:
        state = torch.load(state_path, map_location=map_location(), weights_only=False)
    except Exception as error:  # noqa: B902
        return None, f'it does not load ({_short(error)}; truncated or corrupt)'
    if not isinstance(state, dict) or not {'epoch', 'iter', 'optimizers', 'schedulers'} <= set(state):
        return None, 'it is not a training state (no epoch, iter, optimizers and schedulers)'
    if int(state['iter']) != resume_iter:
        return None, f"it holds iteration {state['iter']}, not {resume_iter} as its name says"
    for path in networks:
        try:
            torch.load(path, map_location='cpu', weights_only=True)
        except Exception as error:  # noqa: B902
            return None, f'its network file {path} does not load ({_short(error)}; truncated or corrupt)'
    return state, ''


def _warn(opt: dict, message: str, warnings: Optional[List[str]]) -> None:
    if opt.get('rank', 0) == 0:
        print(f'WARNING: {message}', file=sys.stderr, flush=True)
        if warnings is not None:
            warnings.append(message)


def load_newest_good_state(opt: dict, warnings: Optional[List[str]] = None) -> Optional[dict]:
    """``--auto_resume``'s lookup (see the module docstring); sets ``path.resume_state`` and the resumed network
    paths. None when there is no state at all. Warnings also go into ``warnings`` (for the run's log file)."""
    states_dir = os.path.join('experiments', opt['name'], 'training_states')  # where basicsr looks (cwd)
    names = os.listdir(states_dir) if os.path.isdir(states_dir) else []
    candidates = sorted(((int(m.group(1)), m.group(0)) for m in map(STATE_NAME.match, names) if m), reverse=True)
    skipped = []
    for resume_iter, name in candidates:
        state_path = os.path.join(states_dir, name)
        state, why = check_state(opt, state_path, resume_iter)
        if state is None:
            skipped.append(f'{state_path}: {why}')
            _warn(opt, f'--auto_resume skips {state_path}: {why}. Trying an older one.', warnings)
            continue
        if skipped:
            _warn(
                opt, f'--auto_resume resumes from {state_path} (iteration {resume_iter}), the newest training '
                f'state that loads; {len(skipped)} newer one(s) skipped and left in place.', warnings)
        opt['path']['resume_state'] = state_path
        check_resume(opt, resume_iter)
        return state
    if not candidates:
        _warn(
            opt, f'--auto_resume found no training state in {os.path.abspath(states_dir)}: this run starts from '
            'iteration 0. A run resumes from experiments/<name> under the folder it is started from: to continue a '
            'run made elsewhere, start from that folder.', warnings)
    if skipped:
        raise ResumeStateError(
            f"--auto_resume found {len(skipped)} training state(s) in {states_dir}, but none can be resumed: " +
            '; '.join(skipped) + '. Nothing was started, created or archived. Restore a good state and its '
            'net_*_<iter>.pth files (from a backup or another copy of the run), or set path.resume_state to a good '
            f"state; to start over instead, move {os.path.join('experiments', opt['name'])} away (or run without "
            '--auto_resume, which archives it).')
    return None


def load_resume_state(opt: dict, warnings: Optional[List[str]] = None) -> Optional[dict]:
    """The training state the run resumes from (see the module docstring), or None for a fresh start."""
    if opt.get('auto_resume'):
        return load_newest_good_state(opt, warnings)
    state_path = opt['path'].get('resume_state')
    if not state_path:
        return None
    check_same_experiment(opt, state_path)
    match = STATE_NAME.match(os.path.basename(state_path))
    state, why = check_state(opt, state_path, int(match.group(1)) if match else -1)
    if state is None and match:
        raise ResumeStateError(f'path.resume_state {state_path} cannot be resumed: {why}. Set path.resume_state to '
                               'an older state of the run, or use --auto_resume, which takes the newest one that '
                               'loads.')
    if state is None:
        raise ResumeStateError(f'path.resume_state {state_path} is not a training state of basicsr (<iter>.state in '
                               'experiments/<name>/training_states). Point it at one.')
    check_resume(opt, state['iter'])
    return state


def check_same_experiment(opt: dict, state_path: str) -> None:
    """``path.resume_state`` must be a state of this run's own experiment (``experiments/<name>/training_states``):
    resuming another experiment's state trains a mixture of the two and writes over this experiment's later
    checkpoints."""
    own = os.path.realpath(opt['path']['training_states'])
    folder = os.path.realpath(os.path.dirname(state_path) or '.')
    if not os.path.isfile(state_path):
        raise ResumeStateError(f'path.resume_state {state_path}: no such file. Point it at a state in {own}, or use '
                               '--auto_resume.')
    if folder != own:
        raise ResumeStateError(
            f"path.resume_state {state_path} is not a state of this experiment ({opt['name']}: its states are in "
            f'{own}). Resuming it here would continue another run under this name and write over this '
            "experiment's checkpoints. To continue that run, start it with its own name; to fine-tune from its "
            'weights in this experiment, remove path.resume_state and set path.pretrain_network_g to its '
            'models/net_g_<iter>.pth.')
