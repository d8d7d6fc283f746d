"""Trainable connectors that bring a student feature to the teacher's shape (FitNet regressors and kin)."""
from torch import nn


def conv1x1_connector(in_channels: int, out_channels: int) -> nn.Conv2d:
    """The 1x1 convolution regressor of FitNets (Romero et al., 2015, Sec. 2.2) mapping student to teacher
    channels."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1)
