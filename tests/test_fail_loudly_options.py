"""Fail loudly, round two (docs/reliability.md): option files as written (YAML types after ``--force_yml``, duplicate
and merge keys, ranges that divide, names that are paths) and resumes that could mix two runs stop before anything is
created or overwritten, naming the input and the fix; the command line prints such errors without a traceback."""
import hashlib
import os
import pytest
import sys
import yaml
from conftest import TEACHER_NET, kd_options, run_module, save_teacher, write_yaml

from kdplugins.runtime.option_checks import OptionError
from kdplugins.utils.errors import exit_on_configuration_error


@pytest.fixture(scope='module')
def teacher_path(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp('teacher') / 'teacher.pth')


def train_text(cwd, name: str, text: str, *args: str, check: bool = False):
    yml = cwd / f'{name}.yml'
    yml.write_text(text)
    return run_module('kdplugins.train', '-opt', str(yml), *args, cwd=cwd, check=check)


def dumped(opt: dict) -> str:
    return yaml.safe_dump(opt, sort_keys=False)


def test_numbers_that_yaml_reads_as_text_are_named_with_the_fix_also_through_force_yml(
        tmp_path, tiny_lmdbs, teacher_path):
    text = dumped(kd_options(tiny_lmdbs, teacher_path, name='typed')).replace('lr: 0.002', 'lr: 2e-3')
    assert 'lr: 2e-3' in text
    result = train_text(tmp_path, 'typed', text, '--force_yml', 'train:total_iter=4e0', 'logger:print_freq=0')
    assert result.returncode != 0
    for expected in ("train.optim_g.lr: '2e-3' is text, expected a number. YAML 1.1 reads 2e-3 (an exponent without "
                     'a dot) as text: write 0.002 or !!float 2e-3, in the option file or in --force_yml.',
                     "train.total_iter: '4e0' is text, expected a whole number. YAML 1.1 reads 4e0 (an exponent "
                     'without a dot) as text: write 4 or !!float 4e0',
                     'logger.print_freq: 0 is below 1 (basicsr takes the iteration modulo it (0: ZeroDivisionError '
                     'after the first iteration)). Use a value of at least 1.', '3 problems in'):
        assert expected in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / 'experiments').exists()


def test_basicsrs_own_float_counts_are_accepted(tmp_path, tiny_lmdbs, teacher_path):
    """basicsr's option files write counts as ``!!float 5e3``: an integral float is a valid count."""
    text = dumped(kd_options(tiny_lmdbs, teacher_path, name='floats', total_iter=2))
    text = text.replace('total_iter: 2', 'total_iter: !!float 2e0').replace('val_freq: 2', 'val_freq: !!float 2e0')
    train_text(tmp_path, 'floats', text, check=True)
    assert sorted(os.listdir(tmp_path / 'experiments' / 'floats' / 'models')) == ['net_g_2.pth', 'net_g_latest.pth']


def test_duplicate_keys_and_merge_keys_are_named_with_their_lines(tmp_path, tiny_lmdbs, teacher_path):
    text = dumped(kd_options(tiny_lmdbs, teacher_path, name='dupes'))
    lines = text.splitlines()
    first_train = lines.index('train:') + 1
    text += 'train:\n  total_iter: 8\nnetwork_t:\n  <<: {num_feat: 16}\n'
    result = train_text(tmp_path, 'dupes', text)
    assert result.returncode != 0
    last = len(lines)
    assert (f'line {last + 1}: duplicate key train (first at line {first_train}): YAML keeps the last one only, so the '
            f'one at line {first_train} would be dropped without a word.') in result.stderr, result.stderr[-3000:]
    assert f'line {last + 4}: a YAML merge key (<<) in network_t' in result.stderr
    assert not (tmp_path / 'experiments').exists()


