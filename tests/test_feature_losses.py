"""AT, FAKD and RKD against direct computations of their formulas, their errors, all feature losses in one KDModel,
and the CRD / FeatureKD option files."""
import itertools
import math
import pytest
import torch
import yaml
from basicsr.archs import build_network
from conftest import REPO, build, kd_options, save_teacher, train_batches
from pathlib import Path

from kdplugins.distill.recorder import FeatureRecorder
from kdplugins.losses.at_loss import ATLoss
from kdplugins.losses.fakd_loss import FAKDLoss
from kdplugins.losses.rkd_loss import RKDLoss
from kdplugins.models.kd_model import KDModel


def huber(a: float, b: float) -> float:
    """Smooth L1 / Huber with delta 1 (RKD Eq. 5)."""
    d = abs(a - b)
    return 0.5 * d * d if d < 1 else d - 0.5


def test_attention_transfer_equals_direct_computation():
    torch.manual_seed(0)
    student, teacher = torch.randn(3, 4, 5, 6).double(), torch.randn(3, 9, 5, 6).double()
    loss = ATLoss(loss_weight=7.0)(student, teacher)
    total = 0.0
    for b in range(3):
        maps = []
        for feat in (student[b], teacher[b]):
            q = [
                sum(float(feat[c, y, x])**2 for c in range(feat.shape[0])) / feat.shape[0] for y in range(5)
                for x in range(6)
            ]
            norm = math.sqrt(sum(v * v for v in q))
            maps.append([v / norm for v in q])
        total += sum((s - t)**2 for s, t in zip(*maps))
    assert float(loss) == pytest.approx(7.0 * total / (3 * 30), rel=1e-10)


@pytest.mark.parametrize('criterion', ['l1', 'l2'])
def test_fakd_equals_direct_computation(criterion):
    torch.manual_seed(1)
    student, teacher = torch.randn(2, 3, 2, 3).double(), torch.randn(2, 5, 2, 3).double()
    loss = FAKDLoss(loss_weight=10.0, criterion=criterion)(student, teacher)
    total = 0.0
    for b in range(2):
        affinities = []
        for feat in (student[b], teacher[b]):
            vectors = [feat[:, y, x] for y in range(2) for x in range(3)]
            unit = [v / (float(v.norm()) + 1e-7) for v in vectors]
            affinities.append([[float(u @ w) for w in unit] for u in unit])
        for row_s, row_t in zip(*affinities):
            for s, t in zip(row_s, row_t):
                total += abs(s - t) if criterion == 'l1' else (s - t)**2
    assert float(loss) == pytest.approx(10.0 * total / (2 * 6 * 6), rel=1e-10)


def test_rkd_equals_direct_computation_on_pooled_vectors():
    torch.manual_seed(2)
    student, teacher = torch.randn(4, 3, 2, 2).double(), torch.randn(4, 6, 2, 2).double()
    loss = RKDLoss(distance_weight=25.0, angle_weight=50.0, loss_weight=2.0)(student, teacher)
    vectors = [feat.mean(dim=(2, 3)) for feat in (student, teacher)]  # global average pooling
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    distances = [[float((v[i] - v[j]).norm()) for i, j in pairs] for v in vectors]
    psi_d = [[d / (sum(ds) / len(ds)) for d in ds] for ds in distances]
    distance_term = sum(huber(s, t) for s, t in zip(*psi_d)) / len(pairs)
    triplets = [t for t in itertools.permutations(range(4), 3)]

    def cosine(v, i, j, k):
        e_ij, e_kj = v[i] - v[j], v[k] - v[j]
        return float(e_ij @ e_kj) / float(e_ij.norm() * e_kj.norm())

    psi_a = [[cosine(v, i, j, k) for i, j, k in triplets] for v in vectors]
    angle_term = sum(huber(s, t) for s, t in zip(*psi_a)) / len(triplets)
    assert float(loss) == pytest.approx(2.0 * (25 * distance_term + 50 * angle_term), rel=1e-10)


def test_rkd_is_invariant_to_the_scale_of_the_features_and_zero_for_equal_relations():
    torch.manual_seed(3)
    feat = torch.randn(5, 4, 3, 3)
    assert float(RKDLoss()(feat, 3 * feat)) == pytest.approx(0.0, abs=1e-6)
    assert float(RKDLoss()(feat, torch.randn(5, 4, 3, 3))) > 0


def test_clear_errors_of_the_feature_losses():
    with pytest.raises(ValueError, match='ATLoss needs features of the same spatial size'):
        ATLoss()(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match='FAKDLoss needs features of the same spatial size'):
        FAKDLoss()(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 5))
    with pytest.raises(ValueError, match="FAKDLoss criterion must be 'l1'"):
        FAKDLoss(criterion='cosine')
    with pytest.raises(ValueError, match='RKDLoss relates the samples of a batch: it needs at least 3'):
        RKDLoss()(torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4))


