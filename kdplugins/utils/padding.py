"""Inference on inputs whose size a network does not accept as it is (window attention: SwinIR)."""
import torch
import torch.nn.functional as F
from torch import nn


def window_size_of(net: nn.Module) -> int:
    """The largest ``window_size`` of the network's modules (SwinIR's transformer blocks), else 1; wrappers (DDP,
    kdplugins' frozen teacher) are looked through as any module is."""
    sizes = [m.window_size for m in net.modules() if isinstance(getattr(m, 'window_size', None), int)]
    return max(sizes, default=1)


def forward_padded(net: nn.Module, x: torch.Tensor, scale: int) -> torch.Tensor:
    """``net(x)`` with ``x`` reflect-padded at the bottom and right to a multiple of the network's window size and the
    output cropped back to ``scale`` times the input (as basicsr's ``SwinIRModel.test`` does); ``net(x)`` itself for
    networks without a window size or inputs that fit."""
    window = window_size_of(net)
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % window, -width % window
    if not pad_h and not pad_w:
        return net(x)
    out = net(F.pad(x, (0, pad_w, 0, pad_h), 'reflect'))
    return out[..., :height * scale, :width * scale]
