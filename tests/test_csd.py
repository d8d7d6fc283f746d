"""CSD: slimmable EDSR / RCAN / CARN, the contrastive loss (Eq. 2), CSDModel (Eq. 1, 3), student extraction."""
import contextlib
import glob
import logging
import pytest
import re
import torch
import torch.nn.functional as F
import torchvision
import yaml
from basicsr.archs import build_network
from conftest import build, kd_options, run_module, run_script, train_batches, write_yaml

from kdplugins.archs.slimmable import extract_student, slim_layers
from kdplugins.losses.csd_loss import CSDContrastiveLoss

ARCHS = {
    'EDSR': {
        'type': 'EDSR',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 16,
        'num_block': 2,
        'upscale': 4
    },
    'EDSR_x3': {
        'type': 'EDSR',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 16,
        'num_block': 1,
        'upscale': 3
    },
    'RCAN': {
        'type': 'RCAN',
        'num_in_ch': 3,
        'num_out_ch': 3,
        'num_feat': 16,
        'num_group': 2,
        'num_block': 2,
        'squeeze_factor': 4,
        'upscale': 2
    },
    'CARN': {
        'type': 'CARN',
        'scale': 4,
        'channels': 16
    },
}
TINY_SLIM_EDSR = {'type': 'SlimEDSR', 'num_in_ch': 3, 'num_out_ch': 3, 'num_feat': 8, 'num_block': 1, 'upscale': 2}
VGG_TAPS = {'relu1_1': 1, 'relu2_1': 6, 'relu3_1': 11, 'relu4_1': 20, 'relu5_1': 29}  # torchvision vgg19 indices


def slim_of(name: str, seed: int = 0):
    torch.manual_seed(seed)
    opts = dict(ARCHS[name])
    return build_network(dict(opts, type='Slim' + opts['type'])).eval()


# ----------------------------------------------------------------------------------------------------------------
# slimmable archs
@pytest.mark.parametrize('name', list(ARCHS))
def test_width_one_is_the_plain_arch(name):
    torch.manual_seed(3)
    plain = build_network(dict(ARCHS[name])).eval()
    slim = slim_of(name, seed=3)
    assert list(plain.state_dict()) == list(slim.state_dict())
    assert all(torch.equal(v, slim.state_dict()[k]) for k, v in plain.state_dict().items())  # same initialization
    other = slim_of(name, seed=4)
    other.load_state_dict(plain.state_dict(), strict=True)  # BasicSR checkpoints load as they are
    x = torch.rand(2, 3, 12, 12)
    with torch.no_grad():
        assert torch.equal(other(x), plain(x))
        assert torch.equal(other(x, width_mult=1.0), plain(x))


def test_student_weights_are_views_of_the_teacher_weights():
    net = slim_of('EDSR')
    conv = net.body[0].conv1
    weight, bias = conv.sliced_parameters(0.25)
    assert weight.shape == (4, 4, 3, 3) and weight.data_ptr() == conv.weight.data_ptr()
    assert weight._base is conv.weight and bias._base is conv.bias
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        student, teacher = net(x, width_mult=0.25), net(x)
        conv.weight[0, 0, 1, 1] += 0.5  # shared: changes both
        student_2, teacher_2 = net(x, width_mult=0.25), net(x)
        conv.weight[-1, -1, 1, 1] += 0.5  # outside the student's slice: changes the teacher only
        student_3, teacher_3 = net(x, width_mult=0.25), net(x)
    assert not torch.equal(student, student_2) and not torch.equal(teacher, teacher_2)
    assert torch.equal(student_2, student_3) and not torch.equal(teacher_2, teacher_3)


def test_carn_fusions_slice_each_concatenated_part():
    net = slim_of('CARN')
    fusion = net.b1.c2.body[0]  # input: concatenation of 3 parts of 16 channels
    weight, _ = fusion.sliced_parameters(0.25)
    expected = torch.cat([fusion.weight[:4, 0:4], fusion.weight[:4, 16:20], fusion.weight[:4, 32:36]], dim=1)
    assert torch.equal(weight, expected)
    upsampler = net.upsample.up.body[0]  # feeds a pixel shuffle of 2: groups of 4 output channels
    assert upsampler.sliced_parameters(0.25)[0].shape[0] == 4 * 4
    assert net.sub_mean.shifter.sliced_parameters(0.25)[0].shape == (3, 3, 1, 1)