@pytest.mark.parametrize('name', ['runs/kd', '..', ' kd'])
def test_an_experiment_name_that_is_a_path_stops_before_any_folder(tmp_path, tiny_lmdbs, teacher_path, name):
    opt = kd_options(tiny_lmdbs, teacher_path, name=name)
    result = train_text(tmp_path, 'named', dumped(opt))
    assert f"name: {name!r} is not a folder name" in result.stderr, result.stderr[-3000:]
    assert not (tmp_path / 'experiments').exists() and not (tmp_path / 'runs').exists()


def digests(folder) -> dict:
    return {p: hashlib.sha256(open(os.path.join(folder, p), 'rb').read()).hexdigest() for p in os.listdir(folder)}


def test_a_resume_state_of_another_experiment_is_refused_and_nothing_is_overwritten(tmp_path, tiny_lmdbs, teacher_path):
    for name in ('first', 'second'):
        run_module(
            'kdplugins.train',
            '-opt',
            str(write_yaml(tmp_path / f'{name}.yml', kd_options(tiny_lmdbs, teacher_path, name=name))),
            cwd=tmp_path)
    second = tmp_path / 'experiments' / 'second'
    before = digests(second / 'models'), digests(second / 'training_states')
    opt = kd_options(tiny_lmdbs, teacher_path, name='second', total_iter=6)
    opt['path']['resume_state'] = 'experiments/first/training_states/2.state'
    result = train_text(tmp_path, 'second_again', dumped(opt))
    assert result.returncode != 0
    assert ('path.resume_state experiments/first/training_states/2.state is not a state of this experiment (second: '
            f"its states are in {second / 'training_states'})") in result.stderr, result.stderr[-3000:]
    assert 'set path.pretrain_network_g to its models/net_g_<iter>.pth' in result.stderr
    assert (digests(second / 'models'), digests(second / 'training_states')) == before
    assert sorted(os.listdir(tmp_path / 'experiments')) == ['first', 'second']  # nothing archived or made


def test_a_truncated_resume_state_is_named_and_auto_resume_says_where_it_looked(tmp_path, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, name='cut')
    yml = write_yaml(tmp_path / 'cut.yml', opt)
    run_module('kdplugins.train', '-opt', str(yml), cwd=tmp_path)
    state = tmp_path / 'experiments' / 'cut' / 'training_states' / '4.state'
    os.truncate(state, 100)
    opt['path']['resume_state'] = 'experiments/cut/training_states/4.state'
    result = train_text(tmp_path, 'cut_again', dumped(opt))
    assert ('path.resume_state experiments/cut/training_states/4.state cannot be resumed: it does not load'
            in result.stderr), result.stderr[-3000:]
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.mkdir()
    fresh = run_module(
        'kdplugins.train', '-opt', str(yml), '--auto_resume', '--force_yml', 'train:total_iter=2', cwd=elsewhere)
    assert (f"--auto_resume found no training state in {elsewhere / 'experiments' / 'cut' / 'training_states'}: this "
            'run starts from iteration 0') in fresh.stderr


def test_the_command_line_prints_a_configuration_error_without_a_traceback(tmp_path, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, name='bad')
    opt['val']['val_freq'] = 0
    result = run_module(
        'kdplugins.train',
        '-opt',
        str(write_yaml(tmp_path / 'bad.yml', opt)),
        cwd=tmp_path,
        check=False,
        separate_process=True)
    assert result.returncode == 2
    assert result.stderr.strip().endswith('val.val_freq: 0 is below 1 (basicsr takes the iteration modulo it (0: '
                                          'ZeroDivisionError after the first iteration)). Use a value of at least 1.'
                                          '\n(--traceback shows where it was raised)')
    assert 'Traceback' not in result.stderr and 'kd-train: error: val.val_freq' in result.stderr


