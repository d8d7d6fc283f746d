"""``kdplugins.prepare_data`` and ``kdplugins.create_lmdb`` on small folders made here from the real images of the
shared data folder (Set14 and Set5 images under DIV2K's names, T91 and BSD200 as they are): the LR against basicsr's
``imresize`` of the cropped HR, bit for bit; the LMDBs' keys, ``meta_info.txt`` and images against the sources; the
count check and the other configuration errors of both commands (exit 2, their messages); and the prepared layout
against what the shipped option files read, through basicsr's own ``PairedImageDataset``."""
import cv2
import numpy as np
import pytest
import shutil
import sys
import yaml
from basicsr.data import build_dataset
from basicsr.utils import imfrombytes
from basicsr.utils.matlab_functions import imresize
from conftest import REPO, in_process, require_shared_data
from pathlib import Path

from kdplugins import create_lmdb, prepare_data
from kdplugins.data.catalog import BY_NAME, FAMILIES, output_paths
from kdplugins.runtime.compat import open_lmdb

# DIV2K's file names on real images at least 480x480 after the crop to a multiple of 12 (the shared Set14 and Set5)
DIV2K_TRAIN = {'0001': 'Set14/HR/barbara.png', '0002': 'Set14/HR/monarch.png', '0003': 'Set14/HR/baboon.png'}
DIV2K_VALID = {'0801': 'Set5/HR/baby.png', '0802': 'Set5/HR/bird.png', '0803': 'Set5/HR/woman.png'}


def run(main, *args: str, cwd: Path):
    """``python -m <module> args`` in this process, through its console entry point (exit code, stdout, stderr)."""
    return in_process([sys.executable, '-m', main.__module__, *args], cwd, main, [main.__module__, *args])


def matlab_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """basicsr's MATLAB-style imresize of a uint8 HR whose sides are multiples of ``scale``, rounded to uint8."""
    assert hr.shape[0] % scale == 0 and hr.shape[1] % scale == 0
    return np.clip(np.round(imresize(hr / 255., 1 / scale) * 255), 0, 255).astype(np.uint8)


def read_lmdb(path: Path) -> dict:
    env = open_lmdb(str(path), readonly=True, lock=False, readahead=False)
    with env.begin() as txn:
        return {key.decode(): imfrombytes(value, float32=False) for key, value in txn.cursor()}


def origins(length: int, crop: int = 480, step: int = 240) -> list:
    """basicsr's extract_subimages positions (thresh_size 0)."""
    starts = list(range(0, length - crop + 1, step))
    return starts + [length - crop] if length - (starts[-1] + crop) > 0 else starts


@pytest.fixture(scope='module')
def shared() -> Path:
    return require_shared_data('the real images of Set5, Set14, T91 and BSD200 (val/, train/)')


@pytest.fixture(scope='module')
def prepared(tmp_path_factory, shared) -> Path:
    """A folder as a user's after downloading (``downloads/``: DIV2K_train_HR with 3 images, DIV2K_valid_HR with 3,
    the shared Set5, T91 and BSD200) and ``kd-prepare-data`` of DIV2K, Set5 and T91_BSD200 (``--max-images``)."""
    work = tmp_path_factory.mktemp('prepare')
    for folder, names in (('DIV2K_train_HR', DIV2K_TRAIN), ('DIV2K_valid_HR', DIV2K_VALID)):
        (work / 'downloads' / folder).mkdir(parents=True)
        for name, source in names.items():
            shutil.copyfile(shared / 'val' / source, work / 'downloads' / folder / f'{name}.png')
    for family, root, limit in (('DIV2K', work / 'downloads', '3'), ('Set5', shared / 'val', None),
                                ('T91_BSD200', shared / 'train', '2')):
        args = [family, '--root', str(root), '--no-progress'] + (['--max-images', limit] if limit else [])
        result = run(prepare_data.command_line, *args, cwd=work)
        assert result.returncode == 0, result.stdout + result.stderr
    return work


