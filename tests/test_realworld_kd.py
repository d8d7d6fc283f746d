"""Real-world KD (kdplugins/models/realworld_kd_model.py): basicsr's second-order degradations synthesised once per
batch for student and teacher, exact resume of the degradations, the pair pool, the discriminator and the EMA, a
frozen teacher in the GAN step, and the checks of the degradation options."""
import copy
import glob
import pytest
import re
import torch
import yaml
from conftest import REPO, build, run_module, train_batches, write_yaml

from kdplugins.data.degradation_options import ESRNET_TOP_LEVEL
from kdplugins.runtime.option_schema import option_problems

TEACHER_NET = {
    'type': 'RRDBNet',
    'num_in_ch': 3,
    'num_out_ch': 3,
    'scale': 4,
    'num_feat': 8,
    'num_block': 1,
    'num_grow_ch': 4
}
STUDENT_NET = {
    'type': 'SRVGGNetCompact',
    'num_in_ch': 3,
    'num_out_ch': 3,
    'num_feat': 8,
    'num_conv': 2,
    'upscale': 4,
    'act_type': 'prelu'
}
DISCRIMINATOR = {'type': 'UNetDiscriminatorSN', 'num_in_ch': 3, 'num_feat': 8, 'skip_connection': True}
KERNELS = ['iso', 'aniso', 'generalized_iso', 'generalized_aniso', 'plateau_iso', 'plateau_aniso']


@pytest.fixture(scope='module')
def realworld_files(tmp_path_factory, hr_images):
    """The five real photos of ``hr_images`` as a RealESRGANDataset disk folder with its meta_info file, and a tiny
    RRDBNet x4 teacher with seeded weights."""
    root = tmp_path_factory.mktemp('realworld')
    names = sorted(p.name for p in hr_images.iterdir())
    (root / 'meta_info.txt').write_text(''.join(f'{name}\n' for name in names))
    torch.manual_seed(3)
    from basicsr.archs import build_network
    teacher = root / 'teacher.pth'
    torch.save({'params_ema': build_network(dict(TEACHER_NET)).state_dict()}, teacher)
    return {'hr': str(hr_images), 'meta_info': str(root / 'meta_info.txt'), 'teacher': str(teacher)}


