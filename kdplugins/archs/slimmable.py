"""Slimmable (channel-splitting) layers for CSSR-Net (CSD paper Sec. 3.1; slimmable networks, Yu et al. 2019).

A network made slimmable by :func:`make_slimmable` keeps its own modules, parameter names and ``forward``; only its
convolutions (and linear layers) are replaced by :class:`SlimConv2d` / :class:`SlimLinear` that hold the *same*
``Parameter`` objects. At width ``w`` every such layer uses the first ``int(C * w)`` input and output channels of its
weights (``θ_S ⊂ θ_T``, Eq. 1), as views of the full tensors:

* a layer with a fixed side (the 3 RGB channels of the first and last convs, CARN's mean shifts) keeps it whole;
* an upsampler conv feeding a pixel shuffle of factor ``r`` keeps the first ``int(C * w)`` groups of ``r^2``
  channels, so that the shuffle yields the first ``int(C * w)`` feature maps;
* a conv reading a concatenation of parts (CARN's cascades) keeps the first ``int(C_p * w)`` channels *of each
  part* ``p``; its weight is then the concatenation of one view per part (a new tensor, gradients still flow into
  the shared parameter).

At width 1.0 the layers call ``nn.Conv2d.forward`` / ``nn.Linear.forward`` themselves, so the network is
numerically identical to the one it was made from. :func:`extract_student` writes the sliced weights as the
state dict of the ordinary network of width ``C * w``.
"""
import inspect
import torch
import torch.nn.functional as F
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate
from torch import nn
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple


def active_channels(channels: int, width_mult: float, layer: str = '') -> int:
    """``int(channels * width_mult)``, the channels a layer keeps at ``width_mult``; zero channels is an error."""
    kept = int(channels * width_mult)
    if kept < 1:
        where = f' of {layer}' if layer else ''
        raise ValueError(f'width_mult {width_mult} leaves the {channels} channels{where} with 0 channels: use a '
                         f'width_mult of at least {1 / channels:.4g} (1 / {channels}).')
    return kept


def check_width_range(width_mult: float) -> None:
    if not (isinstance(width_mult, (int, float)) and 0 < width_mult <= 1):
        raise ValueError(f'width_mult must be a number in (0, 1], got {width_mult!r}.')


@dataclass(frozen=True)
class SliceSpec:
    """How one layer is sliced.

    Attributes:
        fixed_in / fixed_out: keep all input / output channels (the RGB sides of a network).
        in_parts: sizes of the concatenated parts of the input (default: one part of all input channels).
        out_group: output channels come in groups of this size (``r^2`` before a pixel shuffle of factor ``r``).
    """
    fixed_in: bool = False
    fixed_out: bool = False
    in_parts: Optional[Tuple[int, ...]] = None
    out_group: int = 1


class WidthState:
    """The width shared by all slimmable layers of one network (set by :func:`use_width` around a forward)."""

    def __init__(self) -> None:
        self.width_mult = 1.0


