"""Training under a real Slurm (a one-host cluster of 2 CPUs started by the ``slurm_cluster`` fixture): the
documented sbatch templates of scripts/slurm/ as docs/cluster.md gives them (sizes on the sbatch command line), ``srun
-N1 -n2 python -m kdplugins.train ... --launcher slurm`` cancelled mid-run by ``scancel`` and resumed with
``--auto_resume``, and one task per node starting torchrun. Every run is the 2-rank KD + FitNet run of
tests/test_multiprocess.py with 2 data workers per rank, and ends with bitwise-equal ranks and the same student."""
import os
import pytest
import re
import subprocess
import sys
import time
from conftest import REPO, free_port, kd_options, run_module, save_teacher, write_yaml
from test_multiprocess import (HALF, TOTAL_ITER, assert_ranks_equal_and_run_complete, assert_same_weights, ddp_options,
                               final_student, read_log)

TEMPLATES = REPO / 'scripts' / 'slurm'
ON_THIS_CLUSTER = {  # the templates' sizes for this cluster (2 CPUs, no GPU), given on the sbatch command line
    'one_task_per_gpu.sbatch': ['--gpus-per-node=0', '--ntasks-per-node=2', '--cpus-per-task=1'],
    'torchrun_per_node.sbatch': ['--gpus-per-node=0', '--cpus-per-task=2'],
}
RUN_TIMEOUT = 300  # seconds, a stuck job fails the test instead of hanging it
# the runs after the template's (2 workers per rank) start one worker per rank, which costs less (a worker is a spawned
# process that imports kdplugins) and trains the same weights (tests/test_multiprocess.py)
ONE_WORKER = ('--force_yml', 'datasets:train:num_worker_per_gpu=1')


@pytest.fixture(scope='module')
def slurm_options(tmp_path_factory, tiny_lmdbs):
    """The option file of every run: 2 data workers per rank, ``dist_params`` with a port of its own and a timeout,
    and the metric that holds a run where the test cancels it (tests/slurm_hold.py)."""
    folder = tmp_path_factory.mktemp('slurm_options')
    opt = ddp_options(tiny_lmdbs, save_teacher(folder / 'teacher.pth'), workers=2)
    opt['custom_imports'] = ['slurm_hold']
    opt['val']['metrics']['hold'] = {'type': 'hold_while_file_exists'}
    opt['dist_params'] = {'backend': 'nccl', 'port': free_port(), 'timeout_minutes': 5}
    return write_yaml(folder / 'ddp.yml', opt)


def job_env(cluster, **extra: str) -> dict:
    """The environment a user submits from: kdplugins' Python and torchrun first on PATH (an active virtual
    environment), this checkout and tests/ (the option file's custom_imports) importable, one torch thread."""
    path = f'{os.path.dirname(sys.executable)}:{os.environ.get("PATH", "/usr/bin:/bin")}'
    return cluster.env(PATH=path, PYTHONPATH=f'{REPO}:{REPO / "tests"}', OMP_NUM_THREADS='1', **extra)


def sbatch(cluster, cwd, template: str, *args: str, **env: str) -> str:
    """A template submitted with this cluster's sizes (:data:`ON_THIS_CLUSTER`) and run to its end; the job's output
    file."""
    job = subprocess.run(['sbatch', '--parsable', *ON_THIS_CLUSTER[template],
                          str(TEMPLATES / template), *args],
                         cwd=cwd,
                         env=job_env(cluster, **env),
                         capture_output=True,
                         text=True,
                         check=True).stdout.strip()
    state = cluster.wait_for_job(job, RUN_TIMEOUT)
    output = (cwd / f'slurm-kd-train-{job}.out').read_text()
    assert state == 'COMPLETED', output[-5000:]
    return output


@pytest.fixture(scope='module')
def template_run(slurm_cluster, slurm_options, tmp_path_factory):
    """scripts/slurm/one_task_per_gpu.sbatch submitted as docs/cluster.md says, trained straight to the end."""
    cwd = tmp_path_factory.mktemp('one_task_per_gpu')
    output = sbatch(slurm_cluster, cwd, 'one_task_per_gpu.sbatch', str(slurm_options))
    return cwd / 'experiments' / 'ddp', output


def test_the_one_task_per_gpu_template_trains_with_ranks_bitwise_equal(template_run):
    exp, output = template_run
    assert_ranks_equal_and_run_complete(exp, subprocess.CompletedProcess([], 0, output, output))
    log = read_log(exp)
    assert 'Process group: launcher slurm, backend gloo (nccl asked for: no CUDA device), world size 2, rank 0' in log
    assert 'timeout 5 min (dist_params.timeout_minutes)' in log


