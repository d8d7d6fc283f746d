"""CRD: contrastive representation distillation (Tian et al., ICLR 2020), with memory banks that stay bitwise
identical on every rank under ``torch.distributed``.

Specification: ``crd_contrastive_representation_distillation.txt``, Sec. 3.1 (Eq. 10-19), Sec. 4.5 and 6.4. The
memory bank, the constant ``Z`` and the NCE form of Eq. 18 follow the paper's "Implementation" paragraph (a memory
buffer as in Wu et al. 2018) and the authors' reference code, as the issue asks; see docs/crd.md.
"""
import math
import torch
import torch.distributed as dist
from basicsr.utils import get_root_logger
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from typing import Optional, Union

from kdplugins.distill.connectors import EmbeddingHead
from kdplugins.losses.published_weights import CRD_WEIGHT_DEFAULT
from kdplugins.utils.registry import register

NCE_EPS = 1e-7  # added to the denominators of the NCE terms, as in the reference code


# ----------------------------------------------------------------------------------------------------------------
# options
def resolve_n_data(n_data: Union[int, str], num_train_images: Optional[int]) -> int:
    """``n_data`` (``M`` of Eq. 19, the number of memory-bank rows): an int, or ``'auto'`` for the size of the
    training dataset that KDModel passes as ``num_train_images``."""
    if n_data == 'auto':
        if num_train_images is None:
            raise ValueError('CRDLoss n_data: auto needs the number of training images, which KDModel passes when '
                             'the options have datasets.train. Without one set n_data to the number of images of the '
                             'dataset whose index the loss receives.')
        n_data = num_train_images
    if not isinstance(n_data, int) or isinstance(n_data, bool) or n_data < 2:
        raise ValueError(f'CRDLoss n_data must be auto or an integer >= 2 (one memory-bank row per training image); '
                         f'got {n_data!r}.')
    return n_data


def resolve_nce_k(nce_k: int, n_data: int, nce_k_cap: bool) -> int:
    """Number of negatives per sample (``N`` of Eq. 18); below ``n_data``, or capped to ``n_data - 1``."""
    if not isinstance(nce_k, int) or nce_k < 1:
        raise ValueError(f'CRDLoss nce_k must be a positive integer (negatives per sample); got {nce_k!r}.')
    if nce_k < n_data:
        return nce_k
    if not nce_k_cap:
        raise ValueError(f'CRDLoss nce_k {nce_k} >= n_data {n_data}: each sample needs nce_k negatives drawn from the '
                         f'other {n_data - 1} training images. Set nce_k below {n_data} (the paper finds 4096 enough '
                         'and uses 16384 on 50 000 CIFAR images), or set nce_k_cap: true to use n_data - 1.')
    get_root_logger().info(f'CRDLoss: nce_k {nce_k} >= n_data {n_data}; nce_k_cap: true, so nce_k = {n_data - 1}.')
    return n_data - 1


