"""KDModel: output and feature distillation from a frozen teacher (AugKD Eq. 1-2; FitNet, AT, FAKD, RKD, CRD taps)."""
import torch
from basicsr.losses import build_loss
from basicsr.utils.registry import DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
from collections import OrderedDict
from torch import nn
from typing import Dict, List, Optional, Tuple

from kdplugins.distill import loss_inputs
from kdplugins.distill.multi_teacher import MULTI_TEACHER_OPTIONS, combine_outputs, normalised_weights
from kdplugins.distill.recorder import FeatureRecorder
from kdplugins.models.distill_model import DistillModel
from kdplugins.utils.declared_options import read_block
from kdplugins.utils.modules import bare_module
from kdplugins.utils.registry import register

Features = Dict[str, torch.Tensor]


@register(MODEL_REGISTRY)
class KDModel(DistillModel):
    """Student ``network_g`` trained as in ``SRModel``, plus a frozen teacher ``network_t`` (Eq. 1-2 of AugKD).

    Loss per iteration: ``pixel_opt(S(LR), HR) + kd_opt(S(LR), T(LR)) + sum of feature_losses`` (each optional,
    at least one required), one backward pass, one optimizer step. Each term is logged under its own name.

    Options (besides :class:`~kdplugins.models.distill_model.DistillModel`'s):
        network_t, path.pretrain_network_t / param_key_t / strict_load_t / strip_prefix_t: the teacher.
        network_t_<name>, path.pretrain_network_t_<name> / ...: further teachers (:mod:`kdplugins.distill.teacher`);
            ``kd_opt`` then distils towards their combination (``train.multi_teacher``: the mean, fixed weights or
            per-pixel weights from each teacher's error against HR; :mod:`kdplugins.distill.multi_teacher`).
            Feature losses tap ``network_t``.
        train.kd_opt: a loss between student and teacher outputs, e.g. ``{type: L1Loss, loss_weight: 1}``.
        train.feature_losses: list of ``{type, student_layer, teacher_layer, ...}``; the loss receives the two
            features recorded in the step's forwards (:class:`~kdplugins.distill.recorder.FeatureRecorder`) and the
            inputs it asks for (:mod:`kdplugins.distill.loss_inputs`: channels, dataset size, indices, generator).
            Its trainable parameters (connectors) join the optimizer, the training state and resume.
        train.probe_size: side of the random LR input of the probe forward (default 32) that checks the teacher's
            scale against the student's and measures the tapped feature shapes.
    """

    TRAIN_OPTIONS = {
        **DistillModel.TRAIN_OPTIONS,
        **DistillModel.TEACHER_TRAIN_OPTIONS, 'kd_opt': None,
        'feature_losses': None,
        'probe_size': 32,
        'multi_teacher': MULTI_TEACHER_OPTIONS
    }

    def setup_method(self) -> None:
        train_opt = self.opt['train']
        self.multi_teacher = read_block(train_opt.get('multi_teacher'), MULTI_TEACHER_OPTIONS, 'train.multi_teacher')
        self.teacher_weights = normalised_weights(self.multi_teacher['combine'], self.multi_teacher['weights'],
                                                  list(self.teachers))
        self.cri_kd = build_loss(train_opt['kd_opt']).to(self.device) if train_opt.get('kd_opt') else None
        self.setup_feature_losses(list(train_opt.get('feature_losses') or []))
        if self.cri_pix is None and self.cri_kd is None and not self.feature_loss_opts:
            raise ValueError(f'{type(self).__name__} has no loss: set train.pixel_opt, train.kd_opt or '
                             'train.feature_losses.')

    # ----------------------------------------------------------------------------------------------------------
    # feature losses: taps on both networks, a probe forward, the losses with their connectors
    def setup_feature_losses(self, loss_opts: List[dict]) -> None:
        """Taps of ``loss_opts``' layers on both networks, the probe (scales, tapped shapes), the losses."""
        self.feature_loss_opts = loss_opts
        self.student_taps = self.taps(
            FeatureRecorder(self.net_g, [o['student_layer'] for o in loss_opts], 'student (network_g)'))
        self.teacher_taps = self.taps(
            FeatureRecorder(self.net_t.net, [o['teacher_layer'] for o in loss_opts], 'teacher (network_t)'))
        student_shapes, teacher_shapes = self.probe_shapes()
        losses = {}
        for i, loss_opt in enumerate(loss_opts):
            available = {
                'student_channels': lambda: student_shapes[loss_opt['student_layer']][1],
                'teacher_channels': lambda: teacher_shapes[loss_opt['teacher_layer']][1],
                'num_train_images': self.num_train_images,
            }
            losses[self.feature_loss_name(i)] = self.build_feature_loss(loss_opt, available)
        self.add_distill_modules(losses)

    def feature_loss_name(self, i: int) -> str:
        loss_type = self.feature_loss_opts[i]['type']
        same_type = [o for o in self.feature_loss_opts if o['type'] == loss_type]
        return f'l_{loss_type}' if len(same_type) == 1 else f'l_{loss_type}_{i}'

    def num_train_images(self) -> Optional[int]:
        """Number of images of the training dataset of the options (before ``dataset_enlarge_ratio``), else None.

        The dataset is constructed again for this (its class directly: basicsr's ``build_dataset`` would log it
        twice); for an LMDB that reads ``meta_info.txt`` only."""
        dataset_opt = (self.opt.get('datasets') or {}).get('train')
        if not dataset_opt:
            return None
        return len(DATASET_REGISTRY.get(dataset_opt['type'])(dataset_opt))

    @staticmethod
    def build_feature_loss(loss_opt: dict, available: dict) -> nn.Module:
        """The loss of ``loss_opt`` with the build inputs it asks for (:func:`kdplugins.distill.loss_inputs
        .build_inputs`; ``available`` maps each name to a function that measures it)."""
        loss_opt = {k: v for k, v in loss_opt.items() if k not in ('student_layer', 'teacher_layer')}
        inputs = loss_inputs.build_inputs(LOSS_REGISTRY.get(loss_opt['type']), loss_opt, available)
        return build_loss({**loss_opt, **inputs})

    @torch.no_grad()
    def probe_shapes(self) -> Tuple[Dict[str, torch.Size], Dict[str, torch.Size]]:
        """One forward of teacher and student on a random LR patch: checks that both upscale alike and returns the
        shapes of the tapped features."""
        size = int(self.opt['train'].get('probe_size', 32))
        probe = torch.rand(1, 3, size, size, generator=self.rng, device=self.device)
        student = bare_module(self.net_g)
        was_training = student.training
        student.eval()
        with self.student_taps.recording() as student_features:
            out_s = student(probe)
        student.train(was_training)
        with self.teacher_taps.recording() as teacher_features:
            out_t = self.net_t(probe)
        outputs = {network: teacher(probe) for network, teacher in self.teachers.items() if network != 'network_t'}
        outputs['network_t'] = out_t
        for network, output in outputs.items():
            if output.shape != out_s.shape:
                raise ValueError(
                    f'The teacher and the student upscale differently: for a {size}x{size} input the student '
                    f'(network_g, scale {self.opt.get("scale")}) returns {tuple(out_s.shape[-2:])} but the teacher '
                    f'({network}) returns {tuple(output.shape[-2:])}. Set the scale option of {network} (upscale / '
                    'scale) to the scale of the student and of the data, and use a teacher checkpoint trained for it.')
        return ({k: v.shape for k, v in student_features.items()}, {k: v.shape for k, v in teacher_features.items()})

    # ----------------------------------------------------------------------------------------------------------
    # training step
    def teacher_forward(self, lq: torch.Tensor, hr: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The target of ``kd_opt`` for ``lq`` (no autograd, eval mode, [0, 1] range): the output of ``network_t``;
        with further teachers ``network_t_<name>``, their combination (``train.multi_teacher``; ``hr``: the HR of
        ``lq``, which ``combine: error`` needs)."""
        outputs = {network: teacher(lq) for network, teacher in self.teachers.items()}
        return combine_outputs(outputs, self.multi_teacher['combine'], self.teacher_weights,
                               self.multi_teacher['temperature'], hr)

    def compute_losses(self, current_iter: int) -> 'OrderedDict[str, torch.Tensor]':
        with self.student_taps.recording() as student_features:
            self.output = self.net_g(self.lq)
        with self.teacher_taps.recording() as teacher_features:
            teacher_output = self.teacher_forward(self.lq, self.gt)
        losses = self.reconstruction_terms(teacher_output)
        losses.update(self.feature_loss_terms(student_features, teacher_features))
        return losses

    def feature_loss_terms(self,
                           student_features: Features,
                           teacher_features: Features,
                           batch: Optional[int] = None) -> 'OrderedDict[str, torch.Tensor]':
        """The feature losses on recorded features; with ``batch``, of their first ``batch`` samples."""
        losses = OrderedDict()
        for i, loss_opt in enumerate(self.feature_loss_opts):
            name = self.feature_loss_name(i)
            loss = self.distill_modules[name]
            student_feat = student_features[loss_opt['student_layer']][:batch]
            teacher_feat = teacher_features[loss_opt['teacher_layer']][:batch].float()
            losses[name] = loss(student_feat, teacher_feat, **self.step_inputs(name, loss))
        return losses

    def step_inputs(self, name: str, loss: nn.Module) -> dict:
        """The forward inputs a feature loss asks for (:mod:`kdplugins.distill.loss_inputs`)."""

        def index() -> torch.Tensor:
            if self.index is None:
                raise ValueError(f'{name} needs the dataset index of each sample, but the training dataset does not '
                                 'return one: set datasets.train.type to PairedImageDatasetWithIndex (same options as '
                                 'PairedImageDataset).')
            return self.index

        return loss_inputs.step_inputs(type(loss), {'index': index, 'generator': lambda: self.rng})
