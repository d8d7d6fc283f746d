"""The rule for published loss weights (kdplugins/losses/published_weights.py, docs/conventions.md): a weight tuned
next to a pixel loss on [0, 255] images, divided by 255, gives on BasicSR's [0, 1] images the published balance of the
gradients of the distillation and pixel terms.

Each setting is computed twice on the same real image: as the reference code runs it (EDSR with ``rgb_range`` 255:
[0, 255] images in and out, the published weight) and as kdplugins runs it (BasicSR's EDSR with ``img_range`` 255:
[0, 1] images, the project's default). The two networks hold the same weights and the same inner features.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from basicsr.archs import build_network
from conftest import REPO

from kdplugins.distill.recorder import FeatureRecorder
from kdplugins.losses.csd_loss import CSDContrastiveLoss
from kdplugins.losses.fakd_loss import FAKDLoss
from kdplugins.losses.published_weights import (CSD_LAMBDA_C, CSD_LAMBDA_C_DEFAULT, FAKD_WEIGHT, FAKD_WEIGHT_DEFAULT,
                                                to_unit_range)
from kdplugins.models.csd_model import CONTRASTIVE_DEFAULTS

MEAN = [0.4488, 0.4371, 0.4040]


def edsr_pair(seed: int, num_feat: int = 16, num_block: int = 3):
    """(BasicSR EDSR on [0, 1] images, the same network as reference code with rgb_range 255 runs it on [0, 255])."""
    torch.manual_seed(seed)
    unit = build_network({
        'type': 'EDSR',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': num_feat,
        'num_block': num_block,
        'upscale': 4,
        'img_range': 255.,
        'rgb_mean': MEAN
    })
    wide = build_network({
        'type': 'EDSR',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': num_feat,
        'num_block': num_block,
        'upscale': 4,
        'img_range': 1.,
        'rgb_mean': [255 * m for m in MEAN]
    })
    wide.load_state_dict(unit.state_dict())
    return unit, wide


@pytest.fixture(scope='module')
def images():
    """A real photo (scikit-image's astronaut), HR 96x96 in [0, 1] and its 24x24 LR (batch of 4 crops)."""
    import skimage.data
    photo = torch.from_numpy(np.ascontiguousarray(skimage.data.astronaut())).permute(2, 0, 1).float() / 255.
    hr = torch.stack([photo[:, y:y + 96, x:x + 96] for y, x in ((100, 100), (200, 150), (300, 300), (50, 350))])
    lq = F.interpolate(hr, scale_factor=0.25, mode='bicubic', align_corners=False).clamp(0, 1)
    return lq, hr


def gradient_norm(loss: torch.Tensor, params) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)  # feature terms skip the tail
    return float(torch.sqrt(sum(g.double().pow(2).sum() for g in grads if g is not None)))


def gradient_ratio(distill: torch.Tensor, pixel: torch.Tensor, net) -> float:
    params = [p for p in net.parameters()]
    return gradient_norm(distill, params) / gradient_norm(pixel, params)


def test_the_networks_of_the_two_setups_are_the_same_function(images):
    lq, _ = images
    unit, wide = edsr_pair(0)
    torch.testing.assert_close(wide(lq * 255), unit(lq) * 255, rtol=1e-5, atol=1e-3)


