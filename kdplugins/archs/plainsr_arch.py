"""PlainSR: the plain student of MemSR (Wu et al., ICML 2022, Sec. 3.2 Def. 3.2, Sec. 3.5, App. C).

A plain model is "a stack of convolution and ReLU activation" (Def. 3.2): 3x3 convs with bias, each followed by an
in-place ReLU, with a per-layer width list, then the pixel-shuffle tail of the paper's teacher (Sec. 3.1): one 3x3
conv to ``num_out_ch * scale**2`` channels and ``PixelShuffle(scale)``. No skip connection: at inference no feature
map outlives the next convolution, so at most two are alive at once (the lowest memory footprint of Table 4).

Presets (App. C; the widths of the paper's Table 9 did not survive text extraction, so these follow from the rest of
the paper): a plain student has as many layers as the plain equivalent of its teacher, ``2 * num_block + 2`` for an
EDSR body (Table 2: depths 19 and 35 counting the tail conv), with the teacher's width.

==========  ======  =====  =================================================================
preset      layers  width  teacher (``PixelShuffleEDSR`` preset)
==========  ======  =====  =================================================================
Plain-S     18      64     Teacher-S (64 features, 8 residual blocks)
Plain-M     34      64     Teacher-M (64 features, 16 residual blocks)
Plain-L     34      100    Teacher-L (100 features, 16 residual blocks)
Plain-X     34      given  Teacher-M; widths per layer from ``scripts/memsr_init.py --theta`` (Eq. 15)
==========  ======  =====  =================================================================

``one_pad: true`` is the paper's form of a plain model (Sec. 3.2.2: "we must use a one_pad operation before feeding
feature maps into each convolution in the plain model"): every conv, the tail's included, reads its input with a
constant-one channel prepended (Eq. 3), which the conv zero-pads like any feature, so that a kernel tap of that channel
outside the image contributes nothing: a bias that depends on the distance to the border. The winning initialization
solves such kernels (Eq. 10-11); without ``one_pad`` their one-channel taps are summed into an ordinary bias, exact
inside the image only. The copy costs one concatenation per layer, no extra feature map: the input of the concatenation
is released before the conv runs.

Two options exist for the exact plain equivalents that :mod:`kdplugins.memsr.convert` builds from EDSR-style teachers
(students do not need them): ``input_one_channel`` prepends the constant-one channel of Eq. 3 to the image only
(needed when the teacher subtracts a mean from its input), and ``upsampler: edsr`` keeps BasicSR ``EDSR``'s upsampler
(``conv -> PixelShuffle(2)`` per factor 2, or ``conv -> PixelShuffle(3)``, then ``conv_last``) instead of the
one-conv pixel-shuffle tail.
"""
import math
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from typing import List, Optional, Sequence

from kdplugins.utils.registry import register

PLAIN_PRESETS = {
    'Plain-S': {
        'num_layers': 18,
        'width': 64
    },
    'Plain-M': {
        'num_layers': 34,
        'width': 64
    },
    'Plain-L': {
        'num_layers': 34,
        'width': 100
    },
    'Plain-X': {
        'num_layers': 34,
        'width': None
    },
}


def preset_widths(preset: Optional[str], widths: Optional[Sequence[int]]) -> List[int]:
    """The per-layer widths of a PlainSR: ``widths`` when given (it must then match the preset's depth), else the
    equal widths of ``preset``."""
    if preset is not None and preset not in PLAIN_PRESETS:
        raise ValueError(f'PlainSR: unknown preset {preset!r}; presets are {sorted(PLAIN_PRESETS)} (or give widths).')
    if widths is not None:
        widths = [int(w) for w in widths]
        if not widths or min(widths) < 1:
            raise ValueError(f'PlainSR: widths must be a non-empty list of positive integers, got {widths}.')
        if preset is not None and len(widths) != PLAIN_PRESETS[preset]['num_layers']:
            raise ValueError(f'PlainSR: preset {preset} has {PLAIN_PRESETS[preset]["num_layers"]} layers but '
                             f'widths has {len(widths)}; drop the preset or give one width per layer.')
        return widths
    if preset is None:
        raise ValueError('PlainSR needs widths (one per conv+ReLU layer) or a preset '
                         f'({", ".join(sorted(PLAIN_PRESETS))}).')
    if PLAIN_PRESETS[preset]['width'] is None:
        raise ValueError('PlainSR preset Plain-X has dynamic widths (MemSR Sec. 3.5): give them as widths, as printed '
                         'and stored by scripts/memsr_init.py --theta 0.05 (or 0.14).')
    return [PLAIN_PRESETS[preset]['width']] * PLAIN_PRESETS[preset]['num_layers']


