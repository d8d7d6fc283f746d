"""Preparing a published data set family of :mod:`kdplugins.data.catalog` from its downloaded folders: the images
found and counted against the published count, then BasicSR's layout under ``datasets/`` (what the option files read).

- Training sources: sub-images (BasicSR's ``extract_subimages`` settings) of the HR cropped to a multiple of every
  scale, MATLAB-style bicubic LR (``basicsr.utils.matlab_functions.imresize``) of that HR for each scale, written into
  one HR LMDB and one LR LMDB per scale with ``meta_info.txt`` (:func:`kdplugins.data.paired_lmdb.multiscale_samples`).
- Test sources: the HR folder(s) and one LR folder per scale, named as the option files' ``filename_tmpl`` expects
  (:class:`kdplugins.data.catalog.FolderOutput`).

Everything is checked before anything is written (folders, counts, outputs that exist); a failed or interrupted run
removes what it wrote, so that the next run starts clean.
"""
import cv2
import os
import re
import shutil
from dataclasses import dataclass
from tqdm import tqdm
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from kdplugins.data.catalog import Family, Source, output_paths
from kdplugins.data.paired_lmdb import (IMAGE_EXTENSIONS, DataPreparationError, bicubic_downscale, check_new_output,
                                        mod_crop, multiscale_samples, read_bgr, write_lmdbs)


class DownloadNotFoundError(DataPreparationError, FileNotFoundError):
    """No folder of a data set's images under the given roots; the message says what to download and where."""


class ImageCountError(DataPreparationError):
    """A data set folder with another number of images than published; the message names the folder and the counts."""


class DuplicateKeyError(DataPreparationError):
    """Two training images with the same file stem (their sub-images would share LMDB keys)."""


@dataclass(frozen=True)
class Found:
    """A source's images as found under a root: ``folder`` and the image paths used (sorted)."""
    source: Source
    folder: str
    paths: Tuple[str, ...]


def download_hint(source: Source) -> str:
    urls = source.urls if len(source.urls) < 3 else (source.urls[0], '...', source.urls[-1])
    files = f' ({len(source.urls)} files)' if len(source.urls) > 1 else ''
    mirrors = f' (or from {", ".join(source.mirrors)})' if source.mirrors else ''
    where = ', '.join('<root>' if folder == '.' else f'<root>/{folder}' for folder in source.folders)
    them = 'them' if len(source.urls) > 1 else 'it'
    return (f'Download {" ".join(urls)}{files}{mirrors}, unpack {them} and pass its folder as --root, so that the '
            f'{source.count} images of {source.name} are in one of: {where} (docs/datasets.md).')


def images_in(folder: str, subfolders: str = '') -> List[str]:
    """The image files of ``folder`` (sorted), or of its subfolders whose names match ``subfolders``."""
    if not os.path.isdir(folder):
        return []
    if subfolders:
        names = sorted(n for n in os.listdir(folder) if re.fullmatch(subfolders, n))
        return [path for name in names for path in images_in(os.path.join(folder, name))]
    return [
        os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name.lower().endswith(IMAGE_EXTENSIONS)
    ]


def find_source(source: Source, roots: Sequence[str]) -> Tuple[str, List[str]]:
    """The first of ``source.folders`` under one of ``roots`` that holds images, and its images."""
    for root in roots:
        for relative in source.folders:
            folder = os.path.normpath(os.path.join(root, relative))
            paths = images_in(folder, source.subfolders)
            if paths:
                return folder, paths
    raise DownloadNotFoundError(f'{source.name}: no images found under --root {" ".join(roots)}. ' +
                                download_hint(source))


def check_count(source: Source, folder: str, paths: Sequence[str], max_images: Optional[int]) -> Tuple[str, ...]:
    """The images to use: all of the published count, or the first ``max_images`` (a smoke run)."""
    if max_images is None:
        if len(paths) != source.count:
            raise ImageCountError(f'{source.name}: found {len(paths)} images in {folder}, expected {source.count} (the '
                                  f'published set). ' + download_hint(source))
        return tuple(paths)
    need = min(max_images, source.count)
    if len(paths) < need:
        raise ImageCountError(f'{source.name}: found {len(paths)} images in {folder}, expected at least {need} '
                              f'(--max-images {max_images}; the published set has {source.count}). ' +
                              download_hint(source))
    return tuple(paths[:need])


