"""CARN and SlimCARN: the full Cascading Residual Network (Ahn, Kang and Sohn, ECCV 2018) and its channel-splitting
network (CSSR-Net, CSD paper Sec. 3.1).

``CARN`` is the full model of the CARN paper (Sec. 3.1, Fig. 2(b)-(c)): residual blocks with plain 3x3 convs (no
groups, no weight sharing), local cascading blocks of three of them, the global cascade of three blocks, 64
channels. Its pieces and tensor names are those of kdplugins' CARN-M (``kdplugins/archs/carn_arch.py``): ``sub_mean``,
``entry``, ``b1..b3`` (each ``b1..b3`` residual blocks ``body.0`` / ``body.2`` and 1x1 fusions ``c1..c3``), global
fusions ``c1..c3``, ``upsample``, ``exit``, ``add_mean``. Images are RGB in [0, 1].
"""
import inspect
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from typing import Dict

from kdplugins.archs.carn_arch import DIV2K_MEAN_RGB, SCALES, ConvReLU, MeanShift, UpsampleBranch, cascade
from kdplugins.archs.slimmable import SliceSpec, SlimmableMixin, active_channels, make_slimmable, parent_arguments
from kdplugins.utils.registry import register


class ResidualBlock(nn.Module):
    """Residual block of CARN (paper Fig. 3(a)): 3x3 conv, ReLU, 3x3 conv, identity added, ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


class CascadingBlock(nn.Module):
    """Local cascading block of CARN (paper Sec. 3.1, Fig. 2(c)): residual blocks ``b1..b3`` with the 1x1 fusions
    ``c1..c3`` of the concatenation of everything before them."""

    def __init__(self, channels: int):
        super().__init__()
        self.b1 = ResidualBlock(channels)
        self.b2 = ResidualBlock(channels)
        self.b3 = ResidualBlock(channels)
        self.c1 = ConvReLU(channels * 2, channels)
        self.c2 = ConvReLU(channels * 3, channels)
        self.c3 = ConvReLU(channels * 4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cascade(x, (self.b1, self.b2, self.b3), (self.c1, self.c2, self.c3))


class SingleScaleUpsample(nn.Module):
    """The upsampler of one scale, named ``up`` as in CARN's single-scale models (``upsample.up.body.*``)."""

    def __init__(self, channels: int, scale: int):
        super().__init__()
        self.up = UpsampleBranch(channels, scale, group=1)

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return self.up(x)


class MultiScaleUpsample(nn.Module):
    """The x2, x3 and x4 upsamplers of the multi-scale model (``upsample.up2`` / ``up3`` / ``up4``)."""

    def __init__(self, channels: int):
        super().__init__()
        for scale in SCALES:
            setattr(self, f'up{scale}', UpsampleBranch(channels, scale, group=1))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return getattr(self, f'up{scale}')(x)


@register(ARCH_REGISTRY)
class CARN(nn.Module):
    """CARN, the Cascading Residual Network (paper Sec. 3.1, Fig. 2(b)).

    ``sub_mean`` -> 3x3 ``entry`` conv -> cascading blocks ``b1..b3`` joined by the global cascade with 1x1 fusions
    ``c1..c3`` -> sub-pixel ``upsample`` -> 3x3 ``exit`` conv -> ``add_mean``.

    Args:
        scale: upscaling factor (2, 3 or 4).
        channels: feature channels (64 in the paper).
        multi_scale: keep the x2, x3 and x4 upsamplers (``upsample.up2/up3/up4``, the paper's multi-scale model;
            ``forward`` uses the one of ``scale``, the other two get no gradient, so multi-process training needs
            ``find_unused_parameters: true``); default one upsampler ``upsample.up``.
    """

    def __init__(self, scale: int = 4, channels: int = 64, multi_scale: bool = False):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f'CARN: scale must be one of {SCALES}, got {scale}.')
        self.scale = scale
        self.sub_mean = MeanShift(DIV2K_MEAN_RGB, sign=-1)
        self.add_mean = MeanShift(DIV2K_MEAN_RGB, sign=1)
        self.entry = nn.Conv2d(3, channels, 3, padding=1)
        self.b1 = CascadingBlock(channels)
        self.b2 = CascadingBlock(channels)
        self.b3 = CascadingBlock(channels)
        self.c1 = ConvReLU(channels * 2, channels)
        self.c2 = ConvReLU(channels * 3, channels)
        self.c3 = ConvReLU(channels * 4, channels)
        self.upsample = MultiScaleUpsample(channels) if multi_scale else SingleScaleUpsample(channels, scale)
        self.exit = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.entry(self.sub_mean(x))
        features = cascade(features, (self.b1, self.b2, self.b3), (self.c1, self.c2, self.c3))
        return self.add_mean(self.exit(self.upsample(features, self.scale)))


def carn_slice_specs(net: CARN, channels: int) -> Dict[str, SliceSpec]:
    """RGB sides whole, cascade fusions sliced per concatenated part, upsampler convs in pixel-shuffle groups."""
    fixed = SliceSpec(fixed_in=True, fixed_out=True)
    specs = {
        'sub_mean.shifter': fixed,
        'add_mean.shifter': fixed,
        'entry': SliceSpec(fixed_in=True),
        'exit': SliceSpec(fixed_out=True)
    }
    for name, module in net.named_modules():
        if isinstance(module, ConvReLU):
            parts = module.body[0].in_channels // channels
            specs[f'{name}.body.0'] = SliceSpec(in_parts=(channels, ) * parts)
        elif isinstance(module, nn.PixelShuffle):
            conv_name = name.rsplit('.', 1)[0] + f'.{int(name.rsplit(".", 1)[1]) - 2}'
            specs[conv_name] = SliceSpec(out_group=module.upscale_factor**2)
    return specs


@register(ARCH_REGISTRY)
class SlimCARN(SlimmableMixin, CARN):
    """CARN whose ``forward(x, width_mult)`` runs the student made of the first ``int(channels * width_mult)``
    channels of every layer; the 1x1 fusions of the cascades keep the first channels of *each* concatenated part.
    At width 1.0 it is :class:`CARN` (same names, same outputs); the student equals
    ``CARN(channels=int(channels * width_mult))``.
    """

    __signature__ = inspect.signature(CARN)

    def __init__(self, *args, **kwargs):
        arch_options = parent_arguments(CARN, args, kwargs)
        super().__init__(*args, **kwargs)
        self.arch_options = arch_options
        self.width_state = make_slimmable(self, carn_slice_specs(self, arch_options['channels']))

    def feature_channels(self) -> int:
        return self.arch_options['channels']

    def plain_options(self, width_mult: float) -> dict:
        return {'type': 'CARN', **self.arch_options, 'channels': active_channels(self.feature_channels(), width_mult)}