class ConvReLU(nn.Module):
    """One plain layer: 3x3 conv (bias) then in-place ReLU. Its output is the post-activation feature F_i."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


def pixelshuffle_tail(in_channels: int, out_channels: int, scale: int) -> nn.Sequential:
    """The paper's up-sampling part (Sec. 3.1): one 3x3 conv to ``out_channels * scale**2``, then PixelShuffle."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels * scale**2, 3, 1, 1), nn.PixelShuffle(scale))


def edsr_tail(in_channels: int, feat: int, out_channels: int, scale: int) -> nn.Sequential:
    """BasicSR ``EDSR``'s ``upsample`` then ``conv_last``, the first conv reading ``in_channels``."""
    if scale & (scale - 1) == 0:
        steps = [(4, 2)] * int(math.log2(scale))
    elif scale == 3:
        steps = [(9, 3)]
    else:
        raise ValueError(f'PlainSR: upsampler edsr supports scales 2^n and 3, got {scale}.')
    layers: List[nn.Module] = []
    channels = in_channels
    for factor, shuffle in steps:
        layers += [nn.Conv2d(channels, factor * feat, 3, 1, 1), nn.PixelShuffle(shuffle)]
        channels = feat
    layers.append(nn.Conv2d(feat, out_channels, 3, 1, 1))
    return nn.Sequential(*layers)


@register(ARCH_REGISTRY)
class PlainSR(nn.Module):
    """Stack of 3x3 conv + ReLU layers (``body.0`` ... ``body.{n-1}``, each a :class:`ConvReLU` whose output is the
    post-activation feature) and an up-sampling tail (``upsample``).

    Args:
        num_in_ch, num_out_ch: image channels (3).
        widths: output channels of each conv+ReLU layer (Plain-X: the dynamic widths of Sec. 3.5).
        preset: ``Plain-S``, ``Plain-M``, ``Plain-L`` (equal widths, see the module docstring) or ``Plain-X``
            (widths required).
        upscale: scale factor.
        upsampler: ``pixelshuffle`` (default, the paper's tail) or ``edsr`` (BasicSR EDSR's upsampler and
            ``conv_last``, used by exact conversions of BasicSR's EDSR).
        upsample_feat: channels inside the ``edsr`` upsampler.
        input_one_channel: prepend a constant-one channel to the input (Eq. 3), zero-padded by the first conv like
            any feature; used by exact conversions of teachers that subtract a mean from their input.
        one_pad: prepend the constant-one channel to the input of every conv (Sec. 3.2.2; implies it for the image).
    """

    def __init__(self,
                 num_in_ch: int = 3,
                 num_out_ch: int = 3,
                 widths: Optional[Sequence[int]] = None,
                 preset: Optional[str] = None,
                 upscale: int = 4,
                 upsampler: str = 'pixelshuffle',
                 upsample_feat: int = 64,
                 input_one_channel: bool = False,
                 one_pad: bool = False):
        super().__init__()
        self.widths = preset_widths(preset, widths)
        self.upscale = int(upscale)
        self.upsampler = upsampler
        self.one_pad = bool(one_pad)
        self.input_one_channel = bool(input_one_channel) and not self.one_pad
        extra = int(self.one_pad)
        channels = [num_in_ch + int(self.input_one_channel)] + self.widths
        self.body = nn.ModuleList(ConvReLU(c_in + extra, c_out) for c_in, c_out in zip(channels[:-1], channels[1:]))
        if upsampler == 'pixelshuffle':
            self.upsample = pixelshuffle_tail(self.widths[-1] + extra, num_out_ch, self.upscale)
        elif upsampler == 'edsr':
            self.upsample = edsr_tail(self.widths[-1] + extra, upsample_feat, num_out_ch, self.upscale)
        else:
            raise ValueError(f"PlainSR: upsampler must be 'pixelshuffle' or 'edsr', got {upsampler!r}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_one_channel:
            x = prepend_ones(x)
        for layer in self.body:
            if self.one_pad:
                x = prepend_ones(x)  # the previous map is released here, before the conv allocates its output
            x = layer(x)
        return self.upsample(prepend_ones(x) if self.one_pad else x)


def prepend_ones(x: torch.Tensor) -> torch.Tensor:
    """``one_pad`` of Eq. 3: a constant-one channel in front of ``x``."""
    return torch.cat([torch.ones_like(x[:, :1]), x], dim=1)