def test_div2k_lmdbs_are_the_sub_images_of_the_hr_and_its_matlab_bicubic(prepared, shared):
    """One HR LMDB for x2, x3 and x4 (the HR cropped to a multiple of 12), one LR LMDB per scale: every sub-image at
    basicsr's extract_subimages positions (480, step 240), every LR the direct imresize of that HR, bit for bit."""
    datasets = prepared / 'datasets' / 'DIV2K'
    lmdbs = {'HR': read_lmdb(datasets / 'DIV2K_train_HR_sub.lmdb')}
    lmdbs.update({s: read_lmdb(datasets / f'DIV2K_train_LR_bicubic_X{s}_sub.lmdb') for s in (2, 3, 4)})
    expected_keys = []
    for name, source in DIV2K_TRAIN.items():
        image = cv2.imread(str(shared / 'val' / source), cv2.IMREAD_COLOR)
        hr = image[:image.shape[0] // 12 * 12, :image.shape[1] // 12 * 12]
        lrs = {s: matlab_lr(hr, s) for s in (2, 3, 4)}
        boxes = [(y, x) for y in origins(hr.shape[0]) for x in origins(hr.shape[1])]
        for i, (y, x) in enumerate(boxes):
            key = f'{name}_s{i + 1:03d}'
            expected_keys.append(key)
            np.testing.assert_array_equal(lmdbs['HR'][key], hr[y:y + 480, x:x + 480])
            for s in (2, 3, 4):
                np.testing.assert_array_equal(lmdbs[s][key], lrs[s][y // s:(y + 480) // s, x // s:(x + 480) // s])
    assert len(expected_keys) == 4 + 6 + 2  # barbara 576x720, monarch 504x768, baboon 480x492 (after the crop to 12)
    for folder, side in [('DIV2K_train_HR_sub.lmdb', 480)] + [(f'DIV2K_train_LR_bicubic_X{s}_sub.lmdb', 480 // s)
                                                              for s in (2, 3, 4)]:
        lines = (datasets / folder / 'meta_info.txt').read_text().splitlines()
        assert lines == [f'{key}.png ({side},{side},3) 1' for key in expected_keys], folder
    for s in (2, 3, 4):
        assert sorted(lmdbs[s]) == sorted(lmdbs['HR']) == sorted(expected_keys)


@pytest.mark.parametrize('layout', ['EDSR', 'BasicSR'])
def test_benchmark_folders_are_the_hr_and_its_matlab_bicubic(prepared, shared, layout):
    """Set5 in both layouts the option files read: ``HR`` whole and ``LR_bicubic/X<s>/<name>x<s>.png`` from the HR
    cropped to a multiple of s; ``GTmod12`` (cropped to 12) and ``LRbicx<s>/<name>.png`` from it."""
    set5 = prepared / 'datasets' / 'Set5'
    for path in sorted((shared / 'val' / 'Set5' / 'HR').iterdir()):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if layout == 'EDSR':
            np.testing.assert_array_equal(cv2.imread(str(set5 / 'HR' / path.name)), image)
            for s in (2, 3, 4):
                hr = image[:image.shape[0] // s * s, :image.shape[1] // s * s]
                lr = cv2.imread(str(set5 / 'LR_bicubic' / f'X{s}' / f'{path.stem}x{s}.png'))
                np.testing.assert_array_equal(lr, matlab_lr(hr, s))
        else:
            gt = image[:image.shape[0] // 12 * 12, :image.shape[1] // 12 * 12]
            np.testing.assert_array_equal(cv2.imread(str(set5 / 'GTmod12' / path.name)), gt)
            for s in (2, 3, 4):
                np.testing.assert_array_equal(cv2.imread(str(set5 / f'LRbicx{s}' / path.name)), matlab_lr(gt, s))


def test_written_paths_are_the_catalogued_ones(prepared):
    """What the three runs wrote under datasets/ is exactly the catalogue's outputs, nothing more."""
    written = {str(p.relative_to(prepared / 'datasets')) for p in (prepared / 'datasets').rglob('*') if p.is_dir()}
    leaves = {p for p in written if not any(q.startswith(p + '/') for q in written)}
    expected = {p for name in ('DIV2K', 'Set5', 'T91_BSD200') for p in output_paths(BY_NAME[name])}
    assert leaves == expected


def option_datasets() -> list:
    """``(option file, dataset block, scale)`` of every paired dataset that a shipped option file reads from
    datasets/, except the demos' (scripts/demo.py and scripts/realworld_demo_data.py build those). Real-world
    training sets (``RealESRGANDataset``: HR only, Real-ESRGAN's DF2K+OST layout) are prepared with Real-ESRGAN's
    own scripts (docs/realworld_kd.md)."""
    found = []
    for path in sorted((REPO / 'options').rglob('*.yml')):
        options = yaml.safe_load(path.read_text())
        for block in (options.get('datasets') or {}).values():
            root = str(block.get('dataroot_gt', ''))
            demo = root.startswith(('datasets/demo/', 'datasets/realworld_demo/'))
            if root.startswith('datasets/') and not demo and block.get('type') != 'RealESRGANDataset':
                found.append((path.relative_to(REPO), block, options['scale']))
    return found


def test_every_data_path_of_the_option_files_is_prepared_by_a_family():
    """The option files and the catalogue cannot diverge: each dataroot an option file reads is an output of a
    family (``python -m kdplugins.prepare_data FAMILY`` writes it)."""
    outputs = {f'datasets/{p}' for family in FAMILIES for p in output_paths(family)}
    read = option_datasets()
    assert len(read) > 100
    missing = {(str(f), b[key]) for f, b, _ in read for key in ('dataroot_gt', 'dataroot_lq') if b[key] not in outputs}
    assert not missing, sorted(missing)


def test_option_files_read_the_prepared_data_through_basicsr(prepared, monkeypatch):
    """Every distinct dataset block of the shipped option files that reads DIV2K, Set5 or T91_BSD200 (the families
    prepared here) is built by basicsr from the prepared folders: its files pair (``filename_tmpl``), every validation
    pair is the scale apart, training samples crop to ``gt_size`` at the file's scale."""
    prepared_paths = {f'datasets/{p}' for name in ('DIV2K', 'Set5', 'T91_BSD200') for p in output_paths(BY_NAME[name])}
    blocks = {}
    for file, block, scale in option_datasets():
        if block['dataroot_gt'] in prepared_paths:
            key = (block['dataroot_gt'], block['dataroot_lq'], block.get('filename_tmpl', '{}'), block.get('gt_size'))
            blocks.setdefault(key, (file, block, scale))
    read = {b['dataroot_gt'] for _, b, _ in blocks.values()}
    assert read == {
        'datasets/DIV2K/DIV2K_train_HR_sub.lmdb', 'datasets/Set5/GTmod12', 'datasets/Set5/HR',
        'datasets/T91_BSD200_HR_sub256.lmdb'
    }
    monkeypatch.chdir(prepared)  # the option files' relative dataroots, as a run started here reads them
    for file, block, scale in blocks.values():
        phase = 'train' if 'gt_size' in block else 'val'
        dataset = build_dataset({**block, 'phase': phase, 'scale': scale})
        items = [dataset[0]] if phase == 'train' else [dataset[i] for i in range(len(dataset))]
        assert phase == 'train' or len(dataset) == 5, file  # Set5
        for item in items:
            gt, lq = item['gt'].shape, item['lq'].shape
            assert gt[1:] == (lq[1] * scale, lq[2] * scale), (file, item['gt_path'])
            if phase == 'train':
                assert gt[1:] == (block['gt_size'], block['gt_size']), file


def test_count_check_names_the_folder_the_counts_and_the_download(tmp_path, shared):
    downloads = tmp_path / 'downloads' / 'DIV2K_train_HR'
    downloads.mkdir(parents=True)
    for name, source in list(DIV2K_TRAIN.items())[:2]:
        shutil.copyfile(shared / 'val' / source, downloads / f'{name}.png')
    limited = run(
        prepare_data.command_line, 'DIV2K', '--root', str(tmp_path / 'downloads'), '--max-images', '3', cwd=tmp_path)
    assert limited.returncode == 2
    assert limited.stderr == (
        f'kd-prepare-data: error: DIV2K train: found 2 images in {downloads}, expected at least 3 (--max-images 3; the '
        'published set has 800). Download https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip, unpack it and '
        'pass its folder as --root, so that the 800 images of DIV2K train are in one of: <root>/DIV2K_train_HR, '
        '<root>/DIV2K/DIV2K_train_HR (docs/datasets.md).\n(--traceback shows where it was raised)\n')
    full = run(prepare_data.command_line, 'DIV2K', '--root', str(tmp_path / 'downloads'), cwd=tmp_path)
    assert full.returncode == 2 and f'found 2 images in {downloads}, expected 800 (the published set)' in full.stderr
    absent = run(prepare_data.command_line, 'Urban100', '--root', str(tmp_path / 'downloads'), cwd=tmp_path)
    assert absent.returncode == 2
    assert 'Urban100: no images found under --root' in absent.stderr and 'EDSR/benchmark.tar' in absent.stderr
    assert not (tmp_path / 'datasets').exists()


def test_existing_outputs_and_downloads_inside_the_output_are_refused(prepared, shared):
    again = run(prepare_data.command_line, 'Set5', '--root', str(shared / 'val'), cwd=prepared)
    assert again.returncode == 2
    assert again.stderr == ("kd-prepare-data: error: 'datasets/Set5/HR' already exists: remove it (or choose another "
                            'output path) and run again.\n(--traceback shows where it was raised)\n')
    inside = run(prepare_data.command_line, 'Set5', '--root', 'datasets', '--out', 'datasets', cwd=prepared)
    assert inside.returncode == 2 and 'is both the download of Set5 and an output' in inside.stderr


def test_create_lmdb_configuration_errors(tmp_path, shared):
    """kd-create-lmdb: each input problem is one line naming the fix (exit 2), nothing is written."""
    hr, lr = tmp_path / 'HR', tmp_path / 'X4'
    hr.mkdir()
    lr.mkdir()
    for name in ('baby', 'bird'):
        shutil.copyfile(shared / 'val' / 'Set5' / 'HR' / f'{name}.png', hr / f'{name}.png')
    shutil.copyfile(shared / 'val' / 'Set5' / 'LR_bicubic' / 'X4' / 'babyx4.png', lr / 'babyx4.png')
    out = ['--out-hr', str(tmp_path / 'h.lmdb'), '--out-lr', str(tmp_path / 'l.lmdb')]
    cases = {
        'missing folder': (['--hr', str(tmp_path / 'nothing'), '--scale', '4'], 'is not a folder'),
        'no images': (['--hr', str(tmp_path), '--scale', '4'], 'No images (.png'),
        'LR count': (['--hr', str(hr), str(hr), '--lr', str(lr), '--scale', '4'], 'give one --lr folder per --hr'),
        'LR partner': (['--hr', str(hr), '--lr', str(lr), '--lr-name', '{}x4', '--scale',
                        '4'], f'{hr}/bird.png has no LR partner: {lr}/birdx4.png does not exist'),
    }
    for case, (args, message) in cases.items():
        result = run(create_lmdb.command_line, *args, *out, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, case
        assert result.stderr.startswith('kd-create-lmdb: error: ') and result.stderr.endswith(
            ".\n(--traceback shows where it was raised)\n") and result.stderr.count('\n') == 2, case
        assert not (tmp_path / 'h.lmdb').exists() and not (tmp_path / 'l.lmdb').exists(), case
    made = run(create_lmdb.command_line, '--hr', str(hr), '--scale', '4', *out, cwd=tmp_path)
    assert made.returncode == 0 and 'Wrote 2 pairs' in made.stdout and 'images: 100%' in made.stderr
    exists = run(create_lmdb.command_line, '--hr', str(hr), '--scale', '4', *out, cwd=tmp_path)
    assert exists.returncode == 2 and f"'{tmp_path}/h.lmdb' already exists: remove it" in exists.stderr


def test_merged_and_sharded_training_sets(tmp_path, shared):
    """DF2K merges the DIV2K and the Flickr2K download (two roots) into one set of LMDBs; LSDIR's images are found in
    its numbered shard folders. baboon (480x500, 480x492 after the crop to 12) gives two sub-images each time."""
    baboon = shared / 'val' / 'Set14' / 'HR' / 'baboon.png'
    for folder, name in (('div2k/DIV2K_train_HR', '0001'), ('flickr/Flickr2K/Flickr2K_HR', '000001'),
                         ('lsdir/0001000', '0000001'), ('lsdir/0002000', '0001001')):
        (tmp_path / folder).mkdir(parents=True)
        shutil.copyfile(baboon, tmp_path / folder / f'{name}.png')
    (tmp_path / 'lsdir' / 'val1').mkdir()  # not a shard: its images are not LSDIR's training images
    shutil.copyfile(baboon, tmp_path / 'lsdir' / 'val1' / '0000001.png')
    for family, roots, limit in (('DF2K', ['div2k', 'flickr'], '1'), ('LSDIR', ['lsdir'], '2')):
        result = run(
            prepare_data.command_line,
            family,
            '--root',
            *roots,
            '--max-images',
            limit,
            '--scales',
            '4',
            '--no-progress',
            cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
    hr = read_lmdb(tmp_path / 'datasets' / 'DF2K' / 'DF2K_HR_sub.lmdb')
    assert sorted(hr) == ['000001_s001', '000001_s002', '0001_s001', '0001_s002']
    image = cv2.imread(str(baboon))[:, :492]
    np.testing.assert_array_equal(hr['000001_s002'], image[:, 12:492])
    lr = read_lmdb(tmp_path / 'datasets' / 'DF2K' / 'DF2K_LR_bicubic_X4_sub.lmdb')
    np.testing.assert_array_equal(lr['000001_s002'], matlab_lr(image, 4)[:, 3:123])
    lines = (tmp_path / 'datasets' / 'LSDIR' / 'LSDIR_LR_bicubic_X4_sub.lmdb' / 'meta_info.txt').read_text()
    assert lines.splitlines() == [
        f'{key}.png (120,120,3) 1' for key in ('0000001_s001', '0000001_s002', '0001001_s001', '0001001_s002')
    ]
    assert sorted(p.name for p in (tmp_path / 'datasets' / 'LSDIR').iterdir()) == [
        'LSDIR_HR_sub.lmdb', 'LSDIR_LR_bicubic_X4_sub.lmdb'
    ]
