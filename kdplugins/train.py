"""``python -m kdplugins.train -opt X.yml [--launcher pytorch] [--auto_resume] [--debug] [--force_yml k=v]``.

A thin wrapper over :func:`basicsr.train.train_pipeline` with every kdplugins component registered. The root
folder (``experiments/``, ``tb_logger/``) is the current directory, which is also where ``--auto_resume`` looks for
training states and where relative ``dataroot`` paths are resolved: always start and resume a run from the same
folder. On top of ``import kdplugins`` (shims, registration) it installs exact resume
(:mod:`kdplugins.runtime.exact_resume`), the option checks (:mod:`kdplugins.runtime.option_checks`), the experiment
folder lock (:mod:`kdplugins.runtime.run_lock`), checkpoints written whole or failing loudly and an ``--auto_resume``
that skips a broken latest state (:mod:`kdplugins.runtime.safe_checkpoints`), and keeps freed host memory for reuse
(:mod:`kdplugins.runtime.host_memory`; ``KDPLUGINS_RELEASE_HOST_MEMORY=1`` to opt out).
"""
import gc
import os

import kdplugins  # noqa: F401  (shims and registration, also in spawned DataLoader workers)
from kdplugins.runtime import install_exact_resume
from kdplugins.runtime.custom_imports import import_from_command_line
from kdplugins.runtime.host_memory import keep_freed_host_memory
from kdplugins.runtime.option_checks import install_option_checks
from kdplugins.runtime.run_lock import install_experiment_lock
from kdplugins.runtime.safe_checkpoints import install_safe_checkpoints


def main() -> None:
    import basicsr.train
    import_from_command_line()
    install_safe_checkpoints()  # before exact resume, which wraps the resume lookup installed before it
    install_exact_resume()
    install_option_checks()
    install_experiment_lock()  # after the option checks: a run with bad options stops before taking the lock
    keep_freed_host_memory()
    basicsr.train.train_pipeline(os.getcwd())
    close_process_group()


def close_process_group() -> None:
    """Let every rank finish, then shut the process group down while the interpreter is fully alive.

    basicsr leaves the group open, and the model returned by ``train_pipeline`` sits in reference cycles (hooks,
    bound methods), so its DistributedDataParallel wrapper - which holds the group - used to be freed only during
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
