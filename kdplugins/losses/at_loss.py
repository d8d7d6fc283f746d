"""Attention transfer (Zagoruyko & Komodakis, ICLR 2017, "Paying more attention to attention")."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from kdplugins.distill.connectors import check_same_spatial_size
from kdplugins.losses.published_weights import AT_WEIGHT_DEFAULT
from kdplugins.utils.registry import register


def attention_map(feat: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """Spatial attention map of AT (Sec. 3.1, ``F^p_mean``): ``mean_c |F_c|^p`` over channels, flattened to
    ``(B, H*W)`` and L2-normalised per sample (Eq. 2 uses ``Q / ||Q||_2``). Channel-count agnostic."""
    return F.normalize(feat.abs().pow(p).mean(dim=1).flatten(1), dim=1)


@register(LOSS_REGISTRY)
class ATLoss(nn.Module):
    """``loss_weight * mean((Q_s - Q_t)^2)`` between the normalised attention maps of student and teacher.

    As in the authors' code (and CRD's baseline), the distance is the mean of squared differences over batch and
    positions. The maps do not depend on the number of channels, so no connector is needed; the two features must
    have the same spatial size (in SR: both before the upsamplers).

    Args:
        loss_weight: 200, calibrated for SR (the term ends near a third of the L1 pixel loss; docs/conventions.md).
            The ``beta`` of CRD Sec. 6.4 for AT is 1000 (the AT paper also sets ``beta = 10^3``), set beside a
            classification cross-entropy.
        p: power of the absolute activations (2, the AT paper's choice).
    """

    def __init__(self, loss_weight: float = AT_WEIGHT_DEFAULT, p: float = 2.0):
        super().__init__()
        self.loss_weight = float(loss_weight)
        self.p = float(p)

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        check_same_spatial_size('ATLoss', student_feat, teacher_feat)
        difference = attention_map(student_feat, self.p) - attention_map(teacher_feat, self.p)
        return self.loss_weight * difference.pow(2).mean()
