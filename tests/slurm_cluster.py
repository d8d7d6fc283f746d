"""A real one-host Slurm cluster for the tests: Debian's ``slurm-wlm`` (slurmctld, slurmd, munge), installed with
``apt-get`` when it is missing and this process may (root, or ``sudo -n``), configured in a temporary folder (one
node, this host, 2 CPUs; its own munge key and socket; free ports) and started by :func:`start_cluster`, which the
session fixture ``slurm_cluster`` of tests/conftest.py calls once and whose :meth:`SlurmCluster.stop` stops the
daemons it started. The clients (``srun``, ``sbatch``, ``sinfo``, ``scancel``) find it through ``SLURM_CONF``, which
:meth:`SlurmCluster.env` sets. The cluster is up (``sinfo`` shows the node idle) 1.1 to 1.3 s after the start on
this machine (2 busy CPUs; ``SlurmCluster.start_seconds``); Debian's install of slurm-wlm (43 packages, about 9 MiB to
download) took 8 s of ``dpkg`` here (``/var/log/apt/history.log``).
"""
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import List, Optional

DAEMONS = ('munged', 'slurmctld', 'slurmd')
CLIENTS = ('srun', 'sbatch', 'sinfo', 'scancel', 'scontrol', 'squeue')
START_TIMEOUT = 30  # seconds until the node must be idle


class SlurmUnavailable(Exception):
    """Slurm is not installed and cannot be (the reason is the message)."""


def program(name: str) -> Optional[str]:
    """The path of a Slurm or munge program (the daemons are in /usr/sbin, often not on a user's PATH)."""
    return shutil.which(name, path=os.environ.get('PATH', '') + ':/usr/sbin:/sbin')


def missing_programs() -> List[str]:
    return [p for p in DAEMONS + CLIENTS if program(p) is None]


def install_slurm() -> None:
    """``apt-get install -y slurm-wlm`` as root, or through ``sudo -n``; :class:`SlurmUnavailable` otherwise."""
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which('sudo') and subprocess.run(['sudo', '-n', 'true'], capture_output=True).returncode == 0:
        prefix = ['sudo', '-n']
    else:
        raise SlurmUnavailable('Slurm (slurmctld, slurmd, munged, srun) is not installed, and installing Debian\'s '
                               'slurm-wlm needs root or password-less sudo: run `apt-get install -y slurm-wlm`.')
    if shutil.which('apt-get') is None:
        raise SlurmUnavailable('Slurm is not installed and this system has no apt-get to install slurm-wlm with.')
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    install = prefix + ['apt-get', 'install', '-y', '-qq', 'slurm-wlm']
    result = subprocess.run(install, capture_output=True, text=True, env=env)
    if result.returncode != 0:  # a fresh image has no package lists yet
        subprocess.run(prefix + ['apt-get', 'update', '-qq'], capture_output=True, text=True, env=env)
        result = subprocess.run(install, capture_output=True, text=True, env=env)
    if result.returncode != 0 or missing_programs():
        raise SlurmUnavailable(f'apt-get install slurm-wlm failed (exit {result.returncode}): '
                               f'{(result.stdout + result.stderr)[-1000:]}')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('', 0))
        return sock.getsockname()[1]


