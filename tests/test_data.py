"""scripts/create_lmdb.py and PairedImageDatasetWithIndex on real images: photos bundled with scikit-image (the
``hr_images`` fixture of conftest.py) and, for the comparison with a benchmark's own LR files, Set5 from the shared
data folder."""
import cv2
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils import imfrombytes, img2tensor
from conftest import run_script

from kdplugins.data.paired_lmdb import bicubic_downscale, list_images, mod_crop, paired_samples, read_bgr
from kdplugins.runtime.compat import open_lmdb


def read_lmdb(path: str) -> dict:
    """Every image of an LMDB, read through the process's one environment of it (as basicsr's backend opens it: lmdb
    refuses a second environment of a path that a training run in this process opened)."""
    env = open_lmdb(path, readonly=True, lock=False, readahead=False)
    with env.begin() as txn:
        return {key.decode(): imfrombytes(value, float32=False) for key, value in txn.cursor()}


def meta_keys(path: str) -> list:
    with open(f'{path}/meta_info.txt') as f:
        return [line.split('.png')[0] for line in f]


def test_whole_images_with_matlab_bicubic_lr(tmp_path, hr_images):
    hr_lmdb, lr_lmdb = str(tmp_path / 'hr.lmdb'), str(tmp_path / 'lr.lmdb')
    out = run_script('scripts/create_lmdb.py', '--hr', str(hr_images), '--scale', '3', '--out-hr', hr_lmdb, '--out-lr',
                     lr_lmdb).stdout
    assert 'Wrote 5 pairs' in out
    hr_images_read, lr_images_read = read_lmdb(hr_lmdb), read_lmdb(lr_lmdb)
    assert meta_keys(hr_lmdb) == meta_keys(lr_lmdb) == ['astronaut', 'chelsea', 'coffee', 'ihc', 'motorcycle']
    for path in list_images(str(hr_images)):
        key = path.rsplit('/', 1)[1][:-4]
        hr = mod_crop(read_bgr(path), 3)
        np.testing.assert_array_equal(hr_images_read[key], hr)
        np.testing.assert_array_equal(lr_images_read[key], bicubic_downscale(hr, 3))
    with open(f'{hr_lmdb}/meta_info.txt') as f:
        assert f.readline().strip() == 'astronaut.png (510,510,3) 1'  # 512x512 cropped to a multiple of 3


