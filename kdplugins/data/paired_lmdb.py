"""Building paired HR/LR LMDBs (with ``meta_info.txt``) for BasicSR's ``PairedImageDataset``.

The LR is either read from a folder or made with MATLAB-style bicubic downscaling
(``basicsr.utils.matlab_functions.imresize``) of the HR cropped to a multiple of the scale (the standard SR
benchmark protocol). Large images can be cut into overlapping sub-images, at positions that are multiples of the
scale so that HR and LR sub-images stay aligned.

Problems with the input folders or the output paths raise :class:`DataPreparationError` subclasses (configuration
errors: the command lines print the message alone and exit with 2).
"""
import cv2
import numpy as np
import os
import shutil
from basicsr.utils import get_root_logger
from basicsr.utils.lmdb_util import LmdbMaker
from basicsr.utils.matlab_functions import imresize
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from kdplugins.utils.errors import ConfigurationError

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff')


class DataPreparationError(ConfigurationError):
    """An input folder or output path that the data preparation cannot use; the message names it and the fix."""


class MissingFolderError(DataPreparationError, FileNotFoundError):
    """An input image folder that does not exist."""


class NoImagesError(DataPreparationError, FileNotFoundError):
    """An input folder without images."""


class MissingPartnerError(DataPreparationError, FileNotFoundError):
    """An HR image whose LR file is not in the LR folder."""


class UnreadableImageError(DataPreparationError, IOError):
    """A file with an image extension that OpenCV cannot decode."""


class SizeMismatchError(DataPreparationError, ValueError):
    """An LR image whose size times the scale is not the cropped HR's, or sub-image settings that are not multiples
    of the scale."""


class OutputExistsError(DataPreparationError, FileExistsError):
    """An output that exists already: nothing is overwritten."""


def list_images(folder: str) -> List[str]:
    """The image files directly in ``folder``, sorted by name."""
    if not os.path.isdir(folder):
        raise MissingFolderError(f'{folder!r} is not a folder: give the folder that holds the images.')
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise NoImagesError(f'No images ({", ".join(IMAGE_EXTENSIONS)}) in {folder!r}: give the folder that holds '
                            'the image files themselves (not a folder above it).')
    return [os.path.join(folder, n) for n in names]


def read_bgr(path: str) -> np.ndarray:
    """uint8 HxWx3 BGR image (grayscale files are repeated on three channels, as basicsr reads them)."""
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise UnreadableImageError(f'Cannot read image {path!r}: replace the file (downloaded again) or remove it.')
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


def lr_partner(lr_folder: str, lr_name: str, stem: str, ext: str, hr_path: str) -> str:
    """The LR file of the HR image ``hr_path``: ``lr_folder/lr_name.format(stem) + ext``, which must exist."""
    path = os.path.join(lr_folder, lr_name.format(stem) + ext)
    if not os.path.isfile(path):
        raise MissingPartnerError(f'{hr_path} has no LR partner: {path} does not exist. Check --lr-name (the LR file '
                                  f"stem from the HR stem, e.g. '{{}}x4' for {stem}x4{ext}) and the LR folder.")
    return path


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
        raise SizeMismatchError(
            f'crop_size ({crop_size}) and step ({step}) must be positive multiples of the scale ({scale}).')
    for hr_path in hr_paths:
        stem, ext = os.path.splitext(os.path.basename(hr_path))
        hr = mod_crop(read_bgr(hr_path), scale)
        lr = read_bgr(lr_partner(lr_folder, lr_name, stem, ext, hr_path)) if lr_folder else bicubic_downscale(hr, scale)
        if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
            raise SizeMismatchError(
                f'{hr_path}: LR {lr.shape[:2]} times {scale} does not match the cropped HR {hr.shape[:2]}: check '
                'the scale and that the LR folder is the one of this scale.')
        yield from sub_images(hr_path, hr, ((scale, lr), ), crop_size, step, thresh)


