"""ConvLoRA (kdplugins/distill/conv_lora.py): loralib's factorisation, exact merge into plain convolutions, frozen
base, option errors, and training through the entry point (frozen base bitwise, resume bitwise, merged export)."""
import copy
import pytest
import re
import torch
import yaml
from basicsr.archs import build_network
from conftest import REPO, kd_options, run_module, save_teacher, write_yaml

from kdplugins.deploy.network import load_network
from kdplugins.distill.conv_lora import (ConvLoRA, LoRAOptionError, add_conv_lora_from_state, apply_conv_lora,
                                         merge_conv_lora)
from kdplugins.runtime.option_schema import option_problems
from kdplugins.utils.efficiency import count_ops

SPAN_STUDENT = {'type': 'SPAN', 'feature_channels': 8, 'upscale': 2, 'reparameterized': True}
SPAN_TEACHER = {'type': 'SPAN', 'feature_channels': 12, 'upscale': 2}
# DSCLoRA's layers and ranks (DSCF-SR models/team23_DSCF.py lora_config), at test width
DSCLORA_MODULES = {'block_*.c*_r.eval_conv': [2, 4], 'conv_2.eval_conv': [8, 16], 'upsampler.0': [8, 16]}


def with_random_branches(net: torch.nn.Module, seed: int = 5) -> torch.nn.Module:
    """B starts at zero; give it values so that the branch changes the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, ConvLoRA):
                module.lora_B.copy_(torch.randn(module.lora_B.shape, generator=generator) * 0.05)
    return net


def test_branches_start_at_the_base_and_merge_exactly_into_the_base_network():
    torch.manual_seed(0)
    base = build_network(dict(SPAN_STUDENT)).eval()
    net = copy.deepcopy(base)
    paths = apply_conv_lora(net, {'modules': DSCLORA_MODULES}, seed=3)
    assert len(paths) == 6 * 3 + 2
    x = torch.rand(2, 3, 13, 9, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert torch.equal(net(x), base(x))  # B = 0: W + 0 is W
        unmerged = with_random_branches(net)(x)
        assert (unmerged - base(x)).abs().max() > 1e-3
        merged_net = merge_conv_lora(net)
        merged = merged_net(x)
    assert (merged - unmerged).abs().max() <= 1e-6
    assert not any(isinstance(m, ConvLoRA) for m in merged_net.modules())
    assert list(merged_net.state_dict()) == list(base.state_dict())
    base_counts, merged_counts = count_ops(base, (1, 3, 16, 16)), count_ops(merged_net, (1, 3, 16, 16))
    assert (merged_counts.params, merged_counts.flops) == (base_counts.params, base_counts.flops)


@pytest.mark.parametrize('groups', [1, 2])
def test_the_update_is_lorals_factorisation_of_rank_r_times_k(groups):
    """W' - W = alpha / r * (B @ A).view(W.shape), A: (r k, in k), B: (out/groups k, r k) (loralib ConvLoRA)."""
    conv = torch.nn.Conv2d(6, 8, 3, padding=1, groups=groups)
    lora = with_random_branches(ConvLoRA(conv, rank=2, alpha=6.0, generator=torch.Generator().manual_seed(0)))
    assert lora.lora_A.shape == (2 * 3, 6 * 3) and lora.lora_B.shape == (8 // groups * 3, 2 * 3)
    assert lora.scaling == 3.0 and lora.rank == 2
    delta = lora.merged_weight() - conv.weight
    direct = 3.0 * (lora.lora_B @ lora.lora_A).reshape(conv.weight.shape)
    assert torch.allclose(delta, direct, atol=1e-7, rtol=0)
    assert torch.linalg.matrix_rank(delta.reshape(8 // groups * 3, -1)) <= 2 * 3
    bound = 1 / (6 * 3)**0.5  # kaiming_uniform_(a=sqrt(5)) of a (r k, in k) matrix: U(-1/sqrt(in k), 1/sqrt(in k))
    assert lora.lora_A.abs().max() <= bound and lora.lora_A.abs().max() > 0.8 * bound
    x = torch.rand(1, 6, 7, 7)
    assert torch.equal(
        lora(x), torch.nn.functional.conv2d(x, lora.merged_weight(), conv.bias, padding=1, groups=groups))


def test_train_base_false_freezes_every_other_parameter_and_true_keeps_them():
    frozen = build_network(dict(SPAN_STUDENT))
    apply_conv_lora(frozen, {'modules': {'upsampler.0': [2, 2]}, 'train_base': False})
    assert sorted(n for n, p in frozen.named_parameters()
                  if p.requires_grad) == ['upsampler.0.lora_A', 'upsampler.0.lora_B']
    trained = build_network(dict(SPAN_STUDENT))
    apply_conv_lora(trained, {'modules': {'upsampler.0': [2, 2]}, 'train_base': True})
    assert all(p.requires_grad for p in trained.parameters())


def test_a_checkpoint_describes_its_branches():
    net = with_random_branches(build_network(dict(SPAN_STUDENT)))
    apply_conv_lora(net, {'modules': {'conv_cat': [3, 1.5]}}, seed=1)
    with_random_branches(net)
    rebuilt = build_network(dict(SPAN_STUDENT))
    assert add_conv_lora_from_state(rebuilt, net.state_dict()) == ['conv_cat']
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    assert rebuilt.conv_cat.rank == 3 and rebuilt.conv_cat.scaling == 0.5


def test_patterns_that_match_nothing_or_twice_and_bad_ranks_are_named():
    net = build_network(dict(SPAN_STUDENT))
    with pytest.raises(LoRAOptionError, match=r"'block_9\.\*' matches no nn.Conv2d.*conv_cat, upsampler\.0"):
        apply_conv_lora(net, {'modules': {'block_9.*': [2, 4]}})
    with pytest.raises(LoRAOptionError, match="'conv_cat' is matched by more than one pattern"):
        apply_conv_lora(net, {'modules': {'conv_cat': [2, 4], 'conv_c*': [2, 4]}})
    with pytest.raises(LoRAOptionError, match=r'upsampler\.0: \[0, 4\] is not \[rank, alpha\]'):
        apply_conv_lora(net, {'modules': {'upsampler.0': [0, 4]}})


@pytest.fixture(scope='module')
def span_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp('span_lora')
    return (save_teacher(folder / 'teacher.pth', SPAN_TEACHER,
                         seed=1), save_teacher(folder / 'student_base.pth', SPAN_STUDENT, seed=2))


def lora_options(lmdbs, span_paths, name, **train_opt):
    teacher, base = span_paths
    opt = kd_options(lmdbs, teacher, name=name, **train_opt)
    opt.update(network_g=dict(SPAN_STUDENT), network_t=dict(SPAN_TEACHER))
    opt['path']['pretrain_network_g'] = str(base)
    opt['train']['lora'] = {'modules': dict(DSCLORA_MODULES), 'train_base': False}
    opt['val']['val_freq'] = 100
    return opt


def test_option_check_names_a_pattern_that_matches_nothing(tiny_lmdbs, span_paths):
    opt = lora_options(tiny_lmdbs, span_paths, 'lora_check')
    opt['train']['lora']['modules']['body.*.conv'] = [2, 4]
    problems = option_problems(opt)
    assert len(problems) == 1 and "'body.*.conv' matches no nn.Conv2d of network_g" in problems[0]
    opt['train']['lora']['train_bas'] = True
    assert any('train.lora.train_bas' in p for p in option_problems(opt))


def test_lora_training_keeps_the_base_resumes_bitwise_and_exports_merged(tmp_path, tiny_lmdbs, span_paths):
    """4 iterations straight and 2 + 2 with --auto_resume: the same checkpoint bitwise (branches, base and optimizer
    state); the frozen base is the pretrained file bitwise; kd-export's network is the merged one."""
    opt = lora_options(tiny_lmdbs, span_paths, 'lora_resume')
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    for cwd, runs in ((straight, [()]), (resumed, [('--force_yml', 'train:total_iter=2'), ('--auto_resume', )])):
        cwd.mkdir()
        yml = write_yaml(cwd / 'lora.yml', opt)
        for args in runs:
            run_module('kdplugins.train', '-opt', str(yml), *args, cwd=cwd)
    files = [torch.load(d / 'experiments' / 'lora_resume' / 'models' / 'net_g_4.pth') for d in (straight, resumed)]
    a, b = (f['params'] for f in files)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    states = [
        torch.load(d / 'experiments/lora_resume/training_states/4.state', weights_only=False)
        for d in (straight, resumed)
    ]
    moments = [s['optimizers'][0]['state'] for s in states]
    assert len(moments[0]) == 2 * 20 and all(
        torch.equal(moments[0][i]['exp_avg'], moments[1][i]['exp_avg']) for i in moments[0])
    base = torch.load(span_paths[1])['params']
    assert set(a) - set(base) == {f'{p}.{t}' for p in lora_paths_of(a) for t in ('lora_A', 'lora_B', '_extra_state')}
    assert all(torch.equal(a[k], base[k]) for k in base)  # the frozen base, bitwise
    assert any(not torch.equal(v, torch.zeros_like(v)) for k, v in a.items() if k.endswith('lora_B'))
    # the deployed network: merged, the base's keys and parameter count, the unmerged output within 1e-6
    checkpoint = straight / 'experiments/lora_resume/models/net_g_4.pth'
    deployed = load_network(str(straight / 'lora.yml'), str(checkpoint)).net
    assert list(deployed.state_dict()) == list(base)
    unmerged = build_network(dict(SPAN_STUDENT)).eval()
    add_conv_lora_from_state(unmerged, a)
    unmerged.load_state_dict(a, strict=True)
    x = torch.rand(1, 3, 17, 11, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (deployed(x) - unmerged(x)).abs().max() <= 1e-6
    out = tmp_path / 'export'
    run_module(
        'kdplugins.export',
        '-opt',
        str(straight / 'lora.yml'),
        '--checkpoint',
        str(checkpoint),
        '--out',
        str(out),
        '--format',
        'torchscript',
        '--check-sizes',
        '12x10',
        cwd=tmp_path)
    exported = torch.jit.load(str(out / 'lora_resume.pt'))
    assert not any('lora' in k for k in exported.state_dict())
    with torch.no_grad():
        assert (exported(x) - unmerged(x)).abs().max() <= 1e-6


def lora_paths_of(state):
    return [k[:-len('.lora_A')] for k in state if k.endswith('.lora_A')]


DEMO = REPO / 'options' / 'train' / 'DSCLoRA' / 'train_DSCLoRA_SPAN12_x2_demo.yml'


def test_the_dsclora_demo_option_trains_its_branches_and_leaves_the_fused_base_bitwise(tmp_path, tiny_lmdbs):
    """The option file as shipped (data, paths and length replaced): the base, given as a training-form SPAN file,
    is loaded fused and stays so bitwise; the branches train; every FAKD tap is logged."""
    teacher = save_teacher(tmp_path / 'teacher.pth', {'type': 'SPAN', 'feature_channels': 16, 'upscale': 2}, seed=1)
    base = save_teacher(tmp_path / 'base.pth', {'type': 'SPAN', 'feature_channels': 12, 'upscale': 2}, seed=2)
    opt = yaml.safe_load(DEMO.read_text())
    for phase, (hr, lr) in (('train', ('train_hr', 'train_lr')), ('val', ('val_hr', 'val_lr'))):
        opt['datasets'][phase].update(dataroot_gt=tiny_lmdbs[hr], dataroot_lq=tiny_lmdbs[lr])
    opt['datasets']['train'].update(gt_size=32, batch_size_per_gpu=2, dataset_enlarge_ratio=1)
    opt['path'].update(pretrain_network_g=str(base), pretrain_network_t=str(teacher))
    opt['train'].update(total_iter=2, teacher_check=False)
    opt['val']['val_freq'] = 100
    opt['logger'].update(print_freq=1, save_checkpoint_freq=2, use_tb_logger=False)
    run_module('kdplugins.train', '-opt', str(write_yaml(tmp_path / 'dsclora.yml', opt)), cwd=tmp_path)
    saved = torch.load(tmp_path / 'experiments' / opt['name'] / 'models' / 'net_g_2.pth')['params']
    fused = build_network({'type': 'SPAN', 'feature_channels': 12, 'upscale': 2, 'reparameterized': True})
    fused.load_state_dict(torch.load(base)['params'], strict=True)
    assert all(torch.equal(saved[k], v) for k, v in fused.state_dict().items())
    assert len(lora_paths_of(saved)) == 20
    assert all(saved[f'{p}.lora_B'].abs().sum() > 0 for p in lora_paths_of(saved))
    log = ''.join(p.read_text() for p in (tmp_path / 'experiments' / opt['name']).glob('train_*.log'))
    assert len(set(re.findall(r'(l_fakd\w*): ', log, flags=re.IGNORECASE))) == 9


def test_two_process_torchrun_keeps_the_ranks_equal_and_validates(tmp_path, tiny_lmdbs, span_paths):
    """DDP over a student with frozen base and branches: equal digests on both ranks at every checkpoint, and the
    rank-0-only validation at the end runs (a buffer on the branches made DDP wait for rank 1 there)."""
    opt = lora_options(tiny_lmdbs, span_paths, 'lora_ddp', check_rank_sync=True)
    opt['datasets']['train']['batch_size_per_gpu'] = 2
    run_module(
        'kdplugins.train',
        '-opt',
        str(write_yaml(tmp_path / 'ddp.yml', opt)),
        '--launcher',
        'pytorch',
        cwd=tmp_path,
        torchrun=2)
    log = ''.join(p.read_text() for p in (tmp_path / 'experiments' / 'lora_ddp').glob('train_*.log'))
    digests = re.findall(r'Rank weight digests at iter (-?\d+): ([0-9a-f]{64}) ([0-9a-f]{64})', log)
    assert [d[0] for d in digests] == ['2', '4', '-1'] and all(a == b for _, a, b in digests)
    assert digests[0][1] != digests[1][1]
    assert re.search(r'Validation tiny_val\s+# psnr:', log)
