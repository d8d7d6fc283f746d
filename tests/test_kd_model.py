"""KDModel in-process: the frozen teacher, the loss terms, connectors, and errors for bad input."""
import copy
import os
import pytest
import torch
from basicsr.models import build_model
from basicsr.utils import make_exp_dirs
from conftest import (STUDENT_NET, TEACHER_NET, build, kd_options, parse_train_options, save_teacher, train_batches,
                      write_yaml)

from kdplugins.runtime.option_checks import OptionError, check_options


@pytest.fixture()
def teacher_path(tmp_path):
    return save_teacher(tmp_path / 'teacher.pth')


def test_teacher_is_frozen_unchanged_unsaved_and_outside_the_optimizer(tmp_path, monkeypatch, tiny_lmdbs, teacher_path):
    feature_losses = [{'type': 'FitNetLoss', 'student_layer': 'body.0', 'teacher_layer': 'body.1', 'loss_weight': 1}]
    model, parsed = build(tmp_path, monkeypatch, kd_options(tiny_lmdbs, teacher_path, feature_losses=feature_losses))
    teacher_before = {k: v.clone() for k, v in model.net_t.state_dict().items()}
    for k, v in torch.load(teacher_path)['params'].items():
        assert torch.equal(teacher_before['net.' + k], v)
    student_before = copy.deepcopy(model.net_g.state_dict())
    for i, batch in enumerate(train_batches(parsed, 3), start=1):
        model.feed_data(batch)
        model.optimize_parameters(i)
        model.net_g.train()
        model.net_t.train()  # must not leave eval mode
    assert not model.net_t.training and not any(m.training for m in model.net_t.modules())
    for name, param in model.net_t.named_parameters():
        assert not param.requires_grad and param.grad is None, name
        assert torch.equal(param, teacher_before[name]), name
    assert any(not torch.equal(v, model.net_g.state_dict()[k]) for k, v in student_before.items())
    optimized = {id(p) for group in model.optimizer_g.param_groups for p in group['params']}
    assert not optimized & {id(p) for p in model.net_t.parameters()}
    assert {id(p) for p in model.distill_modules.parameters()} <= optimized  # the FitNet regressor is trained
    model.save(0, 3)
    assert sorted(os.listdir(parsed['path']['models'])) == ['net_g_3.pth']
    state = torch.load(os.path.join(parsed['path']['training_states'], '3.state'), weights_only=False)
    assert set(state['distill_modules']) == {'l_FitNetLoss.regressor.weight', 'l_FitNetLoss.regressor.bias'}
    assert torch.equal(state['distill_modules']['l_FitNetLoss.regressor.weight'],
                       model.distill_modules['l_FitNetLoss'].regressor.weight.detach())


def test_loss_terms_equal_direct_computation(tmp_path, monkeypatch, tiny_lmdbs, teacher_path):
    feature_losses = [{'type': 'FitNetLoss', 'student_layer': 'body.0', 'teacher_layer': 'body.1', 'loss_weight': 3}]
    model, parsed = build(tmp_path, monkeypatch, kd_options(tiny_lmdbs, teacher_path, feature_losses=feature_losses))
    batch = train_batches(parsed, 1)[0]
    model.feed_data(batch)
    losses = model.compute_losses(1)
    assert list(losses) == ['l_pix', 'l_kd', 'l_FitNetLoss']
    student, teacher = model.net_g, model.net_t.net
    captured = {}
    handles = [
        student.body[0].register_forward_hook(lambda m, i, o: captured.__setitem__('s', o)),
        teacher.body[1].register_forward_hook(lambda m, i, o: captured.__setitem__('t', o))
    ]
    with torch.no_grad():
        out_s, out_t = student(batch['lq']), teacher(batch['lq'])
    for handle in handles:
        handle.remove()
    assert torch.equal(losses['l_pix'].detach(), (out_s - batch['gt']).abs().mean())
    assert torch.equal(losses['l_kd'].detach(), 0.5 * (out_s - out_t).abs().mean())
    regressed = model.distill_modules['l_FitNetLoss'].regressor(captured['s'])
    assert torch.allclose(losses['l_FitNetLoss'].detach(), 3 * ((regressed - captured['t'])**2).mean(), rtol=1e-6)
    assert model.index.tolist() == batch['index'].tolist()


def test_teacher_img_range_255(tmp_path, monkeypatch, tiny_lmdbs, teacher_path):
    model, _ = build(tmp_path, monkeypatch, kd_options(tiny_lmdbs, teacher_path, teacher_img_range=255))
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.net_t(x), model.net_t.net(x * 255) / 255)


