"""python -m kdplugins.infer on a folder of real photos (scikit-image's): grey, colour, 16-bit and JPEG inputs against
the network run directly, bad files reported and skipped, --overwrite, and tiling against whole-image inference."""
import kdplugins  # noqa: F401  (shims before basicsr is imported)

# isort: split
import cv2
import numpy as np
import os
import pytest
import subprocess
import sys
import torch
import yaml
from basicsr.archs import build_network
from pathlib import Path

from kdplugins import infer
from kdplugins.deploy import images, locality
from kdplugins.deploy.tiling import tile_boxes, tiled_forward

REPO = Path(__file__).resolve().parents[1]
PHOTOS = Path(images.scikit_image_photos(['camera.png'])[0]).parent
EDSR = dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2)
PLAIN = dict(type='PlainSR', widths=[8, 8, 8, 8], upscale=2, one_pad=True)  # MemSR's plain student
RCAN = dict(type='RCAN', num_in_ch=3, num_out_ch=3, num_feat=8, num_group=1, num_block=1, squeeze_factor=4, upscale=2)
IMDN = dict(type='IMDN', channels=16, num_blocks=1, upscale=2)
RFDN = dict(type='RFDN', channels=8, num_blocks=1, upscale=2)


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """One intra-op thread (PyTorch, and onnxruntime through the export checks): tiny networks on a shared machine
    run faster without waiting for a second thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def save_network(folder: Path, name: str, options: dict, seed: int = 0):
    torch.manual_seed(seed)
    net = build_network(dict(options)).eval()
    torch.save({'params': net.state_dict()}, folder / f'{name}.pth')
    (folder / f'{name}.yml').write_text(yaml.safe_dump({'name': name, 'network_g': options}))
    return net, folder / f'{name}.yml', folder / f'{name}.pth'


def crop(source: str, top: int, left: int, height: int, width: int) -> np.ndarray:
    image = cv2.imread(str(PHOTOS / source), cv2.IMREAD_UNCHANGED)
    return image[top:top + height, left:left + width]


@pytest.fixture(scope='module')
def edsr(tmp_path_factory):
    return save_network(tmp_path_factory.mktemp('edsr'), 'tiny_edsr', EDSR)


@pytest.fixture(scope='module')
def photo_folder(tmp_path_factory) -> Path:
    """Colour and grey 8-bit PNGs, 16-bit colour and grey PNGs (all 16 bits used), a JPEG, two bad image files and a
    text file, cut from scikit-image's photos."""
    folder = tmp_path_factory.mktemp('photos')
    cv2.imwrite(str(folder / 'chelsea.png'), crop('chelsea.png', 40, 120, 36, 44))
    cv2.imwrite(str(folder / 'camera.png'), crop('camera.png', 100, 200, 33, 27))
    colour16 = crop('astronaut.png', 30, 180, 29, 35).astype(np.uint16) * 257 + np.arange(29 * 35 * 3).reshape(
        29, 35, 3).astype(np.uint16) % 251
    cv2.imwrite(str(folder / 'astronaut16.png'), colour16)
    cv2.imwrite(str(folder / 'camera16.png'), crop('camera.png', 300, 100, 25, 31).astype(np.uint16) * 257 + 123)
    cv2.imwrite(str(folder / 'coffee.jpg'), crop('coffee.png', 60, 160, 30, 40))
    (folder / 'broken.png').write_bytes((folder / 'chelsea.png').read_bytes()[:60])
    (folder / 'empty.jpg').write_bytes(b'')
    (folder / 'notes.txt').write_text('not an image')
    return folder


def expected_output(net, path: Path) -> np.ndarray:
    """What the command should write for ``path``: the network on the decoded image, grey images repeated to RGB and
    the result taken back to grey (BT.601 luma), rounded at the input's bit depth."""
    data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    peak = 65535 if data.dtype == np.uint16 else 255
    rgb = np.repeat(data[:, :, None], 3, 2) if data.ndim == 2 else data[:, :, ::-1]
    x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / peak)[None]
    with torch.no_grad():
        y = net(x)[0].clamp(0, 1).permute(1, 2, 0).numpy()
    y = y @ np.array([0.299, 0.587, 0.114], np.float32) if data.ndim == 2 else y[:, :, ::-1]
    return np.rint(y * peak).astype(data.dtype)


@pytest.fixture(scope='module')
def folder_run(edsr, photo_folder, tmp_path_factory):
    _, opt, checkpoint = edsr
    out = tmp_path_factory.mktemp('sr')
    status = infer.main(
        ['-opt',
         str(opt), '--checkpoint',
         str(checkpoint), '-i',
         str(photo_folder), '-o',
         str(out), '--device', 'cpu'])
    return status, out


