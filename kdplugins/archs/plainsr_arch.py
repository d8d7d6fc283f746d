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
inside the image only. :class:`OnePadConv2d` computes it without building the padded input: the one-channel's taps
become a bias, and the taps that fall outside the image are subtracted on the border rows and columns, so the
one-channel costs neither a copy of the feature map nor a wider convolution.

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
from torch.nn import functional as F
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


class OnePadConv2d(nn.Conv2d):
    """A 3x3 conv (padding 1) over ``one_pad(x)`` (Eq. 3): ``weight[:, 0]`` are the taps of the constant-one channel,
    ``weight[:, 1:]`` those of ``x``; ``in_channels`` counts the one-channel, so the parameters (and checkpoints) are
    those of an ``nn.Conv2d`` over the concatenation.

    The one-channel is 1 on the image and 0 in the zero padding, so its contribution at a pixel is the sum of the taps
    that land on the image: all nine inside, and on a border row or column the sum minus the row or column of taps
    that falls outside (a corner pixel adds back the tap it subtracted twice). Equal to the conv over the
    concatenation up to float rounding, at every pixel, for any height and width.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 3, 1, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones_taps = self.weight[:, 0]  # (out, 3, 3)
        bias = ones_taps.sum((1, 2))
        if self.bias is not None:
            bias = bias + self.bias
        out = F.conv2d(x, self.weight[:, 1:], bias, 1, 1)
        rows = ones_taps.sum(2)[:, :, None]  # (out, 3, 1): taps of kernel row 0 / 1 / 2
        cols = ones_taps.sum(1)[:, None, :]  # (out, 1, 3)
        out[:, :, :1, :] -= rows[:, 0:1]  # top row: kernel row 0 reads the padding
        out[:, :, -1:, :] -= rows[:, 2:3]
        out[:, :, :, :1] -= cols[:, :, 0:1]
        out[:, :, :, -1:] -= cols[:, :, 2:3]
        for row, col in ((0, 0), (0, 2), (2, 0), (2, 2)):
            out[:, :, -(row == 2), -(col == 2)] += ones_taps[:, row, col]
        return out


def plain_conv(in_channels: int, out_channels: int, reads_one_channel: bool) -> nn.Conv2d:
    """A 3x3 conv of a plain model; ``reads_one_channel``: over ``one_pad`` of its input (one more input channel)."""
    if reads_one_channel:
        return OnePadConv2d(in_channels + 1, out_channels)
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1)


class ConvReLU(nn.Module):
    """One plain layer: 3x3 conv (bias; over ``one_pad`` of the input if asked) then in-place ReLU. Its output is the
    post-activation feature F_i."""

    def __init__(self, in_channels: int, out_channels: int, reads_one_channel: bool = False):
        super().__init__()
        self.conv = plain_conv(in_channels, out_channels, reads_one_channel)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x))


def pixelshuffle_tail(in_channels: int,
                      out_channels: int,
                      scale: int,
                      reads_one_channel: bool = False) -> nn.Sequential:
    """The paper's up-sampling part (Sec. 3.1): one 3x3 conv to ``out_channels * scale**2``, then PixelShuffle."""
    return nn.Sequential(plain_conv(in_channels, out_channels * scale**2, reads_one_channel), nn.PixelShuffle(scale))


def edsr_tail(in_channels: int,
              feat: int,
              out_channels: int,
              scale: int,
              reads_one_channel: bool = False) -> nn.Sequential:
    """BasicSR ``EDSR``'s ``upsample`` then ``conv_last``, the first conv reading ``in_channels`` (and the
    one-channel if asked)."""
    if scale & (scale - 1) == 0:
        steps = [(4, 2)] * int(math.log2(scale))
    elif scale == 3:
        steps = [(9, 3)]
    else:
        raise ValueError(f'PlainSR: upsampler edsr supports scales 2^n and 3, got {scale}.')
    layers: List[nn.Module] = []
    channels = in_channels
    for factor, shuffle in steps:
        layers += [plain_conv(channels, factor * feat, reads_one_channel), nn.PixelShuffle(shuffle)]
        channels, reads_one_channel = feat, False
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
        channels = [num_in_ch] + self.widths
        reads_one_channel = [self.one_pad or self.input_one_channel] + [self.one_pad] * (len(self.widths) - 1)
        self.body = nn.ModuleList(
            ConvReLU(c_in, c_out, one) for c_in, c_out, one in zip(channels[:-1], channels[1:], reads_one_channel))
        if upsampler == 'pixelshuffle':
            self.upsample = pixelshuffle_tail(self.widths[-1], num_out_ch, self.upscale, self.one_pad)
        elif upsampler == 'edsr':
            self.upsample = edsr_tail(self.widths[-1], upsample_feat, num_out_ch, self.upscale, self.one_pad)
        else:
            raise ValueError(f"PlainSR: upsampler must be 'pixelshuffle' or 'edsr', got {upsampler!r}.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (*self.body, *self.upsample):
            x = layer(x)  # the input of each layer is released as soon as its output exists
        return x
