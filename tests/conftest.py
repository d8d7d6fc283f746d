"""Shared pytest fixtures."""
import os
import pytest
import socket
import subprocess
import sys
import yaml
from pathlib import Path
from typing import Sequence

import kdplugins  # noqa: F401  (shims before any basicsr import)


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository, or ``$KDPLUGINS_SHARED_DATA`` when set."""
    override = os.environ.get('KDPLUGINS_SHARED_DATA')
    return Path(override) if override else Path(__file__).resolve().parents[2] / 'shared' / 'data'


def require_shared_data(needs: str) -> Path:
    """The shared data folder (public pretrained checkpoints, the benchmark sets with their bundled files); skips the
    calling test, saying what it ``needs`` from there, when the folder is absent."""
    root = shared_data_dir()
    if not root.is_dir():
        pytest.skip(f'needs {needs}: shared data not found at {root} (set KDPLUGINS_SHARED_DATA to the folder holding '
                    'checkpoints/ and val/)')
    return root


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'shared_data(needs): what a test using the shared_data fixture needs from the shared data folder '
        '(its skip reason without it)')


@pytest.fixture
def shared_data(request) -> Path:
    """The shared data folder, only for tests that need the real pretrained checkpoints or a benchmark set's own
    files; each such test says what with ``@pytest.mark.shared_data('...')``, the reason of its skip without the
    folder. Tests that only need some real images take :func:`hr_images`."""
    marker = request.node.get_closest_marker('shared_data')
    assert marker and marker.args, f'{request.node.nodeid}: say what it needs with @pytest.mark.shared_data(...)'
    return require_shared_data(marker.args[0])


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='session')
def slurm_cluster(tmp_path_factory):
    """A real one-host Slurm cluster (2 CPUs) started for the session and stopped after it
    (:mod:`slurm_cluster`); Slurm is installed with apt-get when missing, and the tests using it skip, with the
    reason, where it cannot be installed or started."""
    from slurm_cluster import SlurmUnavailable, start_cluster
    try:
        cluster = start_cluster(tmp_path_factory.mktemp('slurm'))
    except SlurmUnavailable as error:
        pytest.skip(f'needs a Slurm cluster on this machine: {error}')
    yield cluster
    cluster.stop()


def basicsr_layout(start: Path, shared: Path) -> Path:
    """Make ``start`` a folder the repository's option files run from, as a user's would be after
    ``python -m kdplugins.download`` and the data preparation (docs/datasets.md): ``datasets/<Set>`` and
    ``experiments/pretrained_models`` are links to the shared data folder's sets and checkpoints. Returns ``start``."""
    (start / 'datasets').mkdir(parents=True, exist_ok=True)
    (start / 'experiments').mkdir(parents=True, exist_ok=True)
    for group in ('val', 'train'):
        for folder in sorted((shared / group).iterdir()):
            (start / 'datasets' / folder.name).symlink_to(folder)
    (start / 'experiments' / 'pretrained_models').symlink_to(shared / 'checkpoints')
    return start


# Real photos for the tests that need some real images: five photos bundled with scikit-image (files in the folder of
# ``skimage.data``, nothing downloads), cut to the sizes of the five Set5 images (baby 512x512, bird 288x288,
# butterfly 256x256, head 280x280, woman 344 high x 228 wide) so that sub-image counts, epoch lengths and crop
# origins are those of a standard benchmark set. name -> (file in skimage/data, top, left, height, width).
HR_PHOTOS = {
    'astronaut': ('astronaut.png', 0, 0, 512, 512),  # the whole photo; Set5 baby's size
    'chelsea': ('chelsea.png', 22, 100, 256, 256),  # the cat's face; butterfly's size
    'coffee': ('coffee.png', 56, 156, 288, 288),  # the cup; bird's size
    'ihc': ('ihc.png', 0, 0, 344, 228),  # stained tissue; woman's size
    'motorcycle': ('motorcycle_left.png', 110, 230, 280, 280),  # the tank and engine; head's size
}


@pytest.fixture(scope='session')
def hr_images(tmp_path_factory) -> Path:
    """A folder of the five :data:`HR_PHOTOS` as PNG files (``astronaut.png``, ...), cropped from scikit-image's
    bundled photos."""
    import cv2
    import skimage.data
    photos = Path(skimage.data.__file__).parent
    folder = tmp_path_factory.mktemp('hr_images')
    for name, (source, top, left, height, width) in HR_PHOTOS.items():
        image = cv2.imread(str(photos / source), cv2.IMREAD_COLOR)
        assert image is not None, f'cannot read {photos / source} (scikit-image bundles it)'
        crop = image[top:top + height, left:left + width]
        assert crop.shape == (height, width, 3), (source, image.shape)
        cv2.imwrite(str(folder / f'{name}.png'), crop)
    return folder


