"""python -m kdplugins.export: TorchScript and ONNX files of EDSR, RCAN, PlainSR (MemSR's student), the extracted CSD
students (EDSR, RCAN, CARN), RFDN, IMDN and CARN-M at small widths, each loaded back and compared with PyTorch on real
photos (scikit-image's) at sizes other than those of the export, odd sides included."""
import kdplugins  # noqa: F401  (shims before basicsr is imported)

# isort: split
import numpy as np
import onnxruntime
import os
import pytest
import runpy
import subprocess
import sys
import torch
import yaml
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from pathlib import Path
from safetensors.torch import load_file

from kdplugins import export
from kdplugins.deploy import benchmark, formats, images
from kdplugins.deploy.network import load_network

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4

# name -> network_g of a BasicSR option file, at small widths
DIRECT = {
    'EDSR': dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2),
    'RCAN':
    dict(type='RCAN', num_in_ch=3, num_out_ch=3, num_feat=8, num_group=1, num_block=1, squeeze_factor=4, upscale=2),
    'PlainSR': dict(type='PlainSR', widths=[8, 8, 8], upscale=2, one_pad=True),  # MemSR's plain student
    'RFDN': dict(type='RFDN', channels=8, num_blocks=1, upscale=2),
    'IMDN': dict(type='IMDN', channels=16, num_blocks=1, upscale=2),
    'CARNM': dict(type='CARNM', scale=2, channels=8, group=4),
}
# name -> network_g of a CSD run (slimmable), whose student scripts/extract_csd_student.py extracts at width 0.5
CSD = {
    'CSD_EDSR':
    dict(type='SlimEDSR', num_in_ch=3, num_out_ch=3, num_feat=16, num_block=1, upscale=2),
    'CSD_RCAN':
    dict(
        type='SlimRCAN', num_in_ch=3, num_out_ch=3, num_feat=16, num_group=1, num_block=1, squeeze_factor=4, upscale=2),
    'CSD_CARN':
    dict(type='SlimCARN', scale=2, channels=8),
}


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """One intra-op thread (PyTorch, and onnxruntime through the export checks): tiny networks on a shared machine
    run faster without waiting for a second thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def photo_crop(name: str, height: int, width: int) -> torch.Tensor:
    """1x3xHxW crop of a scikit-image photo, read the way the inference command reads images."""
    image = images.read_image(images.scikit_image_photos([name])[0])
    return images.to_network_input(images.Image(images.center_crop(image.pixels, height, width), 8), 3)


@pytest.fixture(scope='module')
def networks(tmp_path_factory) -> dict:
    """name -> (option file, checkpoint) of every arch: BasicSR option files with random weights, and the .yml/.pth
    pairs written by scripts/extract_csd_student.py from random CSD checkpoints."""
    folder = tmp_path_factory.mktemp('networks')
    files = {}
    for i, (name, options) in enumerate(DIRECT.items()):
        torch.manual_seed(i)
        net = build_network(dict(options))
        torch.save({'params': net.state_dict()}, folder / f'{name}.pth')
        (folder / f'{name}.yml').write_text(yaml.safe_dump({'name': f'tiny_{name}', 'network_g': options}))
        files[name] = (folder / f'{name}.yml', folder / f'{name}.pth')
    extract = runpy.run_path(str(REPO / 'scripts' / 'extract_csd_student.py'))['main']
    for name, options in CSD.items():
        torch.manual_seed(0)
        torch.save({'params': build_network(dict(options)).state_dict()}, folder / f'{name}_run.pth')
        (folder / f'{name}_run.yml').write_text(yaml.safe_dump({'network_g': options, 'train': {'csd': {}}}))
        extract([
            '-opt',
            str(folder / f'{name}_run.yml'), '--checkpoint',
            str(folder / f'{name}_run.pth'), '--out',
            str(folder / f'{name}_student.pth'), '--width', '0.5', '--check-size', '16', '--input-size', '16',
            '--repeat', '1', '--warmup', '0', '--device', 'cpu'
        ])
        files[name] = (folder / f'{name}_student.yml', folder / f'{name}_student.pth')
    return files


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize('name', list(DIRECT) + list(CSD))
def test_export_matches_pytorch_on_photos(networks, tmp_path, name, capsys):
    opt, checkpoint = networks[name]
    assert export.main(['-opt', str(opt), '--checkpoint', str(checkpoint), '--out', str(tmp_path)]) == 0
    report = yaml.safe_load(next(tmp_path.glob('*.yml')).read_text())
    stem = report['name']
    assert report['export']['onnx']['max_abs_difference'] < TOLERANCE
    assert report['export']['torchscript']['max_abs_difference'] < TOLERANCE
    assert 'max abs difference to PyTorch' in capsys.readouterr().out

    net = build_network(dict(report['network_g'])).eval()
    net.load_state_dict(torch.load(checkpoint, weights_only=True)['params'])
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(tmp_path / f'{stem}.onnx'), options, providers=['CPUExecutionProvider'])
    traced = torch.jit.load(str(tmp_path / f'{stem}.pt'))
    scale = report['export']['scale']
    for photo, (height, width) in (('coffee.png', (31, 45)), ('motorcycle_left.png', (56, 27))):
        x = photo_crop(photo, height, width)
        with torch.no_grad():
            expected = net(x).numpy()
            scripted = traced(x).numpy()
        got = session.run(None, {'lq': x.numpy()})[0]
        assert got.shape == expected.shape == (1, 3, height * scale, width * scale)
        assert np.abs(got - expected).max() < TOLERANCE, (name, photo)
        assert np.abs(scripted - expected).max() < TOLERANCE, (name, photo)
        assert expected.std() > 1e-3  # a real output, not a constant that any file would reproduce


def test_extracted_student_is_a_plain_network(networks):
    options = yaml.safe_load(networks['CSD_CARN'][0].read_text())
    assert options['type'] == 'CARN' and options['channels'] == 4


def test_difference_above_tolerance_fails(networks, tmp_path, capsys):
    opt, checkpoint = networks['RFDN']
    argv = ['-opt', str(opt), '--checkpoint', str(checkpoint), '--out', str(tmp_path), '--format', 'onnx']
    assert export.main(argv + ['--tolerance', '0']) == 1
    assert 'export check failed' in capsys.readouterr().err
    difference = yaml.safe_load((tmp_path / 'tiny_RFDN.yml').read_text())['export']['onnx']['max_abs_difference']
    assert 0 < difference < TOLERANCE


def test_checkpoint_of_other_network_is_refused(networks, tmp_path):
    opt, _ = networks['EDSR']
    _, other = networks['CARNM']
    with pytest.raises(ValueError, match='does not match the EDSR'):
        export.main(['-opt', str(opt), '--checkpoint', str(other), '--out', str(tmp_path)])


@pytest.mark.parametrize('name', ['CARNM', 'PlainSR', 'CSD_RCAN'])
def test_safetensors_reloads_bitwise(networks, tmp_path, name):
    """The safetensors file is the plain state_dict with the export's metadata; the network built back from it gives
    the same outputs bit for bit (CARN-M shares weights between layers, PlainSR pads with ones)."""
    opt, checkpoint = networks[name]
    assert export.main([
        '-opt',
        str(opt), '--checkpoint',
        str(checkpoint), '--out',
        str(tmp_path), '--format', 'safetensors', '--tolerance', '0'
    ]) == 0
    report = yaml.safe_load(next(tmp_path.glob('*.yml')).read_text())
    path = tmp_path / f'{report["name"]}.safetensors'
    assert report['export']['safetensors']['max_abs_difference'] == 0

    net = build_network(dict(report['network_g'])).eval()
    state = torch.load(checkpoint, weights_only=True)['params']
    net.load_state_dict(state)
    stored = load_file(path)
    assert stored.keys() == net.state_dict().keys() and all(torch.equal(stored[k], v) for k, v in state.items())
    metadata = formats.read_safetensors_metadata(str(path))
    assert metadata == {
        'network_g': report['network_g'],
        'custom_imports': [],
        'scale': report['export']['scale'],
        'input': 'NCHW float32 in [0, 1], RGB'
    }
    reloaded = formats.load_safetensors_network(str(path))
    for photo, (height, width) in (('coffee.png', (31, 45)), ('motorcycle_left.png', (56, 27))):
        x = photo_crop(photo, height, width)
        with torch.no_grad():
            assert torch.equal(reloaded(x), net(x))


def test_missing_safetensors_names_the_install(networks, tmp_path, monkeypatch):
    opt, checkpoint = networks['EDSR']
    monkeypatch.setitem(sys.modules, 'safetensors', None)  # as when it is not installed: import raises ImportError
    monkeypatch.setitem(sys.modules, 'safetensors.torch', None)
    with pytest.raises(
            formats.MissingExtraError, match=r"pip install 'kdplugins\[export\]' \(or pip install safetensors"):
        export.main([
            '-opt',
            str(opt), '--checkpoint',
            str(checkpoint), '--out',
            str(tmp_path / 'o'), '--format', 'safetensors'
        ])
    assert not (tmp_path / 'o').exists()


def test_custom_imports_arch(tmp_path, monkeypatch):
    """An arch of the user's own project, named by the option file's custom_imports, is exported like any other; the
    exported option file and safetensors file name the modules (``--import`` ones too), so that they load in a fresh
    process of the user's project: here the arch is taken out of the registry and the module out of ``sys.modules``,
    and loading the exported files imports it again."""
    (tmp_path / 'deploy_test_extra.py').write_text('"""A module of the project given with --import."""\n')
    (tmp_path / 'deploy_test_project.py').write_text(
        'from basicsr.utils.registry import ARCH_REGISTRY\nfrom torch import nn\n\n\n'
        '@ARCH_REGISTRY.register()\nclass DeployTestTinySR(nn.Sequential):\n\n'
        '    def __init__(self):\n'
        '        super().__init__(nn.Conv2d(3, 4, 3, 1, 1), nn.ReLU(), nn.Conv2d(4, 12, 3, 1, 1), nn.PixelShuffle(2))\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    opt = tmp_path / 'opt.yml'
    opt.write_text(
        yaml.safe_dump({
            'custom_imports': ['deploy_test_project'],
            'network_g': {
                'type': 'DeployTestTinySR'
            }
        }))
    same_layers = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, 1, 1), torch.nn.ReLU(), torch.nn.Conv2d(4, 12, 3, 1, 1), torch.nn.PixelShuffle(2))
    torch.save({'params': same_layers.state_dict()}, tmp_path / 'w.pth')
    out = tmp_path / 'out'
    argv = [
        '-opt',
        str(opt), '--checkpoint',
        str(tmp_path / 'w.pth'), '--out',
        str(out), '--import', 'deploy_test_extra'
    ]
    assert export.main(argv + ['--format', 'onnx', 'torchscript', 'safetensors']) == 0
    assert (out / 'DeployTestTinySR.onnx').is_file() and (out / 'DeployTestTinySR.pt').is_file()
    exported = yaml.safe_load((out / 'DeployTestTinySR.yml').read_text())
    assert exported['custom_imports'] == ['deploy_test_extra', 'deploy_test_project']

    monkeypatch.delitem(ARCH_REGISTRY._obj_map, 'DeployTestTinySR')
    monkeypatch.delitem(sys.modules, 'deploy_test_project')
    deployed = load_network(str(out / 'DeployTestTinySR.yml'), str(tmp_path / 'w.pth'))
    assert type(deployed.net).__name__ == 'DeployTestTinySR' and 'deploy_test_project' in sys.modules
    monkeypatch.delitem(ARCH_REGISTRY._obj_map, 'DeployTestTinySR')
    monkeypatch.delitem(sys.modules, 'deploy_test_project')
    x = photo_crop('coffee.png', 20, 24)
    with torch.no_grad():
        assert torch.equal(
            formats.load_safetensors_network(str(out / 'DeployTestTinySR.safetensors'))(x), same_layers(x))


def test_command_line(networks, tmp_path):
    """One run of ``python -m kdplugins.export`` as a user types it: files written, exit status 0."""
    opt, checkpoint = networks['CSD_EDSR']
    command = [sys.executable, '-m', 'kdplugins.export', '-opt', opt, '--checkpoint', checkpoint, '--out', tmp_path]
    environment = dict(os.environ, PYTHONWARNINGS='ignore', OMP_NUM_THREADS='1')
    done = subprocess.run(
        command + ['--check-sizes', '33x21'], cwd=REPO, capture_output=True, text=True, env=environment)
    assert done.returncode == 0, done.stderr
    assert 'onnx' in done.stdout and 'torchscript' in done.stdout and 'ok' in done.stdout
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ['CSD_EDSR_student.onnx', 'CSD_EDSR_student.pt', 'CSD_EDSR_student.yml']


def test_benchmark_measures_both_backends_in_their_own_processes(tmp_path):
    """scripts/benchmark_export.py's measurement: an ONNX file equal to PyTorch, each backend timed in a fresh
    process, onnxruntime's without torch, and a table row per backend."""
    network = benchmark.random_network('tiny PlainSR', 'tiny_plain', DIRECT['PlainSR'])
    record = benchmark.measure(network, str(tmp_path), input_size=24, repeat=2, warmup=0, threads=1)
    assert record['files']['max_abs_difference'] < TOLERANCE
    torch_result, ort_result = record['backends']
    assert torch_result['torch_imported'] and not ort_result['torch_imported']
    for result in (torch_result, ort_result):
        assert len(result['runtimes_s']) == 2 and result['runtime_median_s'] > 0
        assert result['rss_peak_first_inference_bytes'] >= result['rss_before_bytes'] > 0
    assert torch_result['tensor_peak_bytes'] > 0 and ort_result['tensor_peak_bytes'] is None
    table = benchmark.markdown_table([record])
    assert table.count('| tiny PlainSR |') == 2 and 'onnxruntime / PyTorch: runtime' in table
