"""Checkpoints that are written whole or stop the run, and an ``--auto_resume`` that skips a broken latest state.

Installed by ``python -m kdplugins.train`` (:func:`install_safe_checkpoints`); a host project calling basicsr's
``train_pipeline`` is unaffected unless it calls it too. Every part applies on *every device*:

1. ``BaseModel.save_network`` and ``BaseModel.save_training_state`` (basicsr's ``SRModel`` and every model built on
   it, kdplugins' included) write to a temporary file in the target's folder, flush it to disk and ``os.replace`` it
   onto ``net_<x>_<iter>.pth`` / ``<iter>.state``: a reader sees the old file or the whole new one, never a part.
   basicsr retried a failed write 3 times and then logged "Still cannot save ... Just ignore it.": the run ended with
   exit 0, no weights, and a training state pointing at a missing ``net_g_<iter>.pth``. A write that fails now
   raises :class:`CheckpointWriteError`, which names the file, the cause and the last good checkpoint (kept). Errors
   that may pass (an I/O hiccup on a network file system) are retried twice, 1 s apart, as basicsr did; a full disk,
   a missing folder or a refused permission are not.
2. The model built by ``basicsr.train.build_model`` gets the same error for a ``save_training_state`` of its own
   class (kdplugins' models write theirs with :func:`save_checkpoint_file` already, on every path).
3. ``SRModel.save`` writes the networks of iteration N before ``N.state``, and each write is complete before the next
   starts, so a crash at any moment leaves the pair of the last complete ``N.state`` resumable.
4. ``basicsr.train.load_resume_state`` with ``--auto_resume`` tries the training states newest first and skips, with
   a warning naming the file and why, a state that does not load or whose networks (the ``net_<x>_<iter>.pth``
   files that basicsr's ``check_resume`` points the networks at; never the teacher) are missing or do not load. It
   resumes from the newest good one, mapped to the current CUDA device with CUDA and to the CPU without, as basicsr
   and kdplugins' shim do. No state at all: a fresh start. States but none good: :class:`ResumeStateError`, before
   anything is created or archived. Without ``--auto_resume`` (``path.resume_state`` or nothing) the lookup installed
   before runs unchanged. Install before :func:`kdplugins.runtime.install_exact_resume` (which records the resumed
   position of whatever lookup it wraps); installed after it, the lookup is put under exact resume's wrapper.
"""
import contextlib
import copy
import errno
import io
import os
import re
import sys
import time
import torch
from basicsr.utils import get_root_logger
from basicsr.utils.dist_util import master_only
from typing import Any, Callable, List, Optional, Tuple

STATE_NAME = re.compile(r'^(\d+)\.state$')
# a retry cannot help: the disk is full, the folder is gone or not a folder, writing is not allowed
PERMANENT_ERRNOS = {
    errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ENOENT, errno.EISDIR,
    errno.ENAMETOOLONG, errno.EFBIG
}
WRITE_ATTEMPTS = 3
_BASICSR = {}
_deferred_warnings: List[str] = []


class CheckpointWriteError(RuntimeError):
    """A network file or training state could not be written; the message names the file, the cause and the last
    good checkpoint, which is kept."""


class ResumeStateError(RuntimeError):
    """``--auto_resume`` found training states, but none that can be resumed; the message names each and why."""


# ----------------------------------------------------------------------------------------------------------------
# writing
def _cause(error: BaseException) -> str:
    reason = {
        errno.ENOSPC: 'the disk is full; free space',
        errno.EDQUOT: 'the disk quota is exhausted; free space',
        errno.EACCES: 'writing there is not permitted; fix the permissions',
        errno.EPERM: 'writing there is not permitted; fix the permissions',
        errno.EROFS: 'the file system is read-only; remount it writable or move the experiment',
        errno.ENOTDIR: 'its folder is not a folder (replaced while the run was going?); restore it',
        errno.ENOENT: 'its folder does not exist (moved or deleted while the run was going?); restore it',
        errno.EISDIR: 'a folder stands where the file goes; move it away',
    }.get(getattr(error, 'errno', None))
    text = f'{type(error).__name__}: {error}'
    return f'{text} ({reason})' if reason else text


def last_good_checkpoint(opt: dict, excluding: Any = None) -> str:
    """The newest ``<iter>.state`` of the run (other than ``excluding``) and its network files, in words."""
    states_dir = opt['path'].get('training_states', '')
    try:
        iters = [int(m.group(1)) for m in map(STATE_NAME.match, os.listdir(states_dir)) if m]
    except OSError:
        iters = []
    iters = [i for i in iters if str(i) != str(excluding)]
    if not iters:
        return 'none (no training state had been written yet)'
    last = max(iters)
    return (f"iteration {last}: {os.path.join(states_dir, f'{last}.state')} with the networks "
            f"{os.path.join(opt['path'].get('models', ''), f'net_*_{last}.pth')}; continue from it with --auto_resume")


