"""IMDN: Information Multi-distillation Network (Hui et al., "Lightweight Image Super-Resolution with Information
Multi-distillation Network", ACM MM 2019; AIM 2019 constrained SR challenge winner).

Follows the paper (Sec. 3: framework, information multi-distillation block with its progressive refinement module
and contrast-aware channel attention) and the tensor names and shapes of the public ``IMDN_x2/x3/x4.pth``
checkpoints (saved from DataParallel: strip the ``module.`` prefix when loading). Images are RGB in [0, 1].
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from typing import Callable, List

from kdplugins.utils.registry import register

LRELU_SLOPE = 0.05  # leaky ReLU slope of the released IMDN (and of RFDN, built on the IMDN code base)


def conv(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = -1) -> nn.Conv2d:
    """Convolution with bias; ``padding=-1`` keeps the spatial size (``kernel_size // 2``)."""
    padding = kernel_size // 2 if padding < 0 else padding
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)


def contrast(x: torch.Tensor) -> torch.Tensor:
    """Per-channel standard deviation over the spatial positions (the "contrast" statistic of CCA, Sec. 3.2)."""
    return x.var(dim=(2, 3), unbiased=False, keepdim=True).sqrt()


class CCALayer(nn.Module):
    """Contrast-aware channel attention (paper Sec. 3.2, Fig. 3).

    The channel statistic is the sum of the standard deviation and the mean of each channel; a 1x1 conv
    bottleneck (``channels // reduction``, ReLU) and a sigmoid turn it into channel weights that rescale the input.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        statistic = contrast(x) + x.mean(dim=(2, 3), keepdim=True)
        return x * self.conv_du(statistic)


class IMDModule(nn.Module):
    """Information multi-distillation block, IMDB (paper Sec. 3.2, Fig. 2).

    Progressive refinement module: each 3x3 conv (``c1``..``c3``, leaky ReLU) is split channel-wise into
    ``distillation_rate * channels`` retained (distilled) features and the remaining ones, which the next conv
    refines; ``c4`` turns the last remaining features into distilled ones. The four distilled parts are
    concatenated, weighted by :class:`CCALayer`, fused by the 1x1 conv ``c5`` and added to the block input.
    """

    def __init__(self, channels: int, distillation_rate: float = 0.25):
        super().__init__()
        self.distilled = int(channels * distillation_rate)
        self.remaining = channels - self.distilled
        self.c1 = conv(channels, channels, 3)
        self.c2 = conv(self.remaining, channels, 3)
        self.c3 = conv(self.remaining, channels, 3)
        self.c4 = conv(self.remaining, self.distilled, 3)
        self.c5 = conv(self.distilled * 4, channels, 1)
        self.cca = CCALayer(self.distilled * 4)

    def _split(self, layer: nn.Conv2d, x: torch.Tensor) -> List[torch.Tensor]:
        """Conv + leaky ReLU, split into (distilled, remaining) channels."""
        return list(torch.split(F.leaky_relu(layer(x), LRELU_SLOPE), [self.distilled, self.remaining], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled1, remaining = self._split(self.c1, x)
        distilled2, remaining = self._split(self.c2, remaining)
        distilled3, remaining = self._split(self.c3, remaining)
        distilled4 = self.c4(remaining)
        distilled = torch.cat([distilled1, distilled2, distilled3, distilled4], dim=1)
        return self.c5(self.cca(distilled)) + x


class FeatureDistillationTrunk(nn.Module):
    """The pipeline shared by IMDN (paper Sec. 3.1, Fig. 2) and RFDN.

    ``fea_conv`` (3x3) -> ``num_blocks`` blocks ``<block_prefix>1..<block_prefix>n`` -> their outputs concatenated
    and fused by a 1x1 conv with leaky ReLU (``c``) -> 3x3 ``LR_conv`` plus the shallow features (global residual)
    -> 3x3 conv to ``out_channels * upscale**2`` and pixel shuffle (``upsampler``). The modules are created in this
    order, which fixes the seeded initialization and the order of the state dict.

    Args:
        block: builds one block from the number of feature channels.
        block_prefix: attribute name of the blocks, followed by their index from 1.
        in_channels, channels, num_blocks, out_channels, upscale: see :class:`IMDN`.
        img_range: value range of the weights: ``forward`` multiplies its input by it and divides the output by it
            (skipped for 1, which changes nothing).
    """

    def __init__(self,
                 block: Callable[[int], nn.Module],
                 block_prefix: str,
                 in_channels: int,
                 channels: int,
                 num_blocks: int,
                 out_channels: int,
                 upscale: int,
                 img_range: float = 1.):
        super().__init__()
        self.img_range = float(img_range)
        self.num_blocks = num_blocks
        self.block_names = [f'{block_prefix}{i}' for i in range(1, num_blocks + 1)]
        self.fea_conv = conv(in_channels, channels, 3)
        for name in self.block_names:
            setattr(self, name, block(channels))
        self.c = nn.Sequential(conv(channels * num_blocks, channels, 1), nn.LeakyReLU(LRELU_SLOPE))
        self.LR_conv = conv(channels, channels, 3)
        self.upsampler = nn.Sequential(conv(channels, out_channels * upscale**2, 3), nn.PixelShuffle(upscale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rescale = self.img_range != 1.
        shallow = self.fea_conv(x * self.img_range if rescale else x)
        outputs = []
        features = shallow
        for name in self.block_names:
            features = getattr(self, name)(features)
            outputs.append(features)
        fused = self.LR_conv(self.c(torch.cat(outputs, dim=1))) + shallow
        out = self.upsampler(fused)
        return out / self.img_range if rescale else out


@register(ARCH_REGISTRY)
class IMDN(FeatureDistillationTrunk):
    """Information Multi-distillation Network (paper Sec. 3.1, Fig. 2): :class:`FeatureDistillationTrunk` with
    ``num_blocks`` IMDBs ``IMDB1..IMDBn``.

    Args:
        in_channels: input channels.
        channels: feature channels (64 in the released models).
        num_blocks: number of IMDBs (6 in the released models).
        out_channels: output channels.
        upscale: upscaling factor; each of ``IMDN_x2/x3/x4.pth`` loads only into the matching one.
    """

    def __init__(self,
                 in_channels: int = 3,
                 channels: int = 64,
                 num_blocks: int = 6,
                 out_channels: int = 3,
                 upscale: int = 4):
        super().__init__(IMDModule, 'IMDB', in_channels, channels, num_blocks, out_channels, upscale)
