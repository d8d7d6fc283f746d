"""Recording of intermediate features by module name, with forward hooks (no edits to the arch classes)."""
import difflib
import torch
from torch import nn
from typing import Dict, Iterable, List

from kdplugins.utils.modules import bare_module


class FeatureRecorder:
    """Keeps the output of each named submodule of ``net`` from its latest forward pass.

    Args:
        net: the network (a DDP/DataParallel wrapper is looked through; names are those of the bare network).
        layers: names as in ``net.named_modules()``, e.g. ``body.3`` or ``conv_after_body``.
        role: ``teacher`` or ``student``, used in error messages.

    ``features`` maps each name to the tensor that module returned in the last forward; with ``no_grad`` (teacher)
    it carries no graph, otherwise gradients flow back into the network.
    """

    def __init__(self, net: nn.Module, layers: Iterable[str], role: str = 'student'):
        modules = dict(bare_module(net).named_modules())
        self.layers: List[str] = list(dict.fromkeys(layers))
        for name in self.layers:
            if name not in modules:
                close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.4)
                raise KeyError(f"{role} has no module named '{name}'. Close names: {', '.join(close) or 'none'}. "
                               f'Names are those of {type(bare_module(net)).__name__}.named_modules().')
        self.features: Dict[str, torch.Tensor] = {}
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in self.layers]

    def _hook(self, name: str):

        def record(module: nn.Module, inputs, output) -> None:
            self.features[name] = output

        return record

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
