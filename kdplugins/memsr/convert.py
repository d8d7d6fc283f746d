"""Exact conversion of an EDSR-style network into a plain conv+ReLU network (MemSR Sec. 3.2, Eq. 1-4, Lemma 3.1,
Prop. 3.6, Fig. 3).

Building blocks, on :class:`AffineConv` (kernel ``K`` and bias ``b`` of a stride-1 "same" convolution):

* :func:`one_pad` (Eq. 3) prepends a constant-one channel to a feature map; :func:`bias_rm` (Eq. 4) moves a bias
  into the centre tap of that channel. A conv "over one_pad(F)" has ``C_in + 1`` input channels and no bias.
* :func:`merge_parallel`: two convs side by side, on different inputs (Eq. 1) or on the same input (Eq. 2).
* :func:`merge_1x1_then_conv`: a 1x1 conv followed by a kxk conv as one kxk conv over ``one_pad(F)`` (Lemma 3.1);
  :func:`compose_1x1` is the same rule for a following conv that is itself over ``one_pad``.
* :func:`conv_then_1x1`: a kxk conv followed by a 1x1 conv (the add of a skip connection, ``T`` in Prop. 3.6).
* :func:`identity_conv`: the identity 1x1 conv, with the constant offset ``C`` in its bias to carry a skip path
  through a ReLU (Prop. 3.6: every feature is kept as ``value + C >= 0``; ``-C`` is put back where it is read).

Borders. Every conv of the networks pads with zeros. The constant-one channel is a feature map like the others: it
is 1 on the image and zero-padded by the next conv, so the taps of a merged kernel that fall outside the image meet
a zero in the one-channel exactly where they meet a zero in the features. Biases live at the centre tap only, which
never leaves the image. Hence the offsets ``+-C``, the biases of merged 1x1 convs (Lemma 3.1) and an input mean
(``(x - mean) * img_range``, zero-padded after the shift in EDSR) are exact at the border pixels too; only the
input mean needs a one-channel on the input image itself (``PlainSR(input_one_channel=True)``).

The plain network (:func:`convert_edsr`) has ``2 * num_block + 2`` layers, with the teacher quantities (``s_b`` the
input of block ``b``, ``g`` the output of ``conv_first``, ``r_b = relu(conv1_b(s_b))``, ``h`` the input of the tail):

=================  ==========================================  ==============================================
layer              plain features (before one_pad)             rule
=================  ==========================================  ==============================================
0                  ``[g + C, g + C]``                          input mean (Lemma 3.1), conv_then_1x1 (C)
block b, conv1     ``[r_b, s_b + C, g + C]``                   Lemma 3.1 (-C), Eq. 2 with the identity
block b, conv2     ``[s_{b+1} + C, g + C]``                    Eq. 1 with the identity, then T (add)
last               ``[h + C]``, ``h = conv_after_body(s) + g``  Lemma 3.1 (-C), Eq. 2, then T (global skip)
=================  ==========================================  ==============================================

The tail's first conv reads ``one_pad([h + C])`` (Lemma 3.1 with ``-C``); ``y / img_range + mean`` is folded into
the last tail conv (``conv_then_1x1``, exact: a per-channel affine map commutes with pixel shuffle). As a
:class:`~kdplugins.archs.plainsr_arch.PlainSR` (:func:`to_plain_sr`), every layer outputs the constant-one channel
as its channel 0 (weights 0, bias 1, then ReLU) followed by the plain features, so ``one_pad`` of a layer's
features is the layer's output itself.

Exactness needs every carried value above ``-C`` (Prop. 3.6: inputs bounded by ``C``); :func:`check_offset` measures
the margin on given inputs.
"""
import copy
import itertools
import re
import torch
import torch.nn.functional as F
from dataclasses import dataclass, field
from torch import nn
from typing import Callable, List, Optional, Tuple

DEFAULT_OFFSET = 1000.0
Pieces = List[Tuple[torch.Tensor, float]]


