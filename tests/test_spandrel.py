"""python -m kdplugins.export --format spandrel: the files load in spandrel (chaiNNer, ComfyUI) as the right arch and
scale and give the network's outputs on real photos; archs spandrel does not know, and options it would misread, are
refused with the formats to use instead; scripts/spandrel_support.py's table."""
import kdplugins  # noqa: F401  (shims before basicsr is imported)

# isort: split
import pytest
import sys
import torch
import yaml
from basicsr.archs import build_network
from conftest import run_script
from spandrel import ModelLoader

from kdplugins import export
from kdplugins.deploy import formats, images, spandrel_layout, spandrel_support

# name -> (network_g at small widths, spandrel's arch, largest accepted difference to PyTorch on [0, 1] images).
# SwinIR and RRDBNet: spandrel builds the same layers in the same order, so the outputs are equal bit for bit. RCAN:
# spandrel subtracts the mean as a 1x1 convolution of 255 x (BasicSR computes (x - mean) * 255), which rounds the
# first layer's input differently by about one float32 ulp; measured 1.3e-7 here and 9e-7 at paper depth (10 groups
# of 20 blocks, scripts/spandrel_support.py). 1e-6 is 1/3900 of an 8-bit level and 8 ulps of 1.0.
SUPPORTED = {
    'RCAN':
    (dict(type='RCAN', num_in_ch=3, num_out_ch=3, num_feat=8, num_group=2, num_block=2, squeeze_factor=4,
          upscale=3), 'RCAN', 1e-6),
    'SwinIR': (dict(
        type='SwinIR',
        in_chans=3,
        img_size=16,
        window_size=8,
        img_range=1.0,
        depths=[2],
        embed_dim=12,
        num_heads=[2],
        mlp_ratio=2,
        upsampler='pixelshuffle',
        resi_connection='1conv',
        upscale=2), 'SwinIR', 0.0),
    'RRDBNet': (dict(type='RRDBNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, num_grow_ch=32,
                     scale=4), 'ESRGAN', 0.0),
}
# archs of kdplugins and of the option files that spandrel 0.4.2 does not know
UNKNOWN = {
    'EDSR': dict(type='EDSR', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=2),
    'MSRResNet': dict(type='MSRResNet', num_in_ch=3, num_out_ch=3, num_feat=8, num_block=1, upscale=4),
    'PixelShuffleEDSR': dict(type='PixelShuffleEDSR', num_feat=8, num_block=1, upscale=2),
    'PlainSR': dict(type='PlainSR', widths=[8, 8, 8], upscale=2, one_pad=True),
    'RFDN': dict(type='RFDN', channels=8, num_blocks=1, upscale=2),
    'IMDN': dict(type='IMDN', channels=16, num_blocks=1, upscale=2),
    'CARNM': dict(type='CARNM', scale=2, channels=8, group=4),
    'CARN': dict(type='CARN', scale=2, channels=8),
}
CHECK_SIZES = ['--check-sizes', '48x64', '40x56']  # multiples of SwinIR's window, even for RRDBNet's unshuffle


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_network(folder, name: str, options: dict, seed: int = 0):
    """(option file, checkpoint) of ``options`` with random weights."""
    torch.manual_seed(seed)
    net = build_network(dict(options)).eval()
    torch.save({'params': net.state_dict()}, folder / f'{name}.pth')
    (folder / f'{name}.yml').write_text(yaml.safe_dump({'name': name, 'network_g': options}))
    return folder / f'{name}.yml', folder / f'{name}.pth', net


def photo(name: str, height: int, width: int) -> torch.Tensor:
    pixels = images.read_image(images.scikit_image_photos([name])[0]).pixels
    return images.to_network_input(images.Image(images.center_crop(pixels, height, width), 8), 3)


@pytest.mark.parametrize('name', list(SUPPORTED))
def test_spandrel_loads_the_export_with_the_same_outputs(tmp_path, name):
    options, arch, tolerance = SUPPORTED[name]
    opt, checkpoint, net = write_network(tmp_path, name, options)
    out = tmp_path / 'out'
    assert export.main(
        ['-opt', str(opt), '--checkpoint',
         str(checkpoint), '--out',
         str(out), '--format', 'spandrel'] + CHECK_SIZES) == 0

    descriptor = ModelLoader().load_from_file(out / f'{name}.spandrel.safetensors')
    scale = options.get('upscale', options.get('scale'))
    assert (descriptor.architecture.id, descriptor.scale, descriptor.input_channels) == (arch, scale, 3)
    for image, (height, width) in (('coffee.png', (24, 32)), ('motorcycle_left.png', (32, 16))):
        x = photo(image, height, width)
        with torch.no_grad():
            expected = net(x)
            raw = descriptor.model.eval()(x.clone())  # spandrel's RCAN scales its input in place
            called = descriptor(x.clone())  # spandrel's call API, as chaiNNer and ComfyUI use it: clamped to [0, 1]
        assert raw.shape == expected.shape == (1, 3, height * scale, width * scale)
        assert (raw - expected).abs().max() <= tolerance, (name, image)
        assert (called - expected.clamp(0, 1)).abs().max() <= tolerance, (name, image)
        assert expected.std() > 1e-3  # a real output, not a constant
    with pytest.raises(spandrel_layout.SpandrelMismatchError, match=f'not {arch} x{scale + 1}'):
        spandrel_layout.load_checked(str(out / f'{name}.spandrel.safetensors'), arch, scale + 1)


