"""kdplugins: knowledge distillation for single-image super-resolution as a BasicSR 1.4.2 plugin.

``import kdplugins`` installs the patches of :mod:`kdplugins.runtime.compat` (they must precede basicsr's own import;
they are the only names of basicsr that kdplugins replaces) and registers every arch, model, loss and dataset of this
package into BasicSR's registries, once. A run of kdplugins' own is :func:`kdplugins.pipeline.train_pipeline`.
"""
from kdplugins.runtime import compat

compat.install()

from kdplugins import archs, data, losses, models  # noqa: E402,F401  (registration by import)

__version__ = '0.1.0'