@pytest.mark.parametrize('flag', [False, True], ids=['message', 'traceback'])
def test_traceback_flag_lets_a_configuration_error_through(monkeypatch, capsys, flag):
    """``--traceback`` anywhere on the command line: the error with its traceback (taken out of ``sys.argv`` first, so
    that the command's own parser never sees it); without it: the message alone and exit code 2."""
    monkeypatch.setattr(sys, 'argv', ['kd-train', '-opt', 'x.yml'] + (['--traceback'] if flag else []))
    seen = []
    with pytest.raises(OptionError if flag else SystemExit) as raised:
        with exit_on_configuration_error('kd-train'):
            seen.append(list(sys.argv))
            raise OptionError('train.total_iter: missing.')
    assert seen == [['kd-train', '-opt', 'x.yml']]
    if flag:
        assert str(raised.value) == 'train.total_iter: missing.' and capsys.readouterr().err == ''
    else:
        assert raised.value.code == 2
        assert capsys.readouterr().err == ('kd-train: error: train.total_iter: missing.\n'
                                           '(--traceback shows where it was raised)\n')


def test_without_a_validation_set_the_teacher_is_checked_on_training_crops(tmp_path, tiny_lmdbs, teacher_path):
    """The tiny teacher has seeded random weights: below bicubic on any pairs."""
    opt = kd_options(tiny_lmdbs, teacher_path, name='no_val', teacher_check=True)
    del opt['datasets']['val'], opt['val']
    result = run_module(
        'kdplugins.train', '-opt', str(write_yaml(tmp_path / 'no_val.yml', opt)), cwd=tmp_path, check=False)
    assert 'The teacher (network_t) scores' in result.stderr and 'first pairs of tiny_train' in result.stderr, (
        result.stderr[-3000:])


def test_a_teacher_of_another_scale_is_named_with_the_scale_fix(tmp_path, tiny_lmdbs, teacher_path):
    x4 = save_teacher(tmp_path / 'x4.pth', {**TEACHER_NET, 'upscale': 4})
    opt = kd_options(tiny_lmdbs, x4, name='x4', teacher_check=True)
    opt['network_t']['upscale'] = 4
    result = run_module('kdplugins.train', '-opt', str(write_yaml(tmp_path / 'x4.yml', opt)), cwd=tmp_path, check=False)
    assert 'network_t on tiny_val: The teacher returns (256, 256) for a (64, 64) LR image of the scale-2 data: it '
    'upscales by another factor' in result.stderr, result.stderr[-3000:]


def test_a_non_strict_load_that_fills_too_few_tensors_stops(tmp_path, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, name='partial')
    opt['path'].update(pretrain_network_g=str(teacher_path), strict_load_g=False)  # the teacher's widths: no fit
    result = run_module(
        'kdplugins.train', '-opt', str(write_yaml(tmp_path / 'partial.yml', opt)), cwd=tmp_path, check=False)
    assert f'The checkpoint {teacher_path} fills 1 of the 12 ' in result.stderr, result.stderr[-3000:]
    assert 'tensors of the student (network_g) (a non-strict load; at least 50% required' in result.stderr
    opt['train']['min_matched_weights'] = 0.0  # a deliberate start from random weights
    run_module('kdplugins.train', '-opt', str(write_yaml(tmp_path / 'partial.yml', opt)), cwd=tmp_path)


def test_a_run_that_skips_too_many_batches_stops_without_writing_its_checkpoint(tmp_path, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, name='skipping', total_iter=4, skip_nonfinite_batches=True)
    opt['train']['kd_opt']['loss_weight'] = float('nan')  # every batch is non-finite
    result = run_module(
        'kdplugins.train', '-opt', str(write_yaml(tmp_path / 'skipping.yml', opt)), cwd=tmp_path, check=False)
    assert result.returncode != 0
    assert ('2 of the 2 batches so far were skipped as non-finite (train.skip_nonfinite_batches), more than '
            'train.max_skipped_share = 0.1: the run stops at iteration 2') in result.stderr, result.stderr[-3000:]
    assert os.listdir(tmp_path / 'experiments' / 'skipping' / 'models') == []