@pytest.mark.parametrize('name,width', [('EDSR', 0.25), ('EDSR_x3', 0.5), ('RCAN', 0.5), ('CARN', 0.25)])
def test_extracted_student_equals_the_slim_network(name, width):
    net = slim_of(name)
    options, state = extract_student(net, width)
    student = build_network(dict(options)).eval()
    student.load_state_dict(state, strict=True)
    assert options['type'] == ARCHS[name]['type']
    x = torch.rand(2, 3, 10, 10)
    with torch.no_grad():
        difference = (student(x) - net(x, width_mult=width)).abs().max().item()
    assert difference < 1e-5
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize('width', [0.0, -0.5, 1.5])
def test_width_out_of_range_is_a_clear_error(width):
    with pytest.raises(ValueError, match=r'width_mult must be a number in \(0, 1\]'):
        slim_of('EDSR')(torch.rand(1, 3, 8, 8), width_mult=width)


def test_zero_channel_width_is_a_clear_error():
    net = slim_of('RCAN')  # channel attention: 16 // 4 = 4 channels
    with pytest.raises(
            ValueError,
            match=r'leaves the 4 channels of body\.0\.residual_group\.0\.rcab\.3\.attention\.1 '
            r'with 0 channels: use a width_mult of at least 0\.25'):
        net(torch.rand(1, 3, 8, 8), width_mult=0.2)


# ----------------------------------------------------------------------------------------------------------------
# contrastive loss
def reference_vgg(loss: CSDContrastiveLoss) -> torch.nn.Module:
    """torchvision's own VGG-19 features holding the loss's VGG weights."""
    with torch.device('meta'):  # no initialization of the 140M parameters
        vgg = torchvision.models.vgg19(weights=None).features[:30]
    vgg.load_state_dict(loss.vgg.features.state_dict(), assign=True)
    return vgg.eval()


