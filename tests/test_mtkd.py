"""MTKD (ECCV 2024) in two stages: the aggregator trained on frozen teachers (MTKDAggregatorModel), then the student
distilled from the frozen aggregator in the pixel and wavelet domains (MTKDModel); the Haar DWT of ptwt against
strided slicing; frozen parts never change; each stage resumes bitwise; option checks (docs/mtkd.md)."""
import pytest
import torch
from basicsr.archs import build_network
from conftest import TEACHER_NET, build, kd_options, run_module, save_teacher, train_batches, write_yaml

from kdplugins.losses.wavelet_loss import WaveletL1Loss, wavelet_bands
from kdplugins.models.mtkd_model import MTKDOptionError
from kdplugins.runtime.option_checks import OptionError, check_options

SECOND = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 12, 'num_block': 1, 'upscale': 2}
AGGREGATOR = {
    'type': 'MTKDAggregator',
    'num_teachers': 2,
    'upscale': 2,
    'img_size': 32,
    'window_size': 4,
    'depths': [2],
    'embed_dim': 12,
    'num_heads': [2]
}
WAVELET = {'type': 'WaveletL1Loss', 'loss_weight': 1.0, 'levels': 2, 'wavelet': 'haar', 'mode': 'zero'}


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp('mtkd')
    torch.manual_seed(3)
    aggregator = folder / 'aggregator.pth'
    torch.save({'params': build_network(dict(AGGREGATOR)).state_dict()}, aggregator)
    return {
        'first': save_teacher(folder / 'first.pth'),
        'second': save_teacher(folder / 'second.pth', SECOND, seed=2),
        'aggregator': aggregator
    }


def with_two_teachers(opt: dict, checkpoints) -> dict:
    opt['network_t_2'] = dict(SECOND)
    opt['path'].update(pretrain_network_t_2=str(checkpoints['second']), param_key_t_2='params')
    return opt


def stage1_options(lmdbs, checkpoints, name='agg', total_iter=4) -> dict:
    opt = with_two_teachers(kd_options(lmdbs, checkpoints['first'], name=name, total_iter=total_iter), checkpoints)
    opt['model_type'] = 'MTKDAggregatorModel'
    opt['network_g'] = dict(AGGREGATOR)
    del opt['train']['kd_opt']
    return opt


def stage2_options(lmdbs, checkpoints, name='mtkd', total_iter=4) -> dict:
    opt = with_two_teachers(kd_options(lmdbs, checkpoints['first'], name=name, total_iter=total_iter), checkpoints)
    opt['model_type'] = 'MTKDModel'
    opt['network_agg'] = dict(AGGREGATOR)
    opt['path']['pretrain_network_agg'] = str(checkpoints['aggregator'])
    opt['train'].update(
        pixel_opt={
            'type': 'L1Loss',
            'loss_weight': 0.1
        },
        kd_opt={
            'type': 'L1Loss',
            'loss_weight': 1.0
        },
        wavelet_opt=dict(WAVELET))
    return opt


def reference_teacher_outputs(checkpoints, lq) -> torch.Tensor:
    outputs = []
    for net_opt, path in ((TEACHER_NET, checkpoints['first']), (SECOND, checkpoints['second'])):
        net = build_network(dict(net_opt))
        net.load_state_dict(torch.load(path)['params'])
        with torch.no_grad():
            outputs.append(net.eval()(lq))
    return torch.cat(outputs, dim=1)


