"""CRDLoss: the objective and the memory banks against direct computations, negatives, errors, and training through
KDModel (gradients, torchrun with 2 processes, resume)."""
import glob
import math
import pytest
import re
import torch
from conftest import build, kd_options, run_module, save_teacher, train_batches, write_yaml

from kdplugins.losses.crd_loss import CRDLoss, draw_contrast_indices, last_occurrence, momentum_update

TINY = {'n_data': 18, 'feat_dim': 16, 'nce_k': 8}  # the tiny_lmdbs training set has 18 pairs


def crd_options(**options) -> list:
    return [{'type': 'CRDLoss', 'student_layer': 'body.0', 'teacher_layer': 'body.1', **TINY, **options}]


@pytest.fixture(scope='module')
def teacher_path(tmp_path_factory):
    return save_teacher(tmp_path_factory.mktemp('teacher') / 'teacher.pth')


def direct_embedding(head, feat: torch.Tensor) -> torch.Tensor:
    vector = feat.double().mean(dim=(2, 3)) @ head.linear.weight.double().t() + head.linear.bias.double()
    return vector / vector.norm(dim=1, keepdim=True)


def direct_nce(anchors, memory, contrast, n_data, nce_t, z=None):
    """Minus Eq. 18 with h = P / (P + K/M), P = exp(<m_j, a>/tau) / Z, written sample by sample in float64."""
    anchors = anchors.detach()
    scores = [[math.exp(float(memory[j].double() @ anchors[b]) / nce_t) for j in contrast[b].tolist()]
              for b in range(len(anchors))]
    if z is None:  # first batch: Z = M * mean of the scores
        z = n_data * sum(map(sum, scores)) / sum(map(len, scores))
    k = contrast.shape[1] - 1
    total = 0.0
    for row in scores:
        h = [p / z / (p / z + k / n_data) for p in row]
        total -= math.log(h[0]) + sum(math.log(1 - x) for x in h[1:])
    return total / len(scores), z


def test_loss_and_memory_update_equal_direct_computation():
    torch.manual_seed(0)
    crd = CRDLoss(student_channels=5, teacher_channels=7, **TINY, nce_t=0.07, nce_m=0.5, loss_weight=0.8)
    z_values = None
    for step in range(2):  # the first step sets Z, the second uses it
        student, teacher = torch.randn(4, 5, 3, 3), torch.randn(4, 7, 3, 3)
        index = torch.tensor([3, 0, 17, 9]) if step == 0 else torch.tensor([5, 3, 11, 2])
        memory_s, memory_t = crd.memory_s.clone(), crd.memory_t.clone()
        contrast = draw_contrast_indices(index, 18, 8, torch.Generator().manual_seed(step))
        loss = crd(student, teacher, index=index, generator=torch.Generator().manual_seed(step))
        emb_s, emb_t = direct_embedding(crd.embed_s, student), direct_embedding(crd.embed_t, teacher)
        loss_s, z_s = direct_nce(emb_s, memory_t, contrast, 18, 0.07, z_values and z_values[0])
        loss_t, z_t = direct_nce(emb_t, memory_s, contrast, 18, 0.07, z_values and z_values[1])
        z_values = z_values or (z_s, z_t)
        assert crd.normalizer.tolist() == pytest.approx(list(z_values), rel=1e-5)
        assert float(loss.detach()) == pytest.approx(0.8 * (loss_s + loss_t), rel=1e-5)
        for memory, before, emb in ((crd.memory_s, memory_s, emb_s), (crd.memory_t, memory_t, emb_t)):
            expected = before.double().clone()
            for b, i in enumerate(index.tolist()):
                mixed = 0.5 * before[i].double() + 0.5 * emb[b]
                expected[i] = mixed / mixed.norm()
            assert torch.allclose(memory.double(), expected, atol=1e-6)
            untouched = [i for i in range(18) if i not in index.tolist()]
            assert torch.equal(memory[untouched], before[untouched])


def test_memory_update_uses_the_last_occurrence_of_a_repeated_index():
    memory = torch.randn(6, 4)
    before = memory.clone()
    index = torch.tensor([2, 5, 2, 0, 5, 2])
    embeddings = torch.randn(6, 4)
    assert last_occurrence(index).tolist() == [False, False, False, True, True, True]
    momentum_update(memory, index, embeddings, 0.7)
    for row, last in ((2, 5), (5, 4), (0, 3)):
        mixed = 0.7 * before[row] + 0.3 * embeddings[last]
        assert torch.allclose(memory[row], mixed / mixed.norm(), atol=1e-6)
    assert torch.equal(memory[[1, 3, 4]], before[[1, 3, 4]])


