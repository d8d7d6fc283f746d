"""The frozen teachers of a distillation run: each built from its ``network_t*`` section, loaded, never trained,
never saved.

Teachers are declared as BasicSR declares networks: ``network_t`` (the teacher every method reads) and, for methods
that use several, ``network_t_<name>`` (``network_t_rcan``, ``network_t_2``, ...). Each has its own
``path.pretrain_network_<label>``, ``param_key_<label>``, ``strict_load_<label>`` and ``strip_prefix_<label>``
(``<label>``: ``t``, ``t_<name>``) and its own value range ``train.teacher_img_range`` (``network_t``) /
``train.teacher_img_range_<name>``.
"""
import re
import torch
from basicsr.archs import build_network
from torch import nn
from typing import Dict, List, Optional, Tuple

from kdplugins.utils.checkpoint import load_state_dict_checked, read_state_dict
from kdplugins.utils.errors import ConfigurationError
from kdplugins.utils.padding import forward_padded


class FrozenTeacher(nn.Module):
    """Wraps a pretrained network so that it stays frozen and in eval mode and runs without autograd.

    Args:
        net: the pretrained teacher network.
        img_range: value range the network was trained in. BasicSR feeds [0, 1] images; a teacher trained in
            [0, 255] gets its input multiplied by 255 and its output divided by 255, so that it takes and returns
            [0, 1] like the student.

    ``train()`` is a no-op that keeps eval mode (``BaseModel`` and users call it on every network), the parameters
    have ``requires_grad=False`` and ``forward`` runs under ``torch.no_grad()``. A teacher whose weights were cast to
    bf16 / fp16 (``train.speed.teacher_precision``) takes the input in its own precision and returns fp32; the
    training step's autocast does not apply to it.
    """

    def __init__(self, net: nn.Module, img_range: float = 1.0):
        super().__init__()
        self.net = net.requires_grad_(False)
        self.img_range = float(img_range)
        super().train(False)

    def train(self, mode: bool = True) -> 'FrozenTeacher':
        return super().train(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = next(self.net.parameters()).dtype
        with torch.autocast(x.device.type, enabled=False):  # the teacher runs in its own precision
            y = self.net(x.to(dtype) * self.img_range) / self.img_range
        return y.float()

    def differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` with autograd through the input and the activations (the weights stay frozen): for methods
        that pass student features through the teacher's layers (CrossKD)."""
        dtype = next(self.net.parameters()).dtype
        with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
            y = self.net(x.to(dtype) * self.img_range) / self.img_range
        return y.float()


TEACHER_NETWORK = re.compile(r'^network_(t(?:_[A-Za-z0-9]+)*)$')


def teacher_networks(opt: dict) -> List[str]:
    """The teacher sections of the options (``network_t``, ``network_t_<name>``), in the option file's order."""
    return [key for key in opt if TEACHER_NETWORK.match(key)]


def img_range_option(network: str) -> str:
    """``teacher_img_range`` of ``network_t``, ``teacher_img_range_<name>`` of ``network_t_<name>``."""
    return 'teacher_img_range' + network[len('network_t'):]


def build_teacher(opt: dict, device: torch.device, network: str = 'network_t') -> FrozenTeacher:
    """Build the teacher ``network`` (``network_t`` or ``network_t_<name>``), load its checkpoint and freeze it.

    Options, with ``<label>`` = ``network`` without ``network_``: ``path.pretrain_network_<label>`` (required),
    ``path.param_key_<label>`` (default ``params``; ``~`` or any key for flat state_dicts),
    ``path.strict_load_<label>`` (default true), ``path.strip_prefix_<label>`` (default ``module.``),
    ``train.teacher_img_range[_<name>]`` (default 1).
    """
    label = network[len('network_'):]
    if network not in opt:
        raise ValueError(
            f'A distillation model needs a teacher: add a {network} section (type and options of the teacher arch) '
            f'and path.pretrain_{network} (its trained weights).')
    path_opt = opt['path']
    checkpoint = path_opt.get(f'pretrain_{network}')
    if not checkpoint:
        raise ValueError(f'path.pretrain_{network} is not set: a distillation teacher must be trained. Set it to the '
                         "teacher's .pth file (train one with model_type: SRModel first).")
    net = build_network(opt[network])
    state = read_state_dict(
        checkpoint,
        path_opt.get(f'param_key_{label}', 'params'),
        path_opt.get(f'strip_prefix_{label}', 'module.'),
        option=f'path.pretrain_{network}')
    load_state_dict_checked(
        net,
        state,
        strict=path_opt.get(f'strict_load_{label}', True),
        what=f'teacher {network}',
        fix=f'Check {network} (type, widths, scale) against the checkpoint, or set path.param_key_{label} / '
        f'path.strip_prefix_{label}; path.strict_load_{label}: false loads the matching keys only.',
        min_share=float(opt.get('train', {}).get('min_matched_weights', 0.5)))
    img_range: Optional[float] = opt.get('train', {}).get(img_range_option(network), 1.0)
    return FrozenTeacher(net, img_range).to(device)


def build_teachers(opt: dict, device: torch.device) -> Dict[str, FrozenTeacher]:
    """Every teacher of the options (:func:`teacher_networks`) by its section name; ``network_t`` is required."""
    networks = teacher_networks(opt)
    if 'network_t' not in networks:
        networks.insert(0, 'network_t')  # build_teacher says what is missing
    return {network: build_teacher(opt, device, network) for network in networks}


class TeacherScaleError(ConfigurationError, ValueError):
    """A teacher upscales by another factor than the data's."""


class TeacherCheckError(ConfigurationError, ValueError):
    """A teacher does worse than bicubic upscaling: not the trained teacher it should be."""


def teacher_and_bicubic_psnr(teacher: nn.Module,
                             dataset,
                             scale: int,
                             device: torch.device,
                             count: int = 3) -> Tuple[float, float]:
    """Mean PSNR-Y (border ``scale``, outputs rounded to uint8, as basicsr validates) of the teacher and of bicubic
    upscaling of the same LR, over the first ``count`` pairs of a paired dataset (``{'lq', 'gt'}`` samples)."""
    import torch.nn.functional as F
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import tensor2img
    teacher_psnr, bicubic_psnr = [], []
    for index in range(min(count, len(dataset))):
        sample = dataset[index]
        lq, gt = sample['lq'][None].to(device), sample['gt'][None]
        with torch.no_grad():
            out = forward_padded(teacher, lq, scale).cpu()
        if tuple(out.shape[-2:]) != (lq.shape[-2] * scale, lq.shape[-1] * scale):
            raise TeacherScaleError(
                f'The teacher returns {tuple(out.shape[-2:])} for a {tuple(lq.shape[-2:])} LR image of the '
                f'scale-{scale} data: it upscales by another factor. Set its scale option (upscale / scale) to the '
                'scale of the data and use a checkpoint trained for it.')
        bicubic = F.interpolate(lq.cpu(), scale_factor=scale, mode='bicubic', align_corners=False)
        gt = gt[..., :out.shape[-2], :out.shape[-1]]
        for psnrs, sr in ((teacher_psnr, out), (bicubic_psnr, bicubic)):
            psnrs.append(calculate_psnr(tensor2img(sr), tensor2img(gt), crop_border=scale, test_y_channel=True))
    return sum(teacher_psnr) / len(teacher_psnr), sum(bicubic_psnr) / len(bicubic_psnr)
