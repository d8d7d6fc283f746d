"""PixelShuffleEDSR: the teacher of MemSR (Wu et al., ICML 2022, Sec. 3.1, Sec. 4.1, App. C Table 8).

"The backbone of the teacher follows the design of EDSR, which is a stack of ResNet-like blocks. We directly apply
the pixel-shuffle operation in the up-sampling part to reduce the maximum memory footprint": ``conv_first``,
``num_block`` residual blocks (conv-ReLU-conv times ``res_scale``, plus the identity; BasicSR's
``ResidualBlockNoBN``), ``conv_after_body``, the global skip from ``conv_first``'s output, and a tail of one 3x3 conv
to ``num_out_ch * upscale**2`` channels and ``PixelShuffle(upscale)``.

Presets (App. C Table 8; Teacher-S's block count is unreadable in the text, 8 follows from Plain-S's depth 19 in
Table 2): ``Teacher-S`` 64 features / 8 blocks, ``Teacher-M`` 64 / 16, ``Teacher-L`` 100 / 16.

Unlike BasicSR's ``EDSR`` (``img_range`` 255 and the DIV2K mean subtracted), the defaults work on [0, 1] images
without a mean shift; ``img_range`` and ``rgb_mean`` give EDSR's ``(x - mean) * img_range`` input and
``y / img_range + mean`` output when wanted (both are converted exactly by :mod:`kdplugins.memsr.convert`).
"""
import torch
from basicsr.archs.arch_util import ResidualBlockNoBN
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from typing import Optional, Sequence

from kdplugins.utils.registry import register

TEACHER_PRESETS = {
    'Teacher-S': {
        'num_feat': 64,
        'num_block': 8
    },
    'Teacher-M': {
        'num_feat': 64,
        'num_block': 16
    },
    'Teacher-L': {
        'num_feat': 100,
        'num_block': 16
    },
}


@register(ARCH_REGISTRY)
class PixelShuffleEDSR(nn.Module):
    """EDSR body with a one-conv pixel-shuffle tail (``upsample``: conv then PixelShuffle).

    Args:
        num_in_ch, num_out_ch: image channels.
        num_feat, num_block: width and number of residual blocks (or ``preset``).
        preset: ``Teacher-S``, ``Teacher-M`` or ``Teacher-L``; explicit ``num_feat`` / ``num_block`` override it.
        upscale: scale factor (any integer).
        res_scale: residual scaling of the blocks.
        img_range: the network works on ``x * img_range`` (EDSR: 255); the output is divided back.
        rgb_mean: mean subtracted from the input and added to the output (EDSR's DIV2K mean), or none.
    """

    def __init__(self,
                 num_in_ch: int = 3,
                 num_out_ch: int = 3,
                 num_feat: Optional[int] = None,
                 num_block: Optional[int] = None,
                 preset: Optional[str] = None,
                 upscale: int = 4,
                 res_scale: float = 1.0,
                 img_range: float = 1.0,
                 rgb_mean: Optional[Sequence[float]] = None):
        super().__init__()
        if preset is not None and preset not in TEACHER_PRESETS:
            raise ValueError(f'PixelShuffleEDSR: unknown preset {preset!r}; presets are {sorted(TEACHER_PRESETS)}.')
        defaults = TEACHER_PRESETS[preset] if preset else {'num_feat': 64, 'num_block': 16}
        num_feat = int(num_feat if num_feat is not None else defaults['num_feat'])
        num_block = int(num_block if num_block is not None else defaults['num_block'])
        self.upscale = int(upscale)
        self.img_range = float(img_range)
        mean = torch.zeros(1, num_in_ch, 1, 1) if rgb_mean is None else torch.tensor(rgb_mean).view(1, -1, 1, 1)
        self.register_buffer('mean', mean.float(), persistent=False)
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(
            *[ResidualBlockNoBN(num_feat=num_feat, res_scale=res_scale, pytorch_init=True) for _ in range(num_block)])
        self.conv_after_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.upsample = nn.Sequential(
            nn.Conv2d(num_feat, num_out_ch * self.upscale**2, 3, 1, 1), nn.PixelShuffle(self.upscale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.img_range
        head = self.conv_first(x)
        res = self.conv_after_body(self.body(head))
        res += head
        return self.upsample(res) / self.img_range + self.mean