def test_every_kind_of_image(edsr, photo_folder, folder_run):
    net, _, _ = edsr
    status, out = folder_run
    assert sorted(p.name for p in out.iterdir()) == [
        'astronaut16.png', 'camera.png', 'camera16.png', 'chelsea.png', 'coffee.png'
    ]
    kinds = {}
    for name in ('chelsea.png', 'camera.png', 'astronaut16.png', 'camera16.png', 'coffee.jpg'):
        source = photo_folder / name
        written = cv2.imread(str(out / (source.stem + '.png')), cv2.IMREAD_UNCHANGED)
        expected = expected_output(net, source)
        assert written.dtype == expected.dtype and written.shape == expected.shape, name
        assert np.abs(written.astype(np.int64) - expected).max() <= 1, name  # float rounding at .5 only
        assert (written == expected).mean() > 0.99, name
        kinds[name] = (written.dtype, written.ndim)
    assert kinds['camera.png'] == (np.uint8, 2) and kinds['camera16.png'] == (np.uint16, 2)  # grey in, grey out
    assert kinds['astronaut16.png'] == (np.uint16, 3) and kinds['chelsea.png'] == (np.uint8, 3)


def test_bad_files_reported_and_skipped(folder_run, capsys):
    status, out = folder_run
    assert status == 1
    assert not (out / 'broken.png').exists() and not (out / 'empty.png').exists()


def test_bad_files_named(edsr, photo_folder, tmp_path, capsys):
    _, opt, checkpoint = edsr
    only_bad = tmp_path / 'in'
    only_bad.mkdir()
    for name in ('broken.png', 'empty.jpg', 'camera.png'):
        (only_bad / name).write_bytes((photo_folder / name).read_bytes())
    status = infer.main([
        '-opt',
        str(opt), '--checkpoint',
        str(checkpoint), '-i',
        str(only_bad), '-o',
        str(tmp_path / 'out'), '--device', 'cpu'
    ])
    captured = capsys.readouterr()
    assert status == 1
    assert '2 file(s) skipped' in captured.err
    assert 'broken.png' in captured.err and 'empty.jpg' in captured.err
    assert [p.name for p in (tmp_path / 'out').iterdir()] == ['camera.png']
    assert 'peak memory:' in captured.out and 'resident set size' in captured.out


def test_existing_outputs_kept_unless_overwrite(edsr, photo_folder, tmp_path, capsys):
    _, opt, checkpoint = edsr
    source = tmp_path / 'in'
    source.mkdir()
    (source / 'chelsea.png').write_bytes((photo_folder / 'chelsea.png').read_bytes())
    out = tmp_path / 'out'
    argv = ['-opt', str(opt), '--checkpoint', str(checkpoint), '-i', str(source), '-o', str(out), '--device', 'cpu']
    assert infer.main(argv) == 0
    result = (out / 'chelsea.png').read_bytes()
    (out / 'chelsea.png').write_bytes(b'written by someone else')
    assert infer.main(argv) == 0
    assert (out / 'chelsea.png').read_bytes() == b'written by someone else'
    assert 'pass --overwrite' in capsys.readouterr().out
    assert infer.main(argv + ['--overwrite']) == 0
    assert (out / 'chelsea.png').read_bytes() == result


def test_output_folder_must_differ_from_input(edsr, photo_folder):
    _, opt, checkpoint = edsr
    with pytest.raises(SystemExit, match='is the input folder'):
        infer.main(
            ['-opt',
             str(opt), '--checkpoint',
             str(checkpoint), '-i',
             str(photo_folder), '-o',
             str(photo_folder)])


def photo(height: int, width: int) -> torch.Tensor:
    rgb = crop('astronaut.png', 100, 150, height, width)[:, :, ::-1]
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)).astype(np.float32) / 255)[None]


@pytest.mark.parametrize('options', [EDSR, PLAIN], ids=['EDSR', 'PlainSR'])
def test_tiling_equals_whole_image(options, tmp_path):
    net, _, _ = save_network(tmp_path, 'net', options, seed=3)
    found = locality.analyse(net, 3)
    assert found.tiles_exactly and found.scale == 2
    x = photo(61, 47)
    with torch.no_grad():
        whole = net(x)
    for tile in (16, 23):
        exact = tiled_forward(net, x, tile, found.radius)
        assert exact.shape == whole.shape
        assert (exact - whole).abs().max() < 1e-6, tile
        short = tiled_forward(net, x, tile, found.radius - 2)  # context below the receptive radius: seams show
        assert (short - whole).abs().max() > 1e-4, tile


def test_receptive_radius():
    """EDSR x2 with one residual block: conv_first, two block convs, conv_after_body, the upsampler conv (LR) and
    conv_last after the x2 shuffle (half an LR pixel): 5.5, rounded up."""
    net = build_network(dict(EDSR))
    assert locality.analyse(net, 3).radius == 6


