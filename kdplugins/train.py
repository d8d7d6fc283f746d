"""``python -m kdplugins.train -opt X.yml [--launcher pytorch] [--auto_resume] [--debug] [--force_yml k=v]
[--import MODULE]``: :func:`kdplugins.pipeline.train_pipeline` (read it for every step of a run), in a process that
keeps freed host memory for reuse (:mod:`kdplugins.runtime.host_memory`; ``KDPLUGINS_RELEASE_HOST_MEMORY=1`` to opt
out) and closes the process group once every rank is done.

The root folder (``experiments/``, ``tb_logger/``) is the current directory, which is also where ``--auto_resume``
looks for training states and where relative ``dataroot`` paths are resolved: always start and resume a run from the
same folder.
"""
import gc
import os

from kdplugins.pipeline import train_pipeline
from kdplugins.runtime.host_memory import keep_freed_host_memory
from kdplugins.utils.errors import exit_on_configuration_error


def main() -> None:
    keep_freed_host_memory()
    with exit_on_configuration_error('kd-train'):  # a configuration error: its message alone, exit code 2
        train_pipeline(os.getcwd())
    close_process_group()


def close_process_group() -> None:
    """Let every rank finish, then shut the process group down while the interpreter is fully alive.

    basicsr leaves the group open, and the model returned by the pipeline sits in reference cycles (hooks, bound
    methods), so its DistributedDataParallel wrapper - which holds the group - used to be freed only during
    interpreter finalization; gloo's worker threads torn down then aborted a rank now and then ("terminate called
    without an active exception", SIGABRT). Collecting the cycles first frees the wrapper here, and
    ``destroy_process_group`` then releases the last reference to the group."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        gc.collect()
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
