"""Feature taps: scoped recording of intermediate features by module name, with forward hooks (no edits to the arch
classes)."""
import difflib
import torch
from contextlib import contextmanager
from torch import nn
from typing import Dict, Iterable, Iterator, List

from kdplugins.utils.modules import bare_module

RECORDED = ('output', 'input')


class FeatureRecorder:
    """Records what the named submodules of ``net`` return (or take), inside a ``with recorder.recording() as
    features:`` block only; the block hands the features over when it ends and keeps nothing.

    Args:
        net: the network (a DDP/DataParallel wrapper is looked through; names are those of the bare network).
        layers: names as in ``net.named_modules()``, e.g. ``body.3`` or ``conv_after_body``.
        role: ``teacher (network_t)`` or ``student (network_g)``, used in error messages.
        record: ``output`` (what each module returns) or ``input`` (its first positional input).

    The hooks stay registered from construction to :meth:`remove` (a compiled network keeps one graph); outside a
    ``recording`` block they do nothing. A module that runs twice inside one block is an error: the block must
    enclose exactly the forward whose features are wanted. A feature carries the graph of its forward (none for a
    teacher under ``no_grad``).
    """

    def __init__(self, net: nn.Module, layers: Iterable[str], role: str = 'student', record: str = 'output'):
        if record not in RECORDED:
            raise ValueError(f'FeatureRecorder: record must be one of {RECORDED}, got {record!r}.')
        modules = dict(bare_module(net).named_modules())
        self.layers: List[str] = list(dict.fromkeys(layers))
        self.role = role
        for name in self.layers:
            if name not in modules:
                close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.4)
                raise KeyError(f"{role} has no module named '{name}'. Close names: {', '.join(close) or 'none'}. "
                               f'Names are those of {type(bare_module(net)).__name__}.named_modules().')
        self._store: Dict[str, torch.Tensor] = {}  # one dict for the recorder's life (compiled hooks guard on it)
        self._recording = False
        self._handles = [modules[name].register_forward_hook(self._hook(name, record)) for name in self.layers]

    def _hook(self, name: str, record: str):

        def hook(module: nn.Module, inputs, output) -> None:
            if not self._recording:
                return
            if name in self._store:
                raise RuntimeError(f'{self.role}: module {name} ran twice inside one recording; record one forward '
                                   'per `with recorder.recording()` block.')
            self._store[name] = output if record == 'output' else inputs[0]

        return hook

    @contextmanager
    def recording(self) -> Iterator[Dict[str, torch.Tensor]]:
        """``with recorder.recording() as features: net(x)``: ``features`` holds ``{layer: tensor}`` once the block
        has ended (empty inside it)."""
        if self._recording:
            raise RuntimeError(f'{self.role}: recordings do not nest.')
        if not self._handles and self.layers:
            raise RuntimeError(f'{self.role}: this recorder was removed.')
        features: Dict[str, torch.Tensor] = {}
        self._store.clear()
        self._recording = True
        try:
            yield features
        finally:
            self._recording = False
            features.update(self._store)
            self._store.clear()

    def remove(self) -> None:
        """Remove the hooks from the network (idempotent)."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


class InputSubstitution:
    """Runs a network with the input of one of its modules replaced, inside a ``with substitution.substituting(x):``
    block only: what the network computes from that module on (its "tail", with whatever follows it in ``forward``)
    is then a function of ``x``. Used by CrossKD to pass student features through the teacher's tail.

    Args:
        net: the network (names are those of the bare network).
        layer: the module whose first positional input is replaced (for example RFDN's ``upsampler``).
        role: used in error messages.

    The hook stays registered until :meth:`remove` (a compiled network keeps one graph); ``x`` is cast to the
    dtype of the input it replaces. A substitution the forward never reaches is an error.
    """

    def __init__(self, net: nn.Module, layer: str, role: str = 'teacher'):
        modules = dict(bare_module(net).named_modules())
        if layer not in modules:
            close = difflib.get_close_matches(layer, [n for n in modules if n], n=5, cutoff=0.4)
            raise KeyError(f"{role} has no module named '{layer}'. Close names: {', '.join(close) or 'none'}.")
        self.layer, self.role = layer, role
        self._replacement: List[torch.Tensor] = []  # one list for the object's life (compiled hooks guard on it)
        self._used = [False]
        self._handle = modules[layer].register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, inputs):
        if not self._replacement:
            return None
        if self._used[0]:
            raise RuntimeError(f'{self.role}: {self.layer} ran twice inside one substitution.')
        self._used[0] = True
        replacement = self._replacement[0]
        if replacement.shape != inputs[0].shape:
            raise ValueError(f'{self.role}: the feature given to {self.layer} has shape {tuple(replacement.shape)}, '
                             f'its own input has {tuple(inputs[0].shape)}.')
        return (replacement.to(inputs[0].dtype), *inputs[1:])

    @contextmanager
    def substituting(self, x: torch.Tensor) -> Iterator[None]:
        if self._replacement:
            raise RuntimeError(f'{self.role}: substitutions do not nest.')
        self._replacement.append(x)
        self._used[0] = False
        try:
            yield
            if not self._used[0]:
                raise RuntimeError(f'{self.role}: the forward inside the substitution never reached {self.layer}.')
        finally:
            self._replacement.clear()

    def remove(self) -> None:
        self._handle.remove()
