"""Runs that used to train or exit 0 while doing the wrong thing now stop at start (or at the bad step) with one
message that names every problem and its fix, through the real entry points (docs/reliability.md)."""
import glob
import os
import pytest
import re
import torch
import yaml
from conftest import REPO, kd_options, run_module, save_teacher, write_yaml

from kdplugins.runtime.option_schema import option_problems


@pytest.fixture(scope='module')
def teacher_path(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp('teacher') / 'teacher.pth')


def train(cwd, opt: dict, *args: str):
    yml = write_yaml(cwd / f'{opt["name"]}.yml', opt)
    return run_module('kdplugins.train', '-opt', str(yml), *args, cwd=cwd, check=False)


def test_misspelled_keys_at_every_level_are_all_named_before_anything_is_created(tmp_path, tiny_lmdbs, teacher_path):
    """``train.kd_op`` used to train the student alone without a word; now every misspelling is listed at once."""
    opt = kd_options(
        tiny_lmdbs,
        teacher_path,
        name='typos',
        feature_losses=[{
            'type': 'FitNetLoss',
            'student_layer': 'body.0',
            'teacher_layer': 'body.1',
            'loss_wieght': 0.1
        }])
    opt['train']['kd_op'] = opt['train'].pop('kd_opt')
    opt['network_g']['num_feats'] = opt['network_g'].pop('num_feat')
    opt['datasets']['train']['gt_sise'] = 32
    opt['logger']['print_frq'] = 1
    opt['val']['metrics']['psnr']['type'] = 'calculate_psnrr'
    result = train(tmp_path, opt)
    assert result.returncode != 0
    message = result.stderr
    assert '6 problems in the options' in message, message[-3000:]
    for expected in ('train.kd_op: unknown option (did you mean kd_opt?)',
                     'train.feature_losses[0].loss_wieght: unknown option (did you mean loss_weight?)',
                     'network_g.num_feats: unknown option (did you mean num_feat?)',
                     'datasets.train.gt_sise: unknown option (did you mean gt_size?)',
                     'logger.print_frq: unknown option (did you mean print_freq?)',
                     "val.metrics.psnr.type: unknown metric 'calculate_psnrr' (did you mean calculate_psnr"):
        assert expected in message, expected
    assert not (tmp_path / 'experiments').exists()


@pytest.mark.parametrize(
    'change, expected', [
        (lambda o: o['datasets']['train'].update(batch_size_per_gpu=64),
         'datasets.train.batch_size_per_gpu: 64 is larger than the 18 samples each process gets per epoch'),
        (lambda o: o['datasets']['train'].update(gt_size=33),
         'datasets.train.gt_size: 33 is not a multiple of the scale 2'),
        (lambda o: o['train']['kd_opt'].update(loss_weight=-0.5), 'train.kd_opt.loss_weight: -0.5 is negative'),
        (lambda o: o.update(scale=4), 'datasets.val: LR chelsea is 128x128 and its HR 256x256: not a x4 pair'),
        (lambda o: o['val'].pop('save_img'), 'val.save_img: missing; basicsr reads it without a default.'),
        (lambda o: o['train'].update(check_rank_sync='yes'), "train.check_rank_sync: 'yes' is a str, expected a bool"),
    ],
    ids=['empty-epoch', 'gt-size', 'negative-weight', 'val-scale', 'missing-key', 'type'])
def test_runs_that_would_do_nothing_useful_stop_at_start(tmp_path, tiny_lmdbs, teacher_path, change, expected):
    """Before: 0 iterations and exit 0 (batch above the dataset), a crash at the first batch or validation, or a term
    that pushes the student away from its target."""
    opt = kd_options(tiny_lmdbs, teacher_path, name='bad')
    change(opt)
    result = train(tmp_path, opt)
    assert result.returncode != 0 and expected in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / 'experiments').exists()