def test_negatives_are_uniform_over_the_other_rows_and_never_the_positive():
    n_data, nce_k = 7, 6000
    index = torch.arange(n_data)
    contrast = draw_contrast_indices(index, n_data, nce_k, torch.Generator().manual_seed(3))
    assert contrast.shape == (n_data, 1 + nce_k) and torch.equal(contrast[:, 0], index)
    negatives = contrast[:, 1:]
    assert not (negatives == index[:, None]).any()
    assert negatives.min() >= 0 and negatives.max() < n_data
    for i in range(n_data):
        counts = torch.bincount(negatives[i], minlength=n_data).double()
        others = torch.cat([counts[:i], counts[i + 1:]])
        expected = nce_k / (n_data - 1)  # 1000; binomial sd about 29
        assert counts[i] == 0 and (others - expected).abs().max() < 150, counts.tolist()


def test_loss_falls_when_student_embeddings_move_towards_the_teacher():
    torch.manual_seed(1)
    n_data = 32
    crd = CRDLoss(student_channels=6, teacher_channels=10, n_data=n_data, feat_dim=16, nce_k=16)
    teacher = torch.randn(n_data, 10, 2, 2)
    student = torch.randn(n_data, 6, 2, 2, requires_grad=True)
    optimizer = torch.optim.Adam([student, *crd.parameters()], lr=0.05)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        before = (crd.embed_s(student) @ crd.embed_t(teacher).t()).argmax(dim=1)
    epoch_losses = []
    for epoch in range(30):
        total = 0.0
        for index in torch.randperm(n_data, generator=generator).view(4, 8):
            loss = crd(student[index], teacher[index], index=index, generator=generator)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        epoch_losses.append(total / 4)
    assert epoch_losses[-1] < 0.2 * epoch_losses[0], epoch_losses
    with torch.no_grad():
        after = (crd.embed_s(student) @ crd.embed_t(teacher).t()).argmax(dim=1)
    # the teacher embedding nearest to each student embedding: its own (it was not before)
    assert (before == torch.arange(n_data)).sum() <= 2 and torch.equal(after, torch.arange(n_data))


def test_nce_k_and_n_data_errors():
    with pytest.raises(ValueError, match=r'nce_k 18 >= n_data 18: .*nce_k_cap: true'):
        CRDLoss(4, 4, n_data=18, nce_k=18)
    assert CRDLoss(4, 4, n_data=18, nce_k=16384, nce_k_cap=True).nce_k == 17
    with pytest.raises(ValueError, match='n_data: auto needs the number of training images'):
        CRDLoss(4, 4, nce_k=8)
    assert CRDLoss(4, 4, num_train_images=10, nce_k=8).memory_s.shape == (10, 128)
    crd = CRDLoss(4, 4, n_data=10, nce_k=8)
    with pytest.raises(ValueError, match='dataset index 12 is outside the memory bank of n_data 10 rows'):
        crd(torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3), index=torch.tensor([1, 12]))


def test_gradients_reach_the_student_and_both_heads_never_the_teacher(tmp_path, monkeypatch, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, feature_losses=crd_options())
    del opt['train']['pixel_opt'], opt['train']['kd_opt']  # the CRD term alone
    model, parsed = build(tmp_path, monkeypatch, opt)
    crd = model.distill_modules['l_CRDLoss']
    banks = crd.memory_s.clone(), crd.memory_t.clone()
    batch = train_batches(parsed, 1)[0]
    model.feed_data(batch)
    model.optimizer_g.zero_grad()
    loss = model.compute_losses(1)['l_CRDLoss']
    loss.backward()
    for name in ('conv_first.weight', 'body.0.conv1.weight', 'body.0.conv2.bias'):
        grad = dict(model.net_g.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    for head in (crd.embed_s, crd.embed_t):
        assert head.linear.weight.grad.abs().sum() > 0 and head.linear.bias.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in model.net_t.parameters())
    assert crd.memory_s.grad is None and not crd.memory_s.requires_grad
    changed = batch['index'].tolist()
    assert not torch.equal(crd.memory_s[changed], banks[0][changed])
    assert not torch.equal(crd.memory_t[changed], banks[1][changed])
    assert (crd.normalizer > 0).all()


