"""Trainable connectors that bring a student feature to the teacher's shape (FitNet regressors and kin), and the
maps from a feature map to one vector per sample used by the vector-based losses (CRD, RKD)."""
import torch
import torch.nn.functional as F
from torch import nn


def conv1x1_connector(in_channels: int, out_channels: int) -> nn.Conv2d:
    """The 1x1 convolution regressor of FitNets (Romero et al., 2015, Sec. 2.2) mapping student to teacher
    channels."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1)


def pooled_vector(feat: torch.Tensor, pool_size: int = 1) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C * pool_size**2)``: average pooling to a ``pool_size x pool_size`` grid, flattened.

    ``pool_size: 1`` is global average pooling (the penultimate feature of a classifier, as CRD and RKD use); a
    larger grid keeps some of the spatial layout of an SR feature map. Any input size works (adaptive pooling).
    """
    return F.adaptive_avg_pool2d(feat, pool_size).flatten(1)


class EmbeddingHead(nn.Module):
    """CRD's ``g_S`` / ``g_T`` (CRD Sec. 3.1, after Eq. 19): pooled feature -> linear map to ``feat_dim`` ->
    L2 normalisation, so that ``<g_T(T), g_S(S)>`` is a cosine similarity.

    Args:
        channels: channels of the feature map.
        feat_dim: dimension of the embedding.
        pool_size: side of the pooling grid (:func:`pooled_vector`); the linear map takes
            ``channels * pool_size**2`` inputs.
    """

    def __init__(self, channels: int, feat_dim: int, pool_size: int = 1):
        super().__init__()
        self.pool_size = int(pool_size)
        self.linear = nn.Linear(channels * self.pool_size**2, feat_dim)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.linear(pooled_vector(feat, self.pool_size)), dim=1)


def check_same_spatial_size(loss_name: str, student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> None:
    """Clear error for a loss that compares student and teacher features position by position."""
    if student_feat.shape[-2:] != teacher_feat.shape[-2:]:
        raise ValueError(f'{loss_name} needs features of the same spatial size; got student '
                         f'{tuple(student_feat.shape)} and teacher {tuple(teacher_feat.shape)}. Pick layers before '
                         'the upsamplers of both networks.')
