"""Training as GPU users launch it, run on CPU: torchrun with data workers under basicsr's ``spawn`` and under
``forkserver``, exact resume with workers, one LMDB as training and validation set, two nodes, the README's torchrun
line with a GPU option file, and a host project that only imports kdplugins."""
import glob
import os
import pytest
import re
import subprocess
import sys
import torch
from conftest import (REPO, basicsr_layout, finish, free_port, kd_options, run_module, run_script, save_teacher,
                      start_module, write_yaml)

FITNET = [{'type': 'FitNetLoss', 'student_layer': 'body.0', 'teacher_layer': 'body.1', 'loss_weight': 0.1}]
TOTAL_ITER, HALF = 6, 3  # 18 pairs, 2 ranks x batch 2: 4 iterations per epoch, so the runs cross an epoch boundary


@pytest.fixture(scope='module')
def teacher_path(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp('teacher') / 'teacher.pth')


def ddp_options(lmdbs: dict, teacher_path, workers: int) -> dict:
    """A 2-rank KD + FitNet run whose training LMDB is also its second validation set."""
    opt = kd_options(
        lmdbs, teacher_path, name='ddp', total_iter=TOTAL_ITER, feature_losses=FITNET, check_rank_sync=True)
    # persistent workers, as the GPU option files have them (workers started once, not at every epoch)
    opt['datasets']['train'].update(batch_size_per_gpu=2, num_worker_per_gpu=workers, persistent_workers=workers > 0)
    opt['datasets']['val_2'] = {
        'name': 'train_as_val',
        'type': 'PairedImageDataset',
        'dataroot_gt': lmdbs['train_hr'],
        'dataroot_lq': lmdbs['train_lr'],
        'io_backend': {
            'type': 'lmdb'
        }
    }
    opt['val']['val_freq'] = HALF
    opt['logger']['save_checkpoint_freq'] = HALF
    return opt


def read_log(exp) -> str:
    return ''.join(open(p).read() for p in sorted(glob.glob(str(exp / 'train_*.log'))))


def final_student(exp) -> dict:
    return torch.load(exp / 'models' / f'net_g_{TOTAL_ITER}.pth')['params']


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, different


def assert_ranks_equal_and_run_complete(exp, result) -> None:
    log = read_log(exp)
    assert 'World size (gpu number): 2' in log
    digests = re.findall(r'Rank weight digests at iter (-?\d+): ([0-9a-f]{64}) ([0-9a-f]{64})', log)
    assert [d[0] for d in digests] == [str(HALF), str(TOTAL_ITER), '-1'], result.stderr[-3000:]
    assert all(rank0 == rank1 for _, rank0, rank1 in digests)
    assert digests[0][1] != digests[1][1]  # the weights changed between checkpoints
    for name in ('tiny_val', 'train_as_val'):  # validated at 3, 6 and the end, on both sets
        assert len(re.findall(rf'Validation {name}\n\t # psnr: [0-9.]+', log)) == 3, name
    assert (exp / 'training_states' / f'{TOTAL_ITER}.state').is_file()


CONFIGS = {  # the start method matters only to data workers: without workers, no process is started by multiprocessing
    '0-workers-spawn': (0, 'spawn'),
    '2-workers-spawn': (2, 'spawn'),
    '2-workers-forkserver': (2, 'forkserver'),
}


@pytest.fixture(scope='module')
def straight_runs(tmp_path_factory, tiny_lmdbs, teacher_path):
    """Each configuration trained once, straight (lazily, by the first test that asks)."""
    done = {}

    def run(config: str):
        if config not in done:
            workers, method = CONFIGS[config]
            cwd = tmp_path_factory.mktemp(config)
            yml = write_yaml(cwd / 'ddp.yml', ddp_options(tiny_lmdbs, teacher_path, workers))
            result = run_module(
                'kdplugins.train',
                '-opt',
                str(yml),
                '--launcher',
                'pytorch',
                cwd=cwd,
                torchrun=2,
                wrapper=['run_with_start_method.py', method, 'kdplugins.train'])
            done[config] = cwd / 'experiments' / 'ddp', result
        return done[config]

    return run


@pytest.mark.parametrize('config', list(CONFIGS))
def test_two_processes_train_validate_save_with_ranks_bitwise_equal(straight_runs, config):
    assert_ranks_equal_and_run_complete(*straight_runs(config))


@pytest.mark.parametrize('config', [c for c in CONFIGS if c != '0-workers-spawn'])
def test_number_of_workers_and_start_method_do_not_change_the_weights(straight_runs, config):
    """Augmentations come from per-sample seeds, not from a worker's random stream."""
    assert_same_weights(final_student(straight_runs(config)[0]), final_student(straight_runs('0-workers-spawn')[0]))


