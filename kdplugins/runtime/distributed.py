"""The process group of a distributed run, for both of basicsr's launchers (``--launcher pytorch``: ``torchrun``;
``--launcher slurm``: one ``srun`` task per process), on GPUs (NCCL) and on the CPU (gloo), with the option file's
``dist_params`` read by both.

basicsr 1.4.2 (``basicsr/utils/dist_util.py``) divides by ``torch.cuda.device_count()`` on both paths (no run
without CUDA), passes ``dist_params`` (``backend``, ``port``) to the Slurm path only and has no process-group timeout
(a long validation on rank 0 of a big job runs into NCCL's 10 minutes while the other ranks wait in the next
collective). :func:`init_dist` is its ``init_dist`` with these differences, and :func:`init_dist_of_command_line` is
what basicsr's ``parse_options`` calls (``kdplugins.runtime.compat`` patch 2): the ``dist_params`` of the option
file on the command line, after ``--force_yml``, for either launcher.

``dist_params`` (all optional; checked by :func:`kdplugins.runtime.option_schema.dist_params_problems`):

- ``backend``: ``nccl`` (default) or ``gloo``. Without a CUDA device ``nccl`` cannot run: gloo is used instead, and
  the log says so (:func:`description`, logged by the pipeline on every launcher).
- ``port``: the rendezvous port of ``--launcher slurm`` (``MASTER_PORT`` of the environment when not given, else
  29500, as basicsr). Under ``torchrun`` the port is torchrun's own (``--master_port`` / ``--rdzv_endpoint``).
- ``timeout_minutes``: how long a collective waits for the slowest rank before the run fails, in **minutes**
  (torch's default when not given: 10 minutes for NCCL, 30 for gloo).

``--launcher slurm`` (basicsr's ``_init_dist_slurm``): rank ``SLURM_PROCID``, world size ``SLURM_NTASKS``, the
address of the first host of ``SLURM_NODELIST`` (``scontrol show hostnames``); the local rank (CUDA device) is
``SLURM_LOCALID`` modulo the visible devices (basicsr: the global rank modulo the devices; the same where every node
has as many tasks as devices, and also right where a node runs fewer). Every device.
"""
import datetime
import os
import subprocess
import sys
from typing import List, Optional, Sequence

DEFAULT_PORT = 29500  # torch.distributed's and basicsr's
STARTED: dict = {}  # what init_dist started in this process (described by description())


def dist_params_of_command_line(argv: Sequence[str]) -> dict:
    """The ``dist_params`` of the option file named by ``-opt`` in ``argv``, with its ``--force_yml`` overrides."""
    import yaml
    from basicsr.utils.options import ordered_yaml

    from kdplugins.runtime.option_file import apply_force_yml, command_line
    path, force_yml = command_line(argv)
    if path is None:
        return {}
    with open(path) as f:
        opt = yaml.load(f, Loader=ordered_yaml()[0]) or {}
    apply_force_yml(opt, force_yml)  # its problems are check_option_file's
    return dict(opt.get('dist_params') or {})


def init_dist_of_command_line(launcher: str, **_passed) -> None:
    """What basicsr's ``parse_options`` calls to start the process group (compat patch 2): :func:`init_dist` with
    the ``dist_params`` of the option file on the command line, also for ``--launcher pytorch`` (basicsr passes them
    to ``slurm`` only, and without ``--force_yml``; what it passes is that same block, read here)."""
    init_dist(launcher, **dist_params_of_command_line(sys.argv[1:]))


