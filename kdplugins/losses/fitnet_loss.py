"""FitNet hint loss (Romero et al., 2015): a regressor maps the student's hint layer to the teacher's."""
import torch
import torch.nn.functional as F
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn

from kdplugins.distill.connectors import check_same_spatial_size, conv1x1_connector
from kdplugins.utils.registry import register


@register(LOSS_REGISTRY)
class FitNetLoss(nn.Module):
    """``loss_weight * mean((r(F_s) - F_t)^2)`` with ``r`` a trainable 1x1 conv regressor (FitNets Eq. 3).

    FitNets trains the hint in a separate first stage; here, as in CRD's and AugKD's comparisons, the hint term is
    added to the other losses in one stage. The regressor is created from the tapped channel counts, joins the
    optimizer and is saved and resumed with the training state. Unlike the relational losses (AT, FAKD, RKD, CRD),
    the term depends on the scale of the features: the weight has to suit the tapped layers (CRD Sec. 6.4 uses 100
    for classifiers; SR networks working in [0, 255] have much larger activations, see the FeatureKD options).

    Args:
        student_channels, teacher_channels: channels of the two features (KDModel fills them in from the tapped
            shapes; give them explicitly when using the loss on its own).
        loss_weight: weight of the term (default 1).
    """

    BUILD_INPUTS = ('student_channels', 'teacher_channels')  # given by the model (kdplugins/distill/loss_inputs.py)

    def __init__(self, student_channels: int, teacher_channels: int, loss_weight: float = 1.0):
        super().__init__()
        self.regressor = conv1x1_connector(student_channels, teacher_channels)
        self.loss_weight = loss_weight

    def forward(self, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
        check_same_spatial_size('FitNetLoss', student_feat, teacher_feat)
        return self.loss_weight * F.mse_loss(self.regressor(student_feat), teacher_feat)
