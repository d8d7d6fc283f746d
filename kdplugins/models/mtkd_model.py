"""MTKD (Jiang et al., "MTKD: Multi-Teacher Knowledge Distillation for Image Super-Resolution", ECCV 2024) in two
stages, each a training run of its own (docs/mtkd.md):

1. :class:`MTKDAggregatorModel`: the knowledge aggregation network (``network_g``, :class:`~kdplugins.archs
   .mtkd_aggregator_arch.MTKDAggregator`) learns to turn the frozen teachers' outputs into one HR image, against HR.
2. :class:`MTKDModel`: the student learns from HR and from the output of the frozen stage-1 aggregator
   (``network_agg``, ``path.pretrain_network_agg``), in the pixel and in the wavelet domain.
"""
import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.utils.registry import MODEL_REGISTRY
from collections import OrderedDict
from typing import List, Mapping, Optional

from kdplugins.distill.teacher import FrozenTeacher, teacher_networks
from kdplugins.models.distill_model import DistillModel
from kdplugins.models.kd_model import KDModel
from kdplugins.utils.checkpoint import load_state_dict_checked, read_state_dict
from kdplugins.utils.errors import ConfigurationError
from kdplugins.utils.modules import bare_module
from kdplugins.utils.padding import forward_padded
from kdplugins.utils.registry import register


class MTKDOptionError(ConfigurationError, ValueError):
    """The options of an MTKD stage do not fit together (teachers, aggregator, stage-1 checkpoint)."""


def aggregator_inputs_problem(network_opt: Mapping, section: str, opt: Mapping) -> Optional[str]:
    """Why the aggregator of ``section`` (an ``MTKDAggregator``) cannot take the teachers of ``opt``, or None."""
    if network_opt.get('type') != 'MTKDAggregator':
        return None  # an aggregator arch of another project: its own constructor says what it takes
    teachers = teacher_networks(opt) or ['network_t']
    inputs = network_opt.get('num_teachers', 3)
    if inputs == len(teachers):
        return None
    return (f'{section}.num_teachers is {inputs} but the options declare {len(teachers)} teacher(s) '
            f'({", ".join(teachers)}): the aggregator takes one image per teacher. Set {section}.num_teachers: '
            f'{len(teachers)}, or declare the teachers it was trained with.')


def teacher_outputs(teachers: Mapping[str, FrozenTeacher], lq: torch.Tensor, scale: Optional[int] = None):
    """The teachers' outputs for ``lq`` concatenated along the channels, in the option file's order (the
    aggregator's input); ``scale``: pad to each teacher's window first (whole validation images)."""
    if scale is None:
        return torch.cat([teacher(lq) for teacher in teachers.values()], dim=1)
    return torch.cat([forward_padded(teacher, lq, scale) for teacher in teachers.values()], dim=1)


@register(MODEL_REGISTRY)
class MTKDAggregatorModel(DistillModel):
    """MTKD stage 1: ``network_g`` is the aggregator, trained with ``pixel_opt(A([T_1(LR), ..., T_N(LR)]), HR)``;
    the teachers ``network_t``, ``network_t_<name>`` stay frozen (their outputs in the option file's order)."""

    TRAIN_OPTIONS = {**DistillModel.TRAIN_OPTIONS, **DistillModel.TEACHER_TRAIN_OPTIONS}

    @classmethod
    def option_problems(cls, opt: Mapping) -> List[str]:
        problem = aggregator_inputs_problem(opt.get('network_g') or {}, 'network_g', opt)
        return [problem] if problem else []

    def setup_method(self) -> None:
        problems = self.option_problems(self.opt)
        if problems:
            raise MTKDOptionError(' '.join(problems))
        if self.cri_pix is None:
            raise MTKDOptionError('MTKDAggregatorModel trains the aggregator against HR: set train.pixel_opt (the '
                                  'authors: {type: L1Loss, loss_weight: 1}).')

    def compute_losses(self, current_iter: int) -> 'OrderedDict[str, torch.Tensor]':
        self.output = self.net_g(teacher_outputs(self.teachers, self.lq))
        return OrderedDict(l_pix=self.cri_pix(self.output, self.gt))

    def test(self) -> None:
        """The aggregator on the teachers' outputs; the network itself, not its DDP wrapper (DistillModel.test)."""
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else bare_module(self.net_g)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.output = net(teacher_outputs(self.teachers, self.lq, int(self.opt['scale'])))
        net.train(was_training)