# ----------------------------------------------------------------------------------------------------------------
# the contrastive objective
def draw_contrast_indices(index: torch.Tensor,
                          n_data: int,
                          nce_k: int,
                          generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """``(B, 1 + nce_k)`` memory-bank rows: column 0 the positive (the sample's own ``index``), then ``nce_k``
    negatives drawn independently and uniformly among the other ``n_data - 1`` rows (with replacement), so never the
    positive: ``j ~ U{0 .. n_data - 2}`` and ``j + 1`` where ``j >= index``."""
    device = generator.device if generator is not None else index.device
    negatives = torch.randint(0, n_data - 1, (index.numel(), nce_k), generator=generator, device=device)
    negatives = negatives.to(index.device)
    negatives += (negatives >= index[:, None]).long()
    return torch.cat([index[:, None], negatives], dim=1)


def critic_scores(anchor: torch.Tensor, memory: torch.Tensor, contrast_index: torch.Tensor,
                  nce_t: float) -> torch.Tensor:
    """``exp(<m_j, a> / nce_t)`` for each anchor embedding ``a`` (B, d) and its memory rows ``m_j``,
    ``j`` in ``contrast_index`` (B, 1 + K): the numerator of the critic ``h`` of Eq. 19 (before dividing by ``Z``).
    The memory rows carry no gradient; the anchor does."""
    rows = memory[contrast_index]  # (B, 1 + K, d), a copy of the bank rows
    return torch.exp(torch.bmm(rows, anchor[:, :, None]).squeeze(2) / nce_t)


def nce_loss(scores: torch.Tensor, n_data: int) -> torch.Tensor:
    """Minus Eq. 18 per sample: ``-(log h(pos) + sum_k log(1 - h(neg_k)))`` averaged over the batch, with the
    critic ``h = P / (P + N/M)`` (Eq. 19 with ``P = exp(<t, s>/tau) / Z``; ``N = K`` negatives, ``M = n_data``, i.e.
    NCE against uniform noise ``1/M``). ``scores`` (B, 1 + K) holds ``P``, positive first."""
    noise = (scores.shape[1] - 1) / n_data  # N * (1/M)
    positive, negatives = scores[:, 0], scores[:, 1:]
    log_h_positive = torch.log(positive / (positive + noise + NCE_EPS))
    log_one_minus_h_negatives = torch.log(noise / (negatives + noise + NCE_EPS))
    return -(log_h_positive.sum() + log_one_minus_h_negatives.sum()) / scores.shape[0]


# ----------------------------------------------------------------------------------------------------------------
# the memory banks
def last_occurrence(index: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the positions of ``index`` that hold the last occurrence of their value (the rule for an
    index that appears several times in one update: the last one wins)."""
    positions = torch.arange(index.numel(), device=index.device)
    last = torch.full((int(index.max()) + 1, ), -1, dtype=torch.long, device=index.device)
    last.scatter_reduce_(0, index, positions, reduce='amax')
    return last[index] == positions


@torch.no_grad()
def momentum_update(memory: torch.Tensor, index: torch.Tensor, embeddings: torch.Tensor, momentum: float) -> None:
    """``memory[i] <- normalise(m * memory[i] + (1 - m) * e)`` for each ``(i, e)`` of ``(index, embeddings)``
    (CRD reference code, after Wu et al. 2018), in place. When an index occurs several times, its last occurrence
    is used (deterministic; the others are dropped)."""
    keep = last_occurrence(index)
    index, embeddings = index[keep], embeddings[keep]
    updated = memory[index] * momentum + embeddings * (1 - momentum)
    updated = updated / updated.pow(2).sum(1, keepdim=True).sqrt()
    memory.index_copy_(0, index, updated)


# ----------------------------------------------------------------------------------------------------------------
# torch.distributed: every rank sees the same rows in the same order
def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """The ``rows`` of every rank concatenated in rank order (rank 0's first), identical on every rank; the rows
    of this rank when not distributed. Ranks may hold different numbers of rows. Not differentiable."""
    if not is_distributed():
        return rows
    world_size = dist.get_world_size()
    count = torch.tensor([rows.shape[0]], device=rows.device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    dist.all_gather(counts, count)
    counts = [int(c) for c in counts]
    padded = rows.new_zeros((max(counts), *rows.shape[1:]))
    padded[:rows.shape[0]] = rows
    gathered = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([g[:c] for g, c in zip(gathered, counts)])


@register(LOSS_REGISTRY)
class CRDLoss(nn.Module):
    """Contrastive representation distillation between a student and a teacher feature map (CRD Eq. 18-19).

    Each feature map is pooled to a vector (:func:`kdplugins.distill.connectors.pooled_vector`) and embedded by a
    linear head with L2 normalisation (``embed_s`` = ``g_S``, ``embed_t`` = ``g_T``). Two memory banks of
    ``n_data x feat_dim`` hold past student (``memory_s``) and teacher (``memory_t``) embeddings of every training
    image. For each sample (dataset index ``i``) the positive is row ``i`` and ``nce_k`` negatives are drawn
    uniformly among the other rows. Two NCE terms (Eq. 18), one per direction:

    - student anchor: ``P = exp(<memory_t[j], s_i> / nce_t) / Z_s``,
    - teacher anchor: ``P = exp(<memory_s[j], t_i> / nce_t) / Z_t``,

    each ``-(log h(P_pos) + sum log(1 - h(P_neg)))`` with ``h = P / (P + nce_k / n_data)``, averaged over the batch;
    the loss is ``loss_weight * (student term + teacher term)``. ``Z_s``, ``Z_t`` (buffer ``normalizer``) are set
    from the first batch to ``n_data * mean(exp(<., .>/nce_t))`` and then fixed. After the loss, rows ``i`` of the
    banks move to ``normalise(nce_m * old + (1 - nce_m) * new)`` (no gradient).

    Distributed runs: the embeddings and indices of all ranks are gathered (rank order) before the bank update and
    the first batch's ``Z`` is the mean over all ranks' scores, so every rank holds the same banks and ``Z``; an
    index brought twice in one step (two ranks, or ``dataset_enlarge_ratio > 1``) is updated once, from its last
    occurrence in rank order. Gradients flow through the local embeddings only.

    Args:
        student_channels, teacher_channels: channels of the tapped features (filled in by KDModel).
        num_train_images: size of the training dataset (filled in by KDModel), used by ``n_data: auto``.
        n_data: number of memory-bank rows (``M`` of Eq. 19): ``auto`` or an int above every dataset index.
        feat_dim: embedding dimension (128, CRD reference code).
        nce_k: negatives per sample (``N`` of Eq. 18; 16384 in the paper, Sec. 4.5). Must be below ``n_data``
            unless ``nce_k_cap`` is true, which uses ``n_data - 1`` (logged).
        nce_t: temperature ``tau`` (0.07: the paper's ImageNet value and the reference default; 0.1 on CIFAR).
        nce_m: momentum of the bank update (0.5, reference code).
        loss_weight: ``beta`` of Eq. 27: 1e-3, calibrated for SR (the term ends near a third of the L1 pixel loss;
            docs/conventions.md). The paper's 0.8 (Sec. 6.4) was set beside a classification cross-entropy.
        pool_size: 1 for global average pooling, k for a k x k adaptive average pooling before the heads.

    ``forward(student_feat, teacher_feat, index, generator=None)``: ``index`` holds the dataset indices of the
    batch (``PairedImageDatasetWithIndex``), ``generator`` draws the negatives.
    """

    # given by the distillation model (kdplugins/distill/loss_inputs.py)
    BUILD_INPUTS = ('student_channels', 'teacher_channels', 'num_train_images')
    STEP_INPUTS = ('index', 'generator')

    def __init__(self,
                 student_channels: int,
                 teacher_channels: int,
                 num_train_images: Optional[int] = None,
                 n_data: Union[int, str] = 'auto',
                 feat_dim: int = 128,
                 nce_k: int = 16384,
                 nce_k_cap: bool = False,
                 nce_t: float = 0.07,
                 nce_m: float = 0.5,
                 loss_weight: float = CRD_WEIGHT_DEFAULT,
                 pool_size: int = 1):
        super().__init__()
        self.n_data = resolve_n_data(n_data, num_train_images)
        self.nce_k = resolve_nce_k(nce_k, self.n_data, nce_k_cap)
        self.nce_t, self.nce_m, self.loss_weight = float(nce_t), float(nce_m), float(loss_weight)
        self.embed_s = EmbeddingHead(student_channels, feat_dim, pool_size)
        self.embed_t = EmbeddingHead(teacher_channels, feat_dim, pool_size)
        bound = 1.0 / math.sqrt(feat_dim / 3)
        self.register_buffer('memory_s', torch.rand(self.n_data, feat_dim) * (2 * bound) - bound)
        self.register_buffer('memory_t', torch.rand(self.n_data, feat_dim) * (2 * bound) - bound)
        self.register_buffer('normalizer', torch.full((2, ), -1.0))  # Z_s, Z_t; negative: not estimated yet

    def forward(self,
                student_feat: torch.Tensor,
                teacher_feat: torch.Tensor,
                index: torch.Tensor,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
        index = self.checked_index(index, student_feat.shape[0])
        embedding_s = self.embed_s(student_feat)
        embedding_t = self.embed_t(teacher_feat)
        contrast_index = draw_contrast_indices(index, self.n_data, self.nce_k, generator)
        scores_s = critic_scores(embedding_s, self.memory_t, contrast_index, self.nce_t)
        scores_t = critic_scores(embedding_t, self.memory_s, contrast_index, self.nce_t)
        if bool((self.normalizer < 0).any()):
            self.estimate_normalizer(scores_s.detach(), scores_t.detach())
        loss_s = nce_loss(scores_s / self.normalizer[0], self.n_data)
        loss_t = nce_loss(scores_t / self.normalizer[1], self.n_data)
        self.update_memory(index, embedding_s.detach(), embedding_t.detach())
        return self.loss_weight * (loss_s + loss_t)

    def checked_index(self, index: torch.Tensor, batch: int) -> torch.Tensor:
        index = torch.as_tensor(index, device=self.memory_s.device).long().reshape(-1)
        if index.numel() != batch:
            raise ValueError(f'CRDLoss got {index.numel()} dataset indices for a batch of {batch} features.')
        if bool(((index < 0) | (index >= self.n_data)).any()):
            raise ValueError(f'CRDLoss: dataset index {int(index.max())} is outside the memory bank of n_data '
                             f'{self.n_data} rows. Set n_data: auto (or to the size of the training dataset).')
        return index

    @torch.no_grad()
    def estimate_normalizer(self, scores_s: torch.Tensor, scores_t: torch.Tensor) -> None:
        """``Z = n_data * mean(scores)`` over the first batch of all ranks (reference code: mean of the first
        batch), per direction; the same value on every rank."""
        local = torch.stack([scores_s.sum(), scores_t.sum(), scores_s.new_tensor(scores_s.numel())]).double()
        totals = gather_rows(local[None]).sum(0)
        self.normalizer.copy_((totals[:2] / totals[2] * self.n_data).to(self.normalizer.dtype))
        z_s, z_t = self.normalizer.tolist()
        get_root_logger().info(f'CRDLoss: normalisation constants set from the first batch: Z_s {z_s:.1f}, '
                               f'Z_t {z_t:.1f}.')

    @torch.no_grad()
    def update_memory(self, index: torch.Tensor, embedding_s: torch.Tensor, embedding_t: torch.Tensor) -> None:
        """Momentum update of both banks at the batch's rows, with the rows of all ranks (see the class doc). Index
        and embeddings travel in one float64 tensor (exact for both)."""
        rows = torch.cat([index[:, None].double(), embedding_s.double(), embedding_t.double()], dim=1)
        all_rows = gather_rows(rows)
        all_index, feat_dim = all_rows[:, 0].long(), embedding_s.shape[1]
        all_s = all_rows[:, 1:1 + feat_dim].to(embedding_s.dtype)
        all_t = all_rows[:, 1 + feat_dim:].to(embedding_t.dtype)
        momentum_update(self.memory_s, all_index, all_s, self.nce_m)
        momentum_update(self.memory_t, all_index, all_t, self.nce_m)