def test_csd_contrastive_weight_keeps_the_published_gradient_balance(images):
    """CSD Eq. 3: ``L1(S, HR) + λ_C CL``; official code at λ_C = 200 on [0, 255], kdplugins at 200/255 on [0, 1]."""
    lq, hr = images
    assert CONTRASTIVE_DEFAULTS['loss_weight'] == CSD_LAMBDA_C_DEFAULT == pytest.approx(200 / 255)
    student, student_255 = edsr_pair(0)
    teacher, teacher_255 = edsr_pair(1, num_feat=24)
    index = torch.tensor([[1, 2], [2, 3], [3, 0], [0, 1]])
    ratios = {}
    for name, s_net, t_net, scale, weight in (('published', student_255, teacher_255, 255., CSD_LAMBDA_C.value),
                                              ('kdplugins', student, teacher, 1., CSD_LAMBDA_C_DEFAULT)):
        torch.manual_seed(5)  # the same random VGG-19 for both
        loss = CSDContrastiveLoss(weight, num_negatives=2, vgg_weights='random', vgg_input_range=scale)
        out = s_net(lq * scale)
        with torch.no_grad():
            positive = t_net(lq * scale)
        distill = loss(out, positive, lq * scale, negative_index=index)
        pixel = F.l1_loss(out, hr * scale)
        ratios[name] = gradient_ratio(distill, pixel, s_net)
    assert ratios['kdplugins'] == pytest.approx(ratios['published'], rel=0.02)
    # the unconverted weight would be 255 times too heavy
    assert ratios['kdplugins'] * CSD_LAMBDA_C.value / CSD_LAMBDA_C_DEFAULT == pytest.approx(
        255 * ratios['published'], rel=0.02)


def test_fakd_weight_keeps_the_published_gradient_balance(images):
    """FAKD code: ``0.5 L1(S, HR) + 0.5 L1(S, T) + 10 * SA`` on [0, 255]; kdplugins: SA weighted 10 / 255 on [0, 1]."""
    lq, hr = images
    assert FAKDLoss().loss_weight == FAKD_WEIGHT_DEFAULT == pytest.approx(to_unit_range(10.0))
    student, student_255 = edsr_pair(0)
    teacher, teacher_255 = edsr_pair(1, num_feat=24, num_block=6)
    ratios = {}
    for name, s_net, t_net, scale, weight in (('published', student_255, teacher_255, 255., FAKD_WEIGHT.value),
                                              ('kdplugins', student, teacher, 1., FAKD_WEIGHT_DEFAULT)):
        taps_s, taps_t = ['body.0', 'body.1', 'body'], ['body.1', 'body.3', 'body']
        rec_s, rec_t = FeatureRecorder(s_net, taps_s), FeatureRecorder(t_net, taps_t)
        with rec_s.recording() as features_s:
            out = s_net(lq * scale)
        with torch.no_grad(), rec_t.recording() as features_t:
            target = t_net(lq * scale)
        fakd = FAKDLoss(weight)
        distill = sum(fakd(features_s[a], features_t[b]) for a, b in zip(taps_s, taps_t))
        rec_s.remove(), rec_t.remove()
        pixel = 0.5 * F.l1_loss(out, hr * scale) + 0.5 * F.l1_loss(out, target)
        ratios[name] = gradient_ratio(distill, pixel, s_net)
    assert ratios['kdplugins'] == pytest.approx(ratios['published'], rel=0.02)
    assert ratios['published'] > 0


def _paths(node, key=''):
    """(key, value) of every dataroot / pretrain path / meta_info file in a parsed option file."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, k)
    elif isinstance(node, list):
        for v in node:
            yield from _paths(v, key)
    elif isinstance(node, str) and (key.startswith(('dataroot', 'pretrain_network', 'meta_info'))):
        yield key, node


def test_option_files_use_basicsrs_folder_layout():
    """Users have no ../shared: every data and checkpoint path of a shipped option file is relative to the folder the
    user starts from, under datasets/ or experiments/ as BasicSR's own option files are; no file names ../shared or an
    absolute path, not even in its comments."""
    files = sorted((REPO / 'options').rglob('*.yml'))
    assert len(files) > 40
    wrong = {}
    for path in files:
        text = path.read_text()
        bad = [f'mentions {word}' for word in ('../shared', '/work/') if word in text]
        bad += [
            f'{key}: {value}' for key, value in _paths(yaml.safe_load(text))
            if not value.startswith(('datasets/', 'experiments/'))
        ]
        if bad:
            wrong[str(path.relative_to(REPO))] = bad
    assert wrong == {}
