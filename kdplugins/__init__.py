"""kdplugins: knowledge distillation for single-image super-resolution as a BasicSR 1.4.2 plugin.

``import kdplugins`` installs the compatibility fixes of :mod:`kdplugins.compat` (they must precede basicsr's own
import) and registers every arch, model, loss and dataset of this package into BasicSR's registries, once.
"""
from kdplugins import compat

compat.install()

from kdplugins import archs, data, losses, models  # noqa: E402,F401  (registration by import)

__version__ = '0.1.0'