def test_one_kd_model_trains_every_feature_loss_with_its_connector(tmp_path, monkeypatch, tiny_lmdbs):
    teacher_path = save_teacher(tmp_path / 'teacher.pth')
    feature_losses = [{
        'type': name,
        'student_layer': 'body.0',
        'teacher_layer': 'body.1'
    } for name in ('FitNetLoss', 'ATLoss', 'FAKDLoss', 'RKDLoss')]
    opt = kd_options(tiny_lmdbs, teacher_path, feature_losses=feature_losses)
    del opt['train']['pixel_opt'], opt['train']['kd_opt']
    model, parsed = build(tmp_path, monkeypatch, opt)
    model.feed_data(train_batches(parsed, 1)[0])
    model.optimizer_g.zero_grad()
    losses = model.compute_losses(1)
    assert list(losses) == ['l_FitNetLoss', 'l_ATLoss', 'l_FAKDLoss', 'l_RKDLoss']
    for name, loss in losses.items():
        model.optimizer_g.zero_grad()
        loss.backward(retain_graph=True)
        grad = model.net_g.body[0].conv1.weight.grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert all(p.grad is None and not p.requires_grad for p in model.net_t.parameters())
    regressor = model.distill_modules['l_FitNetLoss'].regressor
    optimized = {id(p) for group in model.optimizer_g.param_groups for p in group['params']}
    assert {id(regressor.weight), id(regressor.bias)} <= optimized


OPTION_FILES = sorted((REPO / 'options' / 'train').glob('CRD/*.yml')) + sorted(
    (REPO / 'options' / 'train').glob('FeatureKD/*.yml'))
KD_TWIN = REPO / 'options' / 'train' / 'AugKD' / 'train_KD_RFDN_EDSR_x4.yml'


def read_options(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_option_files_exist_for_crd_and_every_baseline():
    names = {path.name for path in OPTION_FILES}
    crd_files = {'train_CRD_RFDN_EDSR_x4.yml', 'bench_CRD_RFDN_EDSR_x4_small.yml', 'bench_KD_RFDN_EDSR_x4_small.yml'}
    assert crd_files <= names
    for method in ('FitNet', 'AT', 'FAKD', 'RKD'):
        assert f'train_{method}_RFDN_EDSR_x4.yml' in names


@pytest.mark.parametrize('path', [p for p in OPTION_FILES if p.name.startswith('train_')], ids=lambda p: p.name)
def test_training_option_files_are_the_kd_twin_plus_feature_losses(path):
    """Same student, teacher, data, patch, batch and schedule as the plain-KD twin: only the feature losses differ,
    and FAKD's pixel / KD weights (0.5 / 0.5 with three taps, as the official FAKD code)."""
    opt, twin = read_options(path), read_options(KD_TWIN)
    feature_losses = opt['train'].pop('feature_losses')
    fakd = feature_losses[0]['type'] == 'FAKDLoss'
    assert len(feature_losses) == (3 if fakd else 1)
    weights = [opt['train'][key].pop('loss_weight') for key in ('pixel_opt', 'kd_opt')]
    assert weights == ([0.5, 0.5] if fakd else [twin['train'][key]['loss_weight'] for key in ('pixel_opt', 'kd_opt')])
    for key in ('pixel_opt', 'kd_opt'):
        twin['train'][key].pop('loss_weight')
    dataset_type = opt['datasets']['train'].pop('type')
    assert dataset_type == ('PairedImageDatasetWithIndex'
                            if feature_losses[0]['type'] == 'CRDLoss' else 'PairedImageDataset')
    twin['datasets']['train'].pop('type')
    for key in ('name', ):
        opt.pop(key), twin.pop(key)
    assert opt == twin


@pytest.mark.parametrize('path', [p for p in OPTION_FILES if 'feature_losses' in p.read_text()], ids=lambda p: p.name)
def test_option_files_tap_existing_layers_and_their_losses_run(path):
    opt = read_options(path)
    student, teacher = build_network(dict(opt['network_g'])), build_network(dict(opt['network_t']))
    loss_opts = opt['train']['feature_losses']
    recorders = [
        FeatureRecorder(student, [o['student_layer'] for o in loss_opts]),
        FeatureRecorder(teacher, [o['teacher_layer'] for o in loss_opts])
    ]
    with torch.no_grad():
        lq = torch.rand(3, 3, 24, 24)
        with recorders[0].recording() as student_features:
            out_s = student(lq)
        with recorders[1].recording() as teacher_features:
            out_t = teacher(lq)
        assert out_s.shape == out_t.shape == (3, 3, 96, 96)
    for loss_opt in loss_opts:
        feat_s = student_features[loss_opt['student_layer']]
        feat_t = teacher_features[loss_opt['teacher_layer']]
        assert feat_s.shape[-2:] == feat_t.shape[-2:] == (24, 24)
        available = {
            'student_channels': lambda: feat_s.shape[1],
            'teacher_channels': lambda: feat_t.shape[1],
            'num_train_images': lambda: 1292
        }
        loss = KDModel.build_feature_loss(loss_opt, available)
        kwargs = {'index': torch.tensor([0, 5, 1291])} if loss_opt['type'] == 'CRDLoss' else {}
        assert torch.isfinite(loss(feat_s, feat_t, **kwargs))
