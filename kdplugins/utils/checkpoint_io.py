"""Checkpoint files written whole or not at all, and a failed write that stops the run naming the file and the fix.

Every network file and training state of a kdplugins run goes through :func:`save_checkpoint_file`: a temporary file
in the target's folder, flushed to disk and ``os.replace``d onto ``net_<x>_<iter>.pth`` / ``<iter>.state``, so that a
reader sees the old file or the whole new one, never a part. basicsr 1.4.2 retried a failed write 3 times and then
logged "Still cannot save ... Just ignore it.": the run ended with exit 0, no weights, and a training state pointing at
a missing ``net_g_<iter>.pth``. Here a write that fails raises :class:`CheckpointWriteError`, which names the file, the
cause and the last good checkpoint (kept). Errors that may pass (an I/O hiccup on a network file system) are retried
twice, 1 s apart, as basicsr did; a full disk, a missing folder or a refused permission are not. ``SRModel.save``
writes the networks of iteration N before ``N.state``, each write complete before the next starts, so a crash at any
moment leaves the pair of the last complete ``N.state`` resumable. *Every device.*

kdplugins' models write through it themselves (:class:`kdplugins.models.distill_model.DistillModel`); the pipeline
makes any other model do the same (:func:`kdplugins.runtime.checkpoints.write_checkpoints_whole`).
"""
import contextlib
import errno
import os
import re
import time
import torch
from basicsr.utils import get_root_logger
from typing import Any

STATE_NAME = re.compile(r'^(\d+)\.state$')

# a retry cannot help: the disk is full, the folder is gone or not a folder, writing is not allowed
PERMANENT_ERRNOS = {
    errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.ENOENT, errno.EISDIR,
    errno.ENAMETOOLONG, errno.EFBIG
}
WRITE_ATTEMPTS = 3


class CheckpointWriteError(RuntimeError):
    """A network file or training state could not be written; the message names the file, the cause and the last
    good checkpoint, which is kept."""


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


def save_network_file(model, net, net_label: str, current_iter, param_key='params') -> None:
    """basicsr's ``BaseModel.save_network`` of ``model`` (same file, same content: the bare networks' state_dicts on
    the CPU under their param keys, without DDP's ``module.`` prefix) written by :func:`save_checkpoint_file`. Call it
    on rank 0 only, as basicsr's ``master_only`` does."""
    label_iter = 'latest' if current_iter == -1 else current_iter
    save_path = os.path.join(model.opt['path']['models'], f'{net_label}_{label_iter}.pth')
    nets = net if isinstance(net, list) else [net]
    param_keys = param_key if isinstance(param_key, list) else [param_key]
    assert len(nets) == len(param_keys), 'The lengths of net and param_key should be the same.'
    save_dict = {}
    for net_, param_key_ in zip(nets, param_keys):
        state_dict = model.get_bare_model(net_).state_dict()
        for key, param in list(state_dict.items()):
            if key.startswith('module.'):  # as basicsr: drop the DDP prefix
                del state_dict[key]
                key = key[7:]
            state_dict[key] = param.cpu()
        save_dict[param_key_] = state_dict
    save_checkpoint_file(save_dict, save_path, model.opt, label_iter)


def write_training_state(model, epoch: int, current_iter: int, **extra: Any) -> None:
    """basicsr's training state of ``model`` (epoch, iter, optimizers, schedulers) plus ``extra``, as
    ``<training_states>/<iter>.state`` through :func:`save_checkpoint_file`. Call it on rank 0 only."""
    state = {
        'epoch': epoch,
        'iter': current_iter,
        'optimizers': [o.state_dict() for o in model.optimizers],
        'schedulers': [s.state_dict() for s in model.schedulers],
        **extra
    }
    path = os.path.join(model.opt['path']['training_states'], f'{current_iter}.state')
    save_checkpoint_file(state, path, model.opt, current_iter)