def realworld_options(files: dict, name: str, model_type: str = 'RealESRNetKDModel', total_iter: int = 4) -> dict:
    """A tiny x4 run of Real-ESRGAN's pipeline on CPU with Real-ESRGAN's degradation settings
    (options/train/RealWorldKD/), 64x64 HR crops, batch 1 and a pool of 2 (full after 2 iterations). The ESRNet stage
    without USM sharpening: basicsr's 101x101 USM filter on the 400x400 HR costs about 2 s a batch on one CPU thread
    (the ESRGAN stage always sharpens)."""
    opt = {
        'name': name,
        'model_type': model_type,
        'scale': 4,
        'num_gpu': 0,
        'manual_seed': 7,
        'resize_prob': [0.2, 0.7, 0.1],
        'resize_range': [0.15, 1.5],
        'gaussian_noise_prob': 0.5,
        'noise_range': [1, 30],
        'poisson_scale_range': [0.05, 3],
        'gray_noise_prob': 0.4,
        'jpeg_range': [30, 95],
        'second_blur_prob': 0.8,
        'resize_prob2': [0.3, 0.4, 0.3],
        'resize_range2': [0.3, 1.2],
        'gaussian_noise_prob2': 0.5,
        'noise_range2': [1, 25],
        'poisson_scale_range2': [0.05, 2.5],
        'gray_noise_prob2': 0.4,
        'jpeg_range2': [30, 95],
        'gt_size': 64,
        'queue_size': 2,
        'datasets': {
            'train': {
                'name': 'photos',
                'type': 'RealESRGANDataset',
                'dataroot_gt': files['hr'],
                'meta_info': files['meta_info'],
                'io_backend': {
                    'type': 'disk'
                },
                'blur_kernel_size': 21,
                'kernel_list': KERNELS,
                'kernel_prob': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
                'sinc_prob': 0.1,
                'blur_sigma': [0.2, 3],
                'betag_range': [0.5, 4],
                'betap_range': [1, 2],
                'blur_kernel_size2': 21,
                'kernel_list2': KERNELS,
                'kernel_prob2': [0.45, 0.25, 0.12, 0.03, 0.12, 0.03],
                'sinc_prob2': 0.1,
                'blur_sigma2': [0.2, 1.5],
                'betag_range2': [0.5, 4],
                'betap_range2': [1, 2],
                'final_sinc_prob': 0.8,
                'gt_size': 64,
                'use_hflip': True,
                'use_rot': False,
                'use_shuffle': True,
                'num_worker_per_gpu': 0,
                'batch_size_per_gpu': 1,
                'dataset_enlarge_ratio': 1
            }
        },
        'network_g': dict(STUDENT_NET),
        'network_t': dict(TEACHER_NET),
        'path': {
            'pretrain_network_g': None,
            'strict_load_g': True,
            'resume_state': None,
            'pretrain_network_t': files['teacher'],
            'param_key_t': 'params_ema'
        },
        'train': {
            'ema_decay':
            0.9,
            'optim_g': {
                'type': 'Adam',
                'lr': 1e-3,
                'betas': [0.9, 0.99]
            },
            'scheduler': {
                'type': 'MultiStepLR',
                'milestones': [3],
                'gamma': 0.5
            },
            'total_iter':
            total_iter,
            'warmup_iter':
            -1,
            'pixel_opt': {
                'type': 'L1Loss',
                'loss_weight': 1.0
            },
            'kd_opt': {
                'type': 'L1Loss',
                'loss_weight': 0.5
            },
            'feature_losses': [{
                'type': 'FitNetLoss',
                'student_layer': 'body.2',
                'teacher_layer': 'conv_body',
                'loss_weight': 0.1
            }],
        },
        'logger': {
            'print_freq': 1,
            'save_checkpoint_freq': 2,
            'use_tb_logger': False
        },
    }
    if model_type != 'RealESRGANKDModel':
        opt['gt_usm'] = False
    else:
        opt.update({'l1_gt_usm': True, 'percep_gt_usm': True, 'gan_gt_usm': False, 'network_d': dict(DISCRIMINATOR)})
        opt['train'].update({
            'optim_d': {
                'type': 'Adam',
                'lr': 1e-3,
                'betas': [0.9, 0.99]
            },
            'gan_opt': {
                'type': 'GANLoss',
                'gan_type': 'vanilla',
                'real_label_val': 1.0,
                'fake_label_val': 0.0,
                'loss_weight': 0.1
            },
            'net_d_iters': 1,
            'net_d_init_iters': 0
        })
    return opt


def test_student_and_teacher_receive_the_same_synthesised_batch(tmp_path, monkeypatch, realworld_files):
    """One step: the inputs of the student and of the teacher (recorded by forward pre-hooks) are the same tensor, the
    degraded LR of the batch, 16x16 for a 64x64 HR crop; a second draw degrades differently, and the same draw again
    (the counter set back) gives the same LR bitwise, with the process's random streams left as they were."""
    model, parsed = build(tmp_path, monkeypatch, realworld_options(realworld_files, 'same_input'))
    batch = train_batches(parsed, 1)[0]
    seen = {}
    hooks = [
        model.net_g.register_forward_pre_hook(lambda module, args: seen.__setitem__('student', args[0])),
        model.net_t.net.register_forward_pre_hook(lambda module, args: seen.__setitem__('teacher', args[0]))
    ]
    streams = torch.get_rng_state()
    model.feed_data(batch)
    assert torch.equal(torch.get_rng_state(), streams)
    first = model.lq.clone()
    model.optimize_parameters(1)
    for hook in hooks:
        hook.remove()
    assert torch.equal(seen['student'], seen['teacher']) and torch.equal(seen['student'], first)
    assert first.shape == (1, 3, 16, 16) and model.gt.shape == (1, 3, 64, 64)
    assert set(model.log_dict) == {'l_pix', 'l_kd', 'l_FitNetLoss'}
    model.feed_data(batch)
    assert not torch.equal(model.lq, first)
    model.degradation_draws, model.queue_ptr = 0, 0
    model.feed_data(batch)
    assert torch.equal(model.lq, first)


