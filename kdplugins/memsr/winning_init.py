"""Winning initialization of a plain student from an EDSR-style teacher (MemSR Sec. 3.3, Algorithm 1, Eq. 5-11,
Sec. 3.5 Eq. 15).

1. The teacher is converted to its plain equivalent (:func:`kdplugins.memsr.convert.convert_edsr`); its
   post-activation features ``F_i^(T)`` are taken on ``n_samples`` uniformly random inputs (``F_0``).
2. Per layer, Algorithm 1 (:func:`algorithm1`): centre the features (row means ``b``), SVD
   ``U S V^T = F - b``, pseudo student features ``F^(S) = S[:r, :r] V^T[:r]`` and the bridge ``M_i`` (1x1 conv,
   kernel ``U[:, :r]``, bias ``b``) with ``F^(T) ~ M_i * F^(S)`` (Eq. 7); then the mean shift: each row ``k`` of
   ``F^(S)`` is raised by ``gamma = -beta * mean(negative entries)`` and ``b`` lowered by ``gamma * U[:, k]``, which
   keeps ``M_i * F^(S)`` unchanged and the pseudo features mostly non-negative, as ReLU outputs are.
3. Per layer, the student conv (:func:`solve_student_conv`): ``H' = bias_rm(C_i^(T) merged with M_{i-1})``
   (Lemma 3.1), minus ``M_i``'s bias at the one-channel's centre (Eq. 10), then ``K_{M_i} C_i^(S)'[:, :, u, v] =
   H'[:, :, u, v]`` by least squares for all taps (Eq. 11, ``torch.linalg.lstsq``). ``M_0`` is the identity.
   Activations are treated as identity, as the paper does.
4. The student's tail is the teacher's (plain) tail merged with ``M_n`` (Lemma 3.1).

The student is a ``PlainSR(one_pad=True)`` (the paper's plain model, Sec. 3.2.2): its convs read ``one_pad`` of
their input, so the solved kernels are used as they are. With ``one_pad=False`` the one-channel's taps are summed into
an ordinary bias, exact inside the image only; the error of the border pixels then moves one pixel inwards per layer,
which costs several dB on small images (measured in docs/memsr.md).

Widths are given per layer, or found per layer by binary search as the smallest ``r`` with Eq. 15's relative error
``||M_i * F_i^(S) - F_i^(T)|| / ||F_i^(T)|| <= theta`` (Plain-X). With Prop. 3.6's offset ``C`` inside the plain
features, ``||F_i^(T)||`` is dominated by ``C`` (every carried channel holds ``value + C``), which makes Eq. 15 as
written accept ``r = 1`` for any usual ``theta``; ``reference='centred'`` (default) divides by the norm of the
centred features ``||F_i^(T) - b||`` instead, which does not depend on ``C``; ``reference='raw'`` is Eq. 15 as printed.
"""
import copy
import math
import time
import torch
from dataclasses import dataclass, field
from torch import nn
from typing import Callable, List, Optional, Sequence, Tuple

from kdplugins.memsr.convert import (DEFAULT_OFFSET, AffineConv, Pieces, compose_1x1, concat_pieces, convert_edsr,
                                     edsr_parts, teacher_plain_forward)


@dataclass
class Bridge:
    """``M_i``: a 1x1 conv from ``r`` student channels to ``c`` teacher channels (kernel ``(c, r)``, bias ``(c,)``)."""
    weight: torch.Tensor
    bias: torch.Tensor

    def __call__(self, feat: torch.Tensor) -> torch.Tensor:
        """``M * F`` for features as a ``(r, N)`` matrix."""
        return self.weight @ feat + self.bias[:, None]

    def as_affine(self) -> AffineConv:
        return AffineConv(self.weight[:, :, None, None], self.bias)

    def as_module(self) -> nn.Conv2d:
        conv = nn.Conv2d(self.weight.shape[1], self.weight.shape[0], 1)
        with torch.no_grad():
            conv.weight.copy_(self.weight[:, :, None, None])
            conv.bias.copy_(self.bias)
        return conv


@dataclass
class FeatureSVD:
    """``U S V^T = F - b`` of a ``(c, N)`` feature matrix (Algorithm 1's first lines), with the norms of Eq. 15.

    ``V^T`` is not stored: ``S[:r, :r] V^T[:r] = U[:, :r]^T (F - b)``, computed from ``centred`` when needed.
    """
    mean: torch.Tensor
    u: torch.Tensor
    s: torch.Tensor
    centred: torch.Tensor
    raw_norm: float
    centred_norm: float


