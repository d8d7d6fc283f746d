"""SPAN: Swift Parameter-free Attention Network (Wan, Yu, Li et al., CVPR 2024 NTIRE workshop; XiaomiMM, winner of
the NTIRE 2024 efficient SR challenge).

A thin registered wrapper over spandrel's SPAN (``spandrel.architectures.SPAN``, PyPI ``spandrel``), which is the
official network (github.com/hongyuanyu/SPAN, ``basicsr/archs/span_arch.py``) with the same module and tensor names,
so the official BasicSR checkpoints load strictly. What the wrapper adds:

- BasicSR's constructor (``num_in_ch``, ``num_out_ch``, ``feature_channels``, ``upscale``, ...) for ``network_g``;
- the reparameterised convolutions' inference weights (``eval_conv``) frozen, as in the official code (spandrel
  leaves them trainable although the training form never uses them; a trainable unused tensor would stop DDP);
- ``reparameterized: true``: every Conv3XC is its single 3x3 ``eval_conv`` (:class:`FusedConv3XC`), the form that
  runs at inference and the form DSCLoRA's student is trained in (ConvLoRA on the ``eval_conv`` layers,
  github.com/Yaozzz666/DSCF-SR ``models/team23_DSCF.py``). A checkpoint in the official training layout loads into
  it strictly: its branches are fused into ``eval_conv`` on load (spandrel's ``Conv3XC.update_params``).

In the training form (default), Conv3XC runs ``1x1 -> 3x3 -> 1x1`` plus a 1x1 shortcut while training, and in eval
mode fuses them into ``eval_conv`` before each forward (docs/span_convlora.md states the tolerance between the two).
"""
import torch
from basicsr.utils.registry import ARCH_REGISTRY
from spandrel.architectures.SPAN import SPAN as SpandrelSPAN
from spandrel.architectures.SPAN.__arch.span import Conv3XC
from torch import nn
from typing import Dict, Sequence

from kdplugins.utils.registry import register

CONV3XC_GAIN = 2  # every Conv3XC of SPAN widens its 1x1 -> 3x3 -> 1x1 branch by 2 (``gain1=2``)
TRAINING_BRANCHES = ('sk.', 'conv.')  # tensor prefixes of a Conv3XC's training form


def fused_weights(state: Dict[str, torch.Tensor], prefix: str, c_in: int, c_out: int) -> Dict[str, torch.Tensor]:
    """The 3x3 ``eval_conv`` weight and bias of the Conv3XC at ``prefix`` of a training-form ``state``, fused by
    spandrel's ``Conv3XC.update_params`` (the official formula)."""
    conv = Conv3XC(c_in, c_out, gain1=CONV3XC_GAIN)
    own = conv.state_dict()
    conv.load_state_dict({k: state.get(prefix + k, own[k]) for k in own})
    conv.update_params()
    return {'weight': conv.eval_conv.weight.detach().clone(), 'bias': conv.eval_conv.bias.detach().clone()}


class FusedConv3XC(nn.Module):
    """A Conv3XC reduced to its inference form: one 3x3 convolution named ``eval_conv`` as in the official layout."""

    def __init__(self, c_in: int, c_out: int, has_relu: bool = False):
        super().__init__()
        self.c_in, self.c_out, self.has_relu = c_in, c_out, has_relu
        self.eval_conv = nn.Conv2d(c_in, c_out, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.eval_conv(x)
        return nn.functional.leaky_relu(out, negative_slope=0.05) if self.has_relu else out

    def fuse_training_branches(self, state_dict: Dict[str, torch.Tensor], prefix: str) -> None:
        """A training-form ``state_dict`` (``<prefix>sk.*``, ``<prefix>conv.*``) fused into ``<prefix>eval_conv.*``
        in place, its branch tensors consumed and the stale ``eval_conv`` it holds replaced."""
        branches = [k for k in state_dict if k.startswith(prefix) and k[len(prefix):].startswith(TRAINING_BRANCHES)]
        if not branches:
            return
        fused = fused_weights(state_dict, prefix, self.c_in, self.c_out)
        for key in branches:
            del state_dict[key]
        for name, tensor in fused.items():
            state_dict[f'{prefix}eval_conv.{name}'] = tensor

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        self.fuse_training_branches(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


@register(ARCH_REGISTRY)
class SPAN(SpandrelSPAN):
    """SPAN with the official checkpoints' layout.

    Args:
        num_in_ch, num_out_ch: image channels (3).
        feature_channels: width; 48 is the paper's SPAN (0.43 M parameters at x4), 28 the NTIRE 2024 challenge entry
            (0.151 M), 26 DSCLoRA's student (0.131 M) (docs/span_convlora.md, parameters counted by tests/test_span.py).
        upscale: scale factor.
        bias: kept for the official signature (unused, as in the official code).
        norm: subtract ``rgb_mean`` and multiply by ``img_range`` inside (the official models: true).
        img_range, rgb_mean: the official normalisation (images in [0, 1] scaled to [0, 255] inside).
        reparameterized: every Conv3XC as its single 3x3 ``eval_conv`` (:class:`FusedConv3XC`).
    """

    def __init__(self,
                 num_in_ch: int = 3,
                 num_out_ch: int = 3,
                 feature_channels: int = 48,
                 upscale: int = 4,
                 bias: bool = True,
                 norm: bool = True,
                 img_range: float = 255.,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040),
                 reparameterized: bool = False):
        super().__init__(
            num_in_ch=num_in_ch,
            num_out_ch=num_out_ch,
            feature_channels=feature_channels,
            upscale=upscale,
            bias=bias,
            norm=norm,
            img_range=img_range,
            rgb_mean=tuple(rgb_mean))
        self.reparameterized = reparameterized
        for name, module in list(self.named_modules()):
            if not isinstance(module, Conv3XC):
                continue
            if reparameterized:
                parent, _, child = name.rpartition('.')
                fused = FusedConv3XC(module.eval_conv.in_channels, module.eval_conv.out_channels, module.has_relu)
                setattr(self.get_submodule(parent) if parent else self, child, fused)
            else:
                module.eval_conv.requires_grad_(False)

    def convert_state_dict(self, state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``state`` in this network's layout: a training-form checkpoint fused for ``reparameterized: true`` (what
        loading does anyway; for callers that check the keys before loading, such as kd-export)."""
        state = dict(state)
        for name, module in self.named_modules():
            if isinstance(module, FusedConv3XC):
                module.fuse_training_branches(state, f'{name}.')
        return state