class _Slimmable:
    """Slicing logic shared by :class:`SlimConv2d` and :class:`SlimLinear` (weights ``[out, in, ...]``)."""

    weight: torch.Tensor
    bias: Optional[torch.Tensor]

    def setup_slicing(self, spec: SliceSpec, state: WidthState, layer_name: str, in_size: int, out_size: int) -> None:
        parts = spec.in_parts or (in_size, )
        if sum(parts) != in_size:
            raise ValueError(f'{layer_name}: input parts {parts} do not add up to its {in_size} input channels.')
        if out_size % spec.out_group:
            raise ValueError(f'{layer_name}: {out_size} output channels are not groups of {spec.out_group}.')
        self.spec = SliceSpec(spec.fixed_in, spec.fixed_out, tuple(parts), spec.out_group)
        self.width_state = state
        self.layer_name = layer_name

    def active_out(self, width_mult: float) -> int:
        """Output channels kept at ``width_mult``."""
        full = self.weight.shape[0]
        if self.spec.fixed_out:
            return full
        group = self.spec.out_group
        return active_channels(full // group, width_mult, self.layer_name) * group

    def active_in_parts(self, width_mult: float) -> Tuple[int, ...]:
        """Input channels kept in each concatenated part at ``width_mult``."""
        if self.spec.fixed_in:
            return self.spec.in_parts
        return tuple(active_channels(p, width_mult, self.layer_name) for p in self.spec.in_parts)

    def sliced_parameters(self, width_mult: float) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Weight and bias of the layer at ``width_mult``: views of the full parameters (one view per part of a
        concatenated input, concatenated)."""
        out = self.active_out(width_mult)
        kept = self.active_in_parts(width_mult)
        weight = self.weight[:out]
        if len(kept) == 1:
            weight = weight[:, :kept[0]]
        else:
            starts = [0, *accumulate(self.spec.in_parts)][:-1]
            weight = torch.cat([weight[:, s:s + k] for s, k in zip(starts, kept)], dim=1)
        bias = None if self.bias is None else self.bias[:out]
        return weight, bias


class SlimConv2d(nn.Conv2d, _Slimmable):
    """``nn.Conv2d`` that runs with the first channels of its weights at the width of its network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width_mult = self.width_state.width_mult
        if width_mult == 1.0:
            return super().forward(x)
        weight, bias = self.sliced_parameters(width_mult)
        return self._conv_forward(x, weight, bias)


class SlimLinear(nn.Linear, _Slimmable):
    """``nn.Linear`` that runs with the first features of its weights at the width of its network."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        width_mult = self.width_state.width_mult
        if width_mult == 1.0:
            return super().forward(x)
        weight, bias = self.sliced_parameters(width_mult)
        return F.linear(x, weight, bias)


def _slim_copy(layer: nn.Module, spec: SliceSpec, state: WidthState, name: str) -> nn.Module:
    """A slimmable layer holding the same parameter objects as ``layer``."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1 and not (spec.fixed_in and spec.fixed_out):
            raise ValueError(f'{name}: group convolutions ({layer.groups} groups) cannot be channel-split.')
        slim = SlimConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            layer.dilation,
            layer.groups,
            layer.bias is not None,
            layer.padding_mode,
            device='meta')
        in_size, out_size = layer.in_channels, layer.out_channels
    else:
        slim = SlimLinear(layer.in_features, layer.out_features, layer.bias is not None, device='meta')
        in_size, out_size = layer.in_features, layer.out_features
    slim.weight = layer.weight
    slim.bias = layer.bias
    slim.setup_slicing(spec, state, name, in_size, out_size)
    return slim


def make_slimmable(net: nn.Module, specs: Dict[str, SliceSpec]) -> WidthState:
    """Replace every ``nn.Conv2d`` / ``nn.Linear`` of ``net`` by its slimmable twin (same parameters, same names).

    ``specs`` gives the :class:`SliceSpec` of layers by name (the others are sliced on both sides). Returns the
    :class:`WidthState` shared by the new layers.
    """
    unknown = set(specs) - {name for name, _ in net.named_modules()}
    if unknown:
        raise KeyError(f'make_slimmable: no layers named {sorted(unknown)} in {type(net).__name__}.')
    state = WidthState()
    for name, layer in list(net.named_modules()):
        if type(layer) not in (nn.Conv2d, nn.Linear):
            continue
        parent_name, _, child = name.rpartition('.')
        parent = net.get_submodule(parent_name) if parent_name else net
        setattr(parent, child, _slim_copy(layer, specs.get(name, SliceSpec()), state, name))
    return state


def upsampler_specs(upsample: nn.Sequential, prefix: str = 'upsample') -> Dict[str, SliceSpec]:
    """Slicing of BasicSR's ``Upsample``: each conv feeds a pixel shuffle of factor ``r`` and keeps whole groups of
    ``r^2`` output channels."""
    specs = {}
    for index, layer in enumerate(upsample):
        if isinstance(layer, nn.PixelShuffle):
            specs[f'{prefix}.{index - 1}'] = SliceSpec(out_group=layer.upscale_factor**2)
    return specs


