"""What fails loudly in ``python -m kdplugins.train`` (docs/reliability.md): two runs on one experiment folder, a
checkpoint that cannot be written, a truncated latest training state. Real processes, real files."""
import glob
import json
import os
import pytest
import re
import shutil
import signal
import time
import torch
from conftest import finish, kd_options, parse_train_options, run_module, save_teacher, start_module, write_yaml


@pytest.fixture(scope='module')
def teacher_path(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp('teacher') / 'teacher.pth')


def sr_options(lmdbs: dict, name: str, total_iter: int) -> dict:
    """basicsr's own ``SRModel`` (teacher-training option files use it) on the tiny data, without validation."""
    opt = kd_options(lmdbs, None, name=name, total_iter=total_iter)
    opt['model_type'] = 'SRModel'
    for key in ('network_t', 'val'):
        del opt[key]
    for key in ('pretrain_network_t', 'param_key_t'):
        del opt['path'][key]
    for key in ('kd_opt', 'teacher_check'):
        opt['train'].pop(key, None)
    return opt


@pytest.fixture(scope='module')
def sr_run(tmp_path_factory, tiny_lmdbs):
    """A finished 4-iteration ``SRModel`` run (checkpoints at 2 and 4): (its folder, its options). Tests copy it."""
    cwd = tmp_path_factory.mktemp('sr_run')
    opt = sr_options(tiny_lmdbs, 'sr', total_iter=4)
    train(cwd, opt)
    return cwd, opt


def copy_run(run, tmp_path):
    cwd, opt = run
    shutil.copytree(cwd / 'experiments', tmp_path / 'experiments')
    return tmp_path / 'experiments' / opt['name'], opt


def train(cwd, opt: dict, *args: str, check: bool = True):
    yml = write_yaml(cwd / f'{opt["name"]}.yml', opt)
    return run_module('kdplugins.train', '-opt', str(yml), *args, cwd=cwd, check=check)


def read_log(cwd, name: str) -> str:
    return ''.join(open(p).read() for p in sorted(glob.glob(str(cwd / 'experiments' / name / 'train_*.log'))))


def weights(path) -> dict:
    return torch.load(path)['params']


