"""FAKD: feature-affinity based knowledge distillation for efficient SR (He, Dai, Lu, Jiang & Xia, ICIP 2020)."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from kdplugins.distill.connectors import check_same_spatial_size
from kdplugins.losses.published_weights import FAKD_WEIGHT_DEFAULT
from kdplugins.utils.registry import register

AFFINITY_EPS = 1e-7  # added to the channel norms, as in the authors' code


def spatial_affinity(feat: torch.Tensor) -> torch.Tensor:
    """``A = F_hat^T F_hat`` (B, HW, HW): the feature vector of each position divided by its L2 norm over the
    channels, then the inner products of all pairs of positions (cosine similarities). Channel-count agnostic."""
    flat = feat.flatten(2)  # (B, C, HW)
    normalised = flat / (flat.pow(2).sum(dim=1, keepdim=True).sqrt() + AFFINITY_EPS)
    return torch.bmm(normalised.transpose(1, 2), normalised)


@register(LOSS_REGISTRY)
class FAKDLoss(nn.Module):
    """``loss_weight * mean(|A_s - A_t|)`` between the spatial affinity matrices of student and teacher.

    FAKD transfers the second-order (affinity) statistics of the teacher's feature maps; the authors' code takes the
    L1 distance (``nn.L1Loss``, a mean) between the affinity matrices of each tapped layer and weights the term by
    10 (``--feature_distilation_type 10*SA`` in their scripts) next to a pixel loss on [0, 255] images.
    ``criterion: l2`` gives the mean squared distance instead. Affinities do not depend on the channels, so no
    connector is needed; the spatial sizes must match.
    Memory: ``B * (H*W)^2 * 4`` bytes per matrix (e.g. 340 MB for a batch of 16 48x48 LR patches).

    Args:
        loss_weight: 10 / 255 = 0.0392: the FAKD code's 10, whose pixel loss works on [0, 255] images, carried to
            BasicSR's [0, 1] (docs/conventions.md). The code taps three layers (a third and two thirds into the body
            and its end), each with this weight, beside pixel and KD terms weighted 0.5 / 0.5.
        criterion: ``l1`` (FAKD) or ``l2``.
    """

    def __init__(self, loss_weight: float = FAKD_WEIGHT_DEFAULT, criterion: str = 'l1'):
        super().__init__()
        if criterion not in ('l1', 'l2'):
            raise ValueError(f"FAKDLoss criterion must be 'l1' (FAKD) or 'l2'; got {criterion!r}.")
        self.loss_weight = float(loss_weight)
        self.criterion = criterion

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        check_same_spatial_size('FAKDLoss', student_feat, teacher_feat)
        affinity_s, affinity_t = spatial_affinity(student_feat), spatial_affinity(teacher_feat)
        if self.criterion == 'l1':
            return self.loss_weight * F.l1_loss(affinity_s, affinity_t)
        return self.loss_weight * F.mse_loss(affinity_s, affinity_t)
