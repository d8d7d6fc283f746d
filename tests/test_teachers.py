"""The pretrained teachers (RFDN, IMDN, CARN-M): strict loading of the public checkpoints, value range handling,
errors on mismatching checkpoints, and the published Set5 x4 PSNR-Y reproduced to 0.02 dB."""
import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_psnr  # basicsr is imported after kdplugins' shims by conftest.py
from basicsr.utils import imfrombytes, img2tensor, tensor2img
from conftest import require_shared_data
from pathlib import Path
from torch import nn
from typing import Callable, List, NamedTuple, Tuple

from kdplugins.archs.carn_arch import CARNM
from kdplugins.archs.imdn_arch import IMDN
from kdplugins.archs.rfdn_arch import RFDN
from kdplugins.utils.checkpoint import load_state_dict_checked, read_state_dict


class Teacher(NamedTuple):
    build: Callable[[], nn.Module]
    checkpoint: str
    scale: int


TEACHERS = {
    'RFDN_x4': Teacher(RFDN, 'RFDN_AIM_x4.pth', 4),
    'IMDN_x2': Teacher(lambda: IMDN(upscale=2), 'IMDN_x2.pth', 2),
    'IMDN_x3': Teacher(lambda: IMDN(upscale=3), 'IMDN_x3.pth', 3),
    'IMDN_x4': Teacher(lambda: IMDN(upscale=4), 'IMDN_x4.pth', 4),
    'CARNM_x2': Teacher(lambda: CARNM(scale=2), 'CARN-M_x234.pth', 2),
    'CARNM_x3': Teacher(lambda: CARNM(scale=3), 'CARN-M_x234.pth', 3),
    'CARNM_x4': Teacher(lambda: CARNM(scale=4), 'CARN-M_x234.pth', 4),
}
PUBLISHED_SET5_X4 = {'RFDN_x4': 32.16, 'IMDN_x4': 32.21, 'CARNM_x4': 31.88}  # data/README.md
CHECKPOINTS = 'the public pretrained checkpoints of RFDN, IMDN and CARN-M (checkpoints/*.pth)'
SET5_X4 = f'{CHECKPOINTS} and Set5 with its bundled LR_bicubic/X4 files (the published PSNR is measured on them)'
pytestmark = pytest.mark.shared_data(CHECKPOINTS)


def load_teacher(shared_data: Path, name: str) -> nn.Module:
    teacher = TEACHERS[name]
    net = teacher.build()
    state = read_state_dict(str(shared_data / 'checkpoints' / teacher.checkpoint), param_key=None)
    load_state_dict_checked(net, state, strict=True, what=name)
    return net.eval()


@pytest.fixture(scope='module')
def set5_x4() -> List[Tuple[torch.Tensor, np.ndarray]]:
    """(LR tensor in [0, 1], uint8 BGR HR cropped to a multiple of 4) for the five Set5 images."""
    shared_data = require_shared_data(SET5_X4)
    pairs = []
    for hr_path in sorted((shared_data / 'val' / 'Set5' / 'HR').glob('*.png')):
        lr_path = shared_data / 'val' / 'Set5' / 'LR_bicubic' / 'X4' / f'{hr_path.stem}x4.png'
        hr = imfrombytes(hr_path.read_bytes())
        lr = imfrombytes(lr_path.read_bytes(), float32=True)
        h, w = hr.shape[:2]
        pairs.append((img2tensor(lr).unsqueeze(0), hr[:h - h % 4, :w - w % 4]))
    assert len(pairs) == 5
    return pairs


@pytest.mark.parametrize('name', sorted(TEACHERS))
@torch.no_grad()
def test_strict_load_and_output_shape(shared_data: Path, name: str) -> None:
    net = load_teacher(shared_data, name)
    scale = TEACHERS[name].scale
    out = net(torch.rand(1, 3, 24, 20))
    assert out.shape == (1, 3, 24 * scale, 20 * scale)


@torch.no_grad()
def test_rfdn_img_range_scales_input_and_output(shared_data: Path) -> None:
    net = load_teacher(shared_data, 'RFDN_x4')
    raw = RFDN(img_range=1.)
    raw.load_state_dict(net.state_dict())
    x = torch.rand(1, 3, 24, 20)
    expected = raw.eval()(255. * x) / 255.
    torch.testing.assert_close(net(x), expected)
    assert 0.2 < expected.mean().item() < 0.8  # a [0, 255] output would be far above 1


@pytest.mark.parametrize('checkpoint, build, listed', [
    ('IMDN_x4.pth', lambda: IMDN(upscale=2), ['shape mismatch', 'upsampler.0.weight: checkpoint (48, 64, 3, 3)']),
    ('RFDN_AIM_x4.pth', IMDN, ['missing keys', 'IMDB1.c1.weight', 'unexpected keys', 'B1.c1_d.weight']),
    ('IMDN_x4.pth', CARNM, ['missing keys', 'add_mean.shifter.bias', 'unexpected keys', 'IMDB1.c1.bias']),
])
def test_mismatching_checkpoint_raises(shared_data: Path, checkpoint: str, build: Callable[[], nn.Module],
                                       listed: List[str]) -> None:
    state = read_state_dict(str(shared_data / 'checkpoints' / checkpoint), param_key=None)
    with pytest.raises(ValueError) as error:
        load_state_dict_checked(build(), state, strict=True, what='teacher')
    for text in listed:
        assert text in str(error.value)


@pytest.mark.shared_data(SET5_X4)
@pytest.mark.parametrize('name', sorted(PUBLISHED_SET5_X4))
@torch.no_grad()
def test_set5_x4_psnr_matches_published(shared_data: Path, set5_x4: List[Tuple[torch.Tensor, np.ndarray]],
                                        name: str) -> None:
    net = load_teacher(shared_data, name)
    psnrs = [calculate_psnr(tensor2img(net(lr)), hr, crop_border=4, test_y_channel=True) for lr, hr in set5_x4]
    assert np.mean(psnrs) == pytest.approx(PUBLISHED_SET5_X4[name], abs=0.02)
