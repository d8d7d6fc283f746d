"""Teachers as objects: ``network_t`` and further ``network_t_<name>`` teachers, each with its own checkpoint, key,
prefix and value range; every one loaded strictly, checked against bicubic, frozen, never saved, kept across resume
and validated under its own name (kdplugins/distill/teacher.py, DistillModel)."""
import glob
import os
import pytest
import re
import torch
import torch.nn.functional as F
from basicsr.archs import build_network
from basicsr.utils.registry import ARCH_REGISTRY
from conftest import TEACHER_NET, build, kd_options, run_module, save_teacher, train_batches, write_yaml
from torch import nn

from kdplugins.distill.multi_teacher import MultiTeacherError
from kdplugins.runtime.option_checks import OptionError, check_options
from kdplugins.runtime.resume import check_resume

SECOND = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 12, 'num_block': 1, 'upscale': 2}


@ARCH_REGISTRY.register()
class BicubicUpscaler(nn.Module):
    """A 'teacher' that is bicubic upscaling (its one parameter is zero): it passes the bicubic check exactly."""

    def __init__(self, upscale: int = 2):
        super().__init__()
        self.upscale = upscale
        self.zero = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.upscale, mode='bicubic', align_corners=False) + self.zero


@pytest.fixture(scope='module')
def teachers(tmp_path_factory):
    folder = tmp_path_factory.mktemp('teachers')
    bicubic = folder / 'bicubic.pth'  # a DataParallel-style checkpoint: flat, keys with 'module.'
    torch.save({f'module.{k}': v for k, v in BicubicUpscaler().state_dict().items()}, bicubic)
    return {
        'first': save_teacher(folder / 'first.pth'),
        'second': save_teacher(folder / 'second.pth', SECOND, seed=2),
        'bicubic': bicubic,
    }


def two_teacher_options(lmdbs, teachers, name='two', **train_opt) -> dict:
    opt = kd_options(lmdbs, teachers['first'], name=name, **train_opt)
    opt['network_t_2'] = dict(SECOND)
    opt['path'].update(pretrain_network_t_2=str(teachers['second']), param_key_t_2='params', strip_prefix_t_2='')
    opt['train']['teacher_img_range_2'] = 1.0
    return opt


def test_two_teachers_are_built_frozen_and_distilled_towards_their_mean(tmp_path, monkeypatch, tiny_lmdbs, teachers):
    model, parsed = build(tmp_path, monkeypatch, two_teacher_options(tiny_lmdbs, teachers))
    assert list(model.teachers) == ['network_t', 'network_t_2'] and model.net_t is model.teachers['network_t']
    expected = {}
    sources = {'network_t': (TEACHER_NET, teachers['first']), 'network_t_2': (SECOND, teachers['second'])}
    for network, (net_opt, path) in sources.items():
        teacher = model.teachers[network]
        assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
        reference = build_network(dict(net_opt))
        reference.load_state_dict(torch.load(path)['params'])
        expected[network] = reference.eval()
    optimized = {id(p) for group in model.optimizer_g.param_groups for p in group['params']}
    assert not optimized & {id(p) for t in model.teachers.values() for p in t.parameters()}
    batch = train_batches(parsed, 1)[0]
    model.feed_data(batch)
    with torch.no_grad():
        mean = (expected['network_t'](model.lq) + expected['network_t_2'](model.lq)) / 2
    assert torch.equal(model.teacher_forward(model.lq), mean)
    model.optimize_parameters(1)
    assert torch.equal(model.teacher_forward(model.lq), mean)  # a training step changed no teacher


def three_teacher_options(lmdbs, teachers, name='three', **multi_teacher) -> dict:
    """Three teachers of three archs: the tiny EDSR-like and MSRResNet in [0, 1], bicubic declared in [0, 255] (its
    checkpoint with DataParallel's 'module.' prefix)."""
    opt = two_teacher_options(lmdbs, teachers, name=name)
    opt['network_t_bicubic'] = {'type': 'BicubicUpscaler', 'upscale': 2}
    opt['path']['pretrain_network_t_bicubic'] = str(teachers['bicubic'])
    opt['train']['teacher_img_range_bicubic'] = 255
    opt['train']['multi_teacher'] = multi_teacher
    return opt


def reference_outputs(teachers, lq) -> list:
    """The three teachers' outputs computed directly: own networks, own checkpoints, bicubic in [0, 255]."""
    outputs = []
    for net_opt, path in ((TEACHER_NET, teachers['first']), (SECOND, teachers['second'])):
        reference = build_network(dict(net_opt))
        reference.load_state_dict(torch.load(path)['params'])
        outputs.append(reference.eval()(lq).detach().double())
    outputs.append(F.interpolate(lq * 255, scale_factor=2, mode='bicubic', align_corners=False).double() / 255)
    return outputs