def build_aggregator(opt: Mapping, device: torch.device) -> FrozenTeacher:
    """The stage-1 aggregator of ``network_agg``, loaded from ``path.pretrain_network_agg`` (``param_key_agg``
    default ``params``, ``strict_load_agg`` default true, ``strip_prefix_agg`` default ``module.``) and frozen."""
    path_opt = opt['path']
    net = build_network(dict(opt['network_agg']))
    state = read_state_dict(
        path_opt['pretrain_network_agg'],
        path_opt.get('param_key_agg', 'params'),
        path_opt.get('strip_prefix_agg', 'module.'),
        option='path.pretrain_network_agg')
    load_state_dict_checked(
        net,
        state,
        strict=path_opt.get('strict_load_agg', True),
        what='aggregator network_agg',
        fix='Use the network_agg section of the stage-1 run (type, sizes, num_teachers) with its checkpoint, or set '
        'path.param_key_agg (params_ema for the EMA weights).',
        min_share=float(opt.get('train', {}).get('min_matched_weights', 0.5)))
    return FrozenTeacher(net).to(device)


@register(MODEL_REGISTRY)
class MTKDModel(KDModel):
    """MTKD stage 2: the student ``network_g`` learns from HR and from the frozen aggregator's output
    ``A = network_agg([T_1(LR), ..., T_N(LR)])``: ``pixel_opt(S, HR) + kd_opt(S, A) + wavelet_opt(S, A)`` (each when
    set; ``wavelet_opt``: :class:`~kdplugins.losses.wavelet_loss.WaveletL1Loss`). Teachers and aggregator are never
    trained, saved or DDP-wrapped; validation logs the aggregator as ``Teacher (aggregator network_agg)`` and every
    teacher under its own name.
    """

    TRAIN_OPTIONS = {
        **DistillModel.TRAIN_OPTIONS,
        **DistillModel.TEACHER_TRAIN_OPTIONS, 'kd_opt': None,
        'wavelet_opt': None,
        'probe_size': 32
    }
    TEACHER_DESCRIPTION = 'aggregator network_agg'

    @classmethod
    def option_problems(cls, opt: Mapping) -> List[str]:
        if not isinstance(opt.get('network_agg'), Mapping):
            return [
                'network_agg: missing; MTKDModel distils from the stage-1 aggregator. Copy the network_g section '
                'of the stage-1 run (model_type: MTKDAggregatorModel) as network_agg.'
            ]
        problems = []
        if not (opt.get('path') or {}).get('pretrain_network_agg'):
            problems.append('path.pretrain_network_agg is not set: MTKDModel needs the trained stage-1 aggregator. '
                            'Train it first (model_type: MTKDAggregatorModel, options/train/MTKD/) and set '
                            'path.pretrain_network_agg to experiments/<stage-1 name>/models/net_g_latest.pth.')
        problem = aggregator_inputs_problem(opt['network_agg'], 'network_agg', opt)
        return problems + ([problem] if problem else [])

    def setup_method(self) -> None:
        problems = self.option_problems(self.opt)
        if problems:
            raise MTKDOptionError(' '.join(problems))
        train_opt = self.opt['train']
        self.aggregator = build_aggregator(self.opt, self.device)
        self.cri_kd = build_loss(train_opt['kd_opt']).to(self.device) if train_opt.get('kd_opt') else None
        self.cri_wavelet = build_loss(train_opt['wavelet_opt']).to(
            self.device) if train_opt.get('wavelet_opt') else None
        if self.cri_kd is None and self.cri_wavelet is None:
            raise MTKDOptionError('MTKDModel distils from the aggregator: set train.kd_opt (pixel domain) and/or '
                                  'train.wavelet_opt (wavelet domain, type: WaveletL1Loss).')
        self.setup_feature_losses([])  # no feature taps; the probe checks every teacher's scale against the student

    def teacher_forward(self, lq: torch.Tensor, hr: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The aggregator's output for ``lq`` (no autograd): MTKD's distillation target."""
        return self.aggregator(teacher_outputs(self.teachers, lq))

    def compute_losses(self, current_iter: int) -> 'OrderedDict[str, torch.Tensor]':
        self.output = self.net_g(self.lq)
        target = self.teacher_forward(self.lq)
        losses = self.reconstruction_terms(target)
        if self.cri_wavelet is not None:
            losses['l_wavelet'] = self.cri_wavelet(self.output, target)
        return losses

    def teacher_output(self, lq: torch.Tensor) -> torch.Tensor:
        return self.aggregator(teacher_outputs(self.teachers, lq, int(self.opt['scale'])))

    def validated_teachers(self):
        """The aggregator (as ``teacher_<metric>``), then every teacher, ``network_t`` included, under its name."""
        aggregator, *others = super().validated_teachers()
        scale = int(self.opt['scale'])
        first = ('network_t', 'teacher_t', lambda lq: forward_padded(self.net_t, lq, scale))
        return [aggregator, first, *others]