NONLOCAL = {'RCAN': (RCAN, 'adaptive_avg_pool2d'), 'IMDN': (IMDN, 'var over'), 'RFDN': (RFDN, 'conv2d with stride 2')}


@pytest.mark.parametrize('options, operation', list(NONLOCAL.values()), ids=list(NONLOCAL))
def test_global_operations_found(options, operation):
    found = locality.analyse(build_network(dict(options)).eval(), 3)
    assert not found.tiles_exactly
    assert any(operation in text for text in found.nonlocal_operations), found.nonlocal_operations


def test_rcan_tiles_differ_and_command_warns(tmp_path, photo_folder, capsys):
    net, opt, checkpoint = save_network(tmp_path, 'rcan', RCAN)
    x = photo(61, 47)
    found = locality.analyse(net, 3)
    with torch.no_grad():
        assert (tiled_forward(net, x, 16, found.radius) - net(x)).abs().max() > 1e-5
    source = tmp_path / 'in'
    source.mkdir()
    (source / 'camera.png').write_bytes((photo_folder / 'camera.png').read_bytes())
    assert infer.main([
        '-opt',
        str(opt), '--checkpoint',
        str(checkpoint), '-i',
        str(source), '-o',
        str(tmp_path / 'out'), '--tile', '16', '--device', 'cpu'
    ]) == 0
    assert 'cannot be tiled exactly' in capsys.readouterr().out


def test_tiles_cover_the_image_once_with_full_sides():
    boxes = list(tile_boxes(61, 47, 16))
    covered = np.zeros((61, 47), int)
    for top, left, bottom, right in boxes:
        assert bottom - top == 16 and right - left == 16
        covered[top:bottom, left:right] = 1
    assert covered.all()
    assert list(tile_boxes(10, 40, 16))[0] == (0, 0, 10, 16)


def test_tiled_command_matches_whole_image_command(tmp_path, photo_folder, capsys):
    _, opt, checkpoint = save_network(tmp_path, 'plain', PLAIN, seed=5)
    source = tmp_path / 'in'
    source.mkdir()
    for name in ('chelsea.png', 'astronaut16.png'):
        (source / name).write_bytes((photo_folder / name).read_bytes())
    base = ['-opt', str(opt), '--checkpoint', str(checkpoint), '-i', str(source), '--device', 'cpu']
    assert infer.main(base + ['-o', str(tmp_path / 'whole')]) == 0
    assert infer.main(base + ['-o', str(tmp_path / 'tiled'), '--tile', '12']) == 0
    assert 'equal to whole-image inference' in capsys.readouterr().out
    for name in ('chelsea.png', 'astronaut16.png'):
        whole = cv2.imread(str(tmp_path / 'whole' / name), cv2.IMREAD_UNCHANGED).astype(np.int64)
        tiled = cv2.imread(str(tmp_path / 'tiled' / name), cv2.IMREAD_UNCHANGED).astype(np.int64)
        assert np.abs(whole - tiled).max() <= 1 and (whole == tiled).mean() > 0.999, name


def test_command_line(edsr, photo_folder, tmp_path):
    """One run of ``python -m kdplugins.infer`` as a user types it: bad files named on stderr, exit status 1."""
    _, opt, checkpoint = edsr
    command = [sys.executable, '-m', 'kdplugins.infer', '-opt', opt, '--checkpoint', checkpoint, '-i', photo_folder]
    environment = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    done = subprocess.run(
        command + ['-o', tmp_path, '--tile', '20', '--device', 'cpu'],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=environment)
    assert done.returncode == 1, done.stderr
    assert 'broken.png' in done.stderr and 'empty.jpg' in done.stderr
    assert 'peak memory:' in done.stdout
    assert len(list(tmp_path.glob('*.png'))) == 5


def test_inputs_of_the_same_stem(edsr, photo_folder, tmp_path, capsys):
    """a.jpg and a.png would both write a.png: the first (by name) is written, the second reported and skipped."""
    _, opt, checkpoint = edsr
    source = tmp_path / 'in'
    source.mkdir()
    (source / 'a.jpg').write_bytes((photo_folder / 'coffee.jpg').read_bytes())
    (source / 'a.png').write_bytes((photo_folder / 'chelsea.png').read_bytes())
    out = tmp_path / 'out'
    assert infer.main(['-opt', str(opt), '--checkpoint', str(checkpoint), '-i', str(source), '-o', str(out)]) == 1
    assert 'a.png: its output' in capsys.readouterr().err
    assert cv2.imread(str(out / 'a.png')).shape == (60, 80, 3)  # coffee.jpg's 30x40, not chelsea's 36x44
