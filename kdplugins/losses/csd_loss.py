"""Contrastive loss of CSD (Wang et al., "Towards Compact Single Image Super-Resolution via Contrastive
Self-distillation", IJCAI 2021, Sec. 3.2, Eq. 2) in the feature space of an ImageNet VGG-19."""
import os
import torch
import torch.nn.functional as F
from basicsr.utils import get_root_logger
from basicsr.utils.registry import LOSS_REGISTRY
from torch import nn
from typing import Dict, List, Optional, Tuple

from kdplugins.utils.registry import register

# VGG-19 convolutions per stage ('M' = max pooling), torchvision's layout: the index of every layer in ``features``
# is that of ``torchvision.models.vgg19().features``, so its state dict (``features.<i>.weight``) loads as it is.
VGG19_CONFIG = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M', 512, 512, 512, 512, 'M', 512, 512, 512, 512, 'M']
VGG19_FILE = 'vgg19-dcbb9e9d.pth'  # torchvision's ImageNet VGG-19 (IMAGENET1K_V1)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Sec. 4.1: features after the 1st, 3rd, 5th, 9th and 13th convs, weighted 1/32, 1/16, 1/8, 1/4 and 1.
CSD_LAYER_WEIGHTS = {'relu1_1': 1 / 32, 'relu2_1': 1 / 16, 'relu3_1': 1 / 8, 'relu4_1': 1 / 4, 'relu5_1': 1.0}
CSD_NUM_NEGATIVES = 10  # K, Sec. 4.1


def vgg19_layer_names() -> List[str]:
    """Names of the layers of ``torchvision.models.vgg19().features`` in order (``conv1_1``, ``relu1_1``, ...)."""
    names, stage, index = [], 1, 1
    for item in VGG19_CONFIG:
        if item == 'M':
            names.append(f'pool{stage}')
            stage, index = stage + 1, 1
        else:
            names += [f'conv{stage}_{index}', f'relu{stage}_{index}']
            index += 1
    return names


def vgg19_features(last_layer: str) -> nn.Sequential:
    """``torchvision.models.vgg19().features`` up to ``last_layer`` (same indices), built on the meta device (no
    initialization: weights come from :func:`load_vgg_weights` or :func:`random_vgg_weights`)."""
    layers, in_channels = [], 3
    for item in VGG19_CONFIG:
        if item == 'M':
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(in_channels, item, 3, padding=1, device='meta'), nn.ReLU(inplace=True)]
            in_channels = item
    return nn.Sequential(*layers[:vgg19_layer_names().index(last_layer) + 1])


def default_vgg_paths() -> List[str]:
    """Where torchvision's VGG-19 file is looked for without ``vgg_weights``: the torch hub cache, then BasicSR's
    ``experiments/pretrained_models`` (relative to the current directory)."""
    return [
        os.path.join(torch.hub.get_dir(), 'checkpoints', VGG19_FILE),
        os.path.join('experiments', 'pretrained_models', VGG19_FILE)
    ]


def load_vgg_weights(features: nn.Sequential, path: Optional[str]) -> str:
    """Load the ImageNet weights of torchvision's VGG-19 into ``features`` from ``path`` (or the default places).
    Returns the file used; raises ``FileNotFoundError`` with the fix when there is none."""
    candidates = [path] if path else default_vgg_paths()
    found = next((p for p in candidates if os.path.isfile(p)), None)
    if found is None:
        raise FileNotFoundError(
            f'CSDContrastiveLoss needs the ImageNet VGG-19 weights of torchvision ({VGG19_FILE}), not found at '
            f'{" or ".join(candidates)}. Fetch it with python -m kdplugins.download VGG19 (into experiments/'
            f'pretrained_models) or download https://download.pytorch.org/models/{VGG19_FILE} on a machine '
            'with network access and set vgg_weights: /path/to/vgg19.pth in the loss options (or copy it to the '
            'first place above). Only for tests or demos, vgg_weights: random uses randomly initialized VGG '
            'weights (not the paper\'s loss).')
    state = torch.load(found, map_location='cpu', weights_only=True)
    prefix = 'features.' if any(k.startswith('features.') for k in state) else ''
    wanted = {k: state.get(prefix + k) for k in features.state_dict(keep_vars=True)}
    missing = [k for k, v in wanted.items() if v is None]
    if missing:
        raise KeyError(f'{found} is not a torchvision VGG-19 state dict: no {prefix}{missing[0]} '
                       f'(and {len(missing) - 1} more missing).')
    features.load_state_dict(wanted, strict=True, assign=True)
    return found