def test_a_nan_loss_stops_training_naming_the_term_and_keeps_the_last_good_checkpoint(
        tmp_path, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, name='nan', total_iter=4)
    opt['train']['kd_opt']['loss_weight'] = float('nan')  # a NaN injected into one term
    result = train(tmp_path, opt)
    assert result.returncode != 0
    assert 'Non-finite loss (l_kd) at iteration 1' in result.stderr, result.stderr[-3000:]
    assert not glob.glob(str(tmp_path / 'experiments' / 'nan' / 'models' / '*.pth'))  # no NaN checkpoint
    opt['name'] = 'nan_skipped'
    opt['train']['skip_nonfinite_batches'] = True
    opt['train']['max_skipped_share'] = 1.0  # every batch may be skipped (the default 0.1 stops such a run)
    result = train(tmp_path, opt)
    assert result.returncode == 0, result.stderr[-3000:]
    log = ''.join(open(p).read() for p in glob.glob(str(tmp_path / 'experiments' / 'nan_skipped' / 'train_*.log')))
    assert len(re.findall(r'Non-finite loss \(l_kd\) at iteration \d: batch skipped', log)) == 4
    weights = torch.load(tmp_path / 'experiments' / 'nan_skipped' / 'models' / 'net_g_latest.pth')['params']
    assert all(torch.isfinite(w).all() for w in weights.values())


@pytest.mark.parametrize('prefix', ['module.', None])
def test_strip_prefix_t_makes_no_folder(tmp_path, tiny_lmdbs, teacher_path, prefix):
    """``path.strip_prefix_t`` used to reach basicsr's folder creation: a stray ``module.`` folder, a crash on ``~``."""
    opt = kd_options(tiny_lmdbs, teacher_path, name='prefix', total_iter=1)
    opt['path']['strip_prefix_t'] = prefix
    result = train(tmp_path, opt)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['experiments', 'prefix.yml']


def test_kd_test_refuses_a_network_without_trained_weights(tmp_path, tiny_lmdbs, teacher_path):
    """Before: ``kd-test`` on a training option file scored an untrained student and exited 0."""
    opt = kd_options(tiny_lmdbs, teacher_path, name='untrained')
    yml = write_yaml(tmp_path / 'untrained.yml', opt)
    result = run_module('kdplugins.test', '-opt', str(yml), cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert 'path.pretrain_network_g is not set: the test would evaluate network_g with random weights' in result.stderr
    assert not (tmp_path / 'results').exists()


@pytest.mark.parametrize(
    'change, expected', [
        (lambda o: o['val'].update(save_img=True), 'val.suffix: missing; a test run that saves images'),
        (lambda o: o.pop('val'), 'val: missing; a test run reads val.save_img'),
        (lambda o: o['val'].pop('save_img'), 'val.save_img: missing; basicsr reads it without a default.'),
        (lambda o: o.pop('scale'), 'scale: missing; basicsr gives it to every paired dataset'),
        (lambda o: o['datasets']['val'].pop('io_backend'), 'datasets.val.io_backend: missing; basicsr reads it'),
    ],
    ids=['suffix', 'val', 'save-img', 'scale', 'io-backend'])
def test_a_test_run_names_the_keys_basicsr_reads_without_a_default(tmp_path, tiny_lmdbs, teacher_path, change,
                                                                   expected):
    """Before: ``kd-test`` with ``save_img: true`` and no ``val.suffix`` wrote nothing and ended in a bare
    ``KeyError: 'suffix'`` inside basicsr's validation, after the network was built."""
    opt = kd_options(tiny_lmdbs, teacher_path, name='tested')
    opt['path']['pretrain_network_g'] = str(teacher_path)
    change(opt)
    result = run_module(
        'kdplugins.test', '-opt', str(write_yaml(tmp_path / 'test.yml', opt)), cwd=tmp_path, check=False)
    assert result.returncode != 0 and expected in result.stderr, result.stderr[-3000:]
    assert 'KeyError' not in result.stderr and not (tmp_path / 'results').exists()


@pytest.mark.parametrize(
    'change, expected', [
        (lambda o: o.pop('name'), 'name: missing; basicsr reads it first, without a default.'),
        (lambda o: o.update(datasets=[1]), 'datasets: [1] is a list; basicsr needs a block of options there.'),
        (lambda o: o['datasets'].update(val='Set5'), "datasets.val: 'Set5' is not a block of dataset options"),
        (lambda o: o.update(num_gpu=[0]), 'num_gpu: [0] is a list; basicsr needs a number or auto there.'),
    ],
    ids=['name', 'datasets', 'dataset', 'num-gpu'])
def test_keys_basicsr_parses_first_are_checked_in_the_option_file(tmp_path, tiny_lmdbs, teacher_path, change, expected):
    """Before: a ``KeyError: 'name'`` or ``AttributeError`` from basicsr's ``parse_options``, with no option named."""
    opt = kd_options(tiny_lmdbs, teacher_path, name='parsed')
    change(opt)
    result = run_module(
        'kdplugins.train', '-opt', str(write_yaml(tmp_path / 'parsed.yml', opt)), cwd=tmp_path, check=False)
    assert result.returncode != 0 and expected in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / 'experiments').exists()