def haar(x: torch.Tensor):
    """One level of the orthonormal 2-D Haar DWT written out: (LL, horizontal, vertical, diagonal) details."""
    a, b, c, d = x[..., 0::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return (a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2


def test_haar_dwt_and_wavelet_loss_equal_a_direct_computation():
    torch.manual_seed(0)
    x, y = torch.rand(2, 3, 16, 16, dtype=torch.float64), torch.rand(2, 3, 16, 16, dtype=torch.float64)
    low1, *details1 = haar(x)
    low2, *details2 = haar(low1)
    bands = wavelet_bands(x, 2, 'haar', 'zero')
    expected = [low2, torch.stack(details2, dim=2), torch.stack(details1, dim=2)]
    assert [b.shape for b in bands] == [e.shape for e in expected]
    for band, direct in zip(bands, expected):
        assert torch.allclose(band, direct, rtol=0, atol=1e-12)
    ylow1, *ydetails1 = haar(y)
    ylow2, *ydetails2 = haar(ylow1)
    direct = ((low2 - ylow2).abs().mean() + torch.stack([a - b for a, b in zip(details2, ydetails2)]).abs().mean() +
              torch.stack([a - b for a, b in zip(details1, ydetails1)]).abs().mean())
    assert torch.allclose(WaveletL1Loss(loss_weight=0.5, levels=2)(x, y), 0.5 * direct, rtol=0, atol=1e-12)


def frozen_state(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def assert_frozen(model, module, before: dict) -> None:
    assert not module.training and not any(p.requires_grad for p in module.parameters())
    optimized = {id(p) for group in model.optimizer_g.param_groups for p in group['params']}
    assert not optimized & {id(p) for p in module.parameters()}
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_stage1_trains_the_aggregator_on_the_frozen_teachers(tmp_path, monkeypatch, tiny_lmdbs, checkpoints):
    model, parsed = build(tmp_path, monkeypatch, stage1_options(tiny_lmdbs, checkpoints))
    teachers_before = {name: frozen_state(t) for name, t in model.teachers.items()}
    aggregator_before = frozen_state(model.net_g)
    batches = train_batches(parsed, 2)
    for it, batch in enumerate(batches, start=1):
        model.feed_data(batch)
        model.optimize_parameters(it)
    for name, teacher in model.teachers.items():
        assert_frozen(model, teacher, teachers_before[name])
    assert not all(torch.equal(aggregator_before[k], v) for k, v in model.net_g.state_dict().items())
    with torch.no_grad():
        model.net_g.eval()
        expected = model.net_g(reference_teacher_outputs(checkpoints, model.lq))
        assert torch.equal(model.net_g(torch.cat([t(model.lq) for t in model.teachers.values()], 1)), expected)


def test_stage2_distils_from_the_frozen_aggregator(tmp_path, monkeypatch, tiny_lmdbs, checkpoints):
    model, parsed = build(tmp_path, monkeypatch, stage2_options(tiny_lmdbs, checkpoints))
    frozen = {'aggregator': model.aggregator, **model.teachers}
    before = {name: frozen_state(module) for name, module in frozen.items()}
    reference = build_network(dict(AGGREGATOR))
    reference.load_state_dict(torch.load(checkpoints['aggregator'])['params'])
    reference.eval()
    for it, batch in enumerate(train_batches(parsed, 2), start=1):
        model.feed_data(batch)
        with torch.no_grad():
            target = reference(reference_teacher_outputs(checkpoints, model.lq))
        assert torch.equal(model.teacher_forward(model.lq), target)
        losses = model.compute_losses(it)
        assert list(losses) == ['l_pix', 'l_kd', 'l_wavelet']
        assert losses['l_kd'].item() == pytest.approx((model.output - target).abs().mean().item(), abs=1e-7)
        wavelet = WaveletL1Loss(levels=2)(model.output.detach().double(), target.double())
        assert losses['l_wavelet'].item() == pytest.approx(wavelet.item(), abs=1e-6)
        model.optimize_parameters(it)
    for name, module in frozen.items():
        assert_frozen(model, module, before[name])


def trained(cwd, name: str, it: int) -> dict:
    return torch.load(cwd / 'experiments' / name / 'models' / f'net_g_{it}.pth')['params']


@pytest.mark.parametrize('stage', ['aggregator', 'student'])
def test_each_stage_resumes_bitwise_through_the_entry_point(tmp_path, tiny_lmdbs, checkpoints, stage):
    options = stage1_options if stage == 'aggregator' else stage2_options
    yml = write_yaml(tmp_path / f'{stage}.yml', options(tiny_lmdbs, checkpoints, name=stage, total_iter=4))
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    straight.mkdir(), resumed.mkdir()
    run_module('kdplugins.train', '-opt', str(yml), cwd=straight)
    run_module('kdplugins.train', '-opt', str(yml), '--force_yml', 'train:total_iter=2', cwd=resumed)
    run_module('kdplugins.train', '-opt', str(yml), '--auto_resume', cwd=resumed)
    a, b = trained(straight, stage, 4), trained(resumed, stage, 4)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], trained(straight, stage, 2)[k]) for k in a)


def checked(opt: dict) -> str:
    opt['is_train'] = True
    with pytest.raises(OptionError) as error:
        check_options(opt)
    return str(error.value)


def test_options_name_a_missing_stage1_checkpoint_and_a_mismatched_aggregator(tiny_lmdbs, checkpoints):
    opt = stage2_options(tiny_lmdbs, checkpoints)
    opt['path']['pretrain_network_agg'] = None
    assert 'path.pretrain_network_agg is not set: MTKDModel needs the trained stage-1 aggregator' in checked(opt)
    opt = stage2_options(tiny_lmdbs, checkpoints)
    opt['path']['pretrain_network_agg'] = 'experiments/agg/models/net_g_latest.pth'
    assert "path.pretrain_network_agg: checkpoint file not found: 'experiments/agg/models/net_g_latest.pth'" in checked(
        opt)
    opt = stage2_options(tiny_lmdbs, checkpoints)
    opt['network_agg']['num_teachers'] = 3
    assert ('network_agg.num_teachers is 3 but the options declare 2 teacher(s) (network_t, network_t_2)'
            in checked(opt))
    opt = stage2_options(tiny_lmdbs, checkpoints)
    del opt['network_agg']
    assert 'network_agg: missing; MTKDModel distils from the stage-1 aggregator' in checked(opt)
    opt = stage1_options(tiny_lmdbs, checkpoints)
    opt['network_g']['num_teachers'] = 3
    assert 'network_g.num_teachers is 3 but the options declare 2 teacher(s)' in checked(opt)
    opt = stage2_options(tiny_lmdbs, checkpoints)
    opt['train']['multi_teacher'] = {'combine': 'mean'}
    assert 'train.multi_teacher: unknown option' in checked(opt)


def test_a_mismatched_aggregator_is_refused_at_build_too(tmp_path, monkeypatch, tiny_lmdbs, checkpoints):
    """Built without the option checks (an embedding program), the model names the mismatch before any step."""
    opt = stage1_options(tiny_lmdbs, checkpoints)
    opt['network_g']['num_teachers'] = 3
    with pytest.raises(MTKDOptionError, match=r'network_g.num_teachers is 3 but the options declare 2 teacher\(s\)'):
        build(tmp_path, monkeypatch, opt)
