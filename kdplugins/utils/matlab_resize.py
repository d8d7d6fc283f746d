"""MATLAB-style bicubic resizing of whole batches on the training device.

``basicsr.utils.matlab_functions.imresize`` resizes one image at a time with Python loops over rows and channels.
The same operation is linear and separable: it is ``out = R_h @ img @ R_w^T`` per channel, with ``R_h`` and ``R_w``
the resize matrices made of basicsr's cubic weights (``calculate_weights_indices``) and its symmetric border
extension folded in. Here those matrices are built once per (size, scale) and applied to a batch with two matrix
products on the batch's device.
"""
import math
import torch
from basicsr.utils.matlab_functions import calculate_weights_indices
from functools import lru_cache
from typing import Tuple


def _symmetric_source(padded_index: int, length: int, pad_start: int) -> int:
    """Index into the original signal of a position of basicsr's symmetrically extended signal
    (``[reversed(x[:pad_start]), x, reversed(x[-pad_end:])]``)."""
    position = padded_index - pad_start
    if position < 0:
        return -position - 1
    if position >= length:
        return 2 * length - position - 1
    return position


@lru_cache(maxsize=32)
def resize_matrix(in_length: int, scale: float, antialiasing: bool = True) -> torch.Tensor:
    """``(out_length, in_length)`` float64 matrix of MATLAB's bicubic resize by ``scale`` along one axis, equal to
    what ``basicsr.utils.matlab_functions.imresize`` computes along that axis (borders included)."""
    out_length = math.ceil(in_length * scale)
    weights, indices, pad_start, _ = calculate_weights_indices(in_length, out_length, scale, 'cubic', 4, antialiasing)
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    for row in range(out_length):
        first = int(indices[row][0])
        for k in range(weights.size(1)):
            matrix[row, _symmetric_source(first + k, in_length, pad_start)] += float(weights[row, k])
    return matrix


def matlab_resize(batch: torch.Tensor, scale: float, antialiasing: bool = True) -> torch.Tensor:
    """MATLAB bicubic resize of ``batch`` (``(..., H, W)``, any leading dims) by ``scale``, on its device.

    Equal to ``basicsr.utils.matlab_functions.imresize`` applied image by image, up to float32 summation order.
    """
    height, width = batch.shape[-2:]
    rows, cols = _matrices(height, width, scale, antialiasing, batch.device, batch.dtype)
    return rows @ batch @ cols.transpose(0, 1)


def _matrices(height: int, width: int, scale: float, antialiasing: bool, device: torch.device,
              dtype: torch.dtype) -> Tuple[torch.Tensor, torch.Tensor]:
    return (resize_matrix(height, scale, antialiasing).to(device=device, dtype=dtype),
            resize_matrix(width, scale, antialiasing).to(device=device, dtype=dtype))
