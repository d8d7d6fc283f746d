"""kdplugins: knowledge distillation for single-image super-resolution as a BasicSR 1.4.2 plugin.

``import kdplugins`` installs the shims of :mod:`kdplugins.runtime.shims` (they must precede basicsr's own import;
they leave basicsr's CUDA path and its sampler and augmentations as they are) and registers every arch, model, loss
and dataset of this package into BasicSR's registries, once. Exact resume is installed by kdplugins' entry points,
or by :func:`kdplugins.runtime.install_exact_resume` in a host project.
"""
from kdplugins.runtime.shims import install_shims

install_shims()

from kdplugins import archs, data, losses, models  # noqa: E402,F401  (registration by import)

__version__ = '0.1.0'