def features_as_matrix(feat: torch.Tensor) -> torch.Tensor:
    """Algorithm 1's reshape: ``(n, c, h, w) -> (c, n * h * w)``."""
    return feat.transpose(0, 1).reshape(feat.shape[1], -1)


def feature_svd(feat: torch.Tensor) -> FeatureSVD:
    """Row means and SVD of the centred ``(c, N)`` teacher features (``N`` = samples x pixels >> ``c``).

    ``U`` and ``S`` come from the eigendecomposition of the ``c x c`` Gram matrix ``(F - b)(F - b)^T = U S^2 U^T``
    (the same factors as ``torch.linalg.svd``, some ten times faster for ``N`` in the tens of thousands; in float64
    the squared spectrum loses only singular values below ~1e-8 of the largest, which no usable width keeps).
    Singular values are sorted in decreasing order; at most ``min(c, N)`` are returned.
    """
    mean = feat.mean(dim=1)
    centred = feat - mean[:, None]
    eigenvalues, eigenvectors = torch.linalg.eigh(centred @ centred.T)
    order = torch.argsort(eigenvalues, descending=True)[:min(feat.shape)]
    s = eigenvalues[order].clamp(min=0).sqrt()
    return FeatureSVD(mean, eigenvectors[:, order], s, centred, float(feat.norm()), float(centred.norm()))


def algorithm1(svd: FeatureSVD, rank: int, beta: float = 3.0) -> Tuple[Bridge, torch.Tensor]:
    """Algorithm 1: the bridge ``M`` (kernel ``U[:, :r]``, bias ``b``) and the pseudo student features
    ``F^(S) = S[:r, :r] V^T[:r]`` (``(r, N)``), mean-shifted by ``beta`` (``beta=0``: no mean shift, Table 5)."""
    if not 1 <= rank <= svd.s.numel():
        raise ValueError(f'Algorithm 1: the student width {rank} must be between 1 and the rank bound '
                         f'{svd.s.numel()} of the teacher features (their channels, or samples x pixels).')
    kernel = svd.u[:, :rank].clone()
    pseudo = kernel.T @ svd.centred  # = S[:r, :r] V^T[:r]
    bias = svd.mean.clone()
    for k in range(rank):
        negative = pseudo[k][pseudo[k] < 0]
        gamma = -beta * negative.mean() if negative.numel() else pseudo.new_zeros(())
        pseudo[k] += gamma
        bias -= gamma * kernel[:, k]
    return Bridge(kernel, bias), pseudo


def relative_error(feat: torch.Tensor,
                   bridge: Bridge,
                   pseudo: torch.Tensor,
                   svd: FeatureSVD,
                   reference: str = 'centred') -> float:
    """Eq. 15: ``||M * F^(S) - F^(T)|| / ||F^(T)||``; ``reference='centred'`` divides by ``||F^(T) - b||``."""
    if reference not in ('centred', 'raw'):
        raise ValueError(f"reference must be 'centred' or 'raw', got {reference!r}.")
    denominator = svd.centred_norm if reference == 'centred' else svd.raw_norm
    return float((bridge(pseudo) - feat).norm()) / max(denominator, 1e-30)


def smallest_width(feat: torch.Tensor,
                   svd: FeatureSVD,
                   theta: float,
                   beta: float = 3.0,
                   reference: str = 'centred') -> int:
    """Sec. 3.5: the smallest width ``r`` whose Algorithm 1 meets Eq. 15 (``error <= theta``), by binary search
    (the error of a truncated SVD does not grow with ``r``; at full rank it is zero)."""
    low, high = 1, svd.s.numel()
    while low < high:
        mid = (low + high) // 2
        bridge, pseudo = algorithm1(svd, mid, beta)
        if relative_error(feat, bridge, pseudo, svd, reference) <= theta:
            high = mid
        else:
            low = mid + 1
    return low


