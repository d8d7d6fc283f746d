"""RFDN: Residual Feature Distillation Network (Liu et al., AIM 2020 efficient SR challenge winner, team NJU MCG).

Follows the challenge report (``aim2020_efficient_sr_challenge.txt``, Sec. 4 "NJU MCG" and Fig. 1(c)-(d)) and the
tensor names and shapes of the public ``RFDN_AIM_x4.pth`` checkpoint, which the parameter names here match.
The released weights were trained on RGB images in [0, 255]; ``img_range`` rescales BasicSR's [0, 1] images.
"""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from typing import List

from kdplugins.archs.imdn_arch import LRELU_SLOPE, FeatureDistillationTrunk, conv
from kdplugins.utils.registry import register


class ESA(nn.Module):
    """Enhanced spatial attention (RFANet, Liu et al. CVPR 2020, Fig. 4), the attention of RFDB (Fig. 1(c)).

    A 1x1 conv reduces to ``channels // 4``; a stride-2 3x3 conv and a 7x7 / stride-3 max pool shrink the map; a
    3x3 conv group (``conv_max``, ``conv3``, ``conv3_``) works on the small map, which is bilinearly upsampled back,
    added to a 1x1 projection (``conv_f``) of the reduced features, expanded by ``conv4`` and passed through a
    sigmoid to give the spatial mask that multiplies the input.
    """

    def __init__(self, channels: int):
        super().__init__()
        reduced = channels // 4
        self.conv1 = conv(channels, reduced, 1)
        self.conv_f = conv(reduced, reduced, 1)
        self.conv_max = conv(reduced, reduced, 3)
        self.conv2 = conv(reduced, reduced, 3, stride=2, padding=0)
        self.conv3 = conv(reduced, reduced, 3)
        self.conv3_ = conv(reduced, reduced, 3)
        self.conv4 = conv(reduced, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.conv1(x)
        small = F.max_pool2d(self.conv2(reduced), kernel_size=7, stride=3)
        small = F.relu(self.conv_max(small))
        small = self.conv3_(F.relu(self.conv3(small)))
        small = F.interpolate(small, size=x.shape[-2:], mode='bilinear', align_corners=False)
        mask = torch.sigmoid(self.conv4(small + self.conv_f(reduced)))
        return x * mask


class RFDB(nn.Module):
    """Residual feature distillation block (report Fig. 1(c)).

    Three steps each distil ``channels // 2`` features with a 1x1 conv (``c<i>_d``) and refine all features with a
    shallow residual block (SRB, Fig. 1(d): 3x3 conv ``c<i>_r`` plus identity, then leaky ReLU); a last 3x3 conv
    (``c4``) distils the refined features. The four distilled parts are concatenated, fused by the 1x1 conv ``c5``
    and weighted by :class:`ESA`. As in the released model, the block has no outer residual connection.
    """

    def __init__(self, channels: int):
        super().__init__()
        distilled = channels // 2
        self.c1_d = conv(channels, distilled, 1)
        self.c1_r = conv(channels, channels, 3)
        self.c2_d = conv(channels, distilled, 1)
        self.c2_r = conv(channels, channels, 3)
        self.c3_d = conv(channels, distilled, 1)
        self.c3_r = conv(channels, channels, 3)
        self.c4 = conv(channels, distilled, 3)
        self.c5 = conv(distilled * 4, channels, 1)
        self.esa = ESA(channels)

    @staticmethod
    def _act(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, LRELU_SLOPE)

    def _step(self, x: torch.Tensor, distil: nn.Conv2d, refine: nn.Conv2d) -> List[torch.Tensor]:
        """One distillation step: distilled features and the SRB-refined features."""
        return [self._act(distil(x)), self._act(refine(x) + x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distilled1, refined = self._step(x, self.c1_d, self.c1_r)
        distilled2, refined = self._step(refined, self.c2_d, self.c2_r)
        distilled3, refined = self._step(refined, self.c3_d, self.c3_r)
        distilled4 = self._act(self.c4(refined))
        return self.esa(self.c5(torch.cat([distilled1, distilled2, distilled3, distilled4], dim=1)))


@register(ARCH_REGISTRY)
class RFDN(FeatureDistillationTrunk):
    """Residual Feature Distillation Network (report Sec. 4, NJU MCG): the overall pipeline of IMDN
    (:class:`~kdplugins.archs.imdn_arch.FeatureDistillationTrunk`) with ``num_blocks`` RFDBs ``B1..Bn``.

    Args:
        in_channels: input channels.
        channels: feature channels (50 in the released model).
        num_blocks: number of RFDBs (4 in the released model).
        out_channels: output channels.
        upscale: upscaling factor (the released checkpoint is x4).
        img_range: value range the weights were trained in. ``forward`` multiplies its input by it and divides
            the output by it, so the network takes and returns [0, 1] images. 255 for ``RFDN_AIM_x4.pth``; use 1
            for weights trained in [0, 1].

    ESA's stride-2 conv and 7x7 max pool need inputs of at least 15x15 pixels (true of the released model too).
    """

    def __init__(self,
                 in_channels: int = 3,
                 channels: int = 50,
                 num_blocks: int = 4,
                 out_channels: int = 3,
                 upscale: int = 4,
                 img_range: float = 255.):
        super().__init__(RFDB, 'B', in_channels, channels, num_blocks, out_channels, upscale, img_range)
