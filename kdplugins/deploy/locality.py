"""Can a network be run tile by tile with the same output as on the whole image, and with how much padding?

One forward on a small probe input records, through a :class:`torch.overrides.TorchFunctionMode`, every operation
that acts across pixels:

* stride-1 convolutions (any module or ``F.conv2d``), transposed convolutions, stride-1 pooling, padding and
  interpolation by an integer factor are *local*: an output pixel depends on the input within a radius. Their radii,
  each divided by the scale of the feature map it runs on (after a x2 pixel shuffle a 3x3 conv reaches half an LR
  pixel), are summed: an upper bound of the receptive radius in LR pixels, which is exact for a chain of layers and
  over-counts parallel branches (a safe direction).
* reductions over the spatial dimensions (``mean``, ``var``, ``sum``, ``amax``... of a feature map: the channel
  attention of RCAN and IMDN), adaptive pooling, strided convolutions and pooling, interpolation by other factors
  (RFDN's ESA: stride-2 conv, 7x7/3 max pool, bilinear resize to the input size), pixel unshuffle, ``roll`` and
  attention products (``matmul``, ``bmm``, ``einsum``, ``softmax``: window attention) are *non-local*: a tile sees
  other statistics, another pooling grid or other windows than the whole image.

A network without non-local operations, tiled with a padding of at least its receptive radius, gives the output of
whole-image inference: every output pixel of a tile's kept region sees the same input values, and the same image
borders, as in the whole image (up to the floating-point rounding of convolution kernels chosen by input size).
Operations outside these lists are taken as pointwise; a network built from others (custom CUDA kernels, ``unfold``)
is not analysed and should be checked by comparing tiled and whole-image outputs.
"""
import math
import torch
from dataclasses import dataclass, field
from torch import nn
from torch.overrides import TorchFunctionMode
from typing import List, Optional, Sequence

# LR side lengths of the probe: unequal, so that a tensor is recognised as a feature map when its last two sides are
# in the same ratio (a weight tensor reduced over its kernel dimensions is not); at least 15 for RFDN's ESA.
PROBE_HEIGHT, PROBE_WIDTH = 37, 29
REDUCTIONS = {
    'mean', 'sum', 'var', 'std', 'var_mean', 'std_mean', 'amax', 'amin', 'max', 'min', 'norm', 'logsumexp', 'median',
    'prod', 'argmax', 'argmin', 'nansum', 'nanmean'
}
ATTENTION = {'matmul', 'bmm', 'baddbmm', 'einsum', 'softmax', 'scaled_dot_product_attention', 'roll'}
POOLS = {'max_pool2d', 'avg_pool2d', 'max_pool2d_with_indices', '_max_pool2d', 'lp_pool2d'}
ADAPTIVE_POOLS = {
    'adaptive_avg_pool2d', 'adaptive_max_pool2d', '_adaptive_max_pool2d', 'adaptive_max_pool2d_with_indices'
}
INTERPOLATION_RADIUS = {'nearest': 0.5, 'nearest-exact': 0.5, 'bilinear': 1.0, 'bicubic': 2.0, 'area': 1.0}


@dataclass
class Locality:
    """What tiling needs to know: scale, receptive radius bound (LR pixels) and the non-local operations found."""
    scale: int
    radius: int
    nonlocal_operations: List[str] = field(default_factory=list)

    @property
    def tiles_exactly(self) -> bool:
        """True when tiling with ``pad >= radius`` reproduces whole-image inference."""
        return not self.nonlocal_operations


