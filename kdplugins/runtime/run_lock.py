"""One training run per experiment folder: ``experiments/<name>`` is locked before basicsr creates or archives it.

Without it two runs with the same ``name`` corrupt each other: the second archives the live first one's folder with
basicsr's ``mkdir_and_rename``, the first then writes its later checkpoints into the second's folder, and both exit
with 0. Taken by kdplugins' pipeline (:func:`lock_experiment`) right after the options are checked, before it resumes,
creates or archives anything, and released when the run ends (:meth:`ExperimentLock.release`). *Every device*;
under ``torchrun`` only rank 0 takes the lock (the other ranks never create or rename the folder).

The lock is ``experiments/.<name>.lock``, beside the folder and not inside it (basicsr renames the folder when it
archives it), taken with the ``filelock`` package (a torch dependency): an exclusive ``flock`` for the life of the run,
which the kernel drops when the owner dies, however it dies (``SIGKILL`` included); on a file system without
``flock`` filelock's own fallback decides. The owner's pid, host, start time, command line and folder are written as
JSON beside it, ``experiments/.<name>.lock.json``, for the error message of a second run (filelock owns the lock
file's content). An owner file found when the lock is free was left by a run that died without releasing the lock:
it is taken over with a warning naming the dead run. Both files are removed when the process exits, normally or by
an exception.
"""
import atexit
import datetime
import json
import os
import shlex
import socket
import sys
from filelock import FileLock, Timeout
from typing import Optional

from kdplugins.utils.errors import ConfigurationError


class ExperimentLockedError(ConfigurationError, RuntimeError):
    """Another live training run holds the experiment folder; the message names it and the fixes."""


def lock_path_of(experiments_root: str) -> str:
    """``<parent>/.<name>.lock`` of the experiment folder ``<parent>/<name>``."""
    parent, name = os.path.split(os.path.normpath(experiments_root))
    return os.path.join(parent, f'.{name}.lock')


def _describe(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}, "
            f"command: {info.get('command', '?')}")


def _read_owner(path: str) -> dict:
    """The owner record at ``path``; {} when there is none or it is unreadable (a run killed while writing it)."""
    try:
        with open(path, encoding='utf-8') as f:
            info = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


class ExperimentLock:
    """The lock of one experiment folder, held from :meth:`acquire` to :meth:`release` (or the process's exit)."""

    def __init__(self, experiments_root: str) -> None:
        self.experiments_root = experiments_root
        self.path = lock_path_of(experiments_root)
        self.owner_path = f'{self.path}.json'
        self.file_lock: Optional[FileLock] = None
        self.owner_pid: Optional[int] = None

    def locked_message(self, info: dict) -> str:
        pid = info.get('pid', '<pid>')
        return (f'{self.experiments_root} is in use by another training run: {_describe(info)} '
                f'(lock file {self.path}). Starting this run would archive or overwrite that run\'s folder, and '
                f'--auto_resume does not bypass this check. Wait for that run to finish, stop it (kill {pid} on '
                f"host {info.get('host', '?')}), or give this run another name (option `name`, or "
                '--force_yml name=<other>). If that process is gone and its host cannot be reached, remove '
                f'{self.path}.')

    def acquire(self) -> None:
        """Take the lock or raise :class:`ExperimentLockedError`; warns on stderr when taking over a dead run's."""
        os.makedirs(os.path.dirname(self.path) or '.', exist_ok=True)
        file_lock = FileLock(self.path, timeout=0)
        try:
            file_lock.acquire()
        except Timeout:
            raise ExperimentLockedError(self.locked_message(_read_owner(self.owner_path))) from None
        previous = _read_owner(self.owner_path)
        if previous:
            print(
                f'WARNING: taking over the stale lock {self.path} of a training run that no longer runs '
                f'({_describe(previous)}): it was killed or crashed without releasing the lock. Its folder '
                f'{self.experiments_root} is used as it is (--auto_resume continues it, otherwise basicsr archives '
                'it).',
                file=sys.stderr,
                flush=True)
        self.file_lock, self.owner_pid = file_lock, os.getpid()
        self._write_owner()
        atexit.register(self.release)

    def _write_owner(self) -> None:
        info = {
            'pid': os.getpid(),
            'host': socket.gethostname(),
            'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
            'command': shlex.join(getattr(sys, 'orig_argv', sys.argv)),
            'cwd': os.getcwd(),
            'experiments_root': self.experiments_root,
        }
        with open(self.owner_path, 'w', encoding='utf-8') as f:
            json.dump(info, f, indent=1)
            f.flush()
            os.fsync(f.fileno())

    def release(self) -> None:
        """Remove the owner record and the lock file, then drop the lock (only in the process that took it;
        idempotent). The files go first, while the lock is held, so no other run can have taken it meanwhile."""
        if self.file_lock is None or os.getpid() != self.owner_pid:
            return
        for path in (self.owner_path, self.path):
            try:
                os.remove(path)
            except OSError:
                pass
        self.file_lock.release()
        self.file_lock = None


_LOCKS = {}


def lock_experiment(opt: dict) -> Optional[ExperimentLock]:
    """Lock ``opt['path']['experiments_root']`` of a training run on rank 0 (no-op on other ranks and in tests)."""
    root = opt.get('path', {}).get('experiments_root')
    if not opt.get('is_train') or opt.get('rank', 0) != 0 or not root:
        return None
    key = os.path.realpath(root)
    if key not in _LOCKS or _LOCKS[key].file_lock is None:  # a run before in this process released its lock
        lock = ExperimentLock(root)
        lock.acquire()
        _LOCKS[key] = lock
    return _LOCKS[key]
