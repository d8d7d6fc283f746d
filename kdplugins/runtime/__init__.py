"""How kdplugins changes basicsr 1.4.2 at run time, by layer (nothing edits basicsr's files).

==========================  ========================================  ===============================================
module                      what                                      installed by
==========================  ========================================  ===============================================
:mod:`.shims`               import basicsr on current torchvision,    ``import kdplugins`` (also in every DataLoader
                            run it without CUDA, share LMDB            worker and in host projects)
                            environments, keep the teacher's path
                            at resume
:mod:`.exact_resume`        bitwise-exact resume with data workers    ``python -m kdplugins.train``; host projects:
                            (sampler, per-sample augmentation seeds)  :func:`install_exact_resume`
:mod:`.option_checks`       options checked before anything is made   ``python -m kdplugins.train`` / ``.test``
                            (every key against :mod:`.option_schema`)
:mod:`.run_lock`            one live run per experiment name          ``python -m kdplugins.train``
:mod:`.safe_checkpoints`    checkpoints written whole or failing       ``python -m kdplugins.train``
                            loudly; ``--auto_resume`` skips a broken
                            latest state
:mod:`.host_memory`         freed host memory kept for reuse          ``python -m kdplugins.train``
==========================  ========================================  ===============================================

Each module's docstring says on which path (every device, or CPU only) each of its parts applies.
"""


def install_exact_resume() -> None:
    """See :func:`kdplugins.runtime.exact_resume.install_exact_resume` (imported here on demand: the module imports
    basicsr, which must come after the shims)."""
    from kdplugins.runtime.exact_resume import install_exact_resume as install
    install()