@pytest.fixture(scope='session')
def tiny_lmdbs(tmp_path_factory, hr_images) -> dict:
    """Real paired x2 LMDBs made by scripts/create_lmdb.py from photos of :func:`hr_images`: 18 training pairs of
    96x96 HR / 48x48 LR sub-images (9 of coffee.png, 288x288, and 9 of motorcycle.png, 280x280) and 2 whole
    validation images (chelsea.png, 256x256, and ihc.png, 344 high x 228 wide)."""
    root = tmp_path_factory.mktemp('lmdb')
    train_hr = root / 'train_hr_images'
    train_hr.mkdir()
    for name in ('coffee.png', 'motorcycle.png'):
        (train_hr / name).symlink_to(hr_images / name)
    val_hr = root / 'val_hr_images'
    val_hr.mkdir()
    for name in ('chelsea.png', 'ihc.png'):
        (val_hr / name).symlink_to(hr_images / name)
    paths = {key: str(root / f'{key}.lmdb') for key in ('train_hr', 'train_lr', 'val_hr', 'val_lr')}
    run_script('scripts/create_lmdb.py', '--hr', str(train_hr), '--scale', '2', '--crop-size', '96', '--step', '96',
               '--out-hr', paths['train_hr'], '--out-lr', paths['train_lr'])
    run_script('scripts/create_lmdb.py', '--hr', str(val_hr), '--scale', '2', '--out-hr', paths['val_hr'], '--out-lr',
               paths['val_lr'])
    return paths


def run_script(script: str,
               *args: str,
               cwd=None,
               check: bool = True,
               separate_process: bool = False) -> subprocess.CompletedProcess:
    """``python <script> args`` run to its end (``check``: successfully): in this process (``runpy``, as
    :func:`run_pipeline_in_process` runs the pipelines) unless ``separate_process``."""
    if separate_process:
        result = subprocess.run([sys.executable, str(REPO / script), *args], cwd=cwd, capture_output=True, text=True)
    else:
        import runpy
        result = in_process([sys.executable, str(REPO / script), *args], cwd or os.getcwd(),
                            lambda: runpy.run_path(str(REPO / script), run_name='__main__'),
                            [str(REPO / script), *args])
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


IN_PROCESS = {'kdplugins.train': 'train_pipeline', 'kdplugins.test': 'test_pipeline'}


def run_module(module: str,
               *args: str,
               check: bool = True,
               separate_process: bool = False,
               **launch) -> subprocess.CompletedProcess:
    """``python -m <module> args`` run to its end; ``launch`` as :func:`start_module` takes it.

    ``kdplugins.train`` / ``kdplugins.test`` in one process (no ``torchrun``, no wrapper) run in this process through
    the pipeline function the module runs (:func:`run_pipeline_in_process`): ``import kdplugins`` costs about 7 s per
    process. ``separate_process=True`` starts a process all the same, where the process boundary is what is tested."""
    if module in IN_PROCESS and not separate_process and not launch.get('torchrun') and not launch.get('wrapper'):
        return run_pipeline_in_process(module, *args, cwd=launch['cwd'], check=check)
    return finish(start_module(module, *args, **launch), check)


def run_pipeline_in_process(module: str, *args: str, cwd, check: bool = True) -> subprocess.CompletedProcess:
    """What ``python -m <module> args`` does, in this process (:func:`in_process`), through the pipeline function the
    module runs."""
    import kdplugins.pipeline
    pipeline = getattr(kdplugins.pipeline, IN_PROCESS[module])
    result = in_process([sys.executable, '-m', module, *args], cwd, lambda: pipeline(os.getcwd()), [module, *args])
    if check:
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return result


def in_process(command: list, cwd, body, argv: list) -> subprocess.CompletedProcess:
    """``body()`` run as the process ``command`` would run: ``sys.argv``, the current directory, one torch thread
    (``OMP_NUM_THREADS=1`` of :func:`start_module`) and every warning shown, as in a new process; stdout and stderr
    captured (an exception: its traceback on stderr and return code 1, a ``SystemExit``: its code)."""
    import contextlib
    import gc
    import io
    import torch
    import traceback
    import warnings
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = sys.argv[:], os.getcwd(), torch.get_num_threads()
    returncode = 0
    try:
        sys.argv[:] = argv
        os.chdir(cwd)
        torch.set_num_threads(1)
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr), warnings.catch_warnings():
            warnings.simplefilter('default')
            try:
                body()
            except SystemExit as error:
                returncode = error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
                if error.code is not None and not isinstance(error.code, int):
                    print(error.code, file=sys.stderr)
            except Exception:  # noqa: B902  (a process would print it and exit with 1)
                traceback.print_exc()
                returncode = 1
    finally:
        sys.argv[:] = saved[0]
        os.chdir(saved[1])
        torch.set_num_threads(saved[2])
        gc.collect()  # the model and its hooks (as at a process's exit)
    return subprocess.CompletedProcess(command, returncode, stdout.getvalue(), stderr.getvalue())


