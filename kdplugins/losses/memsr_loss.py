"""MemSR's initialization-aware feature distillation (Wu, Lee, Ma, "MemSR", ICML 2022, Sec. 3.4, Eq. 12 and 14)."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from typing import List

from kdplugins.memsr.convert import Pieces
from kdplugins.utils.registry import register

MEMSR_LAMBDA = 0.3  # λ of Eq. 14 (Sec. 4.1)
MEMSR_EPSILON = 1e-5  # ε of Eq. 14 (Sec. 4.1, Table 7)


@register(LOSS_REGISTRY)
class MemSRLoss(nn.Module):
    """``L_distill`` of Eq. 12 with the weight of Eq. 14, usable alone:

    ``loss_weight * epsilon**(current_iter / total_iter) * mean_i MSE(F_i^T, M_i * F_i^S)``

    with ``F_i^T`` the features of layer ``i`` of the teacher's plain equivalent (Prop. 3.6), ``F_i^S`` the student's
    and ``M_i`` the trainable 1x1 bridges (owned by :class:`~kdplugins.models.memsr_model.MemSRModel`, which also
    computes each layer's term while the teacher's plain forward runs: :meth:`layer_term`).

    Args:
        loss_weight: λ of Eq. 14 (default 0.3, Sec. 4.1); 0 switches the distillation off.
        epsilon: ε of Eq. 14 (default 1e-5, Table 7): the weight decays from λ to λ ε over the run.
    """

    def __init__(self, loss_weight: float = MEMSR_LAMBDA, epsilon: float = MEMSR_EPSILON):
        super().__init__()
        if epsilon < 0:
            raise ValueError(f'MemSRLoss: epsilon is {epsilon}; it must be >= 0 (the paper uses 1e-5).')
        self.loss_weight = float(loss_weight)
        self.epsilon = float(epsilon)

    def weight(self, current_iter: int, total_iter: int) -> float:
        """Eq. 14's ``lambda * epsilon**alpha`` with ``alpha = current_iter / total_iter``."""
        return self.loss_weight * self.epsilon**(current_iter / total_iter)

    @staticmethod
    def layer_term(prediction: torch.Tensor, pieces: Pieces) -> torch.Tensor:
        """``MSE(F_i^(T), M_i * F_i^(S))`` of one layer (Eq. 12): ``prediction`` is ``M_i * F_i^(S)``, the teacher's
        plain features are given as the ``(tensor, offset)`` pieces of
        :func:`~kdplugins.memsr.convert.teacher_plain_forward` (never concatenated)."""
        parts = torch.split(prediction, [t.shape[1] for t, _ in pieces], dim=1)
        total = sum(F.mse_loss(p, t + o, reduction='sum') for p, (t, o) in zip(parts, pieces))
        return total / prediction.numel()

    def forward(self, layer_terms: List[torch.Tensor], current_iter: int, total_iter: int) -> torch.Tensor:
        """The weighted mean of the layers' terms (:meth:`layer_term`) at ``current_iter`` of ``total_iter``."""
        return self.weight(current_iter, total_iter) * torch.stack(layer_terms).mean()