def train(cwd, opt: dict, *args: str, check: bool = True):
    yml = write_yaml(cwd / f'{opt["name"]}.yml', opt)
    return run_module('kdplugins.train', '-opt', str(yml), *args, cwd=cwd, check=check)


def load(cwd, name: str, file: str) -> dict:
    return torch.load(cwd / 'experiments' / name / file, weights_only=False)


def assert_equal_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize('model_type', ['RealESRNetKDModel', 'RealESRGANKDModel'])
def test_resume_repeats_the_degradations_pool_discriminator_and_ema(tmp_path, realworld_files, model_type):
    """4 iterations straight == 2 + --auto_resume 2, bitwise: the student, its EMA, (GAN stage) the discriminator
    and both optimizers, and the pair pool, which the resumed run starts dequeuing from at iteration 3."""
    opt = realworld_options(realworld_files, 'resume', model_type)
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    straight.mkdir(), resumed.mkdir()
    train(straight, opt)
    train(resumed, opt, '--force_yml', 'train:total_iter=2')
    train(resumed, opt, '--auto_resume')
    nets = [load(d, 'resume', 'models/net_g_4.pth') for d in (straight, resumed)]
    assert_equal_tensors(nets[0]['params'], nets[1]['params'])
    assert_equal_tensors(nets[0]['params_ema'], nets[1]['params_ema'])
    assert not torch.equal(nets[0]['params']['body.0.weight'], nets[0]['params_ema']['body.0.weight'])
    states = [load(d, 'resume', 'training_states/4.state') for d in (straight, resumed)]
    pools = [s['pair_pools'][0] for s in states]
    assert pools[0]['draws'] == pools[1]['draws'] == 4 and pools[0]['queue_ptr'] == 2
    assert torch.equal(pools[0]['queue_lr'], pools[1]['queue_lr']) and pools[0]['queue_lr'].abs().sum() > 0
    assert torch.equal(pools[0]['queue_gt'], pools[1]['queue_gt'])
    assert len(states[0]['optimizers']) == (2 if model_type == 'RealESRGANKDModel' else 1)
    for optimizers in zip(states[0]['optimizers'], states[1]['optimizers']):
        moments = [o['state'][0]['exp_avg'] for o in optimizers]
        assert torch.equal(moments[0], moments[1])
    if model_type == 'RealESRGANKDModel':
        discriminators = [load(d, 'resume', 'models/net_d_4.pth')['params'] for d in (straight, resumed)]
        assert_equal_tensors(discriminators[0], discriminators[1])
        first = load(resumed, 'resume', 'models/net_d_2.pth')['params']
        assert not torch.equal(first['conv1.weight_orig'], discriminators[0]['conv1.weight_orig'])


def test_the_gan_step_never_changes_the_teacher(tmp_path, monkeypatch, realworld_files):
    """Two GAN steps: the student and the discriminator change, the teacher stays bitwise equal to its checkpoint;
    none of its parameters is in an optimizer, none requires gradients."""
    model, parsed = build(tmp_path, monkeypatch, realworld_options(realworld_files, 'frozen', 'RealESRGANKDModel'))
    checkpoint = torch.load(realworld_files['teacher'])['params_ema']
    student = copy.deepcopy(model.net_g.state_dict())
    discriminator = copy.deepcopy(model.net_d.state_dict())
    optimized = {id(p) for optimizer in model.optimizers for group in optimizer.param_groups for p in group['params']}
    assert not optimized & {id(p) for p in model.net_t.parameters()}
    assert not any(p.requires_grad for p in model.net_t.parameters())
    for it, batch in enumerate(train_batches(parsed, 2), start=1):
        model.feed_data(batch)
        model.optimize_parameters(it)
    assert {'l_g_pix', 'l_kd', 'l_FitNetLoss', 'l_g_gan', 'l_d_real', 'l_d_fake'} <= set(model.log_dict)
    assert_equal_tensors(model.net_t.net.state_dict(), checkpoint)
    assert not torch.equal(model.net_g.state_dict()['body.0.weight'], student['body.0.weight'])
    assert not torch.equal(model.net_d.state_dict()['conv1.weight_orig'], discriminator['conv1.weight_orig'])


