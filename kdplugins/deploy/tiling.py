"""Tiled inference: the LR image cut into ``tile`` x ``tile`` tiles (the last row and column moved back to end at the
border), each run with ``pad`` LR pixels of context on every side (clipped at the image border), and the output of
the tile itself pasted into the SR image.

With ``pad`` at least the receptive radius of a network without non-local operations (:mod:`.locality`) the result
equals whole-image inference; the memory of the forward is that of a ``tile + 2 * pad`` square instead of the image.
"""
import torch
from torch import nn
from typing import Iterator, List, Optional, Tuple


def tile_starts(size: int, tile: int) -> List[int]:
    """Offsets of the tiles along one side: every ``tile`` pixels, the last one moved back to end at the border
    (it overlaps its neighbour rather than being narrow, so that every tile has a full side when the image does)."""
    if tile < 1:
        raise ValueError(f'--tile must be a positive number of LR pixels, got {tile}.')
    starts = list(range(0, max(size - tile, 0) + 1, tile))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def tile_boxes(height: int, width: int, tile: int) -> Iterator[Tuple[int, int, int, int]]:
    """(top, left, bottom, right) of the tiles covering ``height`` x ``width``, row by row (see :func:`tile_starts`;
    a side shorter than ``tile`` is one tile)."""
    for top in tile_starts(height, tile):
        for left in tile_starts(width, tile):
            yield top, left, min(top + tile, height), min(left + tile, width)


def tiled_forward(net: nn.Module,
                  x: torch.Tensor,
                  tile: int,
                  pad: int,
                  output_device: Optional[torch.device] = None) -> torch.Tensor:
    """``net(x)`` computed tile by tile (see the module docstring); the SR image is assembled on ``output_device``
    (default: that of ``x``), so a GPU holds one tile's activations and the CPU the result."""
    if pad < 0:
        raise ValueError(f'--tile-pad must be 0 or more LR pixels, got {pad}.')
    height, width = x.shape[-2:]
    output = None
    scale = 0
    with torch.no_grad():
        for top, left, bottom, right in tile_boxes(height, width, tile):
            top_in, left_in = max(top - pad, 0), max(left - pad, 0)
            bottom_in, right_in = min(bottom + pad, height), min(right + pad, width)
            result = net(x[..., top_in:bottom_in, left_in:right_in])
            if output is None:
                scale = result.shape[-2] // (bottom_in - top_in)
                if result.shape[-2] != scale * (bottom_in - top_in) or result.shape[-1] != scale * (right_in - left_in):
                    raise ValueError(f'{type(net).__name__} maps a {bottom_in - top_in}x{right_in - left_in} tile to '
                                     f'{result.shape[-2]}x{result.shape[-1]}: tiling needs an integer upscaling.')
                output = result.new_empty((*x.shape[:-3], result.shape[-3], height * scale, width * scale),
                                          device=output_device or x.device)
            kept = result[..., (top - top_in) * scale:(bottom - top_in) * scale,
                          (left - left_in) * scale:(right - left_in) * scale]
            output[..., top * scale:bottom * scale, left * scale:right * scale] = kept
    return output
