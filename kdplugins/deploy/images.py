"""Image files for inference: PNG and JPEG, grey or colour (an alpha channel is kept), 8 or 16 bits per sample.

Pixels become float32 in [0, 1] (divided by 255 or 65535), RGB in channel order for colour. A grey image given to
an RGB network is repeated on the three channels and its result turned back to grey with the ITU-R BT.601 luma
weights (0.299, 0.587, 0.114, as OpenCV's ``COLOR_RGB2GRAY``); a colour image given to a grey network is turned to
grey first. Results are written as PNG with the bit depth of the input (16-bit in, 16-bit out), ``round(x * max)``
of the output clamped to [0, 1], through a temporary file renamed into place, so that an interrupted run leaves no
partial image behind.
"""
import cv2
import numpy as np
import os
import torch
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from kdplugins.utils.errors import ConfigurationError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg')
LUMA_RGB = (0.299, 0.587, 0.114)
MAX_VALUE = {8: 255, 16: 65535}


class ImageError(ConfigurationError, ValueError):
    """A file that cannot be used as an input image; the message names the file and the reason."""


@dataclass
class Image:
    """Decoded pixels: ``pixels`` is float32 HxWxC in [0, 1], C = 1 (grey) or 3 (RGB); ``alpha`` HxW or None."""
    pixels: np.ndarray
    bit_depth: int
    alpha: Optional[np.ndarray] = None

    @property
    def is_grey(self) -> bool:
        return self.pixels.shape[2] == 1


def list_images(folder: str) -> Tuple[List[str], List[str]]:
    """(image files by extension, other files) directly in ``folder``, both sorted by name."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f'-i: input folder not found: {folder!r}. Give a folder of PNG/JPEG images.')
    names = sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))
    images = [os.path.join(folder, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
    others = [os.path.join(folder, n) for n in names if not n.lower().endswith(IMAGE_EXTENSIONS)]
    return images, others


def read_image(path: str) -> Image:
    """Decode ``path`` (``cv2.IMREAD_UNCHANGED``: grey stays grey, 16 bits stay 16 bits)."""
    data = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ImageError(f'{path}: cannot be decoded as an image (empty, truncated or not a PNG/JPEG file).')
    bits = {np.dtype(np.uint8): 8, np.dtype(np.uint16): 16}.get(data.dtype)
    if bits is None:
        raise ImageError(f'{path}: {data.dtype} samples; only 8- and 16-bit integer images are supported.')
    data = data.astype(np.float32) / MAX_VALUE[bits]
    if data.ndim == 2:
        return Image(data[:, :, None], bits)
    channels = data.shape[2]
    if channels == 1:
        return Image(data, bits)
    if channels == 3:
        return Image(np.ascontiguousarray(data[:, :, ::-1]), bits)
    if channels == 4:
        return Image(np.ascontiguousarray(data[:, :, 2::-1]), bits, np.ascontiguousarray(data[:, :, 3]))
    raise ImageError(f'{path}: {channels} channels; only grey, RGB and RGBA images are supported.')


def to_grey(pixels: np.ndarray) -> np.ndarray:
    """HxWx3 RGB to HxWx1 luma."""
    return (pixels @ np.asarray(LUMA_RGB, dtype=np.float32))[:, :, None]


def to_network_input(image: Image, channels: int) -> torch.Tensor:
    """1xCxHxW float32 tensor for a network that reads ``channels`` (1 or 3) channels."""
    pixels = image.pixels
    if channels == 3 and image.is_grey:
        pixels = np.repeat(pixels, 3, axis=2)
    elif channels == 1 and not image.is_grey:
        pixels = to_grey(pixels)
    elif pixels.shape[2] != channels:
        raise ImageError(f'the network reads {channels} channels; images have 1 (grey) or 3 (RGB).')
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))[None]


def from_network_output(output: torch.Tensor, like: Image) -> Image:
    """The network's 1xCxHxW output as an :class:`Image` of the input's kind (grey or colour, bit depth, alpha
    resized bicubically to the output size)."""
    pixels = output[0].detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    if like.is_grey and pixels.shape[2] == 3:
        pixels = to_grey(pixels)
    alpha = None
    if like.alpha is not None:
        size = (pixels.shape[1], pixels.shape[0])
        alpha = np.clip(cv2.resize(like.alpha, size, interpolation=cv2.INTER_CUBIC), 0, 1)
    return Image(np.ascontiguousarray(pixels), like.bit_depth, alpha)


def encode(image: Image) -> np.ndarray:
    """Integer samples in OpenCV's channel order (grey, BGR or BGRA) at the image's bit depth."""
    pixels = image.pixels if image.is_grey else image.pixels[:, :, ::-1]
    if image.alpha is not None:
        pixels = np.concatenate([pixels, image.alpha[:, :, None]], axis=2)
    dtype = np.uint16 if image.bit_depth == 16 else np.uint8
    samples = np.rint(np.clip(pixels, 0, 1) * MAX_VALUE[image.bit_depth]).astype(dtype)
    return samples[:, :, 0] if samples.shape[2] == 1 else samples


def write_png(path: str, image: Image) -> None:
    """Write ``image`` to ``path`` (PNG) through a temporary file in the same folder, renamed into place."""
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f'.{name}.partial.png')
    try:
        if not cv2.imwrite(temporary, encode(image)):
            raise OSError(f'{path}: OpenCV could not write the PNG file.')
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def scikit_image_photos(names: Sequence[str] = ('astronaut.png', 'chelsea.png')) -> List[str]:
    """Paths of photos bundled with scikit-image (nothing downloads): the default images of the export checks."""
    import skimage.data
    folder = os.path.dirname(skimage.data.__file__)
    return [os.path.join(folder, name) for name in names]


def center_crop(pixels: np.ndarray, height: int, width: int, path: str = 'image') -> np.ndarray:
    """The central ``height`` x ``width`` part of an HxWxC array."""
    if pixels.shape[0] < height or pixels.shape[1] < width:
        raise ImageError(f'{path}: {pixels.shape[0]}x{pixels.shape[1]} is smaller than the crop {height}x{width}.')
    top, left = (pixels.shape[0] - height) // 2, (pixels.shape[1] - width) // 2
    return pixels[top:top + height, left:left + width]