def test_rcan_keys_follow_spandrel_layout():
    """BasicSR RCAN's keys renamed one to one, plus spandrel's two mean-shift convolutions."""
    options = SUPPORTED['RCAN'][0]
    state = build_network(dict(options)).state_dict()
    converted = spandrel_layout.spandrel_state_dict(state, options)
    assert len(converted) == len(state) + 4
    assert torch.equal(converted['body.1.body.0.body.3.conv_du.2.weight'],
                       state['body.1.residual_group.0.rcab.3.attention.3.weight'])
    assert torch.equal(converted['body.0.body.2.weight'], state['body.0.conv.weight'])  # group conv after 2 blocks
    assert torch.equal(converted['body.2.bias'], state['conv_after_body.bias'])
    assert torch.equal(converted['tail.0.0.weight'], state['upsample.0.weight'])
    assert torch.equal(converted['sub_mean.bias'], torch.tensor([-255 * m for m in (0.4488, 0.4371, 0.4040)]))


@pytest.mark.parametrize('name', list(UNKNOWN))
def test_archs_spandrel_does_not_know_are_refused(tmp_path, name):
    """spandrel itself rejects their state_dicts (measured), and the export says so before writing anything."""
    row = spandrel_support.measure(UNKNOWN[name], str(tmp_path))
    assert row['spandrel'] == 'UnsupportedModelError' and 'refused' in row
    opt, checkpoint, _ = write_network(tmp_path, name, UNKNOWN[name])
    out = tmp_path / 'out'
    with pytest.raises(spandrel_layout.SpandrelUnsupportedError) as error:
        export.main(['-opt', str(opt), '--checkpoint', str(checkpoint), '--out', str(out), '--format', 'spandrel'])
    message = str(error.value)
    assert f'no architecture for {name}' in message and '--format onnx' in message and 'RCAN' in message
    assert not out.exists()


@pytest.mark.parametrize(
    'options, problem',
    [
        (dict(SUPPORTED['RCAN'][0], res_scale=0.5), 'res_scale'),
        # window 7 is taken as a JPEG model with img_range 255
        (dict(SUPPORTED['SwinIR'][0], window_size=7, img_size=14), 'img_range 255'),
    ])
def test_options_spandrel_would_misread_are_refused(tmp_path, options, problem):
    """Without the refusal spandrel would load these files as the right arch and give other outputs."""
    with pytest.raises(spandrel_layout.SpandrelUnsupportedError, match=problem):
        spandrel_layout.check_supported(options)
    torch.manual_seed(0)
    net = build_network(dict(options)).eval()
    layout = spandrel_layout.LAYOUTS[options['type']]
    path = str(tmp_path / 'misread.safetensors')
    formats.save_safetensors(layout.convert(net.state_dict(), spandrel_layout.effective_options(options)), path, {})
    descriptor = ModelLoader().load_from_file(path)
    x = photo('coffee.png', 28, 28)
    with torch.no_grad():
        difference = (descriptor.model.eval()(x.clone()) - net(x)).abs().max()
    assert descriptor.architecture.id == layout.arch and difference > 1e-3


def test_missing_spandrel_names_the_install(tmp_path, monkeypatch):
    opt, checkpoint, _ = write_network(tmp_path, 'RCAN', SUPPORTED['RCAN'][0])
    monkeypatch.setitem(sys.modules, 'spandrel', None)  # as when it is not installed: import raises ImportError
    with pytest.raises(spandrel_layout.MissingSpandrelError, match='pip install spandrel'):
        export.main(
            ['-opt',
             str(opt), '--checkpoint',
             str(checkpoint), '--out',
             str(tmp_path / 'o'), '--format', 'spandrel'])


def test_support_table_script(tmp_path):
    """scripts/spandrel_support.py over a folder of two option files (student and teacher of one run)."""
    run = {'network_g': UNKNOWN['EDSR'], 'network_t': SUPPORTED['RCAN'][0]}
    (tmp_path / 'run.yml').write_text(yaml.safe_dump(run))
    (tmp_path / 'again.yml').write_text(yaml.safe_dump({'network_g': UNKNOWN['EDSR']}))
    done = run_script('scripts/spandrel_support.py', '--options', str(tmp_path))
    lines = done.stdout.splitlines()
    assert '| EDSR | network_g | 1 | no | none (UnsupportedModelError) | - | - | - |' in lines
    rcan = next(line for line in lines if line.startswith('| RCAN |'))
    assert rcan.startswith(f'| RCAN | network_t | 1 | yes | RCAN | {spandrel_layout.RCAN_KEYS} | x3: yes | ')
    assert 0 < float(rcan.split('|')[-2]) <= 1e-6
    rrdbnet = next(line for line in lines if line.startswith('| RRDBNet |'))
    assert rrdbnet.startswith('| RRDBNet | BasicSR arch, no option file | 1 | yes | ESRGAN | BasicSR')
    assert rrdbnet.endswith(' | x4: yes | 0 |')
