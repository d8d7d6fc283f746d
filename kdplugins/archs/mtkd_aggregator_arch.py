"""MTKD's knowledge aggregation network (Jiang et al., "MTKD: Multi-Teacher Knowledge Distillation for Image
Super-Resolution", ECCV 2024, Sec. 3.1 and Fig. 2; the ``DCTSwin`` arch of the authors' code, github.com/YuxuanJJ/MTKD
``basicsr/archs/DCTSwin_arch.py``): the N teachers' HR outputs, concatenated along the channels, go through a pixel
unshuffle and a convolution, residual Swin transformer groups whose window attention runs on the 2-D DCT of each
window (DCTSwin blocks), and a pixel-shuffle reconstruction back to HR.

Built from basicsr's SwinIR (same module names and state_dict keys as the authors' network); docs/mtkd.md lists the
settings and where this follows the code rather than the paper.
"""
import math
import torch
import torch.nn.functional as F
from basicsr.archs.swinir_arch import SwinIR, SwinTransformerBlock
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from typing import Sequence

from kdplugins.utils.registry import register

DIV2K_MEAN = (0.4488, 0.4371, 0.4040)


def dct_matrix(size: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix ``D`` (``D @ x`` transforms a length-``size`` column; ``D.T`` inverts it)."""
    n = torch.arange(size, dtype=torch.float64)
    matrix = torch.cos(math.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * size)) * math.sqrt(2 / size)
    matrix[0] /= math.sqrt(2)
    return matrix


def dct_windows(x: torch.Tensor, window_size: int, inverse: bool = False) -> torch.Tensor:
    """The 2-D DCT (``inverse``: its inverse) over the two spatial axes of windows (nw*b, ws, ws, c)."""
    d = dct_matrix(window_size).to(x.device, x.dtype)
    if inverse:
        return torch.einsum('uh,buvc,vw->bhwc', d, x, d)
    return torch.einsum('uh,bhwc,vw->buvc', d, x, d)


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(b, h, w, c) -> (nw*b, ws, ws, c) windows, as SwinIR partitions them."""
    b, h, w, c = x.shape
    x = x.view(b, h // window_size, window_size, w // window_size, window_size, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window_size, window_size, c)


def window_reverse(windows: torch.Tensor, window_size: int, h: int, w: int) -> torch.Tensor:
    """(nw*b, ws, ws, c) windows -> (b, h, w, c), the inverse of :func:`window_partition`."""
    b = windows.shape[0] // ((h // window_size) * (w // window_size))
    x = windows.view(b, h // window_size, w // window_size, window_size, window_size, -1)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(b, h, w, -1)


class DCTSwinBlock(SwinTransformerBlock):
    """SwinIR's (shifted) window attention block with the attention on the 2-D DCT coefficients of each window: the
    window tokens are DCT-transformed before attention and transformed back after (MTKD's DCTSwin block).

    As in the authors' code, the mask of shifted windows is made from the DCT of the region labels of each window
    (coefficients that differ are masked); here in float64 and compared with a tolerance of 1e-6.
    """

    def calculate_mask(self, x_size):
        h, w = x_size
        labels = torch.zeros((1, h, w, 1), dtype=torch.float64)
        slices = (slice(0, -self.window_size), slice(-self.window_size,
                                                     -self.shift_size), slice(-self.shift_size, None))
        for i, (hs, ws) in enumerate((hs, ws) for hs in slices for ws in slices):
            labels[:, hs, ws, :] = i
        windows = dct_windows(window_partition(labels, self.window_size), self.window_size)
        windows = windows.reshape(-1, self.window_size * self.window_size)
        differ = (windows.unsqueeze(1) - windows.unsqueeze(2)).abs() > 1e-6
        return torch.zeros(differ.shape).masked_fill(differ, -100.0)

    def forward(self, x, x_size):
        h, w = x_size
        b, _, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = dct_windows(window_partition(x, self.window_size), self.window_size)
        windows = windows.reshape(-1, self.window_size * self.window_size, c)
        mask = self.attn_mask if self.input_resolution == x_size else self.calculate_mask(x_size).to(x)
        windows = self.attn(windows, mask=mask).reshape(-1, self.window_size, self.window_size, c)
        x = window_reverse(dct_windows(windows, self.window_size, inverse=True), self.window_size, h, w)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = shortcut + self.drop_path(x.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


@register(ARCH_REGISTRY)
class MTKDAggregator(SwinIR):
    """MTKD's knowledge aggregation network: ``num_teachers`` HR images (N, 3 * num_teachers, H, W) -> one HR image.

    Args:
        num_teachers: number of teacher outputs concatenated at the input (the options' teacher sections).
        num_colors: channels of each image (3).
        upscale: factor of the pixel unshuffle at the input and of the pixel-shuffle reconstruction (the SR scale in
            the authors' files).
        img_size: side of the HR training patch (the precomputed attention mask is for ``img_size // upscale``).
        window_size, depths, embed_dim, num_heads, mlp_ratio, resi_connection: SwinIR's; the published size is
            window 8, depths (4, 4), embed_dim 96, heads (6, 6), mlp_ratio 2, ``1conv``.
        out_scale, out_mean: the output is ``network(x) / out_scale + out_mean``, as the authors' model maps it
            (255 and DIV2K's RGB mean).
    """

    def __init__(self,
                 num_teachers: int = 3,
                 num_colors: int = 3,
                 upscale: int = 4,
                 img_size: int = 256,
                 window_size: int = 8,
                 depths: Sequence[int] = (4, 4),
                 embed_dim: int = 96,
                 num_heads: Sequence[int] = (6, 6),
                 mlp_ratio: float = 2.,
                 resi_connection: str = '1conv',
                 out_scale: float = 255.,
                 out_mean: Sequence[float] = DIV2K_MEAN):
        super().__init__(
            img_size=img_size // upscale,
            patch_size=1,
            in_chans=num_teachers * num_colors * upscale * upscale,
            embed_dim=embed_dim,
            depths=depths,
            num_heads=num_heads,
            window_size=window_size,
            mlp_ratio=mlp_ratio,
            upscale=upscale,
            img_range=1.,
            upsampler='pixelshuffle',
            resi_connection=resi_connection)
        self.num_teachers = num_teachers
        self.window_size = window_size
        self.conv_last = nn.Conv2d(self.conv_last.in_channels, num_colors, 3, 1, 1)  # SwinIR returns in_chans
        self.out_scale = float(out_scale)
        self.register_buffer(
            'out_mean', torch.tensor(out_mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        for layer in self.layers:
            for block in layer.residual_group.blocks:
                block.__class__ = DCTSwinBlock  # the same modules and weights, DCT-domain attention
                if block.shift_size > 0:
                    block.attn_mask = block.calculate_mask(block.input_resolution)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        multiple = self.window_size * self.upscale
        x = F.pad(x, (0, (-w) % multiple, 0, (-h) % multiple), 'reflect')
        x = self.conv_first(F.pixel_unshuffle(x, self.upscale))
        x = self.conv_after_body(self.forward_features(x)) + x
        x = self.conv_last(self.upsample(self.conv_before_upsample(x)))
        return x[..., :h, :w] / self.out_scale + self.out_mean