@pytest.fixture
def disk_pairs(tmp_path, hr_images):
    """x2 pairs as image folders (disk backend): 64x64 HR crops of the bundled photos and their LR."""
    import cv2
    folders = {'hr': tmp_path / 'disk' / 'hr', 'lr': tmp_path / 'disk' / 'lr'}
    for folder in folders.values():
        folder.mkdir(parents=True)
    for path in sorted(hr_images.iterdir()):
        hr = cv2.imread(str(path))[:64, :64]
        cv2.imwrite(str(folders['hr'] / path.name), hr)
        cv2.imwrite(str(folders['lr'] / path.name), cv2.resize(hr, (32, 32), interpolation=cv2.INTER_AREA))
    return folders


def disk_options(tiny_lmdbs, teacher_path, folders, name: str) -> dict:
    opt = kd_options(tiny_lmdbs, teacher_path, name=name)
    for phase in ('train', 'val'):
        opt['datasets'][phase].update(
            dataroot_gt=str(folders['hr']), dataroot_lq=str(folders['lr']), io_backend={'type': 'disk'})
    opt['datasets']['train']['batch_size_per_gpu'] = 2
    return opt


@pytest.mark.parametrize('phase', ['train', 'val'])
def test_a_corrupt_image_is_named_with_its_data_set(tmp_path, tiny_lmdbs, teacher_path, disk_pairs, phase):
    opt = disk_options(tiny_lmdbs, teacher_path, disk_pairs, f'corrupt_{phase}')
    corrupt = disk_pairs['hr'] / 'coffee.png'
    corrupt.write_bytes(corrupt.read_bytes()[:200])  # truncated
    if phase == 'val':  # the training set without the file: only validation reads it
        train_pairs = {k: tmp_path / f'train_{k}' for k in ('hr', 'lr')}
        for key, folder in train_pairs.items():
            folder.mkdir()
            for path in disk_pairs[key].iterdir():
                if path.name != 'coffee.png':
                    (folder / path.name).write_bytes(path.read_bytes())
        opt['datasets']['train'].update(dataroot_gt=str(train_pairs['hr']), dataroot_lq=str(train_pairs['lr']))
    result = run_module(
        'kdplugins.train', '-opt', str(write_yaml(tmp_path / 'corrupt.yml', opt)), cwd=tmp_path, check=False)
    name = 'tiny_train' if phase == 'train' else 'tiny_val'
    assert f'datasets.{phase} ({name}): the sample ' in result.stderr, result.stderr[-3000:]
    assert f'gt_path {corrupt} cannot be read' in result.stderr and 'Replace or remove that image' in result.stderr


def test_a_corrupt_image_read_by_one_rank_stops_both_ranks_with_the_message(tmp_path, tiny_lmdbs, teacher_path,
                                                                            disk_pairs):
    import time
    opt = disk_options(tiny_lmdbs, teacher_path, disk_pairs, 'corrupt_ddp')
    opt['datasets']['train'].update(batch_size_per_gpu=1, num_worker_per_gpu=1)
    opt['train']['total_iter'] = 20
    corrupt = disk_pairs['lr'] / 'chelsea.png'
    corrupt.write_bytes(b'not a png')
    start = time.monotonic()
    result = run_module(
        'kdplugins.train',
        '-opt',
        str(write_yaml(tmp_path / 'ddp.yml', opt)),
        '--launcher',
        'pytorch',
        cwd=tmp_path,
        torchrun=2,
        check=False)
    assert result.returncode != 0
    assert f'datasets.train (tiny_train): the sample lq_path {corrupt}, gt_path ' in result.stderr, result.stderr[
        -3000:]
    assert 'kd-train: error: Caught SampleReadError in DataLoader worker process 0.' in result.stderr
    assert time.monotonic() - start < 120


