"""CrossKD: the student's features through the teacher's tail (kdplugins/models/crosskd_model.py)."""
import glob
import pytest
import re
import torch
import torch.nn.functional as F
from conftest import build, kd_options, run_module, save_teacher, train_batches, write_yaml

from kdplugins.losses.crosskd_loss import CrossKDLoss

TEACHER = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 12, 'num_block': 2, 'upscale': 2}
STUDENT = {'type': 'EDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}


@pytest.fixture(scope='module')
def teacher_path(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp('crosskd_teacher') / 'teacher.pth', TEACHER)


def crosskd_options(lmdbs, teacher_path, name='crosskd', total_iter=4, **train_opt):
    opt = kd_options(lmdbs, teacher_path, name=name, total_iter=total_iter, **train_opt)
    opt.update(model_type='CrossKDModel', network_g=dict(STUDENT), network_t=dict(TEACHER))
    opt['train'].setdefault('crosskd', {'student_layer': 'upsample', 'teacher_layer': 'upsample'})
    opt['train'].setdefault('crosskd_opt', {'type': 'CrossKDLoss', 'loss_weight': 0.7})
    return opt


def test_the_cross_term_is_the_teachers_tail_on_the_connected_student_feature(tmp_path, monkeypatch, tiny_lmdbs,
                                                                              teacher_path):
    """l_crosskd = 0.7 * L1(T.conv_last(T.upsample(r(F_S))) / 255 + mean, T(LR)), F_S the input of the student's
    upsample, computed here by hand; gradients reach the student and the connector, never the teacher."""
    model, parsed = build(tmp_path, monkeypatch, crosskd_options(tiny_lmdbs, teacher_path))
    model.feed_data(train_batches(parsed, 1)[0])
    losses = model.compute_losses(1)
    assert list(losses) == ['l_pix', 'l_kd', 'l_crosskd']
    student, teacher = model.net_g, model.net_t.net
    captured = {}
    handle = student.upsample.register_forward_pre_hook(lambda m, inputs: captured.update(f=inputs[0]))
    student(model.lq)
    handle.remove()
    loss = model.distill_modules['l_crosskd']
    assert isinstance(loss, CrossKDLoss) and loss.connector.weight.shape == (12, 8, 1, 1)
    crossed = teacher.conv_last(teacher.upsample(loss.connector(captured['f']))) / teacher.img_range + teacher.mean
    with torch.no_grad():
        target = teacher(model.lq)
    expected = 0.7 * F.l1_loss(crossed, target)
    assert torch.allclose(losses['l_crosskd'], expected, rtol=1e-6, atol=1e-7)
    losses['l_crosskd'].backward()
    assert loss.connector.weight.grad.abs().sum() > 0
    assert student.body[0].conv1.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert set(model.optimizer_g.param_groups[0]['params']) >= set(loss.parameters())


def test_a_split_point_that_something_bypasses_is_refused_with_the_fix(tmp_path, monkeypatch, tiny_lmdbs, teacher_path):
    """basicsr's EDSR adds the body's input back before ``upsample`` but after ``body``: splitting at ``body`` leaves
    the skip connection outside the replaced feature."""
    opt = crosskd_options(tiny_lmdbs, teacher_path, crosskd={'student_layer': 'upsample', 'teacher_layer': 'body'})
    with pytest.raises(ValueError, match=r"does not depend on its input through 'body' only .* 'upsample'"):
        build(tmp_path, monkeypatch, opt)


def test_crosskd_options_are_checked_before_anything_is_built(tmp_path, tiny_lmdbs, teacher_path):
    opt = crosskd_options(tiny_lmdbs, teacher_path, crosskd={'student_layr': 'upsample', 'teacher_layer': 'upsample'})
    result = run_module(
        'kdplugins.train', '-opt', str(write_yaml(tmp_path / 'bad.yml', opt)), cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert 'train.crosskd.student_layr: unknown option (did you mean student_layer?)' in result.stderr
    assert 'train.crosskd.student_layer: missing; it has no default.' in result.stderr
    assert not (tmp_path / 'experiments').exists()


def read_log(cwd, name: str) -> str:
    return ''.join(open(p).read() for p in sorted(glob.glob(str(cwd / 'experiments' / name / 'train_*.log'))))


def test_crosskd_trains_through_the_cli_and_resumes_bitwise(tmp_path, tiny_lmdbs, teacher_path):
    """2 + 2 iterations with --auto_resume give bitwise the 4-iteration run's student and connector."""
    opt = crosskd_options(tiny_lmdbs, teacher_path, name='crosskd_resume')
    opt['val']['val_freq'] = 100
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    for cwd, runs in ((straight, [()]), (resumed, [('--force_yml', 'train:total_iter=2'), ('--auto_resume', )])):
        cwd.mkdir()
        yml = write_yaml(cwd / 'crosskd.yml', opt)
        for args in runs:
            run_module('kdplugins.train', '-opt', str(yml), *args, cwd=cwd)
    log = read_log(straight, 'crosskd_resume')
    assert len([line for line in log.splitlines()
                if 'l_pix:' in line and 'l_kd:' in line and 'l_crosskd:' in line]) == 4
    assert 'Resuming training from epoch: 0, iter: 2.' in read_log(resumed, 'crosskd_resume')
    for what in ('models/net_g_4.pth', 'training_states/4.state'):
        a, b = (
            torch.load(d / 'experiments' / 'crosskd_resume' / what, weights_only=False) for d in (straight, resumed))
        tensors = a['params'] if 'params' in a else a['distill_modules']
        other = b['params'] if 'params' in b else b['distill_modules']
        assert tensors.keys() == other.keys() and len(tensors) > 0
        assert all(torch.equal(tensors[k], other[k]) for k in tensors), what


def test_two_process_torchrun_keeps_the_connector_and_student_equal_on_both_ranks(tmp_path, tiny_lmdbs, teacher_path):
    opt = crosskd_options(tiny_lmdbs, teacher_path, name='crosskd_ddp', check_rank_sync=True)
    opt['val']['val_freq'] = 100
    opt['datasets']['train']['batch_size_per_gpu'] = 2
    run_module(
        'kdplugins.train',
        '-opt',
        str(write_yaml(tmp_path / 'ddp.yml', opt)),
        '--launcher',
        'pytorch',
        cwd=tmp_path,
        torchrun=2)
    digests = re.findall(r'Rank weight digests at iter (-?\d+): ([0-9a-f]{64}) ([0-9a-f]{64})',
                         read_log(tmp_path, 'crosskd_ddp'))
    assert [d[0] for d in digests] == ['2', '4', '-1']
    assert all(rank0 == rank1 for _, rank0, rank1 in digests) and digests[0][1] != digests[1][1]