def solve_student_conv(teacher_layer: AffineConv, previous: Bridge, bridge: Bridge) -> AffineConv:
    """Eq. 9-11: the student conv ``C_i^(S)'`` over ``one_pad(F_{i-1}^(S))`` (no bias) with
    ``M_i * (C_i^(S)' * one_pad(F)) ~ H' * one_pad(F)``, ``H'`` the teacher layer (over ``one_pad(F_{i-1}^(T))``)
    merged with ``M_{i-1}`` (Lemma 3.1). Least squares over all taps at once (``torch.linalg.lstsq``)."""
    merged = compose_1x1(previous.as_affine(), teacher_layer)
    target = merged.weight.clone()
    centre = merged.kernel_size // 2
    target[:, 0, centre, centre] -= bridge.bias  # Eq. 10: M's bias moved to the left-hand side
    solution = torch.linalg.lstsq(bridge.weight, target.reshape(target.shape[0], -1)).solution  # Eq. 11
    return AffineConv(solution.reshape(bridge.weight.shape[1], *target.shape[1:]), solution.new_zeros(len(solution)))


def ordinary_conv(conv_onepad: AffineConv) -> AffineConv:
    """A conv over ``one_pad(F)`` as a conv over ``F`` with bias (the one-channel's taps summed: exact inside the
    image, approximate at border pixels)."""
    weight = conv_onepad.weight
    return AffineConv(weight[:, 1:].clone(), conv_onepad.bias + weight[:, 0].sum(dim=(-1, -2)))


@dataclass
class WinningInit:
    """Result of :func:`winning_initialization`: the student's options and weights, and the bridges ``M_1..M_n``."""
    student_options: dict
    student_state: dict
    bridges: List[Bridge]
    teacher_widths: List[int]
    widths: List[int]
    errors: List[float]
    seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    def bridge_modules(self) -> nn.ModuleList:
        return nn.ModuleList(b.as_module() for b in self.bridges)


def check_student_widths(widths: Sequence[int], teacher_widths: Sequence[int]) -> List[int]:
    """Widths of a student for a teacher whose plain equivalent has ``teacher_widths``; clear errors otherwise."""
    widths = [int(w) for w in widths]
    if len(widths) != len(teacher_widths):
        raise ValueError(f'The student has {len(widths)} conv+ReLU layers but the plain equivalent of the teacher has '
                         f'{len(teacher_widths)} (2 * num_block + 2): MemSR initializes layer i of the student from '
                         f'layer i of the teacher, so give the student {len(teacher_widths)} layers.')
    for i, (width, limit) in enumerate(zip(widths, teacher_widths)):
        if not 1 <= width <= limit:
            raise ValueError(f'Student layer {i} has width {width}, but the plain teacher layer {i} has {limit} '
                             f'channels: Algorithm 1 takes the first r singular vectors, so 1 <= r <= {limit}.')
    return widths


def _student_tail(conversion, last_bridge: Bridge) -> List[AffineConv]:
    """The teacher's plain tail merged with ``M_n`` (Lemma 3.1): the first conv is over ``one_pad``."""
    return [compose_1x1(last_bridge.as_affine(), conversion.tail[0])] + [copy.deepcopy(c) for c in conversion.tail[1:]]


def _input_bridge(channels: int) -> Bridge:
    return Bridge(torch.eye(channels, dtype=torch.float64), torch.zeros(channels, dtype=torch.float64))


