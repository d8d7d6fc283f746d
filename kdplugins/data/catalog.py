"""The published single-image SR data sets as data: where each is downloaded, the folder its archive unpacks to, how
many HR images it holds (and where that count is published), and what ``python -m kdplugins.prepare_data`` makes of
it under ``datasets/``: exactly the paths the option files in ``options/`` read (tests/test_prepare_data.py fails when
the two diverge). docs/datasets.md says the same for users.

Where the image counts come from:
- DIV2K 800 train / 100 valid: the AIM 2020 efficient SR challenge report ("800 training images, 100
  validation images and 100 testing images"; the test HR is not published) and BasicSR's docs/DatasetPreparation.md.
- Flickr2K 2650: BasicSR's docs/DatasetPreparation.md ("2650 2K images from Flickr"); DF2K 3450 = 800 + 2650, the
  count of the AugKD paper's Table 9.
- LSDIR 84,991 train: the public Hugging Face copy's card (84991 examples) and deepinv's ``LsdirHR`` (images
  0000001..0084991 in 85 folders 0001000..0085000 of 17 shards). Its validation download ``val1.tar.gz`` holds 250
  images (deepinv's check); no option file reads it, so it is not prepared here.
- Set5 5, Set14 14: the sets as published (baby, bird, butterfly, head, woman; the 14 of Zeyde et al.), as in the
  shared data README; B100 100 (the BSD300 test images), Urban100 100, Manga109 109: BasicSR's
  docs/DatasetPreparation.md. T91 91 and BSD200 200 (BSDS train + val): the same page and the shared data README.
"""
import math
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

BENCHMARK_TAR = 'https://cv.snu.ac.kr/research/EDSR/benchmark.tar'
BASICSR_DRIVE = 'https://drive.google.com/drive/folders/1pRmhEmmY-tPF7uH8DuVthfHoApZWJ1QU'
DIV2K_SITE = 'https://data.vision.ee.ethz.ch/cvl/DIV2K/'
LSDIR_SHARDS = tuple(f'https://data.vision.ee.ethz.ch/yawli/shard-{i:02d}.tar.gz' for i in range(17))


@dataclass(frozen=True)
class Source:
    """One downloaded folder of HR images.

    ``folders``: where the images may be under a ``--root`` (relative paths, the first that holds images is used;
    ``.`` is the root itself). ``subfolders``: a regular expression; when set, the images are in the subfolders of
    that folder whose names match it (LSDIR's ``0001000`` ... ``0085000``). ``count``: the published number of images;
    ``urls``: the official download, every file of it; ``mirrors``: other places that hold the same images."""
    name: str
    folders: Tuple[str, ...]
    count: int
    urls: Tuple[str, ...]
    mirrors: Tuple[str, ...] = ()
    subfolders: str = ''


@dataclass(frozen=True)
class TrainOutput:
    """Sub-images of the training sources in LMDBs with ``meta_info.txt``, paths relative to ``datasets/``; one HR
    LMDB serves every scale: its images are cropped to a multiple of every scale of the family first, so that its
    keys pair with each LR LMDB (``{scale}`` in ``lr_lmdb``). BasicSR's ``extract_subimages`` settings for DIV2K:
    480x480 HR sub-images every 240 pixels, an extra crop at the border when more than ``thresh`` pixels remain."""
    hr_lmdb: str
    lr_lmdb: str
    crop: int = 480
    step: int = 240
    thresh: int = 0


@dataclass(frozen=True)
class FolderOutput:
    """A test set as image folders, paths relative to ``datasets/`` (``{scale}``, ``{stem}``: the scale and the HR
    file's stem). ``mod`` 0: the HR is written whole and each LR is made from the HR cropped to a multiple of its
    scale (the EDSR benchmark pack's ``HR`` + ``LR_bicubic/X4/<stem>x4.png``; basicsr crops the HR to the LR at
    validation); ``mod`` 12: the HR is written cropped to a multiple of 12 and every LR is made from it (BasicSR's
    ``GTmod12`` + ``LRbicx4/<stem>.png``, ``scripts/matlab_scripts/generate_bicubic_img.m``)."""
    hr: str
    lr: str
    lr_name: str
    mod: int = 0


@dataclass(frozen=True)
class Family:
    """A data set family: ``train`` sources are merged into ``train_output``; ``test`` sources are written as
    ``test_outputs`` folders, for ``scales``."""
    name: str
    description: str
    scales: Tuple[int, ...]
    train: Tuple[Source, ...] = ()
    train_output: Optional[TrainOutput] = None
    test: Tuple[Source, ...] = ()
    test_outputs: Tuple[FolderOutput, ...] = ()

    @property
    def hr_mod(self) -> int:
        """The multiple the training HR images are cropped to: every scale's (12 for x2, x3, x4)."""
        return _lcm(self.scales)

    @property
    def sources(self) -> Tuple[Source, ...]:
        return self.train + self.test


def _lcm(numbers: Tuple[int, ...]) -> int:  # math.lcm needs Python 3.9
    result = 1
    for n in numbers:
        result = result * n // math.gcd(result, n)
    return result


def _folders(*names: str) -> Tuple[str, ...]:
    """Where a benchmark's HR images may be: ``<name>/HR`` (the EDSR pack, extracted or its ``benchmark/`` folder as
    root), ``<name>/original`` (BasicSR's packs), the root itself."""
    found = []
    for name in names:
        found += [f'{name}/HR', f'benchmark/{name}/HR', f'{name}/original', name]
    return tuple(found) + ('HR', 'original', '.')


