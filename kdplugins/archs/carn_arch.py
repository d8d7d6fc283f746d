"""CARN-M: the mobile Cascading Residual Network (Ahn, Kang and Sohn, "Fast, Accurate, and Lightweight
Super-Resolution with Cascading Residual Network", ECCV 2018).

Follows the paper (Sec. 3.1 cascading on the global and local levels, Sec. 3.2 efficient residual block with group
convolution and shared weights in the cascading block, multi-scale learning of one network for x2/x3/x4) and the
tensor names and shapes of the public multi-scale ``CARN-M_x234.pth`` checkpoint. Images are RGB in [0, 1].
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from typing import Tuple

from kdplugins.utils.registry import register

DIV2K_MEAN_RGB = (0.4488, 0.4371, 0.4040)
SCALES = (2, 3, 4)


class MeanShift(nn.Module):
    """Subtracts (``sign=-1``) or adds (``sign=1``) the DIV2K RGB mean with a frozen 1x1 conv (``shifter``).

    The conv is an identity with the signed mean as bias; it is kept as a conv so that the checkpoint's
    ``sub_mean.shifter`` / ``add_mean.shifter`` tensors load.
    """

    def __init__(self, mean_rgb: Tuple[float, float, float], sign: int):
        super().__init__()
        self.shifter = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.shifter.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.shifter.bias.copy_(sign * torch.tensor(mean_rgb))
        self.shifter.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shifter(x)


class ConvReLU(nn.Module):
    """1x1 conv followed by ReLU (``body.0`` is the conv): the fusion convs of the cascades (paper Fig. 2)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class EResidualBlock(nn.Module):
    """Efficient residual block (paper Sec. 3.2, Fig. 3(c)).

    3x3 group conv, ReLU, 3x3 group conv, ReLU, 1x1 (pointwise) conv, then the identity is added and a ReLU
    applied.
    """

    def __init__(self, channels: int, group: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=group), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1, groups=group), nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + x)


def cascade(x: torch.Tensor, units: Tuple[nn.Module, nn.Module, nn.Module], fusions: Tuple[nn.Module, nn.Module,
                                                                                           nn.Module]) -> torch.Tensor:
    """Cascading connections (paper Sec. 3.1, Fig. 2): each unit's output is concatenated with everything before
    it and fused by a 1x1 conv, which feeds the next unit; returns the last fusion."""
    concatenated = out = x
    for unit, fusion in zip(units, fusions):
        concatenated = torch.cat([concatenated, unit(out)], dim=1)
        out = fusion(concatenated)
    return out


class CascadingBlock(nn.Module):
    """Local cascading block of CARN-M (paper Sec. 3.2): one efficient residual block ``b1`` applied three times
    (the recursive, weight-shared variant) with the 1x1 fusions ``c1``..``c3`` of 2, 3 and 4 times the width."""

    def __init__(self, channels: int, group: int):
        super().__init__()
        self.b1 = EResidualBlock(channels, group)
        self.c1 = ConvReLU(channels * 2, channels)
        self.c2 = ConvReLU(channels * 3, channels)
        self.c3 = ConvReLU(channels * 4, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cascade(x, (self.b1, self.b1, self.b1), (self.c1, self.c2, self.c3))


class UpsampleBranch(nn.Module):
    """Sub-pixel upsampler of one scale: per factor 2 (x2, x4) or 3 (x3), a 3x3 group conv to ``factor**2`` times
    the width, ReLU and pixel shuffle (``body`` = conv, ReLU, shuffle, conv, ReLU, shuffle, ...)."""

    def __init__(self, channels: int, scale: int, group: int):
        super().__init__()
        factors = [3] if scale == 3 else [2] * (scale // 2)
        layers = []
        for factor in factors:
            layers += [
                nn.Conv2d(channels, channels * factor**2, 3, padding=1, groups=group),
                nn.ReLU(inplace=True),
                nn.PixelShuffle(factor)
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MultiScaleUpsample(nn.Module):
    """The x2, x3 and x4 upsamplers of the multi-scale network (``up2``, ``up3``, ``up4``)."""

    def __init__(self, channels: int, group: int):
        super().__init__()
        for scale in SCALES:
            setattr(self, f'up{scale}', UpsampleBranch(channels, scale, group))

    def forward(self, x: torch.Tensor, scale: int) -> torch.Tensor:
        return getattr(self, f'up{scale}')(x)


@register(ARCH_REGISTRY)
class CARNM(nn.Module):
    """CARN-M, the multi-scale mobile Cascading Residual Network (paper Sec. 3.1-3.2, Fig. 2).

    ``sub_mean`` -> 3x3 ``entry`` conv -> three cascading blocks ``b1..b3`` joined by the global cascade with 1x1
    fusions ``c1..c3`` -> the upsampler of ``scale`` -> 3x3 ``exit`` conv -> ``add_mean``.

    Args:
        scale: upscaling factor (2, 3 or 4) that ``forward`` uses. All three upsamplers are kept whatever the
            scale, so the single multi-scale checkpoint loads strictly into any of them.
        channels: feature channels (64 in the released model).
        group: groups of the 3x3 convs of the efficient residual blocks and upsamplers (4 in CARN-M).
    """

    def __init__(self, scale: int = 4, channels: int = 64, group: int = 4):
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f'CARNM: scale must be one of {SCALES}, got {scale}.')
        self.scale = scale
        self.sub_mean = MeanShift(DIV2K_MEAN_RGB, sign=-1)
        self.add_mean = MeanShift(DIV2K_MEAN_RGB, sign=1)
        self.entry = nn.Conv2d(3, channels, 3, padding=1)
        self.b1 = CascadingBlock(channels, group)
        self.b2 = CascadingBlock(channels, group)
        self.b3 = CascadingBlock(channels, group)
        self.c1 = ConvReLU(channels * 2, channels)
        self.c2 = ConvReLU(channels * 3, channels)
        self.c3 = ConvReLU(channels * 4, channels)
        self.upsample = MultiScaleUpsample(channels, group)
        self.exit = nn.Conv2d(channels, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.entry(self.sub_mean(x))
        features = cascade(features, (self.b1, self.b2, self.b3), (self.c1, self.c2, self.c3))
        return self.add_mean(self.exit(self.upsample(features, self.scale)))
