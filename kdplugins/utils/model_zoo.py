"""The model zoo as data: every public checkpoint the option files in ``options/`` name, where it comes from and its
checksum. ``python -m kdplugins.download`` fetches them, ``python -m kdplugins.list --zoo`` prints :func:`zoo_table`,
docs/model_zoo.md holds the same table (tests/test_download.py checks they are equal).

How the checksums were verified (docs/model_zoo.md says the same):
- RFDN and IMDN: ``git hash-object`` of the files in the shared checkpoint folder equals the blob SHA-1 and size that
  ``git ls-tree -r -l HEAD`` gives for ``trained_model/RFDN_AIM.pth`` of github.com/njulj/RFDN and
  ``checkpoints/IMDN_x{2,3,4}.pth`` of github.com/Zheng222/IMDN; the sha256 is then computed from those files.
- CARN-M: sha256 and size of the shared file; no snapshot of github.com/nmhkahn/CARN could be read here, so that it
  is the official ``checkpoint/carn_m.pth`` is not checked.
- torchvision's VGG-19: the full sha256 and size as a public project's weight inventory lists them after checking its
  download; the digest starts with the file name's ``dcbb9e9d`` (torchvision's naming rule) and the size
  (574673361 bytes) is also the one a torchvision download log in another public notebook prints.
- BasicSR's EDSR releases: the file names embed the first 8 hex digits of the sha256 (BasicSR's naming rule). No full
  sha256 or size was found in a public source, so only that prefix is checked (``sha256`` shorter than 64 digits) and
  the size is unknown.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

BASICSR_RELEASE = 'https://github.com/XPixelGroup/BasicSR/releases/download/v0.1.0/'


@dataclass(frozen=True)
class ZooEntry:
    """One public checkpoint: ``file`` is its path under ``experiments/pretrained_models``; ``urls`` the official
    location first, then the mirrors its authors give; ``sha256`` the full digest, or the prefix the release name
    carries when no full digest is published; ``size`` in bytes, ``None`` when unknown."""
    name: str
    file: str
    urls: Tuple[str, ...]
    sha256: str
    size: Optional[int]
    licence: str
    used_by: Tuple[str, ...]

    @property
    def sha256_is_prefix(self) -> bool:
        return len(self.sha256) < 64


def _edsr(scale: int, digest: str, used_by: Tuple[str, ...]) -> ZooEntry:
    file = f'EDSR_Lx{scale}_f256b32_DIV2K_official-{digest}.pth'
    return ZooEntry(f'EDSR_Lx{scale}', f'EDSR/{file}', (BASICSR_RELEASE + file, ), digest, None, 'Apache-2.0 (BasicSR)',
                    used_by)


def _imdn(scale: int, digest: str, size: int) -> ZooEntry:
    return ZooEntry(f'IMDN_x{scale}', f'IMDN_x{scale}.pth',
                    (f'https://github.com/Zheng222/IMDN/raw/master/checkpoints/IMDN_x{scale}.pth', ), digest, size,
                    'none stated (the repository has no licence file)',
                    (f'options/test/teachers/test_IMDN_x{scale}.yml', ))


def _paper(*methods: str, arch: str, scale: int) -> Tuple[str, ...]:
    return tuple(f'options/train/paper/train_{method}_{arch}_x{scale}.yml' for method in methods)


ZOO: Tuple[ZooEntry, ...] = (
    ZooEntry('RFDN_AIM_x4', 'RFDN_AIM_x4.pth',
             ('https://github.com/njulj/RFDN/raw/master/trained_model/RFDN_AIM.pth', ),
             '11af8ec8ebd68689e90ef1e29044f9804c72d3bd9f7573820b7b26035782760c', 1754927, 'MIT (njulj/RFDN)',
             ('options/test/teachers/test_RFDN_x4.yml', 'options/train/AugKD/*_RFDN_EDSR_x4.yml',
              'options/train/CRD/*.yml', 'options/train/CrossKD/*.yml', 'options/train/FeatureKD/*.yml')),
    _imdn(2, '740b39653592bd3f49955a21cd9e16f2d37f2c413368cc09327601b8fbe42ce1', 2796052),
    _imdn(3, '11b1716a19bc16e5e353e1db798d476169338e631eb170c82d765559888cb028', 2830672),
    _imdn(4, 'e660c38221147217a136debeb99eb304d62d9c0f73ac421ed66281b619719714', 2879112),
    ZooEntry('CARN-M_x234', 'CARN-M_x234.pth', ('https://github.com/nmhkahn/CARN/raw/master/checkpoint/carn_m.pth', ),
             'd48a759a84509351facb6b7c6d5bd6edec98b98519b8c464ee4ab44d2ba964ff', 1670695, 'not checked (nmhkahn/CARN)',
             tuple(f'options/test/teachers/test_CARNM_x{s}.yml' for s in (2, 3, 4))),
    _edsr(2, 'be38e77d', _paper('AT', 'AugKD', 'CSD', 'FAKD', 'FitNet', 'JT', 'KD', 'RKD', arch='EDSR', scale=2)),
    _edsr(3, '3660f70d', _paper('AT', 'AugKD', 'CSD', 'FAKD', 'FitNet', 'KD', 'RKD', arch='EDSR', scale=3)),
    _edsr(4, '76ee1c8f', ('options/train/CSD/train_CSD_EDSR_x4.yml', 'options/train/CSD/train_JT_EDSR_x4.yml') +
          _paper('AT', 'AugKD', 'CSD', 'FAKD', 'FitNet', 'JT', 'KD', 'RKD', arch='EDSR', scale=4)),
    ZooEntry('VGG19', 'vgg19-dcbb9e9d.pth', ('https://download.pytorch.org/models/vgg19-dcbb9e9d.pth', ),
             'dcbb9e9dad569fff7a846263a77324fc34978fea2bfb039c012d710e1776ae44', 574673361,
             'BSD-3-Clause (torchvision; ImageNet-trained)',
             ('the CSD loss (kdplugins/losses/csd_loss.py)',
              'options/train/RealWorldKD/train_RealESRGANKD_RRDBNet_SRVGGNetCompact_x4.yml')),
)

BY_NAME: Dict[str, ZooEntry] = {entry.name: entry for entry in ZOO}


def entry_for_path(path: str) -> Optional[ZooEntry]:
    """The zoo entry whose file ``path`` names (by its end), or ``None``."""
    normalized = str(path).replace('\\', '/')
    return next((e for e in ZOO if normalized == e.file or normalized.endswith('/' + e.file)), None)


def zoo_hint(path: str) -> str:
    """For a missing file of the zoo: the command that fetches it (training never downloads); else ``''``."""
    entry = entry_for_path(path)
    return (f' It is {entry.name} of the model zoo: python -m kdplugins.download {entry.name} fetches it into '
            f'experiments/pretrained_models/{entry.file}.') if entry else ''


def zoo_table() -> List[str]:
    """The zoo as a Markdown table: name, file, source, sha256, size, licence."""
    lines = ['| name | file | source | sha256 | size (bytes) | licence |', '|---|---|---|---|---|---|']
    for e in ZOO:
        digest = f'{e.sha256} (prefix)' if e.sha256_is_prefix else e.sha256
        size = str(e.size) if e.size is not None else 'unknown'
        lines.append(f'| {e.name} | {e.file} | {" ; ".join(e.urls)} | {digest} | {size} | {e.licence} |')
    return lines