def _benchmark(name: str, count: int, url: str, description: str, *aliases: str) -> Family:
    return Family(
        name,
        description, (2, 3, 4),
        test=(Source(name, _folders(name, *aliases), count, (url, ), (BASICSR_DRIVE, )), ),
        test_outputs=(FolderOutput(f'{name}/HR', f'{name}/LR_bicubic/X{{scale}}', '{stem}x{scale}'),
                      FolderOutput(f'{name}/GTmod12', f'{name}/LRbicx{{scale}}', '{stem}', mod=12)))


DIV2K_TRAIN = Source('DIV2K train', ('DIV2K_train_HR', 'DIV2K/DIV2K_train_HR'), 800,
                     (DIV2K_SITE + 'DIV2K_train_HR.zip', ))
FLICKR2K = Source('Flickr2K', ('Flickr2K_HR', 'Flickr2K/Flickr2K_HR'), 2650,
                  ('https://cv.snu.ac.kr/research/EDSR/Flickr2K.tar', ))

FAMILIES: Tuple[Family, ...] = (
    Family(
        'DIV2K',
        'DIV2K (Agustsson & Timofte 2017): 800 training and 100 validation 2K images', (2, 3, 4),
        train=(DIV2K_TRAIN, ),
        train_output=TrainOutput('DIV2K/DIV2K_train_HR_sub.lmdb', 'DIV2K/DIV2K_train_LR_bicubic_X{scale}_sub.lmdb'),
        test=(Source('DIV2K valid', ('DIV2K_valid_HR', 'DIV2K/DIV2K_valid_HR'), 100,
                     (DIV2K_SITE + 'DIV2K_valid_HR.zip', )), ),
        test_outputs=(FolderOutput('DIV2K/DIV2K_valid_HR', 'DIV2K/DIV2K_valid_LR_bicubic/X{scale}',
                                   '{stem}x{scale}'), )),
    Family(
        'Flickr2K',
        'Flickr2K (Lim et al. 2017, EDSR): 2650 2K images', (2, 3, 4),
        train=(FLICKR2K, ),
        train_output=TrainOutput('Flickr2K/Flickr2K_HR_sub.lmdb', 'Flickr2K/Flickr2K_LR_bicubic_X{scale}_sub.lmdb')),
    Family(
        'DF2K',
        'DF2K: DIV2K train + Flickr2K merged (3450 images)', (2, 3, 4),
        train=(DIV2K_TRAIN, FLICKR2K),
        train_output=TrainOutput('DF2K/DF2K_HR_sub.lmdb', 'DF2K/DF2K_LR_bicubic_X{scale}_sub.lmdb')),
    Family(
        'LSDIR',
        'LSDIR (Li et al. 2023): 84,991 training images', (2, 3, 4),
        train=(Source(
            'LSDIR train', ('.', 'LSDIR', 'train'),
            84991,
            LSDIR_SHARDS, ('https://huggingface.co/ofsoundof/LSDIR', ),
            subfolders=r'\d{7}'), ),
        train_output=TrainOutput('LSDIR/LSDIR_HR_sub.lmdb', 'LSDIR/LSDIR_LR_bicubic_X{scale}_sub.lmdb')),
    Family(
        'T91_BSD200',
        'T91 (Yang et al. 2010) + BSD200 (Berkeley BSDS train + val): the small x4 training set of the AugKD, '
        'CRD, CrossKD, CSD, FeatureKD and MemSR example option files', (4, ),
        train=(Source('T91', ('T91/HR', 'T91', 'T91/original'), 91, (BASICSR_DRIVE, )),
               Source('BSD200', ('BSD200/HR', 'BSD200', 'BSDS200', 'BSDS200/original'), 200, (BASICSR_DRIVE, ))),
        train_output=TrainOutput('T91_BSD200_HR_sub256.lmdb', 'T91_BSD200_LR_bicubic_X{scale}_sub256.lmdb', 256, 128)),
    _benchmark('Set5', 5, BENCHMARK_TAR, 'Set5 (Bevilacqua et al. 2012): 5 test images'),
    _benchmark('Set14', 14, BENCHMARK_TAR, 'Set14 (Zeyde et al. 2010): 14 test images'),
    _benchmark('B100', 100, BENCHMARK_TAR, 'B100 (Martin et al. 2001): the 100 test images of BSD300', 'BSDS100',
               'BSD100'),
    _benchmark('Urban100', 100, BENCHMARK_TAR, 'Urban100 (Huang et al. 2015): 100 test images', 'urban100'),
    _benchmark('Manga109', 109, 'http://www.manga109.org/en/',
               'Manga109 (Matsui et al. 2017): 109 test images (access by request on its site)', 'manga109'),
)

BY_NAME: Dict[str, Family] = {family.name: family for family in FAMILIES}


def output_paths(family: Family, scales: Optional[Tuple[int, ...]] = None) -> Tuple[str, ...]:
    """The paths (relative to ``datasets/``) that preparing ``family`` at ``scales`` writes."""
    scales = scales or family.scales
    paths = []
    if family.train_output:
        paths.append(family.train_output.hr_lmdb)
        paths += [family.train_output.lr_lmdb.format(scale=s) for s in scales]
    for out in family.test_outputs:
        paths.append(out.hr)
        paths += [out.lr.format(scale=s) for s in scales]
    return tuple(paths)