def slurm_conf(folder: Path, host: str, ctld_port: int, d_port: int, cpus: int) -> str:
    """One node (``host``, ``cpus`` CPUs, also on a machine with fewer: ``config_overrides``) in one partition; the
    daemons run as this user; no accounting, no cgroups (a container has none to give): processes tracked by their
    parents, tasks not bound to CPUs."""
    user = 'root' if os.geteuid() == 0 else os.environ.get('USER') or subprocess.getoutput('id -un')
    return f"""ClusterName=kdplugins
SlurmctldHost={host}
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={folder}/munge/munge.sock
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/log/slurmctld.log
SlurmdLogFile={folder}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
ReturnToService=2
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmdParameters=config_overrides
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster:
    """The started daemons of one cluster (its configuration in ``folder``)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.conf = folder / 'slurm.conf'
        self.processes: List[subprocess.Popen] = []
        self.start_seconds: Optional[float] = None

    def env(self, **extra: str) -> dict:
        """This process's environment with ``SLURM_CONF`` naming this cluster (and ``extra``)."""
        return dict(os.environ, SLURM_CONF=str(self.conf), **extra)

    def run(self, *command: str, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
        """A client command (``sinfo``, ``squeue``, ...) against this cluster."""
        result = subprocess.run(list(command), capture_output=True, text=True, env=self.env(), **kwargs)
        if check:
            assert result.returncode == 0, f'{command}: {result.stdout}{result.stderr}'
        return result

    def wait_for_job(self, job: str, timeout: float) -> str:
        """The final state of batch job ``job`` (``COMPLETED``, ``FAILED``, ...) once it has left the queue, polled
        every 0.1 s (``sbatch --wait`` polls at growing intervals: up to 45 s late here); ``scancel`` after
        ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.run('squeue', '-h', '-j', job, '-o', '%T', check=False).stdout.strip():
            if time.monotonic() > deadline:
                self.run('scancel', job, check=False)
                raise AssertionError(f'job {job} still running after {timeout} s; cancelled')
            time.sleep(0.1)
        info = self.run('scontrol', 'show', 'job', job).stdout
        return info.split('JobState=')[1].split()[0]

    def start_daemon(self, *command: str) -> None:
        log = open(self.folder / 'log' / f'{Path(command[0]).name}.out', 'w')
        self.processes.append(
            subprocess.Popen([program(command[0]), *command[1:]],
                             stdout=log,
                             stderr=subprocess.STDOUT,
                             env=self.env(),
                             cwd=self.folder))

    def logs(self) -> str:
        return '\n'.join(f'--- {p.name}\n' + p.read_text()[-2000:] for p in sorted((self.folder / 'log').iterdir()))

    def wait_until_idle(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise SlurmUnavailable(f'{process.args[0]} exited with {process.returncode}:\n{self.logs()}')
            state = self.run('sinfo', '-h', '-o', '%T', check=False).stdout.strip()
            if state == 'idle':
                return
            time.sleep(0.1)
        raise SlurmUnavailable(f'the node was not idle after {START_TIMEOUT} s (sinfo: {state!r}):\n{self.logs()}')

    def stop(self) -> None:
        """Cancel what still runs, stop the daemons this object started (slurmd, slurmctld, munged) and wait."""
        if self.processes:
            self.run('scancel', '--user', str(os.geteuid()), check=False, timeout=10)
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes = []


def start_cluster(folder: Path, cpus: int = 2) -> SlurmCluster:
    """Install Slurm if needed (:func:`install_slurm`), write the configuration and munge key in ``folder``, start
    munged, slurmctld and slurmd in the foreground as children of this process, and wait until the node is idle.
    Raises :class:`SlurmUnavailable` with the reason (and the daemons' logs) when it cannot."""
    if missing_programs():
        install_slurm()
    began = time.monotonic()
    for sub in ('munge', 'state', 'spool', 'log'):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (folder / 'munge').chmod(0o711)  # munged: the socket's folder must be searchable by the clients
    key = folder / 'munge' / 'munge.key'
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    host = socket.gethostname()
    cluster = SlurmCluster(folder)
    cluster.conf.write_text(slurm_conf(folder, host, free_port(), free_port(), cpus))
    munge = folder / 'munge'
    try:
        cluster.start_daemon('munged', '--foreground', '--force', f'--socket={munge}/munge.sock', f'--key-file={key}',
                             f'--log-file={munge}/munged.log', f'--pid-file={munge}/munged.pid',
                             f'--seed-file={munge}/munged.seed')
        deadline = time.monotonic() + START_TIMEOUT
        while not (munge / 'munge.sock').exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cluster.start_daemon('slurmctld', '-D', '-i', '-f', str(cluster.conf))
        cluster.start_daemon('slurmd', '-D', '-f', str(cluster.conf), '-N', host)
        cluster.wait_until_idle()
    except BaseException:
        cluster.stop()
        raise
    cluster.start_seconds = time.monotonic() - began
    return cluster