def start_module(module: str,
                 *args: str,
                 cwd,
                 torchrun: int = 0,
                 torchrun_args: Sequence[str] = (),
                 wrapper: Sequence[str] = ()) -> subprocess.Popen:
    """``python -m <module> args`` (or under ``torchrun --nproc_per_node=<torchrun> [torchrun_args]``) in ``cwd``,
    started in the background (:func:`finish` waits for it); ``wrapper`` (a script in tests/ and its first arguments,
    for example ``['run_with_start_method.py', 'spawn', module]``) runs instead of ``-m <module>``."""
    prefix = [sys.executable]
    if torchrun:
        if not any(a.startswith('--master_port') for a in torchrun_args):
            torchrun_args = [*torchrun_args, f'--master_port={free_port()}']
        prefix += ['-m', 'torch.distributed.run', f'--nproc_per_node={torchrun}', *torchrun_args]
    target = [str(REPO / 'tests' / wrapper[0]), *wrapper[1:]] if wrapper else ['-m', module]
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    return subprocess.Popen(
        prefix + target + list(args), cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(process: subprocess.Popen, check: bool = True) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate()
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check:
        assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def write_yaml(path: Path, opt: dict) -> Path:
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return path


TEACHER_NET = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 16, 'num_block': 2, 'upscale': 2}
STUDENT_NET = {'type': 'MSRResNet', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}


def save_teacher(path: Path, net_opt: dict = TEACHER_NET, seed: int = 1) -> Path:
    """A teacher checkpoint in BasicSR's format ({'params': state_dict}) with seeded random weights."""
    import torch
    from basicsr.archs import build_network
    torch.manual_seed(seed)
    torch.save({'params': build_network(dict(net_opt)).state_dict()}, path)
    return path


def kd_options(lmdbs: dict, teacher_path: Path, name: str = 'kd', total_iter: int = 4, **train_opt) -> dict:
    """Options of a tiny x2 KD run on CPU (student MSRResNet 8x1 from a teacher MSRResNet 16x2)."""
    opt = {
        'name': name,
        'model_type': 'KDModel',
        'scale': 2,
        'num_gpu': 0,
        'manual_seed': 10,
        'datasets': {
            'train': {
                'name': 'tiny_train',
                'type': 'PairedImageDatasetWithIndex',
                'dataroot_gt': lmdbs['train_hr'],
                'dataroot_lq': lmdbs['train_lr'],
                'io_backend': {
                    'type': 'lmdb'
                },
                'gt_size': 32,
                'use_hflip': True,
                'use_rot': True,
                'num_worker_per_gpu': 0,
                'batch_size_per_gpu': 4,
                'dataset_enlarge_ratio': 1
            },
            'val': {
                'name': 'tiny_val',
                'type': 'PairedImageDataset',
                'dataroot_gt': lmdbs['val_hr'],
                'dataroot_lq': lmdbs['val_lr'],
                'io_backend': {
                    'type': 'lmdb'
                }
            }
        },
        'network_g': dict(STUDENT_NET),
        'network_t': dict(TEACHER_NET),
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None,
            'pretrain_network_t': str(teacher_path),
            'param_key_t': 'params'
        },
        'train': {
            'ema_decay': 0,
            'optim_g': {
                'type': 'Adam',
                'lr': 2e-3,
                'betas': [0.9, 0.99]
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [3],
                'gamma': 0.5
            },
            'total_iter': total_iter,
            'warmup_iter': -1,
            'pixel_opt': {
                'type': 'L1Loss',
                'loss_weight': 1.0
            },
            'kd_opt': {
                'type': 'L1Loss',
                'loss_weight': 0.5
            },
            'teacher_check': False,  # the teachers of these tests have seeded random weights
            **train_opt
        },
        'val': {
            'val_freq': 2,
            'save_img': False,
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 2,
                    'test_y_channel': True
                }
            }
        },
        'logger': {
            'print_freq': 1,
            'save_checkpoint_freq': 2,
            'use_tb_logger': False
        },
    }
    return opt


def parse_train_options(yml: Path, root: Path, *args: str, monkeypatch) -> dict:
    """basicsr's own ``parse_options`` on a YAML file, as ``python -m kdplugins.train -opt yml`` would call it."""
    from basicsr.utils.options import parse_options
    monkeypatch.setattr(sys, 'argv', ['train', '-opt', str(yml), *args])
    opt, _ = parse_options(str(root), is_train=True)
    opt['root_path'] = str(root)
    return opt


def build(tmp_path, monkeypatch, opt: dict):
    """The model of ``opt`` built in this process, as the trainer builds it (experiment folders under tmp_path)."""
    from basicsr.models import build_model

    from kdplugins.runtime.compat import make_exp_dirs  # as the pipeline makes the folders
    parsed = parse_train_options(write_yaml(tmp_path / 'opt.yml', opt), tmp_path, monkeypatch=monkeypatch)
    make_exp_dirs(parsed)
    return build_model(parsed), parsed


def train_batches(parsed: dict, count: int) -> list:
    """The first ``count`` batches of the training dataloader of ``parsed``."""
    from basicsr.data import build_dataloader, build_dataset
    dataset_opt = parsed['datasets']['train']
    loader = build_dataloader(build_dataset(dataset_opt), dataset_opt, num_gpu=0, dist=False, sampler=None, seed=0)
    batches = []
    while len(batches) < count:
        batches.extend(loader)
    return batches[:count]