def test_clear_errors_for_a_dataset_without_index_and_unknown_layers(tmp_path, monkeypatch, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, feature_losses=crd_options())
    opt['datasets']['train']['type'] = 'PairedImageDataset'
    model, parsed = build(tmp_path, monkeypatch, opt)
    model.feed_data(train_batches(parsed, 1)[0])
    with pytest.raises(ValueError, match='set datasets.train.type to PairedImageDatasetWithIndex'):
        model.optimize_parameters(1)
    opt = kd_options(tiny_lmdbs, teacher_path, feature_losses=crd_options(student_layer='body.7'))
    with pytest.raises(KeyError, match=r"student \(network_g\) has no module named 'body.7'. Close names: body.0"):
        build(tmp_path, monkeypatch, opt)


def train(cwd, opt: dict, *args: str, torchrun: int = 0):
    yml = write_yaml(cwd / f'{opt["name"]}.yml', opt)
    return run_module('kdplugins.train', '-opt', str(yml), *args, cwd=cwd, torchrun=torchrun)


def read_log(cwd, name: str) -> str:
    return ''.join(open(p).read() for p in sorted(glob.glob(str(cwd / 'experiments' / name / 'train_*.log'))))


def training_state(cwd, name: str, it: int) -> dict:
    return torch.load(cwd / 'experiments' / name / 'training_states' / f'{it}.state', weights_only=False)


def test_two_process_torchrun_keeps_banks_and_z_identical(tmp_path, tiny_lmdbs, teacher_path):
    """Batch 2 per rank, dataset_enlarge_ratio 2: an index can come twice in one step (from either rank)."""
    opt = kd_options(
        tiny_lmdbs,
        teacher_path,
        name='crd_ddp',
        total_iter=4,
        check_rank_sync=True,
        feature_losses=crd_options(n_data='auto'))
    opt['datasets']['train'].update(batch_size_per_gpu=2, dataset_enlarge_ratio=2)
    result = train(tmp_path, opt, '--launcher', 'pytorch', torchrun=2)
    log = read_log(tmp_path, 'crd_ddp')
    assert 'World size (gpu number): 2' in log
    digests = re.findall(r'Rank weight digests at iter (-?\d+): ([0-9a-f]{64}) ([0-9a-f]{64})', log)
    assert [d[0] for d in digests] == ['2', '4', '-1'], result.stderr[-3000:]
    assert all(rank0 == rank1 for _, rank0, rank1 in digests)  # student, heads, banks and Z of both ranks
    assert log.count('CRDLoss: normalisation constants set from the first batch') == 1
    states = [training_state(tmp_path, 'crd_ddp', it)['distill_modules'] for it in (2, 4)]
    assert states[0]['l_CRDLoss.memory_s'].shape == (18, 16)  # n_data: auto took the 18 training pairs
    assert torch.equal(states[0]['l_CRDLoss.normalizer'], states[1]['l_CRDLoss.normalizer'])
    assert (states[1]['l_CRDLoss.normalizer'] > 0).all()
    for key in ('l_CRDLoss.memory_s', 'l_CRDLoss.memory_t'):
        updated = [(state[key].norm(dim=1) - 1).abs() < 1e-5 for state in states]  # initial rows are not unit
        assert 0 < int(updated[0].sum()) < int(updated[1].sum()), key
        assert not torch.equal(states[0][key], states[1][key])


def test_resume_repeats_an_uninterrupted_run_with_the_banks(tmp_path, tiny_lmdbs, teacher_path):
    opt = kd_options(tiny_lmdbs, teacher_path, name='crd_resume', total_iter=4, feature_losses=crd_options())
    opt['val']['val_freq'] = 100
    straight, resumed = tmp_path / 'straight', tmp_path / 'resumed'
    straight.mkdir(), resumed.mkdir()
    train(straight, opt)
    train(resumed, opt, '--force_yml', 'train:total_iter=2')
    train(resumed, opt, '--auto_resume')
    assert 'Resuming training from epoch: 0, iter: 2.' in read_log(resumed, 'crd_resume')
    students = [
        torch.load(d / 'experiments' / 'crd_resume' / 'models' / 'net_g_4.pth')['params'] for d in (straight, resumed)
    ]
    assert all(torch.equal(students[0][k], students[1][k]) for k in students[0])
    modules = [training_state(d, 'crd_resume', 4)['distill_modules'] for d in (straight, resumed)]
    assert modules[0].keys() == modules[1].keys()
    assert {'l_CRDLoss.memory_s', 'l_CRDLoss.memory_t', 'l_CRDLoss.normalizer'} <= modules[0].keys()
    for key in modules[0]:
        assert torch.equal(modules[0][key], modules[1][key]), key
