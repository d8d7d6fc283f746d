"""Every ``*_loss.py`` module here is imported, which registers its classes into BasicSR's registry."""
from kdplugins.utils.registry import import_modules

_modules = import_modules(__file__, __name__, '_loss')