@pytest.mark.shared_data('the real RFDN x4 checkpoint (checkpoints/RFDN_AIM_x4.pth) and Set5 with its bundled x4 LR')
def test_a_teacher_below_bicubic_stops_the_run_with_the_likely_causes(tmp_path, shared_data):
    """The real RFDN x4 with its value range scaled twice (``teacher_img_range: 255`` on an arch that already scales):
    before, it trained against a teacher of about 8 dB; now the run stops before the first iteration."""
    root = shared_data / 'val' / 'Set5'
    opt = {
        'name': 'wrong_range',
        'model_type': 'KDModel',
        'scale': 4,
        'num_gpu': 0,
        'manual_seed': 0,
        'datasets': {
            'train': {
                'name': 'Set5',
                'type': 'PairedImageDataset',
                'dataroot_gt': str(root / 'HR'),
                'dataroot_lq': str(root / 'LR_bicubic' / 'X4'),
                'filename_tmpl': '{}x4',
                'io_backend': {
                    'type': 'disk'
                },
                'gt_size': 64,
                'use_hflip': True,
                'use_rot': True,
                'num_worker_per_gpu': 0,
                'batch_size_per_gpu': 2,
                'dataset_enlarge_ratio': 1
            },
            'val': {
                'name': 'Set5',
                'type': 'PairedImageDataset',
                'dataroot_gt': str(root / 'HR'),
                'dataroot_lq': str(root / 'LR_bicubic' / 'X4'),
                'filename_tmpl': '{}x4',
                'io_backend': {
                    'type': 'disk'
                }
            }
        },
        'network_g': {
            'type': 'EDSR',
            'num_in_ch': 3,
            'num_out_ch': 3,
            'num_feat': 8,
            'num_block': 1,
            'upscale': 4
        },
        'network_t': {
            'type': 'RFDN',
            'upscale': 4
        },
        'path': {
            'pretrain_network_t': str(shared_data / 'checkpoints' / 'RFDN_AIM_x4.pth'),
            'param_key_t': None
        },
        'train': {
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-4
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [10],
                'gamma': 0.5
            },
            'total_iter': 2,
            'pixel_opt': {
                'type': 'L1Loss'
            },
            'kd_opt': {
                'type': 'L1Loss'
            },
            'teacher_img_range': 255
        },
        'val': {
            'val_freq': 2,
            'save_img': False,
            'metrics': {
                'psnr': {
                    'type': 'calculate_psnr',
                    'crop_border': 4,
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
    result = train(tmp_path, opt)
    assert result.returncode != 0
    message = re.search(r'TeacherCheckError: (The teacher .*)', result.stderr).group(1)
    assert 'below bicubic upscaling' in message and 'train.teacher_img_range = 255' in message
    assert 'train.teacher_check: false' in message
    assert not glob.glob(str(tmp_path / 'experiments' / 'wrong_range' / 'models' / '*'))
    opt['train']['teacher_img_range'] = 1  # the right range: the check passes and logs both figures
    opt['name'] = 'right_range'
    result = train(tmp_path, opt)
    assert result.returncode == 0, result.stderr[-3000:]
    log = ''.join(open(p).read() for p in glob.glob(str(tmp_path / 'experiments' / 'right_range' / 'train_*.log')))
    teacher, bicubic = map(float, re.search(r'teacher ([0-9.]+) dB, bicubic ([0-9.]+) dB', log).groups())
    assert teacher > bicubic + 2


def test_every_shipped_option_file_passes_the_declarations():
    """No false alarms: every option file of the repository is clean against the declarations."""
    files = sorted(glob.glob(str(REPO / 'options' / '**' / '*.yml'), recursive=True))
    assert len(files) > 40
    problems = {}
    for f in files:
        opt = yaml.safe_load(open(f))
        opt['is_train'] = not os.path.relpath(f, REPO / 'options').startswith('test' + os.sep)
        problems[os.path.relpath(f, REPO)] = option_problems(opt)
    assert {f: p for f, p in problems.items() if p} == {}