def test_fixed_and_error_weighted_targets_equal_a_direct_computation(tmp_path, monkeypatch, tiny_lmdbs, teachers):
    """``combine: fixed``: sum_i w_i T_i with weights normalised to 1; ``combine: error``: per pixel
    softmax_i(-mean_c|T_i - HR| / temperature); written out here in float64 with exp, not softmax."""
    targets = {}
    for combine, extra in (('fixed', {
            'weights': {
                'network_t': 1,
                'network_t_2': 2,
                'network_t_bicubic': 1
            }
    }), ('error', {
            'temperature': 0.05
    })):
        (tmp_path / combine).mkdir()
        model, parsed = build(tmp_path / combine, monkeypatch,
                              three_teacher_options(tiny_lmdbs, teachers, combine=combine, **extra))
        assert list(model.teachers) == ['network_t', 'network_t_2', 'network_t_bicubic']
        model.feed_data(train_batches(parsed, 1)[0])
        targets[combine] = model.teacher_forward(model.lq, model.gt).double()
        with torch.no_grad():
            outputs = reference_outputs(teachers, model.lq)
        hr = model.gt.double()
    fixed = 0.25 * outputs[0] + 0.5 * outputs[1] + 0.25 * outputs[2]
    assert torch.allclose(targets['fixed'], fixed, rtol=0, atol=1e-6)
    exps = [torch.exp(-(out - hr).abs().mean(dim=1, keepdim=True) / 0.05) for out in outputs]
    error = sum(e * out for e, out in zip(exps, outputs)) / sum(exps)
    assert torch.allclose(targets['error'], error, rtol=0, atol=1e-6)
    assert not torch.allclose(targets['error'], sum(outputs) / 3, rtol=0, atol=1e-4)  # the weights matter here


WRONG_WEIGHTS = {
    'teachers': (dict(combine='fixed', weights=dict(network_t=1, network_t_3=1)),
                 'one weight per teacher section (network_t, network_t_2, network_t_bicubic): missing network_t_2, '
                 'network_t_bicubic; no teacher section network_t_3.'),
    'zero': (dict(combine='fixed', weights=dict(network_t=0, network_t_2=0, network_t_bicubic=0)), 'weights are all 0'),
    'not-fixed': (dict(combine='mean', weights=dict(network_t=1)), 'apply to combine: fixed only'),
}


@pytest.mark.parametrize('multi_teacher, expected', list(WRONG_WEIGHTS.values()), ids=list(WRONG_WEIGHTS))
def test_multi_teacher_weights_must_name_every_teacher(tmp_path, monkeypatch, tiny_lmdbs, teachers, multi_teacher,
                                                       expected):
    with pytest.raises(MultiTeacherError) as error:
        build(tmp_path, monkeypatch, three_teacher_options(tiny_lmdbs, teachers, **multi_teacher))
    assert expected in str(error.value)


def test_augkd_refuses_error_weighted_teachers(tmp_path, monkeypatch, tiny_lmdbs, teachers):
    """AugKD's zoom-in crops have no HR at the output size: refused at build, before the first step."""
    opt = three_teacher_options(tiny_lmdbs, teachers, combine='error')
    opt['model_type'] = 'AugKDModel'
    with pytest.raises(MultiTeacherError, match="AugKD's auxiliary samples .* have no HR"):
        build(tmp_path, monkeypatch, opt)


def test_resume_points_only_the_saved_networks_at_the_checkpoint(tiny_lmdbs, teachers):
    opt = two_teacher_options(tiny_lmdbs, teachers)
    opt['path'].update(
        resume_state='experiments/two/training_states/2.state',
        models='experiments/two/models',
        param_key_t_2='params_ema',
        param_key_g='params_ema')
    before = dict(opt['path'])
    check_resume(opt, 2)
    assert opt['path']['pretrain_network_g'] == 'experiments/two/models/net_g_2.pth'
    assert opt['path']['param_key_g'] == 'params'  # basicsr's rule for the networks it resumes
    for key in ('pretrain_network_t', 'param_key_t', 'pretrain_network_t_2', 'param_key_t_2', 'strip_prefix_t_2'):
        assert opt['path'][key] == before[key], key
    assert 'ignore_resume_networks' not in opt['path']