def test_lmdb_keys_missing_from_the_lmdb_and_empty_sets_stop_before_training(tmp_path, tiny_lmdbs, teacher_path):
    import shutil
    lmdbs = {key: str(tmp_path / os.path.basename(path)) for key, path in tiny_lmdbs.items()}
    for key, path in tiny_lmdbs.items():
        shutil.copytree(path, lmdbs[key])
    with open(os.path.join(lmdbs['train_hr'], 'meta_info.txt'), 'a') as f:
        f.write('ghost_s001.png (64,64,3) 1\n')
    open(os.path.join(lmdbs['val_lr'], 'meta_info.txt'), 'w').close()
    result = run_module(
        'kdplugins.train',
        '-opt',
        str(write_yaml(tmp_path / 'keys.yml', kd_options(lmdbs, teacher_path, name='keys'))),
        cwd=tmp_path,
        check=False)
    assert (f"datasets.train.dataroot_gt: {lmdbs['train_hr']}/meta_info.txt lists 1 key(s) the LMDB does not hold "
            '(ghost_s001)') in result.stderr, result.stderr[-3000:]
    assert f"datasets.val.dataroot_lq: {lmdbs['val_lr']}/meta_info.txt lists no image: an empty data set" in (
        result.stderr)
    assert not (tmp_path / 'experiments').exists()


def test_a_teacher_path_that_is_a_training_state_is_named(tmp_path, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, name='state_as_teacher', total_iter=2)
    run_module('kdplugins.train', '-opt', str(write_yaml(tmp_path / 'first.yml', opt)), cwd=tmp_path)
    state = tmp_path / 'experiments' / 'state_as_teacher' / 'training_states' / '2.state'
    opt = kd_options(tiny_lmdbs, state, name='second')
    result = run_module(
        'kdplugins.train', '-opt', str(write_yaml(tmp_path / 'second.yml', opt)), cwd=tmp_path, check=False)
    assert (f'path.pretrain_network_t: {state} cannot be read as network weights' in result.stderr
            and 'It is a training state (<iter>.state' in result.stderr), result.stderr[-3000:]


def test_a_deprecated_weight_given_with_its_replacement_is_named_before_the_build():
    from kdplugins.runtime.option_schema import check_train
    opt = {
        'model_type': 'CSDModel',
        'train': {
            'csd': {
                'lambda_c': 0.5
            },
            'contrastive_opt': {
                'type': 'CSDContrastiveLoss',
                'loss_weight': 0.5
            }
        }
    }
    assert check_train(opt) == [
        'train.csd.lambda_c and train.contrastive_opt.loss_weight are both given: train.csd.lambda_c is the deprecated '
        'name of the same setting. Remove train.csd.lambda_c.'
    ]
    del opt['train']['contrastive_opt']
    assert check_train(opt) == []  # the old name alone: a warning when the model reads it


def test_skip_unreadable_is_an_opt_in_of_the_training_set_that_names_and_counts(tmp_path, tiny_lmdbs, teacher_path,
                                                                                disk_pairs):
    opt = disk_options(tiny_lmdbs, teacher_path, disk_pairs, 'skipping_files')
    corrupt = disk_pairs['hr'] / 'coffee.png'
    corrupt.write_bytes(b'not a png')
    opt['datasets']['val'].update(
        dataroot_gt=tiny_lmdbs['val_hr'], dataroot_lq=tiny_lmdbs['val_lr'], io_backend={'type': 'lmdb'})
    opt['datasets']['train']['skip_unreadable'] = True
    opt['train']['total_iter'] = 6  # 5 pairs, batch 2: every sample drawn
    result = run_module('kdplugins.train', '-opt', str(write_yaml(tmp_path / 'skip.yml', opt)), cwd=tmp_path)
    assert f'gt_path {corrupt} cannot be read' in result.stderr and 'skipped (skip_unreadable)' in result.stderr
    assert '1 sample(s) skipped so far in this process' in result.stderr
    opt['datasets']['val']['skip_unreadable'] = True
    refused = run_module(
        'kdplugins.train', '-opt', str(write_yaml(tmp_path / 'skip_val.yml', opt)), cwd=tmp_path, check=False)
    assert 'datasets.val.skip_unreadable: only the training set can skip unreadable samples' in refused.stderr