def write_error(path: str, error: BaseException, opt: dict, current_iter: Any) -> CheckpointWriteError:
    return CheckpointWriteError(
        f'Cannot write the checkpoint file {path}: {_cause(error)}. The run stops here instead of training on '
        f'without checkpoints. The last good checkpoint is kept: {last_good_checkpoint(opt, current_iter)}.')


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` through a temporary file in the same folder, flushed to disk, then ``os.replace``d
    onto ``path``. Raises the write's own error; the temporary file is removed and ``path`` left as it was."""
    folder, name = os.path.split(path)
    temporary = os.path.join(folder, f'.{name}.tmp-{os.getpid()}')
    try:
        with open(temporary, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise
    _fsync_folder(folder or '.')


def save_checkpoint_file(obj: Any, path: str, opt: dict, current_iter: Any) -> None:
    """:func:`write_atomically`, retrying errors that may pass; any other failure raises
    :class:`CheckpointWriteError`."""
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            write_atomically(obj, path)
            return
        except Exception as error:  # noqa: B902  (torch's writer raises RuntimeError as well as OSError)
            may_pass = isinstance(error, OSError) and error.errno not in PERMANENT_ERRNOS
            if not may_pass or attempt == WRITE_ATTEMPTS:
                raise write_error(path, error, opt, current_iter) from error
            get_root_logger().warning(f'Cannot write {path} ({_cause(error)}); retrying in 1 s '
                                      f'({WRITE_ATTEMPTS - attempt} more attempts).')
            time.sleep(1)


@master_only
def save_network_atomically(self, net, net_label: str, current_iter, param_key='params') -> None:
    """basicsr's ``BaseModel.save_network`` (same file, same content) written by :func:`save_checkpoint_file`."""
    label_iter = 'latest' if current_iter == -1 else current_iter
    save_path = os.path.join(self.opt['path']['models'], f'{net_label}_{label_iter}.pth')
    nets = net if isinstance(net, list) else [net]
    param_keys = param_key if isinstance(param_key, list) else [param_key]
    assert len(nets) == len(param_keys), 'The lengths of net and param_key should be the same.'
    save_dict = {}
    for net_, param_key_ in zip(nets, param_keys):
        state_dict = self.get_bare_model(net_).state_dict()
        for key, param in list(state_dict.items()):
            if key.startswith('module.'):  # as basicsr: drop the DDP prefix
                del state_dict[key]
                key = key[7:]
            state_dict[key] = param.cpu()
        save_dict[param_key_] = state_dict
    save_checkpoint_file(save_dict, save_path, self.opt, label_iter)


def write_training_state(model, epoch: int, current_iter: int, **extra: Any) -> None:
    """basicsr's training state of ``model`` (epoch, iter, optimizers, schedulers) plus ``extra``, as
    ``<training_states>/<iter>.state`` through :func:`save_checkpoint_file`."""
    state = {
        'epoch': epoch,
        'iter': current_iter,
        'optimizers': [o.state_dict() for o in model.optimizers],
        'schedulers': [s.state_dict() for s in model.schedulers],
        **extra
    }
    path = os.path.join(model.opt['path']['training_states'], f'{current_iter}.state')
    save_checkpoint_file(state, path, model.opt, current_iter)


@master_only
def save_training_state_atomically(self, epoch: int, current_iter: int) -> None:
    """basicsr's ``BaseModel.save_training_state`` (same file, same content) written by
    :func:`save_checkpoint_file`."""
    if current_iter == -1:
        return
    write_training_state(self, epoch, current_iter)


def _checked_save_training_state(model) -> Callable:
    """The model's own ``save_training_state`` (bound), with a failure turned into :class:`CheckpointWriteError`."""
    save = model.save_training_state

    def save_training_state(epoch: int, current_iter: int):
        try:
            return save(epoch, current_iter)
        except CheckpointWriteError:
            raise
        except Exception as error:  # noqa: B902
            path = os.path.join(model.opt['path']['training_states'], f'{current_iter}.state')
            raise write_error(path, error, model.opt, current_iter) from error

    return save_training_state


def _build_model_with_checked_saves(opt: dict):
    model = _BASICSR['build_model'](opt)
    if type(model).save_training_state is not save_training_state_atomically:
        model.save_training_state = _checked_save_training_state(model)
    logger = get_root_logger()
    while _deferred_warnings:  # the logger exists now: the resume warnings go into the run's log file too
        logger.warning(_deferred_warnings.pop(0))
    return model


# ----------------------------------------------------------------------------------------------------------------
# resuming
def _map_location():
    """As basicsr's ``load_resume_state`` with CUDA (the current device); the CPU without."""
    if torch.cuda.is_available():
        device_id = torch.cuda.current_device()
        return lambda storage, loc: storage.cuda(device_id)
    return 'cpu'


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def resumed_network_files(opt: dict, resume_iter: int, state_path: str) -> List[str]:
    """The ``net_<x>_<iter>.pth`` files that resuming from ``state_path`` loads: those that basicsr's
    ``check_resume`` (as installed, so kdplugins' teacher rule included) points ``path.pretrain_network_<x>`` at."""
    import basicsr.train
    trial = copy.deepcopy(opt)
    trial['path']['resume_state'] = state_path
    with contextlib.redirect_stdout(io.StringIO()):  # check_resume prints what it sets
        basicsr.train.check_resume(trial, resume_iter)
    models = os.path.normpath(opt['path']['models'])
    files = []
    for key, value in trial['path'].items():
        if key.startswith('pretrain_network_') and isinstance(value, str) and os.path.normpath(
                os.path.dirname(value)) == models and value.endswith(f'_{resume_iter}.pth'):
            files.append(value)
    return files


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
        state = torch.load(state_path, map_location=_map_location(), weights_only=False)
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


def _warn(opt: dict, message: str) -> None:
    if opt.get('rank', 0) == 0:
        print(f'WARNING: {message}', file=sys.stderr, flush=True)
        _deferred_warnings.append(message)


def load_newest_good_state(opt: dict):
    """``--auto_resume``'s lookup: the newest training state that loads with its networks (see the module's 4.);
    sets ``path.resume_state`` and the resumed network paths as basicsr does. None when there is no state at all."""
    import basicsr.train
    states_dir = os.path.join('experiments', opt['name'], 'training_states')  # where basicsr looks (cwd)
    names = os.listdir(states_dir) if os.path.isdir(states_dir) else []
    candidates = sorted(((int(m.group(1)), m.group(0)) for m in map(STATE_NAME.match, names) if m), reverse=True)
    skipped = []
    for resume_iter, name in candidates:
        state_path = os.path.join(states_dir, name)
        state, why = check_state(opt, state_path, resume_iter)
        if state is None:
            skipped.append(f'{state_path}: {why}')
            _warn(opt, f'--auto_resume skips {state_path}: {why}. Trying an older one.')
            continue
        if skipped:
            _warn(
                opt, f'--auto_resume resumes from {state_path} (iteration {resume_iter}), the newest training '
                f'state that loads; {len(skipped)} newer one(s) skipped and left in place.')
        opt['path']['resume_state'] = state_path
        basicsr.train.check_resume(opt, resume_iter)
        return state
    if skipped:
        raise ResumeStateError(
            f"--auto_resume found {len(skipped)} training state(s) in {states_dir}, but none can be resumed: " +
            '; '.join(skipped) + '. Nothing was started, created or archived. Restore a good state and its '
            'net_*_<iter>.pth files (from a backup or another copy of the run), or set path.resume_state to a good '
            f"state; to start over instead, move {os.path.join('experiments', opt['name'])} away (or run without "
            '--auto_resume, which archives it).')
    return None


def _load_resume_state_skipping_bad(opt: dict):
    if not opt.get('auto_resume'):
        return _BASICSR['load_resume_state'](opt)
    return load_newest_good_state(opt)


def install_safe_checkpoints() -> None:
    """Install 1.-4. of the module docstring (idempotent; entry point only). Call after ``import kdplugins``."""
    if _BASICSR:
        return
    import basicsr.train
    from basicsr.models.base_model import BaseModel

    from kdplugins.runtime import exact_resume
    _BASICSR.update(
        save_network=BaseModel.save_network,
        save_training_state=BaseModel.save_training_state,
        build_model=basicsr.train.build_model)
    BaseModel.save_network = save_network_atomically
    BaseModel.save_training_state = save_training_state_atomically
    basicsr.train.build_model = _build_model_with_checked_saves
    if exact_resume.exact_resume_installed():  # keep exact resume's wrapper outermost
        _BASICSR['load_resume_state'] = exact_resume._BASICSR['load_resume_state']
        exact_resume._BASICSR['load_resume_state'] = _load_resume_state_skipping_bad
    else:
        _BASICSR['load_resume_state'] = basicsr.train.load_resume_state
        basicsr.train.load_resume_state = _load_resume_state_skipping_bad
