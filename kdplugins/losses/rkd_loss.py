"""RKD: relational knowledge distillation (Park, Kim, Lu & Cho, CVPR 2019), distance and angle terms."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from kdplugins.distill.connectors import pooled_vector
from kdplugins.losses.published_weights import RKD_WEIGHT_DEFAULT
from kdplugins.utils.registry import register


def normalised_distances(vectors: torch.Tensor) -> torch.Tensor:
    """``psi_D`` of RKD Eq. 4: the Euclidean distances of all ordered pairs ``i != j`` of the batch (B*(B-1),),
    divided by their mean ``mu`` (the mean distance of the batch)."""
    batch = vectors.shape[0]
    distinct = ~torch.eye(batch, dtype=torch.bool, device=vectors.device)
    distances = (vectors[:, None, :] - vectors[None, :, :])[distinct].norm(dim=1)
    return distances / distances.mean().clamp_min(1e-12)


def triplet_angles(vectors: torch.Tensor) -> torch.Tensor:
    """``psi_A`` of RKD Eq. 6: ``<e_ij, e_kj>`` with ``e_ij = (x_i - x_j) / ||x_i - x_j||`` (the cosine of the angle
    at vertex ``x_j``) for all triplets of distinct ``i, j, k`` (B*(B-1)*(B-2),)."""
    batch = vectors.shape[0]
    directions = F.normalize(vectors[None, :, :] - vectors[:, None, :], dim=2)  # [j, i] = e_ij
    cosines = torch.bmm(directions, directions.transpose(1, 2))  # [j, i, k] = <e_ij, e_kj>
    index = torch.arange(batch, device=vectors.device)
    j, i, k = index[:, None, None], index[None, :, None], index[None, None, :]
    distinct = (i != j) & (k != j) & (i != k)
    return cosines[distinct]


@register(LOSS_REGISTRY)
class RKDLoss(nn.Module):
    """``distance_weight * huber(psi_D(s), psi_D(t)) + angle_weight * huber(psi_A(s), psi_A(t))`` (RKD Eq. 5, 7).

    An SR feature map becomes one vector per sample by average pooling (``pool_size: 1``, global average, the
    default; ``k`` for a k x k grid, flattened). RKD's relations compare samples of the batch, so student and
    teacher vectors may have different dimensions: no connector is needed. The Huber loss is smooth L1 with
    ``delta = 1`` (RKD Eq. 5), averaged over the distinct pairs (distance) and distinct triplets (angle); the
    authors' code averages over all ``B^2`` / ``B^3`` entries, including the degenerate ones, which only scales
    the terms.

    Args:
        distance_weight: 25, angle_weight: 50 (RKD paper Sec. 4.1 and CRD Sec. 6.4).
        loss_weight: overall factor, 1e-3: calibrated for SR (the term ends near a third of the L1 pixel loss;
            docs/conventions.md); the published 25 / 50 (factor 1) were set beside a classification cross-entropy.
        pool_size: side of the pooling grid.

    Needs batches of at least 2 samples (3 for the angle term).
    """

    def __init__(self,
                 distance_weight: float = 25.0,
                 angle_weight: float = 50.0,
                 loss_weight: float = RKD_WEIGHT_DEFAULT,
                 pool_size: int = 1):
        super().__init__()
        self.distance_weight, self.angle_weight = float(distance_weight), float(angle_weight)
        self.loss_weight = float(loss_weight)
        self.pool_size = int(pool_size)

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        batch = student_feat.shape[0]
        if batch < 2 or (self.angle_weight and batch < 3):
            raise ValueError(f'RKDLoss relates the samples of a batch: it needs at least 3 samples per batch (2 with '
                             f'angle_weight 0); got {batch}. Raise batch_size_per_gpu.')
        student = pooled_vector(student_feat, self.pool_size)
        teacher = pooled_vector(teacher_feat, self.pool_size).detach()
        loss = self.distance_weight * F.smooth_l1_loss(normalised_distances(student), normalised_distances(teacher))
        if self.angle_weight:
            loss = loss + self.angle_weight * F.smooth_l1_loss(triplet_angles(student), triplet_angles(teacher))
        return self.loss_weight * loss