def _argument(args: Sequence, kwargs: dict, index: int, name: str, default=None):
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class _Recorder(TorchFunctionMode):
    """Sums the radii of local operations on feature maps and lists the non-local ones (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.radius = 0.0
        self.findings: List[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        try:
            self._inspect(getattr(func, '__name__', ''), args, kwargs, result)
        except (TypeError, ValueError, IndexError):  # an argument of another form than the documented ones
            pass
        return result

    @staticmethod
    def _scale(tensor) -> Optional[float]:
        """Height relative to the probe's LR height, when ``tensor`` is shaped like a feature map of the image."""
        if not isinstance(tensor, torch.Tensor) or tensor.dim() < 3:
            return None
        height, width = tensor.shape[-2:]
        if height * PROBE_WIDTH != width * PROBE_HEIGHT:
            return None
        return height / PROBE_HEIGHT

    def _note(self, text: str) -> None:
        if text not in self.findings:
            self.findings.append(text)

    def _inspect(self, name: str, args: Sequence, kwargs: dict, result) -> None:
        name = name.lstrip('_') if name.startswith('_') and name[1:] in POOLS | ADAPTIVE_POOLS else name
        source = args[0] if args else kwargs.get('input')
        scale = self._scale(source)
        if name in ATTENTION:
            self._note(f'{name} (attention or window shift: not analysed, taken as non-local)')
        if scale is None:
            return
        if name in ('conv2d', 'conv_transpose2d'):
            self._convolution(name, args, kwargs, scale)
        elif name in POOLS:
            self._pooling(name, args, kwargs, scale)
        elif name in ADAPTIVE_POOLS:
            if tuple(result[0].shape[-2:] if isinstance(result, tuple) else result.shape[-2:]) != source.shape[-2:]:
                self._note(f'{name} (global or adaptive pooling)')
        elif name in REDUCTIONS:
            self._reduction(name, args, kwargs, source)
        elif name == 'interpolate':
            self._interpolation(args, kwargs, source, result, scale)
        elif name == 'pad':
            self.radius += max(_argument(args, kwargs, 1, 'pad', (0, ))) / scale
        elif name == 'pixel_unshuffle':
            self._note('pixel_unshuffle (a grid aligned to the image origin)')

    def _convolution(self, name: str, args: Sequence, kwargs: dict, scale: float) -> None:
        weight = _argument(args, kwargs, 1, 'weight')
        stride = _pair(_argument(args, kwargs, 3, 'stride', 1))
        dilation = _pair(_argument(args, kwargs, 5 if name == 'conv2d' else 7, 'dilation', 1))
        if name == 'conv2d' and max(stride) > 1:
            self._note(f'conv2d with stride {max(stride)} (a grid aligned to the image origin)')
        reach = max((k - 1) * d / 2 for k, d in zip(weight.shape[-2:], dilation))
        self.radius += reach / scale

    def _pooling(self, name: str, args: Sequence, kwargs: dict, scale: float) -> None:
        kernel = _pair(_argument(args, kwargs, 1, 'kernel_size'))
        stride = _argument(args, kwargs, 2, 'stride', None)
        stride = _pair(stride) if stride not in (None, [], ()) else kernel
        if max(stride) > 1:
            self._note(f'{name} with stride {max(stride)} (a grid aligned to the image origin)')
        self.radius += max((k - 1) / 2 for k in kernel) / scale

    def _reduction(self, name: str, args: Sequence, kwargs: dict, source: torch.Tensor) -> None:
        dim = _argument(args, kwargs, 2 if name == 'norm' else 1, 'dim', None)  # norm(input, p, dim)
        if isinstance(dim, (torch.Tensor, bool)):  # torch.max(a, b): elementwise; var(x, unbiased): all dims
            dim = None if isinstance(dim, bool) else dim
            if dim is not None:
                return
        dims = range(source.dim()) if dim is None else (dim if isinstance(dim, (tuple, list)) else (dim, ))
        spatial = {source.dim() - 2, source.dim() - 1}
        if any(d % source.dim() in spatial for d in dims if isinstance(d, int) and not isinstance(d, bool)):
            self._note(f'{name} over the spatial dimensions (global statistics, e.g. channel attention)')

    def _interpolation(self, args: Sequence, kwargs: dict, source: torch.Tensor, result, scale: float) -> None:
        mode = _argument(args, kwargs, 3, 'mode', 'nearest')
        factor = result.shape[-2] / source.shape[-2]
        if self._scale(result) is None or factor != round(factor):
            self._note(f'interpolate ({mode}) to a size that is not an integer multiple of its input')
            return
        self.radius += INTERPOLATION_RADIUS.get(mode, 2.0) / scale


def analyse(net: nn.Module, in_channels: int, device: torch.device = torch.device('cpu')) -> Locality:
    """Scale, receptive radius bound and non-local operations of ``net`` from one forward on a probe input."""
    probe = torch.rand(1, in_channels, PROBE_HEIGHT, PROBE_WIDTH, device=device)
    recorder = _Recorder()
    with torch.no_grad(), recorder:
        output = net(probe)
    factor = output.shape[-2] / PROBE_HEIGHT
    if factor != round(factor) or output.shape[-1] != round(factor) * PROBE_WIDTH or factor < 1:
        raise ValueError(f'{type(net).__name__} maps a {PROBE_HEIGHT}x{PROBE_WIDTH} input to '
                         f'{output.shape[-2]}x{output.shape[-1]}: not an integer upscaling, which tiling needs.')
    return Locality(int(round(factor)), math.ceil(recorder.radius - 1e-9), recorder.findings)