def test_scancel_mid_run_then_auto_resume_is_bitwise_exact(slurm_cluster, slurm_options, template_run, tmp_path):
    """``srun`` held in rank 0's validation right after the checkpoint of iteration 3, cancelled there; the same
    ``srun`` with ``--auto_resume`` ends with the student of the straight run of the template."""
    hold = tmp_path / 'hold'
    hold.touch()
    name = f'kd-scancel-{os.getpid()}'
    command = [
        'srun', '-N1', '-n2', f'--job-name={name}', sys.executable, '-m', 'kdplugins.train', '-opt',
        str(slurm_options), '--launcher', 'slurm', *ONE_WORKER
    ]
    run = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=job_env(slurm_cluster, KDPLUGINS_TEST_HOLD=str(hold)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT
        while not os.path.exists(f'{hold}.reached') and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert os.path.exists(f'{hold}.reached'), run.stdout.read()[-5000:] if run.poll() is not None else 'timeout'
        slurm_cluster.run('scancel', f'--name={name}')
        run.wait(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    states = tmp_path / 'experiments' / 'ddp' / 'training_states'
    assert run.returncode != 0
    assert sorted(os.listdir(states)) == [f'{HALF}.state']
    resumed = subprocess.run(
        command + ['--auto_resume'],
        cwd=tmp_path,
        env=job_env(slurm_cluster),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    exp = tmp_path / 'experiments' / 'ddp'
    assert f'Resuming training from epoch: 0, iter: {HALF}.' in read_log(exp)
    assert_ranks_equal_and_run_complete_after_resume(exp)
    assert_same_weights(final_student(exp), final_student(template_run[0]))


def assert_ranks_equal_and_run_complete_after_resume(exp) -> None:
    """The resumed run's rank digests (at 6 and at the end) are equal; the run reached its last state."""
    digests = re.findall(r'Rank weight digests at iter (-?\d+): ([0-9a-f]{64}) ([0-9a-f]{64})', read_log(exp))
    assert [d[0] for d in digests][-2:] == [str(TOTAL_ITER), '-1']
    assert all(rank0 == rank1 for _, rank0, rank1 in digests)
    assert (exp / 'training_states' / f'{TOTAL_ITER}.state').is_file()


def test_the_torchrun_per_node_template_trains_the_same_student(slurm_cluster, slurm_options, template_run, tmp_path):
    """scripts/slurm/torchrun_per_node.sbatch on one node (the c10d rendezvous at the job's first host), 2 processes:
    the student of the one-task-per-GPU template, bitwise."""
    output = sbatch(
        slurm_cluster,
        tmp_path,
        'torchrun_per_node.sbatch',
        str(slurm_options),
        *ONE_WORKER,
        NPROC_PER_NODE='2',
        MASTER_PORT=str(free_port()))
    exp = tmp_path / 'experiments' / 'ddp'
    assert_ranks_equal_and_run_complete(exp, subprocess.CompletedProcess([], 0, output, output))
    log = read_log(exp)
    assert 'Process group: launcher pytorch, backend gloo (nccl asked for: no CUDA device), world size 2' in log
    assert 'timeout 5 min (dist_params.timeout_minutes)' in log  # dist_params reach torchrun's processes too
    assert 'dist_params.port' in log and 'is not used under torchrun' in log
    assert_same_weights(final_student(exp), final_student(template_run[0]))


def test_bad_dist_params_are_named_with_the_fix_before_the_process_group_starts(tmp_path, tiny_lmdbs):
    opt = kd_options(tiny_lmdbs, save_teacher(tmp_path / 'teacher.pth'), name='bad_dist')
    opt['dist_params'] = {'backend': 'mpi', 'port': 70000, 'timeout_minutes': 30, 'timeout': 5}
    yml = write_yaml(tmp_path / 'bad.yml', opt)
    result = run_module(
        'kdplugins.train',
        '-opt',
        str(yml),
        '--launcher',
        'slurm',
        '--force_yml',
        'dist_params:timeout_minutes=0',
        cwd=tmp_path,
        check=False)
    assert result.returncode != 0, result.stderr[-3000:]
    for expected in ('4 problems in', "dist_params.timeout: unknown option (did you mean timeout_minutes?)",
                     "dist_params.backend: 'mpi' is not a backend kdplugins starts; use nccl",
                     'dist_params.port: 70000 is above 65535 (a TCP port).',
                     'dist_params.timeout_minutes: 0 minutes would fail every collective'):
        assert expected in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / 'experiments').exists()


def test_launcher_slurm_outside_srun_names_the_fix(tmp_path, tiny_lmdbs, monkeypatch):
    for variable in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'):
        monkeypatch.delenv(variable, raising=False)
    opt = kd_options(tiny_lmdbs, save_teacher(tmp_path / 'teacher.pth'), name='no_srun')
    yml = write_yaml(tmp_path / 'no_srun.yml', opt)
    result = run_module('kdplugins.train', '-opt', str(yml), '--launcher', 'slurm', cwd=tmp_path, check=False)
    assert result.returncode != 0, result.stderr[-3000:]
    assert ('--launcher slurm: SLURM_PROCID, SLURM_NTASKS, SLURM_NODELIST not set; this process was not started by '
            'srun.') in result.stderr
    assert not (tmp_path / 'experiments').exists()