def find_family(family: Family, roots: Sequence[str], max_images: Optional[int] = None) -> List[Found]:
    """Every source of ``family`` found and counted (nothing written yet)."""
    found = []
    for source in family.sources:
        folder, paths = find_source(source, roots)
        found.append(Found(source, folder, check_count(source, folder, paths, max_images)))
    stems: Dict[str, str] = {}
    for item in found:
        if item.source not in family.train:
            continue
        for path in item.paths:
            stem = os.path.splitext(os.path.basename(path))[0]
            if stem in stems:
                raise DuplicateKeyError(f'{path} and {stems[stem]} have the same name {stem}: their sub-images would '
                                        'share LMDB keys. Rename one of them.')
            stems[stem] = path
    return found


def write_png(path: str, image) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if not cv2.imwrite(path, image):
        raise OSError(f'could not write {path}')


def write_test_folders(family: Family, found: Found, out: str, scales: Sequence[int], progress: bool) -> int:
    """HR and LR folders of a test source (:class:`~kdplugins.data.catalog.FolderOutput`); returns the image count."""
    for path in tqdm(found.paths, desc=f'{found.source.name}: HR and LR folders', unit='img', disable=not progress):
        stem = os.path.splitext(os.path.basename(path))[0]
        image = read_bgr(path)
        for layout in family.test_outputs:
            hr = mod_crop(image, layout.mod) if layout.mod else image
            write_png(os.path.join(out, layout.hr, stem + '.png'), hr)
            for scale in scales:
                name = layout.lr_name.format(stem=stem, scale=scale) + '.png'
                write_png(
                    os.path.join(out, layout.lr.format(scale=scale), name),
                    bicubic_downscale(mod_crop(hr, scale), scale))
    return len(found.paths)


def write_train_lmdbs(family: Family, found: Sequence[Found], out: str, scales: Sequence[int], progress: bool) -> int:
    """The training sources' sub-images into the HR LMDB and one LR LMDB per scale; returns the sub-image count."""
    spec = family.train_output
    paths = [path for item in found if item.source in family.train for path in item.paths]
    images = tqdm(paths, desc=f'{family.name}: sub-images and LMDBs', unit='img', disable=not progress)
    lmdbs = [os.path.join(out, spec.hr_lmdb)] + [os.path.join(out, spec.lr_lmdb.format(scale=s)) for s in scales]
    return write_lmdbs(multiscale_samples(images, scales, family.hr_mod, spec.crop, spec.step, spec.thresh), lmdbs)


def prepare_family(family: Family,
                   roots: Sequence[str],
                   out: str = 'datasets',
                   scales: Optional[Sequence[int]] = None,
                   max_images: Optional[int] = None,
                   progress: bool = True,
                   log: Callable[[str], None] = print) -> Tuple[str, ...]:
    """Check the downloaded folders of ``family`` under ``roots`` and write its outputs under ``out``; returns the
    paths written (:func:`kdplugins.data.catalog.output_paths` under ``out``)."""
    scales = tuple(scales or family.scales)
    unknown = [s for s in scales if s not in family.scales]
    if unknown:
        raise DataPreparationError(f'{family.name} is prepared at scales {family.scales}, not {unknown}: choose '
                                   '--scales among those.')
    found = find_family(family, roots, max_images)
    for item in found:
        limited = f' (the first {len(item.paths)} of {item.source.count}: --max-images)' if max_images else ''
        log(f'{item.source.name}: {len(item.paths)} images in {item.folder}{limited}')
    if max_images is not None:
        log(f'--max-images {max_images}: a smoke run, not the published {family.name}; its outputs hold only these '
            'images.')
    outputs = tuple(os.path.join(out, path) for path in output_paths(family, scales))
    for item in found:
        if any(os.path.abspath(item.folder) == os.path.abspath(path) for path in outputs):
            raise DataPreparationError(
                f'{item.folder} is both the download of {item.source.name} and an output: unpack '
                f'the download outside {out} (e.g. downloads/) and pass that folder as --root.')
    for path in outputs:
        check_new_output(path)
    try:
        if family.train_output:
            count = write_train_lmdbs(family, found, out, scales, progress)
            log(f'{family.name}: {count} sub-images in {outputs[0]} and the LR LMDBs of x' +
                ', x'.join(map(str, scales)))
        for item in found:
            if item.source in family.test:
                write_test_folders(family, item, out, scales, progress)
    except BaseException:  # a failed or interrupted run leaves nothing half written
        for path in outputs:
            shutil.rmtree(path, ignore_errors=True)
        raise
    for path in outputs:
        log(f'wrote {path}')
    return outputs
