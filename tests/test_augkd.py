"""AugKD: invertible augmentations, zoom-in / zoom-out samples, the loss terms, training (1 and 2 processes)."""
import cv2
import itertools
import pytest
import re
import torch
from basicsr.utils.matlab_functions import imresize
from conftest import build, kd_options, run_module, save_teacher, train_batches, write_yaml

from kdplugins.distill.invertible_augment import OPERATIONS, InvertibleAugment
from kdplugins.distill.zoom import crop_origins, zoom_in, zoom_out
from kdplugins.models.augkd_model import DUKD_LABEL_CONSISTENCY

ALL_OPS = list(OPERATIONS)


def nearest_upscale(x: torch.Tensor) -> torch.Tensor:
    """A toy SR network equivariant to flips, rotations and colour inversion (pixel replication x2)."""
    return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)


@pytest.mark.parametrize('count', range(len(ALL_OPS) + 1))
def test_every_composition_is_inverted_exactly_on_non_square_tensors(count):
    augment = InvertibleAugment({name: 1.0 for name in ALL_OPS})
    x = torch.rand(2, 3, 5, 7)
    for chosen in itertools.combinations(range(len(ALL_OPS)), count):
        flags = torch.zeros(2, len(ALL_OPS), dtype=torch.bool)
        flags[:, list(chosen)] = True
        augmented = augment.apply(x, flags)
        assert torch.equal(augment.invert(augmented, flags), x), [ALL_OPS[i] for i in chosen]
        assert torch.equal(augment.invert(nearest_upscale(augmented), flags), nearest_upscale(x))


def test_per_sample_compositions_match_applying_each_sample_alone():
    augment = InvertibleAugment({name: 0.5 for name in ALL_OPS})
    generator = torch.Generator().manual_seed(3)
    x = torch.rand(64, 3, 6, 6)
    flags = augment.draw(64, generator)
    augmented = augment.apply(x, flags)
    for sample in range(64):
        expected = x[sample]
        for name, drawn in zip(ALL_OPS, flags[sample]):
            if drawn:
                expected = OPERATIONS[name][0](expected)
        assert torch.equal(augmented[sample], expected)
    assert torch.equal(augment.invert(augmented, flags), x)
    # an inverse that re-applies the same operations in the same order is wrong for some compositions
    naive = augment.apply(augmented, flags)
    assert not torch.equal(naive, x)


def test_probabilities_of_the_draw():
    augment = InvertibleAugment({'hflip': 0.0, 'rot90': 1.0, 'invert': 0.25})
    flags = augment.draw(20000, torch.Generator().manual_seed(0))
    assert augment.names == ['hflip', 'rot90', 'invert']
    assert not flags[:, 0].any() and flags[:, 1].all()
    assert abs(flags[:, 2].double().mean().item() - 0.25) < 0.01


VALID = 'valid names: hflip, vflip, rot90, rot180, rot270, transpose, invert.'
HFLIP_ROTATE, INVERT, VFLIP = {'hflip': 0.5, 'rotate': 0.5}, {'invert': 1.5}, {'vflip': -0.1}
BAD_AUGMENTATIONS = [
    (HFLIP_ROTATE, f"Unknown augmentation(s) ['rotate'] in label_consistency; {VALID}"),
    (INVERT, 'label_consistency.invert: probability 1.5 is outside [0, 1].'),
    (VFLIP, 'label_consistency.vflip: probability -0.1 is outside [0, 1].'),
]


@pytest.mark.parametrize('probabilities, message', BAD_AUGMENTATIONS)
def test_bad_augmentation_options_are_named(probabilities, message):
    with pytest.raises(ValueError) as error:
        InvertibleAugment(probabilities)
    assert str(error.value) == message