def test_resume_with_workers_is_bitwise_exact(tmp_path, tiny_lmdbs, teacher_path, straight_runs):
    """One worker per rank here, two in the straight run: the weights do not depend on the number of workers."""
    yml = write_yaml(tmp_path / 'ddp.yml', ddp_options(tiny_lmdbs, teacher_path, workers=1))
    args = ('-opt', str(yml), '--launcher', 'pytorch')
    run_module('kdplugins.train', *args, '--force_yml', f'train:total_iter={HALF}', cwd=tmp_path, torchrun=2)
    run_module('kdplugins.train', *args, '--auto_resume', cwd=tmp_path, torchrun=2)
    exp = tmp_path / 'experiments' / 'ddp'
    assert f'Resuming training from epoch: 0, iter: {HALF}.' in read_log(exp)
    assert_same_weights(final_student(exp), final_student(straight_runs('2-workers-spawn')[0]))
    states = [
        torch.load(e / 'training_states' / f'{TOTAL_ITER}.state', weights_only=False)
        for e in (exp, straight_runs('2-workers-spawn')[0])
    ]
    assert_same_weights(states[0]['distill_modules'], states[1]['distill_modules'])


def test_two_nodes_launched_as_a_cluster_would(tmp_path, tiny_lmdbs, teacher_path, straight_runs):
    """Two torchrun commands (--nnodes=2, one process each, data workers) on this machine: the ranks stay equal and
    the weights are those of one node with two processes (one data worker per rank here, two there)."""
    yml = write_yaml(tmp_path / 'ddp.yml', ddp_options(tiny_lmdbs, teacher_path, workers=1))
    port = free_port()
    nodes = [
        start_module(
            'kdplugins.train',
            '-opt',
            str(yml),
            '--launcher',
            'pytorch',
            cwd=tmp_path,
            torchrun=1,
            torchrun_args=['--nnodes=2', f'--node_rank={rank}', '--master_addr=127.0.0.1', f'--master_port={port}'])
        for rank in (0, 1)
    ]
    results = [finish(node) for node in nodes]
    exp = tmp_path / 'experiments' / 'ddp'
    assert_ranks_equal_and_run_complete(exp, results[0])
    assert_same_weights(final_student(exp), final_student(straight_runs('2-workers-spawn')[0]))


@pytest.mark.parametrize('workers', [0, 2])
def test_one_lmdb_as_training_and_validation_set_in_one_process(tmp_path, tiny_lmdbs, teacher_path, workers):
    """Two epochs with validation in between: with workers (fork), the second epoch's workers inherit the
    environment the validation opened."""
    opt = ddp_options(tiny_lmdbs, teacher_path, workers)
    opt['datasets']['train'].update(batch_size_per_gpu=4, persistent_workers=False)  # 4 iterations per epoch
    opt['train']['total_iter'] = 8
    opt['train'].pop('check_rank_sync')
    opt['val']['val_freq'] = 4
    yml = write_yaml(tmp_path / 'one.yml', opt)
    run_module('kdplugins.train', '-opt', str(yml), cwd=tmp_path)
    log = read_log(tmp_path / 'experiments' / 'ddp')
    assert len(re.findall(r'Validation train_as_val\n\t # psnr: [0-9.]+', log)) == 3


HOST_PROJECT = '''
import os
import kdplugins  # before basicsr, as the README says
import basicsr.data, basicsr.data.data_sampler, basicsr.train, basicsr.utils
assert basicsr.train.EnlargedSampler is basicsr.data.data_sampler.EnlargedSampler  # basicsr's sampler and data
assert basicsr.train.build_dataset is basicsr.data.build_dataset
assert basicsr.train.create_train_val_dataloader.__module__ == 'basicsr.train'
assert basicsr.train.parse_options is basicsr.utils.options.parse_options
assert basicsr.train.load_resume_state.__module__ == 'kdplugins.runtime.resume'  # compat 5
basicsr.train.train_pipeline(os.getcwd())
print('ok')
'''


def test_a_host_project_trains_and_resumes_a_kd_model_with_basicsrs_own_train_pipeline(
        tmp_path, tiny_lmdbs, teacher_path):
    """A project that imports kdplugins and calls ``basicsr.train.train_pipeline``: basicsr's sampler, dataset
    building and dataloaders stay basicsr's, and a KD model with its frozen teacher trains on the CPU and resumes
    (the teacher from its own checkpoint, as no ``net_t_<iter>.pth`` is ever written), with no folder made of
    ``path.strip_prefix_t``."""
    script = tmp_path / 'host.py'
    script.write_text(HOST_PROJECT)
    opt = ddp_options(tiny_lmdbs, teacher_path, 0)
    opt['train'].pop('check_rank_sync')
    opt['train']['total_iter'] = 4
    opt['logger']['save_checkpoint_freq'] = opt['val']['val_freq'] = 2
    opt['path']['strip_prefix_t'] = 'module.'
    yml = write_yaml(tmp_path / 'host.yml', opt)
    env = {'PYTHONPATH': str(REPO), 'PATH': '/usr/bin:/bin', 'OMP_NUM_THREADS': '1'}

    def host(*args):
        result = subprocess.run(
            [sys.executable, str(script), '-opt', str(yml), *args],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env)
        assert result.stdout.strip().endswith('ok'), result.stdout[-3000:] + result.stderr[-3000:]

    host('--force_yml', 'train:total_iter=2')
    host('--auto_resume')
    exp = tmp_path / 'experiments' / 'ddp'
    assert 'Resuming training from epoch: 0, iter: 2.' in read_log(exp)
    assert sorted(os.listdir(exp / 'models')) == ['net_g_2.pth', 'net_g_4.pth', 'net_g_latest.pth']
    assert not (tmp_path / 'module.').exists() and not (exp / 'module.').exists()