def reference_features(vgg, image: torch.Tensor) -> dict:
    x = (image - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(
        1, 3, 1, 1)
    features = {}
    for index, layer in enumerate(vgg):
        x = layer(x.clone())
        features.update({name: x for name, tap in VGG_TAPS.items() if tap == index})
    return features


def eq2(vgg, student, teacher, lq, negative_index) -> torch.Tensor:
    """Eq. 2 written out sample by sample, layer by layer, negative by negative (mean over the batch)."""
    weights = {'relu1_1': 1 / 32, 'relu2_1': 1 / 16, 'relu3_1': 1 / 8, 'relu4_1': 1 / 4, 'relu5_1': 1.0}
    upsampled = F.interpolate(lq, size=student.shape[-2:], mode='bicubic', align_corners=False)
    negatives = [reference_features(vgg, upsampled[k:k + 1]) for k in range(len(upsampled))]
    total = 0
    for i in range(student.size(0)):
        anchor, positive = reference_features(vgg, student[i:i + 1]), reference_features(vgg, teacher[i:i + 1])
        for name, weight in weights.items():
            to_negatives = sum(F.l1_loss(anchor[name], negatives[k][name]) for k in negative_index[i].tolist())
            total = total + weight * F.l1_loss(anchor[name], positive[name]) / (to_negatives + 1e-7)
    return total / student.size(0)


@pytest.fixture(scope='module')
def random_vgg_loss():
    return CSDContrastiveLoss(loss_weight=1.0, num_negatives=2, vgg_weights='random')


def images(batch=3, size=16, scale=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    student = torch.rand(batch, 3, size, size, generator=generator)
    teacher = torch.rand(batch, 3, size, size, generator=generator)
    lq = torch.rand(batch, 3, size // scale, size // scale, generator=generator)
    return student, teacher, lq


def test_contrastive_loss_equals_eq2_computed_directly(random_vgg_loss):
    student, teacher, lq = images()
    index = random_vgg_loss.negative_indices(3, torch.device('cpu'), torch.Generator().manual_seed(0))
    assert sorted(map(sorted, index.tolist())) == [[0, 1], [0, 2], [1, 2]]  # the two other samples, never itself
    assert all(i not in row for i, row in enumerate(index.tolist()))
    loss = random_vgg_loss(student, teacher, lq, negative_index=index)
    with torch.no_grad():
        expected = eq2(reference_vgg(random_vgg_loss), student, teacher, lq, index)
    assert torch.allclose(loss, expected, rtol=1e-5, atol=0), (loss, expected)


def test_contrastive_loss_may_take_the_anchors_own_image():
    loss_fn = CSDContrastiveLoss(num_negatives=3, negatives_include_own=True, vgg_weights='random')
    student, teacher, lq = images()
    index = loss_fn.negative_indices(3, torch.device('cpu'))
    assert all(sorted(row) == [0, 1, 2] for row in index.tolist())
    with torch.no_grad():
        expected = eq2(reference_vgg(loss_fn), student, teacher, lq, index)
    assert torch.allclose(loss_fn(student, teacher, lq), expected, rtol=1e-5, atol=0)


def test_contrastive_gradient_reaches_only_the_student_slice(random_vgg_loss):
    net = slim_of('EDSR')
    lq = torch.rand(3, 3, 4, 4)
    teacher_output = net(lq).detach().requires_grad_()  # a leaf: any gradient into it would show in .grad
    random_vgg_loss(net(lq, width_mult=0.5), teacher_output, lq).backward()
    assert teacher_output.grad is None
    assert all(p.requires_grad is False and p.grad is None for p in random_vgg_loss.parameters())
    for name, layer in slim_layers(net):
        weight, _ = layer.sliced_parameters(0.5)
        out, parts = layer.active_out(0.5), layer.active_in_parts(0.5)
        inside = torch.zeros_like(layer.weight, dtype=torch.bool)
        inside[:out, :parts[0]] = True
        assert torch.count_nonzero(layer.weight.grad[~inside]) == 0, name  # exactly zero outside the slice
        assert torch.count_nonzero(layer.weight.grad[inside]) > 0, name


def test_csd_b_lets_the_contrastive_gradient_reach_the_teacher():
    loss_fn = CSDContrastiveLoss(num_negatives=2, vgg_weights='random', detach_positive=False)
    student, teacher, lq = images()
    teacher.requires_grad_()
    loss_fn(student.requires_grad_(), teacher, lq).backward()
    assert teacher.grad is not None and torch.count_nonzero(teacher.grad) > 0


def test_too_many_negatives_is_a_clear_error(random_vgg_loss):
    loss_fn = CSDContrastiveLoss(num_negatives=3, vgg_weights='random')
    with pytest.raises(ValueError, match='num_negatives is 3 but a batch of 3 gives each anchor only 2 negatives'):
        loss_fn(*images())


def test_vgg_weights_from_a_file_or_a_clear_error(tmp_path, monkeypatch, random_vgg_loss):
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=r'vgg19-dcbb9e9d\.pth.*vgg_weights: random'):
        CSDContrastiveLoss()
    state = {f'features.{k}': v + 1 for k, v in random_vgg_loss.vgg.features.state_dict().items()}
    state['classifier.0.weight'] = torch.zeros(1)
    path = tmp_path / 'vgg19.pth'
    torch.save(state, path)
    loaded = CSDContrastiveLoss(vgg_weights=str(path)).vgg.features.state_dict()
    assert all(torch.equal(v, state[f'features.{k}']) for k, v in loaded.items())
    hub = tmp_path / 'hub' / 'checkpoints'
    hub.mkdir(parents=True)
    torch.save(state, hub / 'vgg19-dcbb9e9d.pth')
    assert CSDContrastiveLoss().vgg.weights_file.endswith('vgg19-dcbb9e9d.pth')


# ----------------------------------------------------------------------------------------------------------------
# CSDModel
def csd_options(lmdbs: dict,
                name: str = 'csd',
                total_iter: int = 4,
                train_opt: dict = None,
                teacher_weight: float = 1.0,
                contrastive_weight: float = 200.0,
                **csd) -> dict:
    """A tiny x2 CSD run on CPU: SlimEDSR 8x1, student width 0.5, λ_T ``teacher_weight``, λ_C ``contrastive_weight``,
    K = 3 in batches of 4, random VGG."""
    opt = kd_options(lmdbs, teacher_path='unused', name=name, total_iter=total_iter, **(train_opt or {}))
    opt['model_type'] = 'CSDModel'
    opt['network_g'] = dict(TINY_SLIM_EDSR)
    del opt['network_t']
    for key in ('pretrain_network_t', 'param_key_t'):
        del opt['path'][key]
    del opt['train']['kd_opt'], opt['train']['teacher_check']
    opt['train']['csd'] = {'width_mult': 0.5, **csd}
    opt['train']['teacher_pixel_opt'] = {'type': 'L1Loss', 'loss_weight': teacher_weight}
    opt['train']['contrastive_opt'] = {
        'type': 'CSDContrastiveLoss',
        'loss_weight': contrastive_weight,
        'num_negatives': 3,
        'vgg_weights': 'random'
    }
    return opt


def one_step(tmp_path, monkeypatch, opt):
    model, parsed = build(tmp_path, monkeypatch, opt)
    model.feed_data(train_batches(parsed, 1)[0])
    model.optimizer_g.zero_grad()
    losses = model.compute_losses(1)
    sum(losses.values()).backward()
    return model, losses


def outside_slice_gradient(model) -> float:
    conv = model.net_g.body[0].conv1
    return conv.weight.grad[4:].abs().sum().item()


@pytest.mark.parametrize(
    'variant,terms,outside',
    [
        ({}, ['l_pix', 'l_pix_t', 'l_csd'], True),
        ({
            'contrastive_weight': 0
        }, ['l_pix', 'l_pix_t'], True),  # J-T
        ({
            'teacher_weight': 0
        }, ['l_pix', 'l_csd'], False),  # CSD-A: the teacher only gives the (detached) positive
        ({
            'teacher_weight': 0,
            'detach_teacher': False
        }, ['l_pix', 'l_csd'], True),  # CSD-B
    ],
    ids=['CSD', 'J-T', 'CSD-A', 'CSD-B'])
def test_csd_model_terms_and_ablations(tmp_path, monkeypatch, tiny_lmdbs, variant, terms, outside):
    model, losses = one_step(tmp_path, monkeypatch, csd_options(tiny_lmdbs, **variant))
    assert list(losses) == terms
    assert (model.cri_csd is None) == ('l_csd' not in terms)
    assert (outside_slice_gradient(model) > 0) == outside
    assert torch.equal(losses['l_pix'], F.l1_loss(model.output, model.gt))
    if 'l_pix_t' in terms:
        with torch.no_grad():
            teacher = model.net_g(model.lq)
        assert torch.allclose(losses['l_pix_t'], F.l1_loss(teacher, model.gt))


def old_weight_names(opt: dict) -> dict:
    """``opt`` with λ_T and λ_C under their deprecated names ``train.csd.lambda_t`` and ``train.csd.lambda_c``."""
    train = opt['train']
    train['csd'].update(
        lambda_t=train.pop('teacher_pixel_opt')['loss_weight'], lambda_c=train['contrastive_opt'].pop('loss_weight'))
    return opt


@contextlib.contextmanager
def basicsr_warnings(caplog):
    """basicsr's logger does not propagate: hand its records to caplog."""
    logger = logging.getLogger('basicsr')
    logger.addHandler(caplog.handler)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)


def train_steps(tmp_path, monkeypatch, opt: dict, steps: int = 3) -> dict:
    """The student weights and last logged losses after ``steps`` optimizer steps of a model built in this process."""
    tmp_path.mkdir()
    model, parsed = build(tmp_path, monkeypatch, opt)
    for step, batch in enumerate(train_batches(parsed, steps), start=1):
        model.update_learning_rate(step, warmup_iter=-1)
        model.feed_data(batch)
        model.optimize_parameters(step)
    return {**model.net_g.state_dict(), **{k: torch.tensor(v) for k, v in model.log_dict.items()}}


def test_deprecated_weight_names_train_bitwise_as_the_new_ones(tmp_path, monkeypatch, tiny_lmdbs, caplog):
    """λ_T = 0.5 and λ_C = 200 given as ``train.csd.lambda_t`` / ``lambda_c`` and as ``teacher_pixel_opt`` /
    ``contrastive_opt.loss_weight``: the same weights and losses, bit for bit, and a warning naming each new option."""
    new = csd_options(tiny_lmdbs, name='new_names', teacher_weight=0.5)
    with basicsr_warnings(caplog):
        old = train_steps(tmp_path / 'old', monkeypatch, old_weight_names(csd_options(tiny_lmdbs, teacher_weight=0.5)))
    assert 'train.csd.lambda_t is deprecated and will be removed: write train.teacher_pixel_opt.loss_weight: 0.5' in \
        caplog.text
    assert 'train.csd.lambda_c is deprecated and will be removed: write train.contrastive_opt.loss_weight: 200.0' in \
        caplog.text
    now = train_steps(tmp_path / 'new', monkeypatch, new)
    assert old.keys() == now.keys() and all(torch.equal(old[k], now[k]) for k in old)


def test_an_old_and_a_new_weight_name_together_are_refused(tmp_path, monkeypatch, tiny_lmdbs):
    opt = csd_options(tiny_lmdbs, name='both', contrastive_weight=0)
    opt['train']['csd']['lambda_c'] = 0.5
    with pytest.raises(
            ValueError, match=r'train\.csd\.lambda_c and train\.contrastive_opt\.loss_weight are both given'):
        build(tmp_path, monkeypatch, opt)
    opt = old_weight_names(csd_options(tiny_lmdbs, name='relative'))
    opt['train']['pixel_opt']['loss_weight'] = 2.0  # λ_T is relative to the student's term
    opt['train']['contrastive_opt']['loss_weight'] = 0  # and no VGG
    del opt['train']['csd']['lambda_c']
    model, _ = build(tmp_path, monkeypatch, opt)
    assert model.cri_pix_t.loss_weight == 2.0 and model.cri_csd is None


def test_csd_model_errors(tmp_path, monkeypatch, tiny_lmdbs):
    opt = csd_options(tiny_lmdbs, name='too_many_negatives')
    opt['train']['contrastive_opt']['num_negatives'] = 4
    with pytest.raises(ValueError, match='num_negatives is 4 but a batch of 4 gives each anchor only 3 negatives'):
        build(tmp_path, monkeypatch, opt)
    with pytest.raises(ValueError, match=r'leaves the 8 channels of conv_first with 0 channels'):
        build(tmp_path, monkeypatch, csd_options(tiny_lmdbs, name='zero_channels', width_mult=0.1))
    opt = csd_options(tiny_lmdbs, name='not_slimmable')
    opt['network_g']['type'] = 'EDSR'
    with pytest.raises(ValueError, match='CSDModel needs a slimmable network_g'):
        build(tmp_path, monkeypatch, opt)


def read_log(cwd, name: str) -> str:
    return ''.join(open(p).read() for p in sorted(glob.glob(str(cwd / 'experiments' / name / 'train_*.log'))))


def test_csd_training_through_the_cli_and_extraction(tmp_path, tiny_lmdbs):
    opt = csd_options(tiny_lmdbs, name='csd_cli')
    yml = write_yaml(tmp_path / 'csd.yml', opt)
    run_module('kdplugins.train', '-opt', str(yml), cwd=tmp_path)
    log = read_log(tmp_path, 'csd_cli')
    assert len(re.findall(r'l_pix: [0-9.e+-]+ l_pix_t: [0-9.e+-]+ l_csd: [0-9.e+-]+', log)) == 4
    assert 'vgg_weights is "random"' in log
    # the teacher under its own metric names at every validation; no dataset renamed
    assert len(re.findall(r'Teacher \(width 1\.0\) on tiny_val: psnr: [0-9.]+', log)) == 3
    assert 'tiny_val_teacher' not in log
    assert len(re.findall(r'Validation tiny_val\n\t # psnr: [0-9.]+', log)) == 3
    checkpoint = tmp_path / 'experiments' / 'csd_cli' / 'models' / 'net_g_4.pth'
    out = tmp_path / 'student.pth'
    result = run_script('scripts/extract_csd_student.py', '-opt', str(yml), '--checkpoint', str(checkpoint), '--out',
                        str(out), '--input-size', '16', '--repeat', '1', '--warmup', '0')
    assert re.search(r'max abs difference: [0-9.e+-]+ \(< 1e-05\)', result.stdout), result.stdout
    assert re.search(r'compression: [0-9.]+x', result.stdout) and re.search(r'speed-up: [0-9.]+x', result.stdout)
    student_opt = yaml.safe_load(out.with_suffix('.yml').read_text())
    assert student_opt == {
        **TINY_SLIM_EDSR, 'type': 'EDSR',
        'num_feat': 4,
        'res_scale': 1,
        'img_range': 255.0,
        'rgb_mean': [0.4488, 0.4371, 0.404]
    }
    student = build_network(student_opt)
    student.load_state_dict(torch.load(out)['params'], strict=True)


def test_two_process_torchrun_keeps_ranks_bitwise_equal(tmp_path, tiny_lmdbs):
    opt = csd_options(tiny_lmdbs, name='csd_ddp', train_opt={'check_rank_sync': True})
    yml = write_yaml(tmp_path / 'csd_ddp.yml', opt)
    alive = tmp_path / 'ddp_alive_at_shutdown.txt'
    result = run_module(
        'kdplugins.train',
        '-opt',
        str(yml),
        '--launcher',
        'pytorch',
        cwd=tmp_path,
        torchrun=2,
        wrapper=['run_counting_ddp_at_shutdown.py', str(alive)])
    # the DDP wrapper (and the gloo group it holds) is freed before the group is destroyed, not during interpreter
    # finalization, where gloo's threads aborted a rank now and then
    assert sorted(alive.read_text().split('\n')[:-1]) == ['0 0', '1 0']
    log = read_log(tmp_path, 'csd_ddp')
    assert 'World size (gpu number): 2' in log
    digests = re.findall(r'Rank weight digests at iter (-?\d+): ([0-9a-f]{64}) ([0-9a-f]{64})', log)
    assert [d[0] for d in digests] == ['2', '4', '-1'], result.stderr[-3000:]
    assert all(rank0 == rank1 for _, rank0, rank1 in digests)
    assert digests[0][1] != digests[1][1]