def init_dist(launcher: str,
              backend: str = 'nccl',
              port: Optional[int] = None,
              timeout_minutes: Optional[float] = None) -> None:
    """Start the process group of ``launcher`` (``pytorch`` or ``slurm``), module docstring; raises
    :class:`~kdplugins.runtime.option_checks.OptionError` for bad ``dist_params`` before anything starts."""
    import torch
    import torch.distributed as dist
    import torch.multiprocessing as mp

    from kdplugins.runtime.option_checks import OptionError
    from kdplugins.runtime.option_schema import dist_params_problems
    given = {'backend': backend, 'port': port, 'timeout_minutes': timeout_minutes}
    problems = dist_params_problems({'dist_params': {k: v for k, v in given.items() if v is not None}})
    if len(problems) == 1:
        raise OptionError(problems[0])
    if problems:
        raise OptionError(f'{len(problems)} problems in dist_params:\n' + '\n'.join(f'  - {p}' for p in problems))
    if launcher not in ('pytorch', 'slurm'):
        raise OptionError(f'--launcher {launcher}: kdplugins starts a process group for pytorch (torchrun) and slurm '
                          '(srun); use one of them, or none.')
    if launcher == 'slurm':
        local_rank = slurm_environment(port)
    else:
        local_rank = int(os.environ.get('LOCAL_RANK', os.environ['RANK']))
    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method('spawn')  # as basicsr's init_dist
    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
    used = backend if cuda or backend != 'nccl' else 'gloo'
    kwargs = {} if timeout_minutes is None else {'timeout': datetime.timedelta(minutes=timeout_minutes)}
    dist.init_process_group(backend=used, **kwargs)
    STARTED.clear()
    STARTED.update(launcher=launcher, backend=used, asked=backend, timeout_minutes=timeout_minutes, port=port)


def slurm_environment(port: Optional[int]) -> int:
    """``MASTER_ADDR``, ``MASTER_PORT``, ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` of this ``srun`` task, from Slurm's
    variables (basicsr's ``_init_dist_slurm``); returns the local rank."""
    from kdplugins.runtime.option_checks import OptionError
    missing = [v for v in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST') if v not in os.environ]
    if missing:
        raise OptionError(
            f'--launcher slurm: {", ".join(missing)} not set; this process was not started by srun. '
            'Start one task per GPU with srun (docs/cluster.md), or use torchrun with --launcher pytorch.')
    try:
        hosts = subprocess.run(['scontrol', 'show', 'hostnames', os.environ['SLURM_NODELIST']],
                               capture_output=True,
                               text=True,
                               check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError) as error:
        raise OptionError(
            f'--launcher slurm: `scontrol show hostnames $SLURM_NODELIST` failed ({error}); the first '
            'host of the job is the rendezvous address. Run where Slurm\'s clients are installed.') from None
    if port is not None:
        os.environ['MASTER_PORT'] = str(port)
    os.environ.setdefault('MASTER_PORT', str(DEFAULT_PORT))
    os.environ['MASTER_ADDR'] = hosts[0]
    os.environ['WORLD_SIZE'] = os.environ['SLURM_NTASKS']
    os.environ['RANK'] = os.environ['SLURM_PROCID']
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')
    return int(os.environ['LOCAL_RANK'])


def description() -> List[str]:
    """Log lines saying how this process's group was started: launcher, backend used (and why, where it is not the
    one asked for), world size, rank, rendezvous, timeout. Empty without a process group of :func:`init_dist`."""
    import torch.distributed as dist
    if not STARTED or not dist.is_initialized():
        return []
    backend = STARTED['backend']
    why = f' ({STARTED["asked"]} asked for: no CUDA device)' if backend != STARTED['asked'] else ''
    timeout = (f'{STARTED["timeout_minutes"]:g} min (dist_params.timeout_minutes)' if STARTED['timeout_minutes']
               is not None else f'torch\'s default for {backend} ({10 if backend == "nccl" else 30} min)')
    lines = [
        f'Process group: launcher {STARTED["launcher"]}, backend {backend}{why}, world size {dist.get_world_size()}, '
        f'rank {dist.get_rank()}, rendezvous {os.environ.get("MASTER_ADDR")}:{os.environ.get("MASTER_PORT")}, '
        f'timeout {timeout}.'
    ]
    if STARTED['launcher'] == 'pytorch' and STARTED['port'] is not None:
        lines.append(f'dist_params.port {STARTED["port"]} is not used under torchrun: its --master_port / '
                     '--rdzv_endpoint sets the port.')
    return lines