def assert_bitwise_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def wait_for_lock(lock, process, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, finish(process, check=False).stderr[-3000:]
        try:
            return json.loads(lock.read_text())
        except (OSError, ValueError):
            time.sleep(0.2)
    raise AssertionError(f'{lock} did not appear within {timeout} s')


def test_second_run_on_a_live_experiment_stops_and_a_dead_runs_lock_is_taken_over(tmp_path, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, name='locked', total_iter=100000)
    del opt['val']
    opt['logger']['save_checkpoint_freq'] = 100000
    yml = write_yaml(tmp_path / 'locked.yml', opt)
    lock = tmp_path / 'experiments' / '.locked.lock'
    owner = tmp_path / 'experiments' / '.locked.lock.json'
    first = start_module('kdplugins.train', '-opt', str(yml), cwd=tmp_path)
    try:
        info = wait_for_lock(owner, first)
        assert info['pid'] == first.pid and 'kdplugins.train' in info['command']
        # --auto_resume does not bypass the lock (total_iter=1: without the lock this run ends at once, with 0)
        second = train(tmp_path, opt, '--auto_resume', '--force_yml', 'train:total_iter=1', check=False)
        assert second.returncode != 0
        assert 'experiments/locked is in use by another training run' in second.stderr
        assert f"pid {first.pid} on host {info['host']}, started {info['started']}, command: " in second.stderr
        assert f'kill {first.pid}' in second.stderr and '--force_yml name=' in second.stderr
        assert first.poll() is None  # the first run goes on, its folder neither archived nor touched
        assert sorted(os.listdir(tmp_path / 'experiments')) == ['.locked.lock', '.locked.lock.json', 'locked']
    finally:
        first.send_signal(signal.SIGKILL)
        finish(first, check=False)
    assert lock.exists() and owner.exists()  # SIGKILL: nothing could remove them
    third = train(tmp_path, opt, '--force_yml', 'train:total_iter=1', 'logger:save_checkpoint_freq=1')
    assert f'WARNING: taking over the stale lock {lock} of a training run that no longer runs (pid {first.pid}' \
        in third.stderr
    assert not lock.exists() and not owner.exists()  # released at the end
    assert sorted(os.listdir(tmp_path / 'experiments' / 'locked' / 'training_states')) == ['1.state']


def break_writes(models, target: str) -> str:
    """Make writing ``models/<target>`` fail for real: no write permission on ``models``, or as root (whom
    permissions do not stop) a folder where the file must go. Returns the expected error."""
    if os.geteuid() != 0:
        os.chmod(models, 0o555)
        return 'PermissionError'
    (models / target).mkdir()
    return 'IsADirectoryError'


def repair_writes(models, target: str) -> None:
    os.chmod(models, 0o755)
    if (models / target).is_dir():
        (models / target).rmdir()


def test_failed_checkpoint_write_stops_the_run_and_keeps_the_last_good_pair(tmp_path, sr_run):
    exp, opt = copy_run(sr_run, tmp_path)
    models, states = exp / 'models', exp / 'training_states'
    cause = break_writes(models, 'net_g_6.pth')
    try:
        failed = train(tmp_path, opt, '--auto_resume', '--force_yml', 'train:total_iter=6', check=False)
    finally:
        repair_writes(models, 'net_g_6.pth')
    assert failed.returncode != 0, failed.stderr[-3000:]
    assert f"Cannot write the checkpoint file {models / 'net_g_6.pth'}: {cause}" in failed.stderr
    assert f"The last good checkpoint is kept: iteration 4: {states / '4.state'}" in failed.stderr
    assert 'Still cannot save' not in failed.stderr + read_log(tmp_path, 'sr')
    assert sorted(os.listdir(states)) == ['2.state', '4.state']  # no 6.state pointing at missing weights
    assert sorted(os.listdir(models)) == ['net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth']  # no temporary file
    train(tmp_path, opt, '--auto_resume', '--force_yml', 'train:total_iter=6')  # the kept pair resumes
    assert re.search(r'Resuming training from epoch: \d+, iter: 4\.', read_log(tmp_path, 'sr'))
    assert sorted(os.listdir(states)) == ['2.state', '4.state', '6.state']


def test_auto_resume_skips_a_truncated_latest_state(tmp_path, sr_run):
    exp, opt = copy_run(sr_run, tmp_path)
    straight = weights(exp / 'models' / 'net_g_4.pth')  # 4 iterations without interruption
    shown = 'experiments/sr/training_states'  # as --auto_resume names them: from the run's folder
    os.truncate(exp / 'training_states' / '4.state', os.path.getsize(exp / 'training_states' / '4.state') // 2)
    resumed = train(tmp_path, opt, '--auto_resume')
    assert f'WARNING: --auto_resume skips {shown}/4.state: it does not load' in resumed.stderr
    log = read_log(tmp_path, 'sr')
    assert f'--auto_resume resumes from {shown}/2.state (iteration 2)' in log
    assert re.search(r'Resuming training from epoch: \d+, iter: 2\.', log)
    assert_bitwise_equal(weights(exp / 'models' / 'net_g_4.pth'), straight)  # resume is exact


def test_auto_resume_stops_when_no_state_loads(tmp_path, tiny_lmdbs, teacher_path, monkeypatch):
    """The lookup of ``--auto_resume`` itself (no training run: the files are real, the options are parsed)."""
    from kdplugins.runtime.resume import ResumeStateError, load_newest_good_state
    opt = kd_options(tiny_lmdbs, teacher_path, name='broken')
    yml = write_yaml(tmp_path / 'broken.yml', opt)
    parsed = parse_train_options(yml, tmp_path, '--auto_resume', monkeypatch=monkeypatch)
    monkeypatch.chdir(tmp_path)  # --auto_resume looks in ./experiments
    assert load_newest_good_state(parsed) is None  # no state at all: a fresh start
    exp = tmp_path / 'experiments' / 'broken'
    states, models = exp / 'training_states', exp / 'models'
    states.mkdir(parents=True), models.mkdir()
    state = {'epoch': 0, 'iter': 2, 'optimizers': [], 'schedulers': []}
    torch.save(state, states / '2.state')  # good, but its net_g_2.pth is missing
    torch.save(dict(state, iter=4), states / '4.state')
    torch.save({'params': {}}, models / 'net_g_4.pth')
    os.truncate(states / '4.state', 100)
    with pytest.raises(ResumeStateError) as error:
        load_newest_good_state(parsed)
    shown = 'experiments/broken/training_states'
    assert f'none can be resumed: {shown}/4.state: it does not load' in str(error.value)
    assert f"{shown}/2.state: its network file {models / 'net_g_2.pth'} is missing" in str(error.value)
    torch.save({'params': {}}, models / 'net_g_2.pth')
    assert load_newest_good_state(parsed)['iter'] == 2 and parsed['path']['resume_state'] == f'{shown}/2.state'
    assert parsed['path']['pretrain_network_g'] == str(models / 'net_g_2.pth')
    assert parsed['path']['pretrain_network_t'] == str(teacher_path)  # the teacher is never looked for in models/
