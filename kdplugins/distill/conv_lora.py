"""ConvLoRA: low-rank branches on chosen convolutions of a student, merged into plain convolutions after training.

The factorisation is loralib's ``ConvLoRA`` (Hu et al., LoRA, ICLR 2022, github.com/microsoft/LoRA
``loralib/layers.py``), the one DSCLoRA trains (Chai et al., CVPR 2025 NTIRE workshop, arXiv 2504.11271; its code
github.com/Yaozzz666/DSCF-SR ``models/team23_DSCF.py``, ``Lora_Conv2d``): for a ``k x k`` convolution with weight
``W`` (out, in/groups, k, k), ``A`` (r*k, in*k) and ``B`` (out/groups*k, r*k) give

    W' = W + (alpha / r) * (B @ A).view(W.shape)

``A`` starts uniform in +-1/sqrt(in*k) (``kaiming_uniform_(a=sqrt(5))`` of loralib, drawn from a generator of its
own), ``B`` at zero, so the wrapped network starts equal to the base. The branch never changes ``W`` in place (no
merging on ``eval()`` as loralib does: a merge and unmerge in float32 would not give ``W`` back bitwise, and resumed
runs must repeat uninterrupted ones); :func:`merge_conv_lora` folds the branches into plain ``nn.Conv2d`` layers for
export, computing ``W'`` with the very expression of the forward pass.

Checkpoints hold the unmerged form: the base keys (``<path>.weight``, ``<path>.bias``) as the base network has them,
and ``<path>.lora_A``, ``<path>.lora_B`` and ``<path>._extra_state`` (alpha / r, a 0-d tensor; not a buffer, which
DDP would broadcast in the first forward after training, the rank-0-only validation, and hang), so a checkpoint
describes its own branches (:func:`add_conv_lora_from_state`).
"""
import fnmatch
import torch
from torch import nn
from typing import Dict, List, Mapping, Optional, Tuple

from kdplugins.utils.declared_options import Option
from kdplugins.utils.errors import ConfigurationError

BRANCH_KEYS = ('lora_A', 'lora_B', '_extra_state')

LORA_OPTIONS = {
    'modules': Option({}, help='fnmatch pattern of student module paths (nn.Conv2d) -> [rank, alpha]'),
    'train_base': Option(False, help='false: every student parameter outside the branches is frozen (DSCLoRA)'),
}


class LoRAOptionError(ConfigurationError, ValueError):
    """``train.lora`` names no convolution, a pattern matches nothing, or a rank / alpha is not valid."""


