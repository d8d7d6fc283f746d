"""CrossKD: the student's features through the teacher's tail, distilled towards the teacher's output (Fang et al.,
"Dual cross knowledge distillation for image super-resolution", JVCIR 2023; a baseline of AugKD Tables 2-3)."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from typing import Callable

from kdplugins.distill.connectors import conv1x1_connector
from kdplugins.utils.registry import register

CRITERIA = {'l1': F.l1_loss, 'mse': F.mse_loss}


@register(LOSS_REGISTRY)
class CrossKDLoss(nn.Module):
    """``loss_weight * criterion(T_tail(r(F_S)), T(LR))``: ``F_S`` the student's feature at the split point, ``r`` a
    trainable 1x1 conv to the teacher's channels, ``T_tail`` the teacher from its split point on (frozen weights,
    gradients flow through it to ``r`` and the student), ``T(LR)`` the teacher's own output.

    Args:
        student_channels, teacher_channels: channels at the two split points (filled in by the model).
        loss_weight: weight of the term (default 1: the term compares images in [0, 1], like the L1 pixel and KD
            terms it sits beside).
        criterion: ``l1`` (default, as the pixel loss) or ``mse``.

    ``forward(student_feat, teacher_tail, teacher_output)``: ``teacher_tail`` maps a feature of the teacher's
    split-point shape to an image (:meth:`kdplugins.models.crosskd_model.CrossKDModel.teacher_tail`).
    """

    BUILD_INPUTS = ('student_channels', 'teacher_channels')  # given by the model (kdplugins/distill/loss_inputs.py)

    def __init__(self, student_channels: int, teacher_channels: int, loss_weight: float = 1.0, criterion: str = 'l1'):
        super().__init__()
        if criterion not in CRITERIA:
            raise ValueError(f'CrossKDLoss: criterion must be one of {", ".join(CRITERIA)}, got {criterion!r}.')
        self.connector = conv1x1_connector(student_channels, teacher_channels)
        self.loss_weight = float(loss_weight)
        self.criterion = CRITERIA[criterion]

    def forward(self, student_feat: torch.Tensor, teacher_tail: Callable[[torch.Tensor], torch.Tensor],
                teacher_output: torch.Tensor) -> torch.Tensor:
        crossed = teacher_tail(self.connector(student_feat))
        return self.loss_weight * self.criterion(crossed, teacher_output.detach())
