"""CrossKDModel: KD plus the student's features passed through the teacher's tail (CrossKD; Fang et al., JVCIR 2023,
a baseline of AugKD Tables 2-3). Composed of the shared pieces: the frozen teacher, a scoped feature tap on the student
(:class:`~kdplugins.distill.recorder.FeatureRecorder`), a scoped input substitution on the teacher
(:class:`~kdplugins.distill.recorder.InputSubstitution`) and a loss with a 1x1 connector
(:class:`~kdplugins.losses.crosskd_loss.CrossKDLoss`)."""
import torch
from basicsr.utils.registry import MODEL_REGISTRY
from collections import OrderedDict
from typing import Tuple

from kdplugins.distill.recorder import FeatureRecorder, InputSubstitution
from kdplugins.models.kd_model import KDModel
from kdplugins.utils.declared_options import REQUIRED, Option, read_block
from kdplugins.utils.modules import bare_module
from kdplugins.utils.registry import register

CROSSKD_OPTIONS = {
    'student_layer': Option(REQUIRED, help="student module whose input is the split point (EDSR, RCAN: 'upsample')"),
    'teacher_layer': Option(REQUIRED, help="teacher module whose input is replaced (RFDN: 'upsampler')"),
}
CROSSKD_LOSS_DEFAULT = {'type': 'CrossKDLoss', 'loss_weight': 1.0}


@register(MODEL_REGISTRY)
class CrossKDModel(KDModel):
    """``KDModel``'s terms plus ``l_crosskd = crosskd_opt(T_tail(r(F_S)), T(LR))``: ``F_S`` is the input of the
    student's ``student_layer`` in the step's forward, ``r`` the loss's 1x1 connector (trained, saved, resumed),
    ``T_tail`` the teacher run on the same LR batch with the input of its ``teacher_layer`` replaced by ``r(F_S)``
    (its head's result is discarded; its weights stay frozen and the gradient flows through it to ``r`` and the
    student). Only the student-into-teacher direction of the paper's dual crossing is implemented.

    The split points must be where each network's features enter its upsampling tail, with nothing bypassing them:
    before training, the teacher's feature at ``teacher_layer`` for one probe input, substituted into the teacher run
    on another, must give the first output back (a skip connection around the split point fails it, with the fix).

    Options: ``train.crosskd`` (:data:`CROSSKD_OPTIONS`: ``student_layer``, ``teacher_layer``) and
    ``train.crosskd_opt`` (the loss, default ``{type: CrossKDLoss, loss_weight: 1}``; ``criterion`` l1 / mse).
    """

    TRAIN_OPTIONS = {**KDModel.TRAIN_OPTIONS, 'crosskd': CROSSKD_OPTIONS, 'crosskd_opt': None}

    def setup_method(self) -> None:
        super().setup_method()
        self.crosskd = read_block(self.opt['train'].get('crosskd'), CROSSKD_OPTIONS, 'train.crosskd')
        self.split_taps = self.taps(
            FeatureRecorder(self.net_g, [self.crosskd['student_layer']], 'student (network_g)', 'input'))
        self.teacher_split_taps = self.taps(
            FeatureRecorder(self.net_t.net, [self.crosskd['teacher_layer']], 'teacher (network_t)', 'input'))
        self.teacher_split = self.taps(
            InputSubstitution(self.net_t.net, self.crosskd['teacher_layer'], 'teacher (network_t)'))
        student_channels, teacher_channels = self.check_split_points()
        available = {'student_channels': lambda: student_channels, 'teacher_channels': lambda: teacher_channels}
        loss_opt = dict(self.opt['train'].get('crosskd_opt') or CROSSKD_LOSS_DEFAULT)
        self.add_distill_modules({'l_crosskd': self.build_feature_loss(loss_opt, available)})

    @torch.no_grad()
    def check_split_points(self) -> Tuple[int, int]:
        """Channels at the two split points, from a probe forward. Stops unless the teacher's output depends on its
        input only through the feature at the split point: the teacher run on another input with that feature
        substituted must give the first output back (a skip connection around the split point fails it)."""
        size = int(self.opt['train'].get('probe_size', 32))
        probe = torch.rand(2, 1, 3, size, size, generator=self.rng, device=self.device)
        student = bare_module(self.net_g)
        was_training = student.training
        student.eval()
        with self.split_taps.recording() as student_split:
            student(probe[0])
        student.train(was_training)
        with self.teacher_split_taps.recording() as teacher_split:
            output = self.net_t(probe[0])
        layer = self.crosskd['teacher_layer']
        feature = teacher_split[layer]
        tail = self.teacher_tail(feature, probe[1])
        if not torch.allclose(tail, output, rtol=1e-4, atol=1e-5):
            raise ValueError(
                f'train.crosskd.teacher_layer: the teacher output does not depend on its input through {layer!r} '
                f'only (another input with the same feature at {layer!r} changes it by up to '
                f'{(tail - output).abs().max().item():.3g}): a skip connection bypasses {layer!r}. Pick the module '
                "where the features enter the upsampling tail with nothing joining after it, for example 'upsampler' "
                "(RFDN, IMDN) or 'upsample' (basicsr EDSR, RCAN).")
        return student_split[self.crosskd['student_layer']].shape[1], feature.shape[1]

    def teacher_tail(self, feature: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """``T_tail(feature)``: the teacher on ``lq`` with the input of ``teacher_layer`` replaced by ``feature``."""
        with self.teacher_split.substituting(feature):
            return self.net_t.differentiable(lq)

    def compute_losses(self, current_iter: int) -> 'OrderedDict[str, torch.Tensor]':
        with self.student_taps.recording() as student_features, self.split_taps.recording() as split:
            self.output = self.net_g(self.lq)
        with self.teacher_taps.recording() as teacher_features:
            teacher_output = self.teacher_forward(self.lq, self.gt)
        losses = self.reconstruction_terms(teacher_output)
        losses.update(self.feature_loss_terms(student_features, teacher_features))
        student_split = split[self.crosskd['student_layer']]
        losses['l_crosskd'] = self.distill_modules['l_crosskd'](student_split, lambda f: self.teacher_tail(f, self.lq),
                                                                teacher_output)
        return losses
