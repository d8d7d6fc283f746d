"""One training run per experiment folder: ``experiments/<name>`` is locked before basicsr creates or archives it.

Without it two runs with the same ``name`` corrupt each other: the second archives the live first one's folder with
basicsr's ``mkdir_and_rename``, the first then writes its later checkpoints into the second's folder, and both exit
with 0. Taken by kdplugins' pipeline (:func:`lock_experiment`) right after the options are checked, before it resumes,
creates or archives anything, and released when the run ends (:meth:`ExperimentLock.release`). *Every device*;
under ``torchrun`` only rank 0 takes the lock (the other ranks never create or rename the folder).

The lock is ``experiments/.<name>.lock``, beside the folder and not inside it (basicsr renames the folder when it
archives it). It holds an exclusive ``flock`` for the life of the run and, as JSON, the owner's pid, host, start time,
command line and folder, for the error message of a second run. The kernel drops the ``flock`` when the owner dies,
however it dies (``SIGKILL`` included), so a lock file left behind by a dead run is told apart from a live one by the
``flock``, not by the pid (which may have been reused): it is taken over with a warning naming the dead run. On a
file system without ``flock`` the recorded pid decides: a dead process on this host is stale, a process on another
host is taken as alive. The lock is released (file removed) when the process exits, normally or by an exception.
"""
import atexit
import datetime
import errno
import json
import os
import shlex
import socket
import sys
from typing import Optional

from kdplugins.utils.errors import ConfigurationError

try:
    import fcntl
except ImportError:  # not POSIX: the pid recorded in the file decides
    fcntl = None


class ExperimentLockedError(ConfigurationError, RuntimeError):
    """Another live training run holds the experiment folder; the message names it and the fixes."""


def lock_path_of(experiments_root: str) -> str:
    """``<parent>/.<name>.lock`` of the experiment folder ``<parent>/<name>``."""
    parent, name = os.path.split(os.path.normpath(experiments_root))
    return os.path.join(parent, f'.{name}.lock')


def _process_start_ticks(pid: int) -> Optional[str]:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``), None when unknown. Tells a reused pid."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _describe(info: dict) -> str:
    return (f"pid {info.get('pid', '?')} on host {info.get('host', '?')}, started {info.get('started', '?')}, "
            f"command: {info.get('command', '?')}")


def _read_info(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = b''
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        raw += chunk
    try:
        info = json.loads(raw.decode('utf-8'))
    except (UnicodeDecodeError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def _recorded_process_alive(info: dict) -> bool:
    """Whether the process recorded in a lock file may still run (only used without ``flock``)."""
    if info.get('host') != socket.gethostname():
        return True  # cannot be checked from here
    try:
        pid = int(info['pid'])
        os.kill(pid, 0)
    except (KeyError, ValueError, TypeError, ProcessLookupError):
        return False
    except PermissionError:  # exists, owned by another user
        return True
    ticks = _process_start_ticks(pid)
    return ticks is None or info.get('start_ticks') in (None, ticks)


class ExperimentLock:
    """The lock of one experiment folder, held from :meth:`acquire` to :meth:`release` (or the process's exit)."""

    def __init__(self, experiments_root: str) -> None:
        self.experiments_root = experiments_root
        self.path = lock_path_of(experiments_root)
        self.fd: Optional[int] = None
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
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, 'O_CLOEXEC', 0), 0o644)
            try:
                previous = self._lock_or_raise(fd)
                if self._same_file(fd):
                    break
                # the owner removed the file between our open and our flock: lock the new one
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
        if previous:
            print(
                f'WARNING: taking over the stale lock {self.path} of a training run that no longer runs '
                f'({_describe(previous)}): it was killed or crashed without releasing the lock. Its folder '
                f'{self.experiments_root} is used as it is (--auto_resume continues it, otherwise basicsr archives '
                'it).',
                file=sys.stderr,
                flush=True)
        self.fd, self.owner_pid = fd, os.getpid()
        self._write_info()
        atexit.register(self.release)

    def _lock_or_raise(self, fd: int) -> dict:
        """Locks ``fd``; returns the info of a dead previous owner found in the file ({} if none)."""
        info = _read_info(fd)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise ExperimentLockedError(self.locked_message(_read_info(fd) or info)) from None
                if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
            else:
                return _read_info(fd)  # someone left it: its owner is dead (the flock died with it)
        if info and _recorded_process_alive(info):
            raise ExperimentLockedError(self.locked_message(info))
        return info

    def _same_file(self, fd: int) -> bool:
        try:
            return os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            return False

    def _write_info(self) -> None:
        info = {
            'pid': os.getpid(),
            'host': socket.gethostname(),
            'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
            'command': shlex.join(getattr(sys, 'orig_argv', sys.argv)),
            'cwd': os.getcwd(),
            'experiments_root': self.experiments_root,
            'start_ticks': _process_start_ticks(os.getpid()),
        }
        data = json.dumps(info, indent=1).encode('utf-8')
        os.ftruncate(self.fd, 0)
        os.lseek(self.fd, 0, os.SEEK_SET)
        os.write(self.fd, data)
        os.fsync(self.fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (only in the process that took it; idempotent)."""
        if self.fd is None or os.getpid() != self.owner_pid:
            return
        try:
            if self._same_file(self.fd):
                os.remove(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None


_LOCKS = {}


def lock_experiment(opt: dict) -> Optional[ExperimentLock]:
    """Lock ``opt['path']['experiments_root']`` of a training run on rank 0 (no-op on other ranks and in tests)."""
    root = opt.get('path', {}).get('experiments_root')
    if not opt.get('is_train') or opt.get('rank', 0) != 0 or not root:
        return None
    key = os.path.realpath(root)
    if key not in _LOCKS or _LOCKS[key].fd is None:  # a run before in this process released its lock
        lock = ExperimentLock(root)
        lock.acquire()
        _LOCKS[key] = lock
    return _LOCKS[key]