def test_missing_teacher_checkpoint(tmp_path, monkeypatch, tiny_lmdbs):
    opt = kd_options(tiny_lmdbs, tmp_path / 'no_such_teacher.pth')
    parsed = parse_train_options(write_yaml(tmp_path / 'opt.yml', opt), tmp_path, monkeypatch=monkeypatch)
    with pytest.raises(OptionError, match=r'path.pretrain_network_t: checkpoint file not found.*no_such_teacher'):
        check_options(parsed)
    make_exp_dirs(parsed)
    with pytest.raises(FileNotFoundError, match=r'path.pretrain_network_t.*no_such_teacher.pth'):
        build_model(parsed)


def test_teacher_checkpoint_with_other_keys(tmp_path, monkeypatch, tiny_lmdbs):
    other = save_teacher(tmp_path / 'other.pth', dict(TEACHER_NET, num_block=3))
    with pytest.raises(ValueError) as error:
        build(tmp_path, monkeypatch, kd_options(tiny_lmdbs, other))
    message = str(error.value)
    assert 'does not match the teacher network_t' in message
    assert ('unexpected keys (4): body.2.conv1.bias, body.2.conv1.weight, body.2.conv2.bias, '
            'body.2.conv2.weight') in message


def test_teacher_checkpoint_with_other_shapes(tmp_path, monkeypatch, tiny_lmdbs):
    other = save_teacher(tmp_path / 'other.pth', dict(TEACHER_NET, num_feat=12))
    with pytest.raises(ValueError, match=r'shape mismatch .*conv_first.weight: checkpoint \(12, 3, 3, 3\) vs teacher'):
        build(tmp_path, monkeypatch, kd_options(tiny_lmdbs, other))


def test_teacher_scale_differs_from_student(tmp_path, monkeypatch, tiny_lmdbs):
    x4_teacher = dict(TEACHER_NET, upscale=4)
    opt = kd_options(tiny_lmdbs, save_teacher(tmp_path / 't4.pth', x4_teacher))
    opt['network_t'] = x4_teacher
    with pytest.raises(ValueError, match=r'upscale differently.*\(64, 64\) but the teacher.*\(128, 128\).*network_t'):
        build(tmp_path, monkeypatch, opt)


def test_unknown_layer_name_lists_close_names(tmp_path, monkeypatch, tiny_lmdbs, teacher_path):
    feature_losses = [{'type': 'FitNetLoss', 'student_layer': 'body.O', 'teacher_layer': 'body.1'}]
    with pytest.raises(KeyError, match=r"student \(network_g\) has no module named 'body.O'.*body.0"):
        build(tmp_path, monkeypatch, kd_options(tiny_lmdbs, teacher_path, feature_losses=feature_losses))


def test_lmdb_without_meta_info(tmp_path, monkeypatch, tiny_lmdbs, teacher_path):
    broken = tmp_path / 'broken_hr.lmdb'
    broken.mkdir()
    (broken / 'data.mdb').write_bytes(open(os.path.join(tiny_lmdbs['train_hr'], 'data.mdb'), 'rb').read())
    opt = kd_options(dict(tiny_lmdbs, train_hr=str(broken)), teacher_path)
    parsed = parse_train_options(write_yaml(tmp_path / 'opt.yml', opt), tmp_path, monkeypatch=monkeypatch)
    with pytest.raises(
            OptionError,
            match=r'datasets.train.dataroot_gt: the LMDB folder .*broken_hr.lmdb.* no '
            r'meta_info.txt.*python -m kdplugins.create_lmdb'):
        check_options(parsed)


@pytest.mark.parametrize('section, value, message', [
    ('network_g', 'MSRResnet', r"network_g.type: unknown arch type 'MSRResnet'. Close registered names: MSRResNet"),
    ('model_type', 'KDmodel', r"model_type: unknown model type 'KDmodel'. Close registered names: KDModel"),
    ('kd_opt', 'L1loss', r"train.kd_opt.type: unknown loss type 'L1loss'. Close registered names: L1Loss"),
])
def test_unknown_type_names_list_close_names(tmp_path, monkeypatch, tiny_lmdbs, teacher_path, section, value, message):
    opt = kd_options(tiny_lmdbs, teacher_path)
    if section == 'model_type':
        opt['model_type'] = value
    elif section == 'kd_opt':
        opt['train']['kd_opt']['type'] = value
    else:
        opt[section] = dict(STUDENT_NET, type=value)
    parsed = parse_train_options(write_yaml(tmp_path / 'opt.yml', opt), tmp_path, monkeypatch=monkeypatch)
    with pytest.raises(OptionError, match=message):
        check_options(parsed)
