"""The run layer's pieces, each a plain function or class that :mod:`kdplugins.pipeline` calls where it runs
(nothing here replaces a name of basicsr but :mod:`.compat`, installed by ``import kdplugins``).

==========================  ==========================================================================================
module                      what
==========================  ==========================================================================================
:mod:`.compat`              the 6 patches without which basicsr 1.4.2 does not import, run without CUDA, share an
                            LMDB, or resume a model with frozen teachers (each says on which path it applies)
:mod:`.distributed`         the process group of ``--launcher pytorch`` / ``slurm`` (GPU or CPU), ``dist_params``
:mod:`.custom_imports`      ``custom_imports`` / ``--import``: a project's own modules imported before the checks
:mod:`.option_checks`       every option checked before anything is made (:mod:`.option_schema`), in one message
:mod:`.run_lock`            one live run per experiment name
:mod:`.resume`              the one lookup of the state to resume from (``--auto_resume`` skips a broken one)
:mod:`.exact_resume`        bitwise-exact resume with data workers (sampler, per-sample augmentation seeds)
:mod:`.checkpoints`         the model of a run writes its checkpoints whole or stops the run
:mod:`.host_memory`         freed host memory kept for reuse (``python -m kdplugins.train``)
==========================  ==========================================================================================
"""


def install_exact_resume() -> None:
    """Removed: exact resume is part of :func:`kdplugins.pipeline.train_pipeline`, which replaces no name of basicsr."""
    raise RuntimeError('kdplugins.runtime.install_exact_resume() is gone: call kdplugins.pipeline.train_pipeline(root) '
                       'instead of basicsr.train.train_pipeline(root); it resumes exactly, honours custom_imports and '
                       'checks the options (docs/training.md).')