def multiscale_samples(hr_paths: Iterable[str], scales: Sequence[int], hr_mod: int, crop_size: int, step: int,
                       thresh: int) -> Iterator[Tuple[np.ndarray, ...]]:
    """Yield ``(key, hr, lr at scales[0], lr at scales[1], ...)`` sub-images: the HR cropped to a multiple of
    ``hr_mod`` (a multiple of every scale, so that one HR sub-image pairs with the LR of each scale), each LR the
    MATLAB-style bicubic of that HR, cut at the same positions divided by the scale (:func:`sub_images`)."""
    for scale in scales:
        if hr_mod % scale or crop_size % scale or step % scale or step <= 0:
            raise SizeMismatchError(f'hr_mod ({hr_mod}), crop_size ({crop_size}) and step ({step}) must be positive '
                                    f'multiples of every scale ({scale}).')
    for hr_path in hr_paths:
        hr = mod_crop(read_bgr(hr_path), hr_mod)
        lrs = tuple((scale, bicubic_downscale(hr, scale)) for scale in scales) if min(hr.shape[:2]) >= crop_size else ()
        yield from sub_images(hr_path, hr, lrs, crop_size, step, thresh)


def sub_images(hr_path: str, hr: np.ndarray, lrs: Sequence[Tuple[int, np.ndarray]], crop_size: int, step: int,
               thresh: int) -> Iterator[Tuple[np.ndarray, ...]]:
    """``(key, hr, lr, ...)`` of one image, ``lrs`` its ``(scale, lr)``: the whole images under the file's stem when
    ``crop_size`` is 0, else the sub-images at :func:`sub_image_origins` (the LR ones at the positions divided by their
    scale), keys ``<stem>_s001``, ... row by row as basicsr's ``extract_subimages`` numbers them. An image smaller
    than ``crop_size`` gives none (with a warning, as ``extract_subimages`` skips it)."""
    stem = os.path.splitext(os.path.basename(hr_path))[0]
    if not crop_size:
        yield (stem, hr, *(lr for _, lr in lrs))
        return
    if min(hr.shape[:2]) < crop_size:
        get_root_logger().warning(f'{hr_path}: {hr.shape[0]}x{hr.shape[1]} is smaller than the {crop_size}x'
                                  f'{crop_size} sub-images: skipped (as basicsr extract_subimages does).')
        return
    rows = sub_image_origins(hr.shape[0], crop_size, step, thresh)
    cols = sub_image_origins(hr.shape[1], crop_size, step, thresh)
    for i, (y, x) in enumerate((y, x) for y in rows for x in cols):
        lr_crops = (lr[y // s:(y + crop_size) // s, x // s:(x + crop_size) // s] for s, lr in lrs)
        yield (f'{stem}_s{i + 1:03d}', hr[y:y + crop_size, x:x + crop_size], *lr_crops)


def check_new_output(path: str) -> None:
    """Refuse an output path that exists (nothing is overwritten)."""
    if os.path.exists(path):
        raise OutputExistsError(f'{path!r} already exists: remove it (or choose another output path) and run again.')


def write_lmdbs(samples: Iterator[Tuple[np.ndarray, ...]], paths: Sequence[str], compress_level: int = 1) -> int:
    """Write samples ``(key, image for paths[0], image for paths[1], ...)`` into LMDBs with identical keys and
    ``meta_info.txt`` (basicsr's ``LmdbMaker``: PNG at ``compress_level``); returns the number of samples."""
    for path in paths:
        if not path.endswith('.lmdb'):
            raise DataPreparationError(f"LMDB paths must end with '.lmdb' (basicsr requires it): {path!r}")
        check_new_output(path)
    for path in paths:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    makers = [LmdbMaker(path, map_size=1 << 36, compress_level=compress_level) for path in paths]
    count = 0
    try:
        for key, *images in samples:
            assert len(images) == len(makers), f'{key}: {len(images)} images for {len(makers)} LMDBs'
            for maker, img in zip(makers, images):
                ok, encoded = cv2.imencode('.png', img, [cv2.IMWRITE_PNG_COMPRESSION, compress_level])
                maker.put(encoded.tobytes(), key, img.shape)
            count += 1
    except BaseException:  # an interrupted or failed write leaves no LMDB behind (a rerun would find it "existing")
        for maker in makers:
            maker.close()
        for path in paths:
            shutil.rmtree(path, ignore_errors=True)
        raise
    for maker in makers:
        maker.close()
    return count


def write_paired_lmdb(samples: Iterator[Tuple[str, np.ndarray, np.ndarray]],
                      hr_lmdb: str,
                      lr_lmdb: str,
                      compress_level: int = 1) -> int:
    """Write ``(key, hr, lr)`` samples into two LMDBs (:func:`write_lmdbs`); returns the number of pairs."""
    return write_lmdbs(samples, (hr_lmdb, lr_lmdb), compress_level)
