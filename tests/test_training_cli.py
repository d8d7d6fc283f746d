"""Training through the real entry points: python -m kdplugins.train, --auto_resume (torchrun: test_multiprocess.py)."""
import glob
import os
import pytest
import re
import torch
from conftest import kd_options, run_module, save_teacher, write_yaml

FITNET = [{'type': 'FitNetLoss', 'student_layer': 'body.0', 'teacher_layer': 'body.1', 'loss_weight': 0.1}]


@pytest.fixture(scope='module')
def teacher_path(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp('teacher') / 'teacher.pth')


def train(cwd, opt: dict, *args: str, torchrun: int = 0, check: bool = True):
    yml = write_yaml(cwd / f'{opt["name"]}.yml', opt)
    return run_module('kdplugins.train', '-opt', str(yml), *args, cwd=cwd, torchrun=torchrun, check=check)


def read_log(cwd, name: str) -> str:
    return ''.join(open(p).read() for p in sorted(glob.glob(str(cwd / 'experiments' / name / 'train_*.log'))))


def student(cwd, name: str, it) -> dict:
    return torch.load(cwd / 'experiments' / name / 'models' / f'net_g_{it}.pth')['params']


def test_kd_training_with_validation_and_checkpoints(tmp_path, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, name='kd_cli', total_iter=4)
    train(tmp_path, opt)
    exp = tmp_path / 'experiments' / 'kd_cli'
    assert sorted(os.listdir(exp / 'models')) == ['net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth']
    assert sorted(os.listdir(exp / 'training_states')) == ['2.state', '4.state']
    log = read_log(tmp_path, 'kd_cli')
    assert len(re.findall(r'Teacher \(network_t\) on tiny_val: psnr: [0-9.]+', log)) == 1  # once, at the start
    assert len(re.findall(r'Validation tiny_val\n\t # psnr: [0-9.]+', log)) == 3  # iters 2, 4 and the end
    assert len(re.findall(r'l_pix: [0-9.e+-]+ l_kd: [0-9.e+-]+', log)) == 4
    final, latest = student(tmp_path, 'kd_cli', 4), student(tmp_path, 'kd_cli', 'latest')
    assert all(torch.equal(final[k], latest[k]) for k in final)


@pytest.mark.parametrize(
    'half, workers, speed', [(4, 0, None), (2, 1, None), (2, 0, {
        'precision': 'fp16',
        'channels_last': True
    })],
    ids=['epoch-boundary', 'mid-epoch-data-worker', 'mid-epoch-fp16-channels-last'])
def test_resume_repeats_an_uninterrupted_run_exactly(tmp_path, tiny_lmdbs, teacher_path, half, workers, speed):
    """18 training pairs, batch 4: 4 iterations per epoch. 8 iterations straight == half + --auto_resume. With a data
    worker, the random crops and flips after the resume must be those of the uninterrupted run. With fp16, the gradient
    scaler's state (scale and count of steps since it last changed) must be resumed too."""
    opt = kd_options(
        tiny_lmdbs,
        teacher_path,
        name='resume',
        total_iter=8,
        feature_losses=FITNET,
        **({
            'speed': speed
        } if speed else {}))
    opt['datasets']['train']['num_worker_per_gpu'] = workers
    opt['logger']['save_checkpoint_freq'] = half
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    straight.mkdir(), resumed.mkdir()
    train(straight, opt)
    train(resumed, opt, '--force_yml', f'train:total_iter={half}')
    train(resumed, opt, '--auto_resume')
    assert f'Resuming training from epoch: {(half - 1) // 4}, iter: {half}.' in read_log(resumed, 'resume')
    a, b = student(straight, 'resume', 8), student(resumed, 'resume', 8)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    states = [
        torch.load(d / 'experiments' / 'resume' / 'training_states' / '8.state', weights_only=False)
        for d in (straight, resumed)
    ]
    for key, value in states[0]['distill_modules'].items():
        assert torch.equal(value, states[1]['distill_modules'][key]), key
    moments = [s['optimizers'][0]['state'][0]['exp_avg'] for s in states]
    assert torch.equal(moments[0], moments[1])
    assert states[0]['grad_scaler'] == states[1]['grad_scaler']
    if speed:
        assert states[0]['grad_scaler']['_growth_tracker'] == 8  # 8 steps without overflow, counted across the resume


def test_cli_reports_bad_options_before_creating_anything(tmp_path, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, name='bad')
    opt['network_t']['type'] = 'MSRResnet'
    result = train(tmp_path, opt, check=False)
    assert result.returncode != 0
    assert "network_t.type: unknown arch type 'MSRResnet'. Close registered names: MSRResNet" in result.stderr
    assert not (tmp_path / 'experiments').exists()