@dataclass
class AffineConv:
    """A stride-1 convolution with odd kernel size and zero padding ``k // 2``: ``K * F + b``."""
    weight: torch.Tensor  # (out, in, k, k)
    bias: torch.Tensor  # (out,)

    @property
    def out_channels(self) -> int:
        return self.weight.shape[0]

    @property
    def in_channels(self) -> int:
        return self.weight.shape[1]

    @property
    def kernel_size(self) -> int:
        return self.weight.shape[-1]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=self.kernel_size // 2)


def affine_from_module(conv: nn.Conv2d, name: str, dtype: torch.dtype = torch.float64) -> AffineConv:
    """The kernel and bias of ``conv`` (checked to be a plain stride-1 'same' conv with an odd kernel)."""
    k = conv.kernel_size
    if (conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1 or k[0] != k[1] or k[0] % 2 == 0
            or conv.padding != (k[0] // 2, k[1] // 2) or conv.padding_mode != 'zeros'):
        raise ValueError(f"cannot convert module '{name}': MemSR merges stride-1 convs with odd square kernels, "
                         f"zero padding k//2, no groups or dilation (Sec. 3.2); got {conv}.")
    bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
    return AffineConv(conv.weight.detach().to(dtype).clone(), bias.detach().to(dtype).clone())


# ------------------------------------------------------------------------------------------------------------------
# Sec. 3.2: the merge rules
def one_pad(x: torch.Tensor) -> torch.Tensor:
    """Eq. 3: prepend a channel filled with 1 to ``x`` (N, C, H, W) -> (N, C + 1, H, W)."""
    return torch.cat([torch.ones_like(x[:, :1]), x], dim=1)


def pad_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    """``pad_h`` of Sec. 3.2: zero-pad the k x k taps of ``weight`` to ``size`` x ``size`` (both odd)."""
    margin = (size - weight.shape[-1]) // 2
    return F.pad(weight, [margin] * 4)


def fold_bias(conv: AffineConv) -> AffineConv:
    """Move the bias of a conv over ``one_pad(F)`` into the centre tap of its one-channel (the step of Eq. 4)."""
    weight = conv.weight.clone()
    centre = conv.kernel_size // 2
    weight[:, 0, centre, centre] += conv.bias
    return AffineConv(weight, torch.zeros_like(conv.bias))


def bias_rm(conv: AffineConv) -> AffineConv:
    """Eq. 4: ``T' = bias_rm(T)`` over ``one_pad(F)`` with no bias, ``K^(T) * F + b = K^(T') * one_pad(F)``."""
    zero_column = torch.zeros_like(conv.weight[:, :1])
    return fold_bias(AffineConv(torch.cat([zero_column, conv.weight], dim=1), conv.bias))


def identity_conv(channels: int, offset: float = 0.0, dtype: torch.dtype = torch.float64) -> AffineConv:
    """The identity convolution ``ID = Conv(C, C, 1)`` of Sec. 3.2, with ``offset`` as bias (Prop. 3.6's ``C``)."""
    return AffineConv(torch.eye(channels, dtype=dtype)[:, :, None, None], torch.full((channels, ), offset, dtype=dtype))


def merge_parallel(a: AffineConv, b: AffineConv, shared_input: bool) -> AffineConv:
    """Sec. 3.2.1: one conv whose output is the concatenation of the outputs of ``a`` and ``b``.

    ``shared_input=False`` (Eq. 1): ``a`` reads the first ``a.in_channels`` channels, ``b`` the rest (block-diagonal
    kernel). ``shared_input=True`` (Eq. 2): both read the same input. Kernels are zero-padded to the larger size.
    """
    size = max(a.kernel_size, b.kernel_size)
    wa, wb = pad_kernel(a.weight, size), pad_kernel(b.weight, size)
    if shared_input:
        if a.in_channels != b.in_channels:
            raise ValueError(f'merge_parallel(shared_input=True) needs equal inputs, got {a.in_channels} and '
                             f'{b.in_channels} channels.')
        weight = torch.cat([wa, wb], dim=0)
    else:
        weight = wa.new_zeros(a.out_channels + b.out_channels, a.in_channels + b.in_channels, size, size)
        weight[:a.out_channels, :a.in_channels] = wa
        weight[a.out_channels:, a.in_channels:] = wb
    return AffineConv(weight, torch.cat([a.bias, b.bias]))


def compose_1x1(a: AffineConv, b_onepad: AffineConv) -> AffineConv:
    """A 1x1 conv ``a`` (C2 <- C1) followed by ``b_onepad``, a conv over ``one_pad`` of ``a``'s output, as one conv
    over ``one_pad(F)`` without bias: ``b * one_pad(a * F) = C' * one_pad(F)``.

    ``one_pad(a * F) = N * one_pad(F)`` with the 1x1 ``N = [[1, 0], [b_a, K_a]]``, so ``C'`` is ``K_b`` times ``N``
    at every tap. With ``b_onepad = bias_rm(B)`` this is Lemma 3.1 (``C'`` keeps ``b_B`` at the centre and adds
    ``sum_j b_{a,j} K_B[:, j]`` at every tap of the one-channel, which the zero padding drops at the borders exactly
    as B's zero padding drops ``a``'s bias there).
    """
    if a.kernel_size != 1:
        raise ValueError(f'compose_1x1 needs a 1x1 first conv, got {a.kernel_size}x{a.kernel_size}.')
    if b_onepad.in_channels != a.out_channels + 1:
        raise ValueError(f'compose_1x1: the second conv reads {b_onepad.in_channels} channels, expected '
                         f'one_pad of {a.out_channels}.')
    b_onepad = fold_bias(b_onepad)
    lift = a.weight.new_zeros(a.out_channels + 1, a.in_channels + 1)
    lift[0, 0] = 1
    lift[1:, 0] = a.bias
    lift[1:, 1:] = a.weight[:, :, 0, 0]
    return AffineConv(torch.einsum('ojuv,jk->okuv', b_onepad.weight, lift), torch.zeros_like(b_onepad.bias))


def merge_1x1_then_conv(a: AffineConv, b: AffineConv) -> AffineConv:
    """Lemma 3.1: ``B * (A * F) = C' * one_pad(F)`` for a 1x1 conv ``A`` followed by a kxk conv ``B``."""
    return compose_1x1(a, bias_rm(b))


def conv_then_1x1(conv: AffineConv, t: AffineConv) -> AffineConv:
    """A conv followed by the 1x1 conv ``t`` (e.g. Prop. 3.6's add ``T``) as one conv of the same kernel size."""
    if t.kernel_size != 1 or t.in_channels != conv.out_channels:
        raise ValueError(f'conv_then_1x1: t must be 1x1 reading {conv.out_channels} channels, got {t.weight.shape}.')
    matrix = t.weight[:, :, 0, 0]
    return AffineConv(torch.einsum('oj,jiuv->oiuv', matrix, conv.weight), matrix @ conv.bias + t.bias)


def selection(sizes: List[int], picks: List[Tuple[int, float]], offset: float) -> AffineConv:
    """1x1 conv summing the chosen blocks of a concatenated input: ``picks`` = ``(block index, coefficient)``,
    output ``sum coefficient * block + offset`` (blocks of equal size)."""
    width = sizes[picks[0][0]]
    weight = torch.zeros(width, sum(sizes), 1, 1, dtype=torch.float64)
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    for block, coefficient in picks:
        weight[:, starts[block]:starts[block] + width, 0, 0] += coefficient * torch.eye(width, dtype=torch.float64)
    return AffineConv(weight, torch.full((width, ), offset, dtype=torch.float64))


# ------------------------------------------------------------------------------------------------------------------
# EDSR-style networks
ALLOWED_MODULES = re.compile(r'^(conv_first|conv_after_body|conv_last|body|body\.\d+|body\.\d+\.(conv1|conv2|relu)|'
                             r'upsample|upsample\.\d+)$')
NOT_CONVERTIBLE = ('MemSR converts EDSR-style networks (conv_first, residual blocks conv-ReLU-conv with res_scale '
                   'and identity, conv_after_body, the global skip, a pixel-shuffle upsampler): only non-intersecting '
                   'skip connections have a plain equivalent (Prop. 3.6); attention, dense connections and other '
                   'blocks do not. Use a PixelShuffleEDSR or basicsr EDSR teacher.')


@dataclass
class EDSRParts:
    """The pieces of an EDSR-style network, in float64 for the conversion (modules are the network's own)."""
    input_mean: Optional[torch.Tensor]  # (C,) subtracted from the input, or None
    img_range: float
    head: nn.Conv2d
    blocks: List[Tuple[nn.Conv2d, nn.Conv2d, float]]
    body_end: nn.Conv2d
    tail: List[nn.Module]  # convs and pixel shuffles, the last conv included
    upsampler: str  # 'pixelshuffle' or 'edsr'
    upscale: int
    num_in_ch: int
    num_out_ch: int
    names: dict = field(default_factory=dict)

    @property
    def num_feat(self) -> int:
        return self.head.out_channels

    @property
    def num_layers(self) -> int:
        """Layers of the plain equivalent: conv_first, two per residual block, conv_after_body."""
        return 2 * len(self.blocks) + 2


def _first_foreign_module(net: nn.Module) -> Optional[str]:
    for name, module in net.named_modules():
        if name and not ALLOWED_MODULES.match(name):
            return f"'{name}' ({type(module).__name__})"
    return None


def edsr_parts(net: nn.Module) -> EDSRParts:
    """Check that ``net`` is a convertible EDSR-style network and return its pieces; a clear error otherwise."""
    from basicsr.archs.arch_util import ResidualBlockNoBN
    from basicsr.archs.edsr_arch import EDSR

    from kdplugins.archs.pixelshuffle_edsr_arch import PixelShuffleEDSR
    net = getattr(net, 'module', net)
    for i, block in enumerate(getattr(net, 'body', None) or []):
        if type(block) is not ResidualBlockNoBN:
            inner = sorted({type(m).__name__ for m in block.modules()} - {'Conv2d', 'Sequential', type(block).__name__})
            raise ValueError(f"{type(net).__name__} cannot be converted to a plain network: module 'body.{i}' "
                             f'({type(block).__name__}, containing {", ".join(inner) or "no other module type"}) is '
                             f'not a residual block conv-ReLU-conv. {NOT_CONVERTIBLE}')
    foreign = _first_foreign_module(net)
    if foreign or type(net) not in (EDSR, PixelShuffleEDSR):
        where = f'module {foreign}' if foreign else f'its forward ({type(net).__name__})'
        raise ValueError(f'{type(net).__name__} cannot be converted to a plain network: {where} is not part of an '
                         f'EDSR-style network. {NOT_CONVERTIBLE}')
    blocks = [(block.conv1, block.conv2, float(block.res_scale)) for block in net.body]
    mean = net.mean.detach().reshape(-1).to(torch.float64)
    is_edsr = isinstance(net, EDSR)
    tail = list(net.upsample) + ([net.conv_last] if is_edsr else [])
    for i, module in enumerate(tail):
        if not isinstance(module, (nn.Conv2d, nn.PixelShuffle)):
            raise ValueError(f"cannot convert module 'upsample.{i}' ({type(module).__name__}): {NOT_CONVERTIBLE}")
    scale = 1
    for module in tail:
        scale *= module.upscale_factor if isinstance(module, nn.PixelShuffle) else 1
    return EDSRParts(
        input_mean=mean if bool(mean.any()) else None,
        img_range=float(net.img_range),
        head=net.conv_first,
        blocks=blocks,
        body_end=net.conv_after_body,
        tail=tail,
        upsampler='edsr' if is_edsr else 'pixelshuffle',
        upscale=scale,
        num_in_ch=net.conv_first.in_channels,
        num_out_ch=tail[-1].out_channels if is_edsr else tail[0].out_channels // scale**2)


# ------------------------------------------------------------------------------------------------------------------
# the teacher's plain features (Sec. 3.3's F_i^(T)), computed from the teacher itself
def teacher_plain_forward(parts: EDSRParts,
                          x: torch.Tensor,
                          offset: float = DEFAULT_OFFSET,
                          on_layer: Optional[Callable[[int, Pieces], None]] = None) -> torch.Tensor:
    """The teacher's forward (output returned) that calls ``on_layer(i, pieces)`` with the post-activation features
    of layer ``i`` of its plain equivalent (:func:`convert_edsr`), as ``(tensor, offset)`` pieces to concatenate
    (``torch.cat([t + o for t, o in pieces], 1)``). Only what later layers need is kept alive."""
    emit = on_layer or (lambda i, pieces: None)
    if parts.input_mean is not None or parts.img_range != 1.0:
        mean = (parts.input_mean if parts.input_mean is not None else torch.zeros(parts.num_in_ch)).to(x)
        x = (x - mean.view(1, -1, 1, 1)) * parts.img_range
    head = parts.head(x)
    emit(0, [(head, offset), (head, offset)])
    s = head
    for b, (conv1, conv2, res_scale) in enumerate(parts.blocks):
        r = F.relu(conv1(s))
        emit(1 + 2 * b, [(r, 0.0), (s, offset), (head, offset)])
        s = s + conv2(r) * res_scale
        emit(2 + 2 * b, [(s, offset), (head, offset)])
    h = parts.body_end(s) + head
    emit(parts.num_layers - 1, [(h, offset)])
    for module in parts.tail:
        h = module(h)
    return h / parts.img_range + (parts.input_mean.to(h).view(1, -1, 1, 1) if parts.input_mean is not None else 0)


def concat_pieces(pieces: Pieces) -> torch.Tensor:
    """The plain feature map of a layer from its :func:`teacher_plain_forward` pieces."""
    return torch.cat([t + o for t, o in pieces], dim=1)


# ------------------------------------------------------------------------------------------------------------------
# Prop. 3.6: the plain equivalent
@dataclass
class PlainConversion:
    """A plain network equivalent to an EDSR-style one, in float64.

    ``layers[i]`` is a conv over ``one_pad`` of layer ``i - 1``'s features (of the image for ``i = 0``), no bias,
    followed by ReLU; ``tail`` are the up-sampling convs (the first over ``one_pad`` of the last features, the last
    with the output affine folded in), each followed by ``PixelShuffle(shuffles[j])`` when ``shuffles[j] > 1``.
    """
    layers: List[AffineConv]
    tail: List[AffineConv]
    shuffles: List[int]
    upsampler: str
    upscale: int
    num_in_ch: int
    num_out_ch: int
    upsample_feat: int
    offset: float

    @property
    def widths(self) -> List[int]:
        """Channels of the plain features of each layer (without the constant-one channel)."""
        return [layer.out_channels for layer in self.layers]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the plain network with explicit ``one_pad`` before every conv (the paper's form)."""
        for layer in self.layers:
            x = F.relu(layer(one_pad(x)))
        x = one_pad(x)
        for conv, shuffle in zip(self.tail, self.shuffles):
            x = conv(x)
            x = F.pixel_shuffle(x, shuffle) if shuffle > 1 else x
        return x


def _first_layer(parts: EDSRParts, offset: float) -> AffineConv:
    head = affine_from_module(parts.head, 'conv_first')
    if parts.input_mean is not None or parts.img_range != 1.0:
        mean = parts.input_mean if parts.input_mean is not None else torch.zeros(parts.num_in_ch, dtype=torch.float64)
        shift = AffineConv(parts.img_range * torch.eye(parts.num_in_ch, dtype=torch.float64)[:, :, None, None],
                           -parts.img_range * mean)
        conv = merge_1x1_then_conv(shift, head)  # Lemma 3.1: (x - mean) * img_range, zero-padded after the shift
    else:
        conv = bias_rm(head)
    c = parts.num_feat
    duplicate = selection([c], [(0, 1.0)], offset)  # g + C ...
    duplicate = AffineConv(torch.cat([duplicate.weight] * 2), torch.cat([duplicate.bias] * 2))  # ... twice: [s, g]
    return fold_bias(conv_then_1x1(conv, duplicate))


def _conv1_layer(conv1: AffineConv, c: int, offset: float) -> AffineConv:
    read_s = selection([c, c], [(0, 1.0)], -offset)  # s = (s + C) - C
    branch = merge_1x1_then_conv(read_s, conv1)  # Lemma 3.1
    carry = bias_rm(identity_conv(2 * c))  # [s + C, g + C] through the ReLU
    return merge_parallel(branch, carry, shared_input=True)  # Eq. 2


def _conv2_layer(conv2: AffineConv, res_scale: float, c: int) -> AffineConv:
    scaled = AffineConv(conv2.weight * res_scale, conv2.bias * res_scale)
    parallel = merge_parallel(scaled, identity_conv(2 * c), shared_input=False)  # Eq. 1: [rs*conv2(r), s+C, g+C]
    add = selection([c, c, c], [(0, 1.0), (1, 1.0)], 0.0)  # T: s + rs*conv2(r) + C
    keep_g = selection([c, c, c], [(2, 1.0)], 0.0)
    t = AffineConv(torch.cat([add.weight, keep_g.weight]), torch.cat([add.bias, keep_g.bias]))
    return bias_rm(conv_then_1x1(parallel, t))


def _last_layer(body_end: AffineConv, c: int, offset: float) -> AffineConv:
    branch = merge_1x1_then_conv(selection([c, c], [(0, 1.0)], -offset), body_end)  # Lemma 3.1
    parallel = merge_parallel(branch, bias_rm(identity_conv(2 * c)), shared_input=True)  # [u, s + C, g + C]
    return conv_then_1x1(parallel, selection([c, c, c], [(0, 1.0), (2, 1.0)], 0.0))  # T: h + C


def _tail(parts: EDSRParts, offset: float) -> Tuple[List[AffineConv], List[int]]:
    convs, shuffles = [], []
    for i, module in enumerate(parts.tail):
        if isinstance(module, nn.PixelShuffle):
            shuffles[-1] = module.upscale_factor
        else:
            convs.append(affine_from_module(module, f'upsample.{i}'))
            shuffles.append(1)
    c = parts.num_feat
    convs[0] = merge_1x1_then_conv(selection([c], [(0, 1.0)], -offset), convs[0])  # reads h = (h + C) - C
    per_channel = convs[-1].out_channels // parts.num_out_ch  # scale**2 channels per colour before the last shuffle
    out_mean = parts.input_mean if parts.input_mean is not None else torch.zeros(parts.num_out_ch, dtype=torch.float64)
    output_affine = AffineConv(
        torch.eye(convs[-1].out_channels, dtype=torch.float64)[:, :, None, None] / parts.img_range,
        out_mean.repeat_interleave(per_channel))  # y / img_range + mean, per colour, commutes with pixel shuffle
    convs[-1] = conv_then_1x1(convs[-1], output_affine)
    convs[0] = fold_bias(convs[0])  # the output affine's bias, when the first conv is also the last
    return convs, shuffles


def convert_edsr(net: nn.Module, offset: float = DEFAULT_OFFSET) -> PlainConversion:
    """Prop. 3.6: the plain network equivalent to the EDSR-style ``net`` (``PixelShuffleEDSR`` or basicsr ``EDSR``,
    any depth, width, ``res_scale``, ``img_range`` and mean, scales 2^n and 3 for EDSR, any for PixelShuffleEDSR).

    ``offset`` is Prop. 3.6's ``C``: exact while every carried feature stays above ``-C`` (:func:`check_offset`).
    The conversion is float64 arithmetic on the CPU: a network on another device (a teacher on the GPU) is copied to
    the CPU first.
    """
    if any(t.device.type != 'cpu' for t in itertools.chain(net.parameters(), net.buffers())):
        net = copy.deepcopy(net).cpu()
    parts = edsr_parts(net)
    c = parts.num_feat
    layers = [_first_layer(parts, offset)]
    for b, (conv1, conv2, res_scale) in enumerate(parts.blocks):
        layers.append(_conv1_layer(affine_from_module(conv1, f'body.{b}.conv1'), c, offset))
        layers.append(_conv2_layer(affine_from_module(conv2, f'body.{b}.conv2'), res_scale, c))
    layers.append(_last_layer(affine_from_module(parts.body_end, 'conv_after_body'), c, offset))
    tail, shuffles = _tail(parts, offset)
    upsample_feat = tail[1].in_channels if len(tail) > 1 else c
    return PlainConversion(layers, tail, shuffles, parts.upsampler, parts.upscale, parts.num_in_ch, parts.num_out_ch,
                           upsample_feat, float(offset))


def check_offset(net: nn.Module, x: torch.Tensor, offset: float = DEFAULT_OFFSET) -> float:
    """The smallest value of a carried (offset) plain feature of ``net`` on ``x``; raises when it is negative, i.e.
    when ``C`` is too small for the conversion to be exact on such inputs."""
    parts = edsr_parts(net)
    lowest = [float('inf')]

    def record(i: int, pieces: Pieces) -> None:
        for tensor, piece_offset in pieces:
            if piece_offset:
                lowest[0] = min(lowest[0], float(tensor.min()) + piece_offset)

    with torch.no_grad():
        teacher_plain_forward(parts, x, offset, record)
    if lowest[0] < 0:
        raise ValueError(f'The offset C = {offset:g} is too small for this teacher: a carried feature reaches '
                         f'{lowest[0] - offset:.4g} (Prop. 3.6 needs |features| <= C). Use a larger offset, e.g. '
                         f'{2 * (offset - lowest[0]):.0f}.')
    return lowest[0]


# ------------------------------------------------------------------------------------------------------------------
# as a PlainSR module
def plain_layer_conv(layer: AffineConv, input_has_one: bool) -> AffineConv:
    """A plain layer over ``one_pad`` as a PlainSR conv: output channel 0 is the constant one (bias 1, weights 0),
    the others read the one-channel from input channel 0 (``input_has_one``) or, for the image without one-channel,
    take the one-channel's centre tap as bias (only allowed when its other taps are zero)."""
    layer = fold_bias(layer)
    out, k = layer.out_channels, layer.kernel_size
    if input_has_one:
        weight, bias = layer.weight, torch.zeros(out, dtype=layer.weight.dtype)
    else:
        ones_taps = layer.weight[:, 0].clone()
        bias = ones_taps[:, k // 2, k // 2].clone()
        ones_taps[:, k // 2, k // 2] = 0
        if bool(ones_taps.any()):
            raise ValueError('this layer needs the one-channel off its centre tap: build the PlainSR with '
                             'input_one_channel=True.')
        weight = layer.weight[:, 1:]
    one_row = weight.new_zeros(1, *weight.shape[1:])
    return AffineConv(torch.cat([one_row, weight]), torch.cat([bias.new_ones(1), bias]))


def needs_input_one_channel(conversion: PlainConversion) -> bool:
    """Whether the first layer uses the one-channel of the image off its centre tap (an input mean shift)."""
    first = fold_bias(conversion.layers[0]).weight[:, 0].clone()
    k = first.shape[-1]
    first[:, k // 2, k // 2] = 0
    return bool(first.any())


def plain_sr_options(conversion: PlainConversion) -> dict:
    """``network_g``-style options of the PlainSR that :func:`to_plain_sr` builds."""
    return {
        'type': 'PlainSR',
        'num_in_ch': conversion.num_in_ch,
        'num_out_ch': conversion.num_out_ch,
        'widths': [w + 1 for w in conversion.widths],
        'upscale': conversion.upscale,
        'upsampler': conversion.upsampler,
        'upsample_feat': conversion.upsample_feat,
        'input_one_channel': needs_input_one_channel(conversion),
    }


def to_plain_sr(conversion: PlainConversion, dtype: torch.dtype = torch.float32) -> nn.Module:
    """The conversion as a :class:`~kdplugins.archs.plainsr_arch.PlainSR` (one-channel at index 0 of every layer)."""
    from kdplugins.archs.plainsr_arch import PlainSR
    options = plain_sr_options(conversion)
    options.pop('type')
    net = PlainSR(**options).to(dtype)
    with torch.no_grad():
        for i, (layer, module) in enumerate(zip(conversion.layers, net.body)):
            conv = plain_layer_conv(layer, input_has_one=i > 0 or options['input_one_channel'])
            module.conv.weight.copy_(conv.weight)
            module.conv.bias.copy_(conv.bias)
        tail_convs = [m for m in net.upsample if isinstance(m, nn.Conv2d)]
        for conv, module in zip(conversion.tail, tail_convs):
            module.weight.copy_(conv.weight)
            module.bias.copy_(conv.bias)
    return net