def test_zoom_out_equals_basicsr_matlab_imresize(hr_images):
    image = cv2.imread(str(hr_images / 'astronaut.png'))[:, :, ::-1].astype('float32') / 255  # scikit-image's photo
    lq = torch.from_numpy(image[100:148, 200:260].copy()).permute(2, 0, 1)  # 48x60 [0, 1] RGB patch of the face
    batch = torch.stack([lq, torch.rand(3, 48, 60), lq.flip(-1)])
    for scale in (2, 3, 4):
        zoomed = zoom_out(batch, scale)
        expected = torch.stack([imresize(img, 1 / scale) for img in batch])
        assert zoomed.shape == expected.shape == (3, 3, 48 // scale, 60 // scale)
        assert (zoomed - expected).abs().max().item() < 1e-5


@pytest.mark.parametrize('non_overlapping', [False, True])
def test_zoom_in_crops_lie_inside_the_hr_patch_and_have_the_lr_size(non_overlapping):
    generator = torch.Generator().manual_seed(1)
    gt = torch.rand(5, 3, 24, 36)  # HR of a 8x12 LR patch at x3
    origins = crop_origins(5, 4, (24, 36), (8, 12), generator, non_overlapping)
    crops = zoom_in(gt, origins, (8, 12))
    assert crops.shape == (4 * 5, 3, 8, 12)
    for crop_index, sample in itertools.product(range(4), range(5)):
        top, left = origins[sample, crop_index].tolist()
        assert 0 <= top <= 16 and 0 <= left <= 24
        assert torch.equal(crops[crop_index * 5 + sample], gt[sample, :, top:top + 8, left:left + 12])
    if non_overlapping:
        assert all(len(set(map(tuple, origins[s].tolist()))) == 4 for s in range(5))
        assert (origins[..., 0] % 8 == 0).all() and (origins[..., 1] % 12 == 0).all()
    with pytest.raises(ValueError, match='n_zoom_in 10 non-overlapping crops'):
        crop_origins(5, 10, (24, 36), (8, 12), generator, non_overlapping=True)


# ----------------------------------------------------------------------------------------------------------------
# AugKDModel
@pytest.fixture(scope='module')
def teacher_path(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp('augkd_teacher') / 'teacher.pth')


def augkd_options(lmdbs, teacher_path, name='augkd', total_iter=4, **augkd) -> dict:
    opt = kd_options(lmdbs, teacher_path, name=name, total_iter=total_iter)
    opt['model_type'] = 'AugKDModel'
    opt['train']['augkd'] = {'n_zoom_in': 2, **augkd}
    opt['train']['augkd_opt'] = {'type': 'L1Loss', 'loss_weight': 0.7}
    return opt


DEFAULT_SET = {'hflip': 0.5, 'vflip': 0.5, 'rot90': 0.5, 'invert': 0.5}


def direct_losses(model, lq, gt, generator_state, augmentations=DEFAULT_SET, samples=('zoom_in', 'zoom_out')) -> dict:
    """Eq. 1-4 computed sample by sample, with the random draws of the model's generator replayed (``augmentations``
    in the order of OPERATIONS, on the auxiliary ``samples`` only)."""
    rng = torch.Generator().manual_seed(0)
    rng.set_state(generator_state)
    student, teacher = model.net_g, model.net_t
    names = list(augmentations)
    probabilities = torch.tensor([augmentations[n] for n in names], dtype=torch.float64)

    def draw(count: int, kind: str) -> torch.Tensor:
        if kind not in samples:
            return torch.zeros(count, len(names), dtype=torch.bool)
        return torch.rand(count, len(names), generator=rng, dtype=torch.float64) < probabilities

    def student_on(sample: torch.Tensor, drawn) -> torch.Tensor:
        x = sample[None]
        for name, on in zip(names, drawn):
            x = OPERATIONS[name][0](x) if on else x
        y = student(x)
        for name, on in reversed(list(zip(names, drawn))):
            y = OPERATIONS[name][1](y) if on else y
        return y[0]

    batch, scale, h = lq.size(0), 2, lq.size(-1)
    lq_zo = torch.stack([imresize(img, 1 / scale) for img in lq])
    flags_zo = draw(batch, 'zoom_out')
    out_zo = torch.stack([student_on(lq_zo[b], flags_zo[b]) for b in range(batch)])
    tops = torch.randint(0, 2 * h - h + 1, (batch, 2), generator=rng)
    lefts = torch.randint(0, 2 * h - h + 1, (batch, 2), generator=rng)
    crops = [gt[b, :, tops[b, k]:tops[b, k] + h, lefts[b, k]:lefts[b, k] + h] for k in range(2) for b in range(batch)]
    flags_zi = draw(2 * batch, 'zoom_in')
    out_zi = torch.stack([student_on(crop, flags_zi[i]) for i, crop in enumerate(crops)])
    teacher_zi = torch.stack([teacher(crop[None])[0] for crop in crops])
    out = student(lq)
    return {
        'l_pix_zo': (out_zo - lq).abs().mean(),
        'l_augkd_zo': 0.7 * (out_zo - teacher(lq_zo)).abs().mean(),
        'l_pix': (out - gt).abs().mean(),
        'l_kd': 0.5 * (out - teacher(lq)).abs().mean(),
        'l_augkd_zi': 0.7 * (out_zi - teacher_zi).abs().mean(),
    }


@pytest.mark.parametrize('preset', ['default', 'dukd'])
def test_loss_terms_are_eq_1_to_4(tmp_path, monkeypatch, tiny_lmdbs, teacher_path, preset):
    """With the default label consistency, and with DUKD's (inversion, flips, transpose at 0.3, zoom-in only)."""
    augkd = {} if preset == 'default' else DUKD_LABEL_CONSISTENCY
    model, parsed = build(tmp_path, monkeypatch, augkd_options(tiny_lmdbs, teacher_path, **augkd))
    batch = train_batches(parsed, 1)[0]
    model.feed_data(batch)
    state = model.rng.get_state()
    losses = model.compute_losses(1)
    assert list(losses) == ['l_pix_zo', 'l_augkd_zo', 'l_pix', 'l_kd', 'l_augkd_zi']
    if preset == 'default':
        expected = direct_losses(model, batch['lq'], batch['gt'], state)
    else:  # the order of OPERATIONS: hflip, vflip, transpose, invert
        ordered = {'hflip': 0.3, 'vflip': 0.3, 'transpose': 0.3, 'invert': 0.3}
        expected = direct_losses(model, batch['lq'], batch['gt'], state, ordered, samples=('zoom_in', ))
    for name, value in expected.items():
        assert torch.allclose(losses[name], value, rtol=1e-5, atol=1e-7), (name, losses[name], value)


def test_gradients_reach_only_the_student(tmp_path, monkeypatch, tiny_lmdbs, teacher_path):
    model, parsed = build(tmp_path, monkeypatch, augkd_options(tiny_lmdbs, teacher_path))
    teacher_before = {k: v.clone() for k, v in model.net_t.state_dict().items()}
    student_before = {k: v.clone() for k, v in model.net_g.state_dict().items()}
    for i, batch in enumerate(train_batches(parsed, 2), start=1):
        model.feed_data(batch)
        model.optimize_parameters(i)
    assert all(p.grad is None and not p.requires_grad for p in model.net_t.parameters())
    assert all(torch.equal(v, model.net_t.state_dict()[k]) for k, v in teacher_before.items())
    assert all(p.grad is not None for p in model.net_g.parameters())
    assert all(not torch.equal(v, model.net_g.state_dict()[k]) for k, v in student_before.items())


@pytest.mark.parametrize('augkd, message', [
    ({
        'n_zoom_in': 5,
        'zoom_in_non_overlapping': True
    }, 'train.augkd.n_zoom_in is 5 but only scale^2 = 4'),
    ({
        'label_consistency': {
            'hflip': 0.5,
            'shear': 0.5
        }
    }, 'train.augkd.label_consistency.shear: unknown option. Valid options: hflip, invert,'),
    ({
        'label_consistency_samples': ['zoom_in', 'lr']
    }, "train.augkd.label_consistency_samples: 'lr' is not one of zoom_in, zoom_out."),
    ({
        'label_consistency': {
            'invert': 2
        }
    }, 'train.augkd.label_consistency.invert: 2 is above the maximum 1.'),
    ({
        'zoom_in': 1
    }, 'train.augkd.zoom_in: unknown option (did you mean n_zoom_in'),
])
def test_bad_augkd_options_are_named(tmp_path, monkeypatch, tiny_lmdbs, teacher_path, augkd, message):
    with pytest.raises(ValueError) as error:
        build(tmp_path, monkeypatch, augkd_options(tiny_lmdbs, teacher_path, **augkd))
    assert message in str(error.value)


def read_log(cwd, name: str) -> str:
    return ''.join(p.read_text() for p in sorted((cwd / 'experiments' / name).glob('train_*.log')))


def test_training_through_the_entry_point_skips_small_zoom_out_once(tmp_path, tiny_lmdbs, teacher_path):
    opt = augkd_options(tiny_lmdbs, teacher_path, name='augkd_cli', total_iter=3, zoom_out_min_size=9)
    run_module('kdplugins.train', '-opt', str(write_yaml(tmp_path / 'opt.yml', opt)), cwd=tmp_path)
    log = read_log(tmp_path, 'augkd_cli')
    assert log.count('AugKD: zoom-out skipped: the 16x16 LR patches zoomed out by 2') == 1
    terms = re.findall(r'l_pix: [0-9.e+-]+ l_kd: [0-9.e+-]+ l_augkd_zi: [0-9.e+-]+ \n', log)
    assert len(terms) == 3 and 'l_augkd_zo' not in log


def test_two_process_torchrun_keeps_ranks_bitwise_equal(tmp_path, tiny_lmdbs, teacher_path):
    opt = augkd_options(tiny_lmdbs, teacher_path, name='augkd_ddp', total_iter=4)
    opt['train']['check_rank_sync'] = True
    opt['datasets']['train']['batch_size_per_gpu'] = 2
    run_module(
        'kdplugins.train',
        '-opt',
        str(write_yaml(tmp_path / 'opt.yml', opt)),
        '--launcher',
        'pytorch',
        cwd=tmp_path,
        torchrun=2)
    log = read_log(tmp_path, 'augkd_ddp')
    digests = re.findall(r'Rank weight digests at iter (-?\d+): ([0-9a-f]{64}) ([0-9a-f]{64})', log)
    assert [d[0] for d in digests] == ['2', '4', '-1']
    assert all(rank0 == rank1 for _, rank0, rank1 in digests) and digests[0][1] != digests[1][1]
    assert len(re.findall(r'l_pix_zo: \S+ l_augkd_zo: \S+ l_pix: \S+ l_kd: \S+ l_augkd_zi: \S+', log)) == 4


@pytest.mark.parametrize('name', ['rot90', 'transpose'])
def test_mixed_quarter_turns_of_non_square_samples_are_refused(name):
    augment = InvertibleAugment({name: 0.5})
    flags = torch.tensor([[True], [False]])
    with pytest.raises(ValueError, match='Cannot rotate or transpose some samples of a batch of non-square'):
        augment.apply(torch.rand(2, 3, 4, 6), flags)
    assert torch.equal(augment.apply(torch.zeros(2, 3, 4, 6), torch.zeros_like(flags)), torch.zeros(2, 3, 4, 6))