@pytest.mark.parametrize('key, value, message', [
    ('resize_range', [1.2, 1.5], 'resize_range: [1.2, 1.5] must hold 1'),
    ('jpeg_range', [30, 120], 'jpeg_range: [30, 120] holds 120, above 100'),
    ('resize_prob', [0.5, 0.5], 'resize_prob: [0.5, 0.5] is not three weights [up, down, keep]'),
    ('gaussian_noise_prob2', 1.5, 'gaussian_noise_prob2: 1.5 holds 1.5, above 1'),
    ('noise_range', [30, 1], 'noise_range: [30, 1] has its low end above its high end; write [1, 30]'),
    ('queue_size', 5, 'queue_size: 5 is not a multiple of datasets.train.batch_size_per_gpu (4)'),
    ('gt_size', 66, 'gt_size: 66 is not a multiple of the scale 4'),
    ('gt_usm', 'yes', "gt_usm: 'yes' is not true or false"),
    ('noise_rnage', [1, 30], "options.noise_rnage: unknown"),
])
def test_degradation_options_are_checked_by_name(realworld_files, key, value, message):
    opt = realworld_options(realworld_files, 'bad')
    opt['datasets']['train']['batch_size_per_gpu'] = 4
    opt[key] = value
    problems = option_problems(opt)
    assert any(message in problem for problem in problems), problems


def test_missing_and_wrong_dataset_options_are_named(tmp_path, realworld_files):
    opt = realworld_options(realworld_files, 'bad_data')
    del opt['second_blur_prob']
    del opt['datasets']['train']['meta_info']
    opt['datasets']['train']['kernel_prob'] = [0.5, 0.5]
    opt['datasets']['train']['sinc_prb'] = 0.1
    problems = option_problems(opt)
    assert 'second_blur_prob: missing; basicsr reads it without a default' in ' '.join(problems)
    assert any(p.startswith('datasets.train.meta_info: missing') for p in problems)
    assert any(p.startswith('datasets.train.kernel_prob: 2 weights for the 6 kernel types') for p in problems)
    assert any(p.startswith('datasets.train.sinc_prb: unknown') for p in problems), problems
    result = train(tmp_path, opt, check=False)
    assert result.returncode != 0 and '- second_blur_prob: missing' in result.stderr
    assert not (tmp_path / 'experiments').exists()


def test_every_degradation_option_of_the_shipped_files_is_declared():
    """The shipped real-world option files set every top-level option basicsr's RealESRNet / RealESRGAN model reads
    (Real-ESRGAN's own files set them all)."""
    files = sorted(glob.glob(str(REPO / 'options' / 'train' / 'RealWorldKD' / '*.yml')))
    assert len(files) == 4
    for path in files:
        opt = yaml.safe_load(open(path))
        assert set(ESRNET_TOP_LEVEL) - {'high_order_degradation', 'gt_usm'} <= set(opt), path


def test_the_student_alone_sees_the_batches_of_the_distilled_student(tmp_path, monkeypatch, realworld_files):
    """RealESRNetPlainModel (no teacher: the CPU teacher's and the baseline's model) draws bitwise the LR batches of
    RealESRNetKDModel with the same seed and data, so the distillation is compared on the same degradations."""
    batches = None
    inputs = []
    for model_type in ('RealESRNetKDModel', 'RealESRNetPlainModel'):
        opt = realworld_options(realworld_files, model_type, model_type)
        if model_type == 'RealESRNetPlainModel':
            del opt['network_t'], opt['path']['pretrain_network_t'], opt['path']['param_key_t']
            del opt['train']['kd_opt'], opt['train']['feature_losses']
        (tmp_path / model_type).mkdir()
        model, parsed = build(tmp_path / model_type, monkeypatch, opt)
        batches = batches or train_batches(parsed, 3)
        lqs = []
        for it, batch in enumerate(batches, start=1):
            model.feed_data(batch)
            lqs.append(model.lq.clone())
            model.optimize_parameters(it)
        inputs.append(torch.stack(lqs))
        assert set(model.log_dict) == ({'l_pix'}
                                       if model_type == 'RealESRNetPlainModel' else {'l_pix', 'l_kd', 'l_FitNetLoss'})
    assert torch.equal(inputs[0], inputs[1])


