"""scripts/create_lmdb.py and PairedImageDatasetWithIndex on real images."""
import lmdb
import numpy as np
import pytest
import torch
from basicsr.data import build_dataset
from basicsr.utils import imfrombytes, img2tensor
from conftest import run_script

from kdplugins.data.paired_lmdb import bicubic_downscale, list_images, mod_crop, paired_samples, read_bgr


def read_lmdb(path: str) -> dict:
    env = lmdb.open(path, readonly=True, lock=False)
    with env.begin() as txn:
        images = {key.decode(): imfrombytes(value, float32=False) for key, value in txn.cursor()}
    env.close()
    return images


def meta_keys(path: str) -> list:
    with open(f'{path}/meta_info.txt') as f:
        return [line.split('.png')[0] for line in f]


def test_whole_images_with_matlab_bicubic_lr(tmp_path, set5_hr):
    hr_lmdb, lr_lmdb = str(tmp_path / 'hr.lmdb'), str(tmp_path / 'lr.lmdb')
    out = run_script('scripts/create_lmdb.py', '--hr', str(set5_hr), '--scale', '3', '--out-hr', hr_lmdb, '--out-lr',
                     lr_lmdb).stdout
    assert 'Wrote 5 pairs' in out
    hr_images, lr_images = read_lmdb(hr_lmdb), read_lmdb(lr_lmdb)
    assert meta_keys(hr_lmdb) == meta_keys(lr_lmdb) == ['baby', 'bird', 'butterfly', 'head', 'woman']
    for path in list_images(str(set5_hr)):
        key = path.rsplit('/', 1)[1][:-4]
        hr = mod_crop(read_bgr(path), 3)
        np.testing.assert_array_equal(hr_images[key], hr)
        np.testing.assert_array_equal(lr_images[key], bicubic_downscale(hr, 3))
    with open(f'{hr_lmdb}/meta_info.txt') as f:
        assert f.readline().strip() == 'baby.png (510,510,3) 1'


def test_bicubic_is_matlab_imresize_close_to_bundled_lr(set5_hr):
    """Our LR equals basicsr's MATLAB-style imresize by construction; against the bundled LR files (made by the data
    provider's own MATLAB-style bicubic) it differs by at most 2 grey levels."""
    from basicsr.utils.matlab_functions import imresize
    hr = mod_crop(read_bgr(str(set5_hr / 'bird.png')), 4)
    direct = np.clip(np.round(imresize(hr / 255., 1 / 4) * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(bicubic_downscale(hr, 4), direct)
    bundled = read_bgr(str(set5_hr.parent / 'LR_bicubic' / 'X4' / 'birdx4.png'))
    assert np.abs(direct.astype(int) - bundled.astype(int)).max() <= 2


def test_sub_images_stay_aligned_with_lr(tmp_path, set5_hr):
    hr_lmdb, lr_lmdb = str(tmp_path / 'hr.lmdb'), str(tmp_path / 'lr.lmdb')
    run_script('scripts/create_lmdb.py', '--hr', str(set5_hr), '--scale', '4', '--crop-size', '128', '--step', '64',
               '--out-hr', hr_lmdb, '--out-lr', lr_lmdb)
    hr_images, lr_images = read_lmdb(hr_lmdb), read_lmdb(lr_lmdb)
    hr_full = mod_crop(read_bgr(str(set5_hr / 'head.png')), 4)  # 280x280: origins 0, 64, 128, and 152 at the end
    lr_full = bicubic_downscale(hr_full, 4)
    heads = sorted(k for k in hr_images if k.startswith('head_'))
    assert len(heads) == 16
    origins = [(y, x) for y in (0, 64, 128, 152) for x in (0, 64, 128, 152)]
    for key, (y, x) in zip(heads, origins):
        np.testing.assert_array_equal(hr_images[key], hr_full[y:y + 128, x:x + 128])
        np.testing.assert_array_equal(lr_images[key], lr_full[y // 4:y // 4 + 32, x // 4:x // 4 + 32])


def test_lr_from_folder_must_match_scale(tmp_path, set5_hr):
    result = run_script('scripts/create_lmdb.py', '--hr', str(set5_hr), '--lr',
                        str(set5_hr.parent / 'LR_bicubic' / 'X4'), '--lr-name', '{}x4', '--scale', '4', '--out-hr',
                        str(tmp_path / 'h.lmdb'), '--out-lr', str(tmp_path / 'l.lmdb'))
    assert 'Wrote 5 pairs' in result.stdout
    with pytest.raises(AssertionError, match='does not match the cropped HR'):
        run_script('scripts/create_lmdb.py', '--hr', str(set5_hr), '--lr', str(set5_hr.parent / 'LR_bicubic' / 'X4'),
                   '--lr-name', '{}x4', '--scale', '2', '--out-hr', str(tmp_path / 'h2.lmdb'), '--out-lr',
                   str(tmp_path / 'l2.lmdb'))


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
    for i, key in enumerate(['butterfly', 'woman']):
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


def test_images_smaller_than_the_sub_images_are_skipped(set5_hr):
    """woman.png (228x344) cannot give 256x256 sub-images: it is left out, as basicsr's extract_subimages does."""
    keys = [key for key, _, _ in paired_samples(list_images(str(set5_hr)), 4, crop_size=256, step=256)]
    assert sorted({key.split('_s')[0] for key in keys}) == ['baby', 'bird', 'butterfly', 'head']