class ConvLoRA(nn.Conv2d):
    """An ``nn.Conv2d`` (same ``weight`` and ``bias``) with a low-rank branch: ``conv(x, W + scaling * BA, b)``."""

    def __init__(self, conv: nn.Conv2d, rank: int, alpha: float, generator: Optional[torch.Generator] = None):
        kernel = conv.kernel_size[0]
        if conv.kernel_size[0] != conv.kernel_size[1]:
            raise LoRAOptionError(f'ConvLoRA needs a square kernel; this convolution has {conv.kernel_size}.')
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
            device='meta',
            dtype=conv.weight.dtype)  # on meta: no draw from the global generator
        self.to_empty(device=conv.weight.device)
        with torch.no_grad():
            self.weight.copy_(conv.weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)
        self.weight.requires_grad_(conv.weight.requires_grad)
        if conv.bias is not None:
            self.bias.requires_grad_(conv.bias.requires_grad)
        bound = 1 / (self.in_channels * kernel)**0.5
        shape_a = (rank * kernel, self.in_channels * kernel)
        initial_a = torch.rand(shape_a, generator=generator, dtype=torch.float32) * (2 * bound) - bound
        self.lora_A = nn.Parameter(initial_a.to(conv.weight.device, conv.weight.dtype))
        self.lora_B = nn.Parameter(conv.weight.new_zeros((self.out_channels // self.groups * kernel, rank * kernel)))
        self.scaling = float(alpha) / rank

    @property
    def rank(self) -> int:
        return self.lora_A.shape[0] // self.kernel_size[0]

    def merged_weight(self) -> torch.Tensor:
        """``W + scaling * (B @ A).view(W.shape)``: the weight the forward pass convolves with."""
        return self.weight + (self.lora_B @ self.lora_A).view(self.weight.shape) * self.scaling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.merged_weight(), self.bias)

    def get_extra_state(self) -> torch.Tensor:
        return torch.tensor(self.scaling, dtype=torch.float64)  # alpha / r exactly, for bitwise resume

    def set_extra_state(self, state: torch.Tensor) -> None:
        self.scaling = float(state)

    def merge(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` with the merged weight and the same bias."""
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.bias is not None,
            self.padding_mode,
            device='meta',
            dtype=self.weight.dtype).to_empty(device=self.weight.device)
        with torch.no_grad():
            conv.weight.copy_(self.merged_weight())
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv


def parse_modules(modules: Mapping) -> List[Tuple[str, int, float]]:
    """``train.lora.modules`` (pattern -> [rank, alpha]) as (pattern, rank, alpha); errors name the entry."""
    if not isinstance(modules, Mapping) or not modules:
        raise LoRAOptionError('train.lora.modules: give a mapping of module path patterns to [rank, alpha], e.g. '
                              "{'block_*.c*_r.eval_conv': [2, 4], 'upsampler.0': [8, 16]}.")
    parsed = []
    for pattern, value in modules.items():
        if (not isinstance(value, (list, tuple)) or len(value) != 2 or isinstance(value[0], bool)
                or not isinstance(value[0], int) or value[0] < 1 or not isinstance(value[1],
                                                                                   (int, float)) or value[1] <= 0):
            raise LoRAOptionError(f'train.lora.modules.{pattern}: {value!r} is not [rank, alpha] with an integer '
                                  'rank >= 1 and alpha > 0 (the branch is scaled by alpha / rank).')
        parsed.append((str(pattern), int(value[0]), float(value[1])))
    return parsed


def convolutions(net: nn.Module) -> Dict[str, nn.Conv2d]:
    return {name: m for name, m in net.named_modules() if isinstance(m, nn.Conv2d) and name}


def match_modules(net: nn.Module, modules: Mapping) -> Dict[str, Tuple[int, float]]:
    """Module path -> (rank, alpha) for every convolution the patterns of ``modules`` name; a pattern that matches
    no convolution, or a convolution two patterns match, is an error that lists the convolutions there are."""
    convs = convolutions(net)
    chosen: Dict[str, Tuple[int, float]] = {}
    problems = []
    for pattern, rank, alpha in parse_modules(modules):
        matched = [path for path in convs if fnmatch.fnmatchcase(path, pattern)]
        if not matched:
            problems.append(f'train.lora.modules: {pattern!r} matches no nn.Conv2d of network_g')
        for path in matched:
            if path in chosen:
                problems.append(f'train.lora.modules: {path!r} is matched by more than one pattern')
            chosen[path] = (rank, alpha)
    if problems:
        listing = ', '.join(sorted(convs)[:40]) + (' ...' if len(convs) > 40 else '')
        raise LoRAOptionError('; '.join(problems) + f'. The convolutions of network_g ({type(net).__name__}) are: '
                              f'{listing}. Give fnmatch patterns of these paths ("*" also matches dots).')
    return chosen


def replace_module(net: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, child = path.rpartition('.')
    setattr(net.get_submodule(parent) if parent else net, child, module)


def apply_conv_lora(net: nn.Module, options: Mapping, seed: int = 0) -> List[str]:
    """Wrap the convolutions that ``options`` (``train.lora``) names with :class:`ConvLoRA` branches, in place; with
    ``train_base: false`` every other parameter of ``net`` is frozen. ``A`` is drawn from a generator seeded with
    ``seed`` in module order, the same on every rank. Returns the wrapped paths."""
    chosen = match_modules(net, options.get('modules'))
    if not options.get('train_base', False):
        net.requires_grad_(False)
    generator = torch.Generator().manual_seed(int(seed))
    convs = convolutions(net)
    for path, (rank, alpha) in chosen.items():
        replace_module(net, path, ConvLoRA(convs[path], rank, alpha, generator))
    return list(chosen)


def lora_paths(state: Mapping[str, torch.Tensor]) -> List[str]:
    """Module paths of the ConvLoRA branches a state dict holds."""
    return [key[:-len('.lora_A')] for key in state if key.endswith('.lora_A')]


def add_conv_lora_from_state(net: nn.Module, state: Mapping[str, torch.Tensor]) -> List[str]:
    """Give ``net`` the branches that ``state`` holds (ranks from the shapes of ``lora_A``), ready to load it."""
    convs = convolutions(net)
    paths = lora_paths(state)
    unknown = [path for path in paths if path not in convs]
    if unknown:
        raise LoRAOptionError(f'The checkpoint holds ConvLoRA branches on {unknown}, which are not convolutions of '
                              f'{type(net).__name__}; give the network options it was trained with.')
    for path in paths:
        rank = state[f'{path}.lora_A'].shape[0] // convs[path].kernel_size[0]
        alpha = float(state[f'{path}._extra_state']) * rank
        replace_module(net, path, ConvLoRA(convs[path], rank, alpha))
    return paths


def with_initial_branches(net: nn.Module, state: Mapping[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """``state`` of the base network (no branch tensors) completed with ``net``'s current branches: loading it
    starts the branches from their initialisation on the given base weights."""
    own = net.state_dict()
    return {**state, **{k: v for k, v in own.items() if k.rpartition('.')[2] in BRANCH_KEYS}}


def has_conv_lora(net: nn.Module) -> bool:
    return any(isinstance(m, ConvLoRA) for m in net.modules())


def merge_conv_lora(net: nn.Module) -> nn.Module:
    """Every :class:`ConvLoRA` of ``net`` replaced by its merged ``nn.Conv2d``, in place; ``net`` then has the
    base network's modules, state dict keys, parameter count and FLOPs."""
    for path, module in [(n, m) for n, m in net.named_modules() if isinstance(m, ConvLoRA)]:
        replace_module(net, path, module.merge())
    return net


__all__ = [
    'ConvLoRA', 'LORA_OPTIONS', 'LoRAOptionError', 'add_conv_lora_from_state', 'apply_conv_lora', 'has_conv_lora',
    'lora_paths', 'match_modules', 'merge_conv_lora', 'with_initial_branches'
]