@pytest.mark.shared_data("the real RFDN x4 checkpoint and Set5 (HR, bundled x4 LR) at the option file's paths")
def test_the_readme_torchrun_line_with_a_gpu_option_file(tmp_path, shared_data, hr_images):
    """``torchrun ... -m kdplugins.train -opt options/train/AugKD/train_AugKD_RFDN_EDSR_x4.yml --launcher pytorch`` as
    the README writes it, with the file's 6 workers per process, its real RFDN teacher and Set5 validation; only
    sizes are overridden (1 process: AugKD's ranks under torchrun are tests/test_augkd.py's; batch, iterations) and
    the training LMDB is a small one at the file's path (sub-images of two photos bundled with scikit-image)."""
    yml = REPO / 'options' / 'train' / 'AugKD' / 'train_AugKD_RFDN_EDSR_x4.yml'
    readme = (REPO / 'README.md').read_text()
    assert f'torchrun --nproc_per_node=8 -m kdplugins.train -opt {yml.relative_to(REPO)} --launcher pytorch' in readme
    assert 'num_worker_per_gpu: 6' in yml.read_text()
    work = basicsr_layout(tmp_path / 'work', shared_data)  # the file's datasets/ and experiments/pretrained_models/
    hr = tmp_path / 'hr'
    hr.mkdir()
    for name in ('astronaut.png', 'coffee.png'):  # 512x512 and 288x288: 4 + 4 sub-images of 256x256
        (hr / name).symlink_to(hr_images / name)
    run_script('scripts/create_lmdb.py', '--hr', str(hr), '--scale', '4', '--crop-size', '256', '--step', '256',
               '--out-hr', str(work / 'datasets' / 'T91_BSD200_HR_sub256.lmdb'), '--out-lr',
               str(work / 'datasets' / 'T91_BSD200_LR_bicubic_X4_sub256.lmdb'))
    sizes = [
        'datasets:train:batch_size_per_gpu=2', 'train:total_iter=2', 'val:val_freq=2', 'logger:save_checkpoint_freq=2'
    ]
    run_module(
        'kdplugins.train', '-opt', str(yml), '--launcher', 'pytorch', '--force_yml', *sizes, cwd=work, torchrun=1)
    exp = work / 'experiments' / 'AugKD_RFDN_EDSR_32x4_x4'
    log = read_log(exp)
    assert 'World size (gpu number): 1' in log
    teacher = float(re.search(r'Teacher \(network_t\) on Set5: psnr: ([0-9.]+)', log).group(1))
    assert teacher > 32.1  # the real RFDN (32.16 dB on Set5 x4 in docs/teachers.md), not random weights
    assert (exp / 'models' / 'net_g_2.pth').is_file()


def test_a_student_with_buffers_is_validated_on_rank_0_alone(tmp_path, tiny_lmdbs, teacher_path):
    """SwinIR keeps buffers (relative position indices, attention masks). basicsr validates on rank 0 alone; through
    the student's DistributedDataParallel wrapper that forward broadcast the buffers, a collective rank 1 never joined:
    with gloo a rank aborted (SIGABRT) at the first validation (NCCL waits until its timeout). The model validates the
    network itself (DistillModel.test)."""
    opt = kd_options(tiny_lmdbs, teacher_path, name='buffers', total_iter=2, check_rank_sync=True)
    opt['network_g'] = {
        'type': 'SwinIR',
        'upscale': 2,
        'in_chans': 3,
        'img_size': 16,
        'window_size': 4,
        'img_range': 1.0,
        'depths': [1],
        'embed_dim': 12,
        'num_heads': [2],
        'mlp_ratio': 2,
        'upsampler': 'pixelshuffle',
        'resi_connection': '1conv'
    }
    opt['val']['val_freq'] = 1
    yml = write_yaml(tmp_path / 'buffers.yml', opt)
    process = start_module('kdplugins.train', '-opt', str(yml), '--launcher', 'pytorch', cwd=tmp_path, torchrun=2)
    try:
        stdout, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        pytest.fail('the 2-process run hung (validation on rank 0 alone): ' + stderr[-3000:])
    assert process.returncode == 0, stderr[-3000:]
    log = open(glob.glob(str(tmp_path / 'experiments' / 'buffers' / 'train_*.log'))[0]).read()
    assert len(re.findall(r'Validation tiny_val\n\t # psnr: [0-9.]+', log)) == 3  # iterations 1, 2 and the end
