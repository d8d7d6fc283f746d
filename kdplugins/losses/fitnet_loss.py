"""FitNet hint loss (Romero et al., 2015): a regressor maps the student's hint layer to the teacher's."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from kdplugins.distill.connectors import conv1x1_connector
from kdplugins.utils.registry import register


@register(LOSS_REGISTRY)
class FitNetLoss(nn.Module):
    """``loss_weight * mean((r(F_s) - F_t)^2)`` with ``r`` a trainable 1x1 conv regressor (FitNets Eq. 3).

    Args:
        student_channels, teacher_channels: channels of the two features (KDModel fills them in from the tapped
            shapes; give them explicitly when using the loss on its own).
        loss_weight: weight of the term.
    """

    def __init__(self, student_channels: int, teacher_channels: int, loss_weight: float = 1.0):
        super().__init__()
        self.regressor = conv1x1_connector(student_channels, teacher_channels)
        self.loss_weight = loss_weight

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        if student_feat.shape[-2:] != teacher_feat.shape[-2:]:
            raise ValueError(f'FitNetLoss needs features of the same spatial size; got student '
                             f'{tuple(student_feat.shape)} and teacher {tuple(teacher_feat.shape)}. Pick layers before '
                             'the upsamplers of both networks.')
        return self.loss_weight * F.mse_loss(self.regressor(student_feat), teacher_feat)