def parent_arguments(parent_cls: type, args: Sequence[Any], kwargs: Dict[str, Any]) -> Dict[str, Any]:
    """All constructor arguments of ``parent_cls`` for the call ``parent_cls(*args, **kwargs)``, defaults applied
    and tuples or lists stored as new lists (``build_network`` options, as YAML gives them). A slimmable arch records
    them as its ``arch_options``; a call the parent does not accept is a ``TypeError``."""
    bound = inspect.signature(parent_cls).bind(*args, **kwargs)
    bound.apply_defaults()
    return {name: list(value) if isinstance(value, (tuple, list)) else value for name, value in bound.arguments.items()}


def slim_layers(net: nn.Module) -> Iterator[Tuple[str, _Slimmable]]:
    return ((name, m) for name, m in net.named_modules() if isinstance(m, _Slimmable))


class SlimmableMixin:
    """Width handling of a slimmable arch (``forward(x, width_mult=1.0)``) and its extraction.

    An arch lists the mixin before its parent (``class SlimEDSR(SlimmableMixin, EDSR)``), takes the parent's
    arguments (``__init__(*args, **kwargs)``, ``__signature__ = inspect.signature(EDSR)``, ``self.arch_options =
    parent_arguments(EDSR, args, kwargs)``), sets ``self.width_state = make_slimmable(self, specs)`` and implements
    :meth:`plain_options`.
    """

    width_state: WidthState

    def forward(self, x: torch.Tensor, width_mult: float = 1.0) -> torch.Tensor:
        """The parent arch's forward with every slimmable layer at ``width_mult`` (list the mixin first)."""
        with self.use_width(width_mult):
            return super().forward(x)

    def check_width(self, width_mult: float) -> None:
        """Clear error (naming the layer) when ``width_mult`` is out of (0, 1] or leaves a layer with no channel."""
        checked = self.__dict__.setdefault('_checked_widths', set())
        if width_mult in checked:
            return
        check_width_range(width_mult)
        for _, layer in slim_layers(self):
            layer.active_out(width_mult)
            layer.active_in_parts(width_mult)
        checked.add(width_mult)

    @contextmanager
    def use_width(self, width_mult: float) -> Iterator[None]:
        """Run the slimmable layers at ``width_mult`` inside the block (back to 1.0 after it)."""
        self.check_width(width_mult)
        previous = self.width_state.width_mult
        self.width_state.width_mult = float(width_mult)
        try:
            yield
        finally:
            self.width_state.width_mult = previous

    def feature_channels(self) -> int:
        """``C``, the width of the network's features (the channels that ``width_mult`` scales)."""
        raise NotImplementedError

    def plain_options(self, width_mult: float) -> dict:
        """``build_network`` options of the ordinary (non-slimmable) arch equal to this network at ``width_mult``."""
        raise NotImplementedError


def extract_student(net: nn.Module, width_mult: float) -> Tuple[dict, 'Dict[str, torch.Tensor]']:
    """The ordinary network equal to the slimmable ``net`` at ``width_mult``: its ``build_network`` options and its
    state dict (sliced copies of the shared weights; every other parameter and buffer copied)."""
    if not isinstance(net, SlimmableMixin):
        raise TypeError(f'{type(net).__name__} is not a slimmable arch (SlimEDSR, SlimRCAN, SlimCARN).')
    net.check_width(width_mult)
    state = {k: v.detach().clone() for k, v in net.state_dict().items()}
    for name, layer in slim_layers(net):
        weight, bias = layer.sliced_parameters(width_mult)
        state[f'{name}.weight'] = weight.detach().clone().contiguous()
        if bias is not None:
            state[f'{name}.bias'] = bias.detach().clone().contiguous()
    return net.plain_options(width_mult), state