def winning_initialization(teacher: nn.Module,
                           widths: Optional[Sequence[int]] = None,
                           theta: Optional[float] = None,
                           n_samples: int = 16,
                           patch_size: int = 48,
                           beta: float = 3.0,
                           offset: float = DEFAULT_OFFSET,
                           reference: str = 'centred',
                           seed: int = 0,
                           inputs: Optional[torch.Tensor] = None,
                           one_pad: bool = True,
                           log: Callable[[str], None] = lambda line: None) -> WinningInit:
    """Sec. 3.3: winning initialization of a PlainSR student (same tail type as the teacher) and bridges.

    Args:
        teacher: trained ``PixelShuffleEDSR`` or basicsr ``EDSR``.
        widths: one width per plain layer (``2 * num_block + 2``), or None with ``theta`` (Plain-X, Eq. 15).
        n_samples, patch_size: the uniformly random inputs ``F_0`` (``n_samples x C x patch x patch``).
        beta: mean-shift coefficient of Algorithm 1 (0 disables it).
        offset: Prop. 3.6's ``C``.
        reference: denominator of Eq. 15 (see the module docstring).
        seed: seed of the random inputs.
        inputs: ``F_0`` given explicitly (e.g. LR image patches) instead of the paper's uniform random inputs.
        one_pad: build a ``PlainSR(one_pad=True)`` student (default); False folds the one-channel into biases.
        log: receives one line per layer.
    """
    if (widths is None) == (theta is None):
        raise ValueError('winning_initialization needs either widths (one per layer) or theta (dynamic widths).')
    start = time.perf_counter()
    teacher64 = copy.deepcopy(getattr(teacher, 'module', teacher)).to(torch.float64).eval()
    parts = edsr_parts(teacher64)
    conversion = convert_edsr(teacher64, offset)
    teacher_widths = conversion.widths
    if widths is not None:
        widths = check_student_widths(widths, teacher_widths)
    generator = torch.Generator().manual_seed(seed)
    inputs_kind = 'uniform' if inputs is None else 'given'
    if inputs is None:
        inputs = torch.rand(
            n_samples, parts.num_in_ch, patch_size, patch_size, generator=generator, dtype=torch.float64)
    inputs = inputs.to(torch.float64)
    state = {'previous': _input_bridge(parts.num_in_ch), 'convs': [], 'bridges': [], 'widths': [], 'errors': []}

    def on_layer(i: int, pieces: Pieces) -> None:
        _check_carried(i, pieces, offset)
        feat = features_as_matrix(concat_pieces(pieces))
        svd = feature_svd(feat)
        rank = widths[i] if widths is not None else smallest_width(feat, svd, theta, beta, reference)
        bridge, pseudo = algorithm1(svd, rank, beta)
        error = relative_error(feat, bridge, pseudo, svd, reference)
        conv = solve_student_conv(conversion.layers[i], state['previous'], bridge)
        state['convs'].append(conv)
        state['bridges'].append(bridge)
        state['widths'].append(rank)
        state['errors'].append(error)
        state['previous'] = bridge
        log(f'layer {i}: teacher {feat.shape[0]} channels -> student {rank}, Eq. 15 error ({reference}) {error:.4f}')

    with torch.no_grad():
        teacher_plain_forward(parts, inputs, offset, on_layer)
        tail = _student_tail(conversion, state['previous'])
    options = {
        'type': 'PlainSR',
        'num_in_ch': parts.num_in_ch,
        'num_out_ch': parts.num_out_ch,
        'widths': state['widths'],
        'upscale': parts.upscale,
        'upsampler': parts.upsampler,
        'upsample_feat': conversion.upsample_feat,
        'one_pad': bool(one_pad)
    }
    student_state = _student_state(options, state['convs'], tail)
    settings = {
        'theta': theta,
        'n_samples': n_samples,
        'patch_size': patch_size,
        'beta': beta,
        'offset': offset,
        'reference': reference,
        'seed': seed,
        'inputs': inputs_kind
    }
    return WinningInit(options, student_state, state['bridges'], teacher_widths, state['widths'], state['errors'],
                       time.perf_counter() - start, settings)


def _check_carried(layer: int, pieces: Pieces, offset: float) -> None:
    for tensor, piece_offset in pieces:
        if piece_offset and float(tensor.min()) + piece_offset < 0:
            raise ValueError(f'Plain teacher layer {layer}: a carried feature reaches {float(tensor.min()):.4g}, '
                             f'below -C = {-offset:g}; the conversion is not exact (Prop. 3.6). Use a larger offset '
                             f'(e.g. {math.ceil(-2 * float(tensor.min()))}).')


def _student_state(options: dict, convs: List[AffineConv], tail: List[AffineConv]) -> dict:
    """PlainSR weights from the solved convs over ``one_pad`` (kept as they are, or folded without one_pad)."""
    from kdplugins.archs.plainsr_arch import PlainSR
    net = PlainSR(**{k: v for k, v in options.items() if k != 'type'})
    if not options['one_pad']:
        convs, tail = [ordinary_conv(c) for c in convs], [ordinary_conv(tail[0])] + tail[1:]
    with torch.no_grad():
        for conv, layer in zip(convs, net.body):
            layer.conv.weight.copy_(conv.weight)
            layer.conv.bias.copy_(conv.bias)
        for conv, module in zip(tail, [m for m in net.upsample if isinstance(m, nn.Conv2d)]):
            module.weight.copy_(conv.weight)
            module.bias.copy_(conv.bias)
    return {k: v.detach().clone() for k, v in net.state_dict().items()}