def test_every_teacher_is_checked_against_bicubic_and_named(tmp_path, monkeypatch, tiny_lmdbs, teachers):
    opt = kd_options(tiny_lmdbs, teachers['bicubic'], name='checked', teacher_check=True)
    opt['network_t'] = {'type': 'BicubicUpscaler', 'upscale': 2}  # passes (equal to bicubic), 'module.' stripped
    opt['network_t_weak'] = dict(SECOND)
    opt['path']['pretrain_network_t_weak'] = str(teachers['second'])  # seeded random weights: below bicubic
    with pytest.raises(ValueError, match=r'The teacher \(network_t_weak\) scores .* below bicubic upscaling') as error:
        build(tmp_path, monkeypatch, opt)
    assert 'path.strict_load_t_weak' in str(error.value) and 'train.teacher_img_range_weak' in str(error.value)


def test_teacher_options_name_their_network(tiny_lmdbs, teachers):
    opt = two_teacher_options(tiny_lmdbs, teachers)
    opt['path']['pretrain_network_t_3'] = str(teachers['second'])
    opt['train']['teacher_img_range_3'] = 255
    opt['is_train'] = True
    with pytest.raises(OptionError) as error:
        check_options(opt)
    assert 'path.pretrain_network_t_3: there is no network_t_3 section it could apply to' in str(error.value)
    assert '(did you mean pretrain_network_t_2' in str(error.value)
    assert 'train.teacher_img_range_3: unknown option (did you mean teacher_img_range_2' in str(error.value)


def read_log(cwd, name: str) -> str:
    return ''.join(open(p).read() for p in sorted(glob.glob(str(cwd / 'experiments' / name / 'train_*.log'))))


def student(cwd, name: str, it) -> dict:
    return torch.load(cwd / 'experiments' / name / 'models' / f'net_g_{it}.pth')['params']


def test_two_teachers_resume_exactly_and_are_validated_under_their_names(tmp_path, tiny_lmdbs, teachers):
    opt = two_teacher_options(tiny_lmdbs, teachers, name='two', total_iter=4)
    yml = write_yaml(tmp_path / 'two.yml', opt)
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    straight.mkdir(), resumed.mkdir()
    run_module('kdplugins.train', '-opt', str(yml), cwd=straight)
    run_module('kdplugins.train', '-opt', str(yml), '--force_yml', 'train:total_iter=2', cwd=resumed)
    run_module('kdplugins.train', '-opt', str(yml), '--auto_resume', cwd=resumed)
    a, b = student(straight, 'two', 4), student(resumed, 'two', 4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(os.listdir(resumed / 'experiments' / 'two' /
                             'models')) == ['net_g_2.pth', 'net_g_4.pth',
                                            'net_g_latest.pth']  # teachers are never saved
    log = read_log(straight, 'two')
    assert len(re.findall(r'Teacher \(network_t\) on tiny_val: psnr: [0-9.]+', log)) == 1
    assert len(re.findall(r'Teacher \(network_t_2\) on tiny_val: psnr: [0-9.]+', log)) == 1


def test_two_teachers_under_torchrun_resume_with_equal_ranks(tmp_path, tiny_lmdbs, teachers):
    """2 processes (gloo; data workers are tests/test_multiprocess.py's): 2 iterations, then --auto_resume to 4; the
    ranks hold bitwise equal students at every checkpoint, and the resumed run loads both teachers from their own
    files."""
    opt = two_teacher_options(tiny_lmdbs, teachers, name='two_ddp', total_iter=4, check_rank_sync=True)
    opt['datasets']['train'].update(batch_size_per_gpu=2)
    yml = write_yaml(tmp_path / 'two_ddp.yml', opt)
    args = ('-opt', str(yml), '--launcher', 'pytorch')
    run_module('kdplugins.train', *args, '--force_yml', 'train:total_iter=2', cwd=tmp_path, torchrun=2)
    run_module('kdplugins.train', *args, '--auto_resume', cwd=tmp_path, torchrun=2)
    log = read_log(tmp_path, 'two_ddp')
    assert 'Resuming training from epoch: 0, iter: 2.' in log and 'World size (gpu number): 2' in log
    digests = re.findall(r'Rank weight digests at iter (-?\d+): ([0-9a-f]{64}) ([0-9a-f]{64})', log)
    assert [d[0] for d in digests] == ['2', '-1', '4', '-1'] and all(d[1] == d[2] for d in digests)
    resumed = open(sorted(glob.glob(str(tmp_path / 'experiments' / 'two_ddp' / 'train_*.log')))[-1]).read()
    assert f"pretrain_network_t_2: {teachers['second']}" in resumed and 'net_t_2_' not in resumed
