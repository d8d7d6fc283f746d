"""MTKD's wavelet-domain distillation term (Jiang et al., ECCV 2024, Sec. 3.2; the ``dwtLoss`` of the authors' code,
github.com/YuxuanJJ/MTKD ``basicsr/losses/basic_loss.py``), on the 2-D DWT of ``ptwt`` (docs/mtkd.md)."""
import importlib
import torch
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from typing import List

from kdplugins.utils.errors import ConfigurationError
from kdplugins.utils.registry import register


class WaveletPackageError(ConfigurationError, ImportError):
    """``ptwt`` is not installed (it is a dependency of kdplugins on Python >= 3.11, the versions ptwt supports)."""


def ptwt():
    """The ``ptwt`` module, imported when a wavelet loss is built (so that ``import kdplugins`` works without it)."""
    try:
        return importlib.import_module('ptwt')
    except ImportError as error:
        raise WaveletPackageError(
            f'WaveletL1Loss (MTKD) computes its DWT with ptwt, which cannot be imported ({error}). pip install ptwt '
            '(it needs Python >= 3.11), or remove train.wavelet_opt.') from None


def wavelet_bands(x: torch.Tensor, levels: int, wavelet: str, mode: str) -> List[torch.Tensor]:
    """The ``levels``-level 2-D DWT of ``x`` (N, C, H, W): ``[low band of the coarsest level, details of the
    coarsest level, ..., details of the finest level]``, each detail entry the (N, C, 3, h, w) stack of the
    horizontal, vertical and diagonal sub-bands (ptwt's order)."""
    coefficients = ptwt().wavedec2(x, wavelet, level=levels, mode=mode)
    return [coefficients[0]] + [torch.stack(tuple(details), dim=2) for details in coefficients[1:]]


@register(LOSS_REGISTRY)
class WaveletL1Loss(nn.Module):
    """``loss_weight * (mean|L_J(x) - L_J(y)| + sum_j mean|H_j(x) - H_j(y)|)``: the L1 distance of the low band of
    the coarsest level ``J = levels`` and of the three detail sub-bands of every level ``j = 1..J`` (each mean over
    its own coefficients, the three sub-bands of a level together), as the authors' ``dwtLoss`` defines it.

    The authors' code compares the low band of one sample only (``target_l[index]``, the batch entry whose index is
    the last level's); here the whole batch (docs/mtkd.md lists it among the differences).

    Args:
        loss_weight: weight of the term.
        levels: decomposition levels (the authors' default 4).
        wavelet: a ``pywt`` wavelet name (the authors' default ``haar``).
        mode: boundary extension (the authors' ``zero``; irrelevant for Haar on sizes divisible by ``2**levels``).
    """

    def __init__(self, loss_weight: float = 1.0, levels: int = 4, wavelet: str = 'haar', mode: str = 'zero'):
        super().__init__()
        if levels < 1:
            raise ValueError(f'WaveletL1Loss: levels is {levels}; use at least 1 (the authors use 4).')
        self.loss_weight = float(loss_weight)
        self.levels = int(levels)
        self.wavelet = wavelet
        self.mode = mode
        ptwt()  # a missing package stops the run when the loss is built, not at the first step

    def forward(self, pred: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
        pred_bands = wavelet_bands(pred, self.levels, self.wavelet, self.mode)
        target_bands = wavelet_bands(target.to(pred.dtype), self.levels, self.wavelet, self.mode)
        loss = sum((p - t).abs().mean() for p, t in zip(pred_bands, target_bands))
        return self.loss_weight * loss
