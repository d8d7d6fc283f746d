"""Building blocks shared by the distillation methods (MMRazor-style separation of concerns).

- :mod:`.teacher`: the frozen teacher (building, loading, value range, eval-only, no autograd);
- :mod:`.recorder`: recording of intermediate features by module name with forward hooks;
- :mod:`.connectors`: trainable modules that map student features to teacher features;
- losses live in :mod:`kdplugins.losses` and models that compose these pieces in :mod:`kdplugins.models`.
"""