def test_the_fixed_validation_pairs_are_made_once_the_same(tmp_path):
    """scripts/realworld_demo_data.py: the training photos with their meta_info, and degraded validation pairs that
    two runs with the same seed write byte for byte alike (400x400 HR, 100x100 LR), another seed differently."""
    outs = [tmp_path / name for name in ('a', 'b', 'c')]
    for out, seed in zip(outs, (0, 0, 1)):
        run_module_script(out, seed)
    names = sorted(p.name for p in (outs[0] / 'val' / 'LR').iterdir())
    assert names == ['camera.png', 'chelsea.png', 'hubble_deep_field.png']
    assert sorted((outs[0] / 'meta_info.txt').read_text().split()) == sorted(p.name for p in (outs[0] / 'HR').iterdir())
    import cv2
    for name in names:
        hr, lr = (cv2.imread(str(outs[0] / 'val' / kind / name)) for kind in ('HR', 'LR'))
        assert hr.shape == (400, 400, 3) and lr.shape == (100, 100, 3)
        assert (outs[0] / 'val' / 'LR' / name).read_bytes() == (outs[1] / 'val' / 'LR' / name).read_bytes()
    assert any((outs[0] / 'val' / 'LR' / n).read_bytes() != (outs[2] / 'val' / 'LR' / n).read_bytes() for n in names)


def run_module_script(out, seed: int) -> None:
    from conftest import run_script
    run_script('scripts/realworld_demo_data.py', '--out', str(out), '--seed', str(seed))


def test_two_ranks_with_data_workers_stay_bitwise_equal_in_the_gan_stage(tmp_path, realworld_files):
    """torchrun, 2 processes (gloo), a data worker each, the ESRGAN stage: the ranks draw different degradations (their
    pools differ) and hold bitwise equal students and discriminators at every checkpoint (check_rank_sync)."""
    opt = realworld_options(realworld_files, 'ddp', 'RealESRGANKDModel', total_iter=3)
    opt['datasets']['train']['num_worker_per_gpu'] = 1
    opt['train']['check_rank_sync'] = True
    yml = write_yaml(tmp_path / 'ddp.yml', opt)
    run_module('kdplugins.train', '-opt', str(yml), '--launcher', 'pytorch', cwd=tmp_path, torchrun=2)
    log = ''.join(open(p).read() for p in sorted(glob.glob(str(tmp_path / 'experiments' / 'ddp' / 'train_*.log'))))
    assert 'World size (gpu number): 2' in log
    digests = re.findall(r'Rank weight digests at iter (-?\d+): ([0-9a-f]{64}) ([0-9a-f]{64})', log)
    assert [d[0] for d in digests] == ['2', '-1'] and all(d[1] == d[2] for d in digests)
    pools = load(tmp_path, 'ddp', 'training_states/2.state')['pair_pools']
    assert len(pools) == 2 and not torch.equal(pools[0]['queue_lr'], pools[1]['queue_lr'])


def test_training_on_given_pairs_needs_no_degradation_options(realworld_files):
    """high_order_degradation: false (basicsr's switch to given pairs): the degradation options may go, the USM
    switches of the ESRGAN stage are still read, and given values are still checked."""
    opt = realworld_options(realworld_files, 'pairs', 'RealESRGANKDModel')
    opt['high_order_degradation'] = False
    for key in set(ESRNET_TOP_LEVEL) - {'high_order_degradation', 'gt_usm', 'jpeg_range'}:
        opt.pop(key, None)
    del opt['l1_gt_usm']
    opt['jpeg_range'] = [30, 120]
    opt['datasets']['train'] = {
        'name': 'pairs',
        'type': 'PairedImageDataset',
        'dataroot_gt': realworld_files['hr'],
        'dataroot_lq': realworld_files['hr'],
        'io_backend': {
            'type': 'disk'
        },
        'gt_size': 64,
        'use_hflip': True,
        'use_rot': False,
        'num_worker_per_gpu': 0,
        'batch_size_per_gpu': 1
    }
    problems = option_problems(opt)
    assert sorted(p.split(':')[0] for p in problems) == ['jpeg_range', 'l1_gt_usm'], problems
