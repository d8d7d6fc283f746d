"""Building paired HR/LR LMDBs (with ``meta_info.txt``) for BasicSR's ``PairedImageDataset``.

The LR is either read from a folder or made with MATLAB-style bicubic downscaling
(``basicsr.utils.matlab_functions.imresize``) of the HR cropped to a multiple of the scale (the standard SR
benchmark protocol). Large images can be cut into overlapping sub-images, at positions that are multiples of the
scale so that HR and LR sub-images stay aligned.
"""
import cv2
import numpy as np
import os
from basicsr.utils import get_root_logger
from basicsr.utils.lmdb_util import LmdbMaker
from basicsr.utils.matlab_functions import imresize
from typing import Iterator, List, Optional, Sequence, Tuple

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


def list_images(folder: str) -> List[str]:
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise FileNotFoundError(f'No images ({", ".join(IMAGE_EXTENSIONS)}) in {folder!r}.')
    return [os.path.join(folder, n) for n in names]


def read_bgr(path: str) -> np.ndarray:
    """uint8 HxWx3 BGR image (grayscale files are repeated on three channels, as basicsr reads them)."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise IOError(f'Cannot read image {path!r}.')
    return img


def mod_crop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop the bottom/right so that height and width are multiples of ``scale``."""
    h, w = img.shape[:2]
    return img[:h - h % scale, :w - w % scale]


def bicubic_downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB ``imresize(hr, 1/scale, 'bicubic')`` of a uint8 image, rounded back to uint8."""
    lr = imresize(hr.astype(np.float32) / 255., 1 / scale)
    return np.clip(np.round(lr * 255.), 0, 255).astype(np.uint8)


def sub_image_origins(length: int, crop: int, step: int, thresh: int) -> List[int]:
    """Start positions of crops of size ``crop`` every ``step`` pixels; the last crop is aligned to the end when
    the remainder exceeds ``thresh`` (basicsr's ``extract_subimages`` convention)."""
    if length <= crop:
        return [0]
    origins = list(range(0, length - crop + 1, step))
    if length - (origins[-1] + crop) > thresh:
        origins.append(length - crop)
    return origins


def paired_samples(hr_paths: Sequence[str],
                   scale: int,
                   lr_folder: Optional[str] = None,
                   lr_name: str = '{}',
                   crop_size: int = 0,
                   step: int = 0,
                   thresh: int = 0) -> Iterator[Tuple[str, np.ndarray, np.ndarray]]:
    """Yield ``(key, hr, lr)`` uint8 BGR arrays, with ``hr`` exactly ``scale`` times ``lr``.

    Args:
        hr_paths: HR images.
        scale: SR scale factor.
        lr_folder: folder of LR images named ``lr_name.format(stem) + ext``; ``None`` makes LR by bicubic.
        crop_size, step, thresh: HR sub-image size, stride and remainder threshold (``crop_size=0``: whole images).
            ``crop_size`` and ``step`` must be multiples of ``scale``. Images smaller than ``crop_size`` are skipped
            with a warning: they would make patches smaller than the sub-images.
    """
    if crop_size and (crop_size % scale or step % scale or step <= 0):
        raise ValueError(
            f'crop_size ({crop_size}) and step ({step}) must be positive multiples of the scale ({scale}).')
    for hr_path in hr_paths:
        stem, ext = os.path.splitext(os.path.basename(hr_path))
        hr = mod_crop(read_bgr(hr_path), scale)
        lr = read_bgr(os.path.join(lr_folder,
                                   lr_name.format(stem) + ext)) if lr_folder else bicubic_downscale(hr, scale)
        if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
            raise ValueError(
                f'{hr_path}: LR {lr.shape[:2]} times {scale} does not match the cropped HR {hr.shape[:2]}.')
        if not crop_size:
            yield stem, hr, lr
            continue
        if min(hr.shape[:2]) < crop_size:
            get_root_logger().warning(f'{hr_path}: {hr.shape[0]}x{hr.shape[1]} is smaller than the {crop_size}x'
                                      f'{crop_size} sub-images: skipped (as basicsr extract_subimages does).')
            continue
        rows = sub_image_origins(hr.shape[0], crop_size, step, thresh)
        cols = sub_image_origins(hr.shape[1], crop_size, step, thresh)
        for i, (y, x) in enumerate((y, x) for y in rows for x in cols):
            hr_crop = hr[y:y + crop_size, x:x + crop_size]
            lr_crop = lr[y // scale:(y + crop_size) // scale, x // scale:(x + crop_size) // scale]
            yield f'{stem}_s{i + 1:03d}', hr_crop, lr_crop


def write_paired_lmdb(samples: Iterator[Tuple[str, np.ndarray, np.ndarray]],
                      hr_lmdb: str,
                      lr_lmdb: str,
                      compress_level: int = 1) -> int:
    """Write the samples into two LMDBs with identical keys and ``meta_info.txt``; returns the number of pairs."""
    for path in (hr_lmdb, lr_lmdb):
        if not path.endswith('.lmdb'):
            raise ValueError(f"LMDB paths must end with '.lmdb' (basicsr requires it): {path!r}")
        if os.path.exists(path):
            raise FileExistsError(f'{path!r} already exists; remove it or choose another output path.')
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    makers = [LmdbMaker(path, map_size=1 << 36, compress_level=compress_level) for path in (hr_lmdb, lr_lmdb)]
    count = 0
    try:
        for key, hr, lr in samples:
            for maker, img in zip(makers, (hr, lr)):
                ok, encoded = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
                maker.put(encoded.tobytes(), key, img.shape)
            count += 1
    finally:
        for maker in makers:
            maker.close()
    return count