@pytest.mark.parametrize('scale', [2, 3, 4])
def test_bicubic_is_basicsr_matlab_imresize(hr_images, scale):
    """Our LR is basicsr's MATLAB-style imresize of the HR cropped to a multiple of the scale, rounded to uint8."""
    from basicsr.utils.matlab_functions import imresize
    hr = mod_crop(read_bgr(str(hr_images / 'ihc.png')), scale)  # 344x228: cropped to 342x228 at x3
    direct = np.clip(np.round(imresize(hr / 255., 1 / scale) * 255), 0, 255).astype(np.uint8)
    lr = bicubic_downscale(hr, scale)
    assert lr.shape == (hr.shape[0] // scale, hr.shape[1] // scale, 3)
    np.testing.assert_array_equal(lr, direct)


@pytest.mark.shared_data("Set5 with its bundled LR_bicubic/X4 files (the data provider's own bicubic)")
def test_bicubic_is_close_to_set5_bundled_lr(shared_data):
    """Against the bundled LR files (made by the data provider's own MATLAB-style bicubic) our LR differs by at most
    2 grey levels."""
    set5 = shared_data / 'val' / 'Set5'
    lr = bicubic_downscale(mod_crop(read_bgr(str(set5 / 'HR' / 'bird.png')), 4), 4)
    bundled = read_bgr(str(set5 / 'LR_bicubic' / 'X4' / 'birdx4.png'))
    assert lr.shape == bundled.shape == (72, 72, 3)
    assert np.abs(lr.astype(int) - bundled.astype(int)).max() <= 2


def test_sub_images_stay_aligned_with_lr(tmp_path, hr_images):
    hr_lmdb, lr_lmdb = str(tmp_path / 'hr.lmdb'), str(tmp_path / 'lr.lmdb')
    run_script('scripts/create_lmdb.py', '--hr', str(hr_images), '--scale', '4', '--crop-size', '128', '--step', '64',
               '--out-hr', hr_lmdb, '--out-lr', lr_lmdb)
    hr_read, lr_read = read_lmdb(hr_lmdb), read_lmdb(lr_lmdb)
    hr_full = mod_crop(read_bgr(str(hr_images / 'motorcycle.png')), 4)  # 280x280: origins 0, 64, 128, 152 at the end
    lr_full = bicubic_downscale(hr_full, 4)
    keys = sorted(k for k in hr_read if k.startswith('motorcycle_'))
    assert len(keys) == 16
    origins = [(y, x) for y in (0, 64, 128, 152) for x in (0, 64, 128, 152)]
    for key, (y, x) in zip(keys, origins):
        np.testing.assert_array_equal(hr_read[key], hr_full[y:y + 128, x:x + 128])
        np.testing.assert_array_equal(lr_read[key], lr_full[y // 4:y // 4 + 32, x // 4:x // 4 + 32])


def test_lr_from_folder_must_match_scale(tmp_path, hr_images):
    """LR images read from a folder (named ``{}x4.png`` as in the benchmark sets' LR_bicubic/X4 folders; made here
    with OpenCV's area resampling, so that they differ from the bicubic create_lmdb.py would make) are stored as they
    are, and refused at a scale they do not have."""
    lr_folder = tmp_path / 'X4'
    lr_folder.mkdir()
    for path in list_images(str(hr_images)):
        hr = read_bgr(path)
        assert hr.shape[0] % 4 == 0 and hr.shape[1] % 4 == 0
        lr = cv2.resize(hr, (hr.shape[1] // 4, hr.shape[0] // 4), interpolation=cv2.INTER_AREA)
        assert not np.array_equal(lr, bicubic_downscale(hr, 4))
        cv2.imwrite(str(lr_folder / path.rsplit('/', 1)[1].replace('.png', 'x4.png')), lr)
    result = run_script('scripts/create_lmdb.py', '--hr', str(hr_images), '--lr', str(lr_folder), '--lr-name', '{}x4',
                        '--scale', '4', '--out-hr', str(tmp_path / 'h.lmdb'), '--out-lr', str(tmp_path / 'l.lmdb'))
    assert 'Wrote 5 pairs' in result.stdout
    stored = read_lmdb(str(tmp_path / 'l.lmdb'))
    assert sorted(stored) == ['astronaut', 'chelsea', 'coffee', 'ihc', 'motorcycle']
    for key, lr in stored.items():
        np.testing.assert_array_equal(lr, read_bgr(str(lr_folder / f'{key}x4.png')))
    with pytest.raises(AssertionError, match='does not match the cropped HR'):
        run_script('scripts/create_lmdb.py', '--hr', str(hr_images), '--lr', str(lr_folder), '--lr-name', '{}x4',
                   '--scale', '2', '--out-hr', str(tmp_path / 'h2.lmdb'), '--out-lr', str(tmp_path / 'l2.lmdb'))


def dataset_options(lmdbs: dict, type_name: str) -> dict:
    return {
        'name': 'v',
        'type': type_name,
        'dataroot_gt': lmdbs['val_hr'],
        'dataroot_lq': lmdbs['val_lr'],
        'io_backend': {
            'type': 'lmdb'
        },
        'phase': 'val',
        'scale': 2
    }


def test_dataset_with_index_returns_the_paired_items_and_their_index(tiny_lmdbs):
    dataset = build_dataset(dataset_options(tiny_lmdbs, 'PairedImageDatasetWithIndex'))
    hr_images, lr_images = read_lmdb(tiny_lmdbs['val_hr']), read_lmdb(tiny_lmdbs['val_lr'])
    assert len(dataset) == 2
    for i, key in enumerate(['chelsea', 'ihc']):
        item = dataset[i]
        assert item['index'] == i and item['gt_path'] == key
        expected_gt, expected_lq = img2tensor([hr_images[key] / 255., lr_images[key] / 255.],
                                              bgr2rgb=True,
                                              float32=True)
        assert torch.equal(item['gt'], expected_gt) and torch.equal(item['lq'], expected_lq)


def test_dataset_in_spawned_dataloader_workers(tiny_lmdbs):
    """Spawned workers re-import kdplugins to unpickle the dataset: registration must not fail there."""
    dataset = build_dataset(dataset_options(tiny_lmdbs, 'PairedImageDatasetWithIndex'))
    loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=1, multiprocessing_context='spawn')
    assert [int(batch['index']) for batch in loader] == [0, 1]


def test_images_smaller_than_the_sub_images_are_skipped(hr_images):
    """ihc.png (228 wide, 344 high) cannot give 256x256 sub-images: it is left out, as basicsr's extract_subimages
    does; the others give 4 (astronaut, 512x512), 1 (chelsea, 256x256) and 2x2 (coffee 288x288, motorcycle 280x280:
    the second crop aligned to the end)."""
    keys = [key for key, _, _ in paired_samples(list_images(str(hr_images)), 4, crop_size=256, step=256)]
    counts = {stem: sum(key.split('_s')[0] == stem for key in keys) for stem in {key.split('_s')[0] for key in keys}}
    assert counts == {'astronaut': 4, 'chelsea': 1, 'coffee': 4, 'motorcycle': 4}