def random_vgg_weights(features: nn.Sequential, seed: int = 0) -> None:
    """Kaiming-normal weights from a fixed seed (the same on every rank; the global generators are untouched)."""
    generator = torch.Generator().manual_seed(seed)
    for layer in features:
        if isinstance(layer, nn.Conv2d):
            fan_out = layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
            weight = torch.randn(layer.weight.shape, generator=generator) * (2.0 / fan_out)**0.5
            layer.weight = nn.Parameter(weight)
            layer.bias = nn.Parameter(torch.zeros(layer.out_channels))


class VGGFeatures(nn.Module):
    """Frozen VGG-19 returning the features of ``layers`` (e.g. ``relu1_1``) of images in [0, ``input_range``].

    Args:
        layers: names of :func:`vgg19_layer_names`; the network stops at the deepest one.
        weights: path of torchvision's ``vgg19`` state dict, ``None`` for :func:`default_vgg_paths`, or
            ``'random'`` (logged as a warning).
        input_range: value range of the images (1 for BasicSR's [0, 1] images).
        use_input_norm: normalize with the ImageNet mean and std after scaling to [0, 1], as torchvision's VGG
            expects.
    """

    def __init__(self,
                 layers: List[str],
                 weights: Optional[str] = None,
                 input_range: float = 1.0,
                 use_input_norm: bool = True):
        super().__init__()
        names = vgg19_layer_names()
        unknown = [name for name in layers if name not in names]
        if unknown:
            raise ValueError(f'Unknown VGG-19 layer(s) {unknown}; valid names: {", ".join(names)}.')
        self.layer_indices = {name: names.index(name) for name in layers}
        self.features = vgg19_features(max(layers, key=names.index))
        if weights == 'random':
            random_vgg_weights(self.features)
            self.weights_file = 'random'
            get_root_logger().warning('CSDContrastiveLoss: vgg_weights is "random": the VGG-19 has random weights, '
                                      'so this is not the loss of the CSD paper (use only for tests and demos).')
        else:
            self.weights_file = load_vgg_weights(self.features, weights)
        self.features.requires_grad_(False)
        self.features.eval()
        self.input_range = input_range
        self.use_input_norm = use_input_norm
        self.register_buffer('mean', torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer('std', torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> 'VGGFeatures':
        super().train(mode)
        self.features.eval()  # always frozen
        return self

    def forward(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        x = x / self.input_range
        if self.use_input_norm:
            x = (x - self.mean) / self.std
        taps = {index: name for name, index in self.layer_indices.items()}
        outputs = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in taps:
                outputs[taps[index]] = x
        return outputs


def mean_l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``d(a_i, b_i)`` of Eq. 2 for each sample ``i``: the mean absolute difference over its elements."""
    return (a - b).abs().flatten(1).mean(dim=1)


@register(LOSS_REGISTRY)
class CSDContrastiveLoss(nn.Module):
    """Contrastive loss of CSD (Eq. 2), usable on its own:

    ``loss_weight * mean_i sum_j λ_j d(φ_j(S_i), φ_j(T_i)) / (sum_k d(φ_j(S_i), φ_j(N_ik)) + eps)``

    with ``d`` the L1 distance (mean absolute difference), ``φ_j`` the VGG-19 features of ``layer_weights``
    (default relu1_1 ... relu5_1 weighted 1/32, 1/16, 1/8, 1/4, 1; Sec. 4.1), the anchor ``S`` the student's output,
    the positive ``T`` the teacher's output, and the negatives ``N_ik``, k = 1..K, the LR inputs of K *other* samples
    of the batch, bicubic-upsampled to the output size (Sec. 3.2). Eq. 2 sums over the training images; a batch
    gives the mean over its samples. The K negatives of each anchor are drawn at random (with ``generator``) among
    the other samples, all of them when K = batch - 1.

    Efficiency: one VGG pass with autograd (the anchors; the VGG weights are frozen), one without (the positives
    and the B upsampled LR images together); the features of each LR image are shared by all anchors it is a
    negative of.

    Args:
        loss_weight: λ_C of Eq. 3 (default 1; CSDModel's default is the paper's 200 / 255).
        num_negatives: K (default 10, the paper's); at most batch - 1 (batch with ``negatives_include_own``).
        negatives_include_own: let an anchor's own upsampled LR image be one of its negatives (default false).
        layer_weights: ``{vgg layer: λ_j}`` (default :data:`CSD_LAYER_WEIGHTS`, Sec. 4.1).
        vgg_weights: path of torchvision's VGG-19 state dict (``vgg19-dcbb9e9d.pth``); default: the torch hub cache
            or BasicSR's ``experiments/pretrained_models``; ``random``: random weights, with a warning.
        vgg_input_range: value range of the images (1 for BasicSR's [0, 1] images, 255 for [0, 255]).
        vgg_input_norm: ImageNet mean/std normalization before VGG (default true).
        detach_positive: no gradient into the teacher's output through this loss (default true; false is the
            paper's CSD-B ablation).
        eps: added to the denominator.
    """

    def __init__(self,
                 loss_weight: float = 1.0,
                 num_negatives: int = CSD_NUM_NEGATIVES,
                 negatives_include_own: bool = False,
                 layer_weights: Optional[Dict[str, float]] = None,
                 vgg_weights: Optional[str] = None,
                 vgg_input_range: float = 1.0,
                 vgg_input_norm: bool = True,
                 detach_positive: bool = True,
                 eps: float = 1e-7):
        super().__init__()
        if int(num_negatives) < 1:
            raise ValueError(f'CSDContrastiveLoss: num_negatives must be at least 1, got {num_negatives}.')
        self.loss_weight = loss_weight
        self.num_negatives = int(num_negatives)
        self.negatives_include_own = bool(negatives_include_own)
        self.layer_weights = dict(layer_weights or CSD_LAYER_WEIGHTS)
        self.detach_positive = detach_positive
        self.eps = eps
        self.vgg = VGGFeatures(list(self.layer_weights), vgg_weights, vgg_input_range, vgg_input_norm)

    def max_negatives(self, batch: int) -> int:
        return batch if self.negatives_include_own else batch - 1

    def check_batch(self, batch: int) -> None:
        """Clear error when a batch of ``batch`` samples cannot give ``num_negatives`` negatives per anchor."""
        available = self.max_negatives(batch)
        if self.num_negatives > available:
            own = '' if self.negatives_include_own else ' (negatives_include_own: true adds its own LR image)'
            raise ValueError(f'CSDContrastiveLoss: num_negatives is {self.num_negatives} but a batch of {batch} gives '
                             f'each anchor only {available} negatives (the other samples of the batch{own}). Lower '
                             'num_negatives or raise the batch size (batch_size_per_gpu).')

    def negative_indices(self,
                         batch: int,
                         device: torch.device,
                         generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``[batch, K]``: for each anchor, the batch indices of its K negatives (distinct, random)."""
        self.check_batch(batch)
        if generator is not None:
            scores = torch.rand(batch, batch, generator=generator, device=generator.device).to(device)
        else:
            scores = torch.rand(batch, batch, device=device)
        if not self.negatives_include_own:
            scores.fill_diagonal_(float('inf'))
        return scores.argsort(dim=1)[:, :self.num_negatives]

    def negatives(self, lq: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
        """The LR images bicubic-upsampled to the output size (one per sample, Sec. 3.2)."""
        return F.interpolate(lq, size=size, mode='bicubic', align_corners=False)

    def forward(self,
                student: torch.Tensor,
                teacher: torch.Tensor,
                lq: torch.Tensor,
                generator: Optional[torch.Generator] = None,
                negative_index: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Eq. 2 for a batch: ``student`` (anchor) and ``teacher`` (positive) outputs ``[B, 3, H, W]``, ``lq`` the LR
        inputs ``[B, 3, h, w]``; ``negative_index`` (``[B, K]``) overrides the random choice of negatives."""
        if negative_index is None:
            negative_index = self.negative_indices(student.size(0), student.device, generator)
        anchor_feats, positive_feats, negative_feats = self.features(student, teacher, lq)
        per_sample = student.new_zeros(student.size(0))
        for name, weight in self.layer_weights.items():
            per_sample = per_sample + weight * self.ratio(anchor_feats[name], positive_feats[name],
                                                          negative_feats[name], negative_index)
        return self.loss_weight * per_sample.mean()

    def features(self, student: torch.Tensor, teacher: torch.Tensor,
                 lq: torch.Tensor) -> Tuple[Dict[str, torch.Tensor], ...]:
        """VGG features of anchors, positives and negatives: the negatives (and detached positives) in one pass
        without autograd, the anchors (and non-detached positives) in one pass with autograd."""
        negatives = self.negatives(lq, student.shape[-2:])
        batch = student.size(0)
        if self.detach_positive:
            with torch.no_grad():
                frozen = self.vgg(torch.cat([teacher.detach(), negatives]))
            anchor = self.vgg(student)
            positive = {k: v[:batch] for k, v in frozen.items()}
        else:
            with torch.no_grad():
                frozen = self.vgg(negatives)
            both = self.vgg(torch.cat([student, teacher]))
            anchor, positive = ({k: v[:batch] for k, v in both.items()}, {k: v[batch:] for k, v in both.items()})
        negative = {k: v[-batch:] for k, v in frozen.items()}
        return anchor, positive, negative

    def ratio(self, anchor: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
              negative_index: torch.Tensor) -> torch.Tensor:
        """``d(a_i, p_i) / (sum_k d(a_i, n_{index[i, k]}) + eps)`` for each anchor ``i`` of one layer."""
        to_negatives = sum(mean_l1(anchor, negatives[negative_index[:, k]]) for k in range(negative_index.size(1)))
        return mean_l1(anchor, positive) / (to_negatives + self.eps)
