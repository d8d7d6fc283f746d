"""MemSRModel: a plain student trained with initialization-aware feature distillation (MemSR Sec. 3.4, Eq. 12-14)."""
import os
import torch
from basicsr.losses import build_loss
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from collections import OrderedDict
from torch import nn
from typing import List, Optional

from kdplugins.distill.recorder import FeatureRecorder
from kdplugins.memsr.convert import DEFAULT_OFFSET, Pieces, convert_edsr, edsr_parts, teacher_plain_forward
from kdplugins.memsr.winning_init import check_student_widths
from kdplugins.models.kd_model import KDModel
from kdplugins.utils.declared_options import Option, deprecated_value, read_block
from kdplugins.utils.modules import bare_module
from kdplugins.utils.registry import register

# train.memsr (MemSR Sec. 4: C = offset 1000); the weights of Eq. 14 are train.memsr_opt (MemSRLoss)
MEMSR_OPTIONS = {
    'bridges': Option(None, help="Algorithm 1's file (scripts/memsr_init.py) or null: random bridges"),
    'offset': Option(float(DEFAULT_OFFSET), minimum=0, help="Prop. 3.6's C; must match the init file"),
    'lambda': Option(0.0, minimum=0, help='deprecated: λ of Eq. 14', replaced_by='train.memsr_opt.loss_weight'),
    'epsilon': Option(0.0, minimum=0, help='deprecated: ε of Eq. 14', replaced_by='train.memsr_opt.epsilon'),
}
MEMSR_LOSS_DEFAULTS = {'type': 'MemSRLoss'}  # λ and ε: MemSRLoss's defaults, the paper's


@register(MODEL_REGISTRY)
class MemSRModel(KDModel):
    """Plain student ``network_g`` (:class:`~kdplugins.archs.plainsr_arch.PlainSR`) of an EDSR-style teacher
    ``network_t`` (``PixelShuffleEDSR`` or basicsr ``EDSR``), trained with ``L_task + lambda epsilon^alpha
    L_distill`` (Eq. 14), ``L_task`` being ``pixel_opt`` (L1, Eq. 13) and ``L_distill`` the mean over the ``n`` layers
    of ``MSE(F_i^T, M_i * F_i^S)`` (Eq. 12, :class:`~kdplugins.losses.memsr_loss.MemSRLoss`): ``F_i^T`` the
    post-activation features of the plain equivalent of the teacher (Prop. 3.6, computed from the teacher's own
    forward), ``F_i^S`` the output of the student's ``body.i`` and ``M_i`` trainable 1x1 convs (the bridges), in the
    optimizer, the training state and resume.

    The winning initialization (Sec. 3.3) is computed once by ``scripts/memsr_init.py``: the student loads it as
    ``path.pretrain_network_g``; the bridges of Algorithm 1 load from ``train.memsr.bridges`` (the same file). Without
    them the student and/or the bridges start random (the Init and FDInit ablations of Table 1).

    Options: ``train.memsr_opt``, the distillation term (``type`` default ``MemSRLoss``, ``loss_weight`` λ default
    0.3, 0 disables the distillation; ``epsilon`` ε default 1e-5); ``train.memsr``: ``bridges`` (init file or null:
    random bridges), ``offset`` (Prop. 3.6's C, 1000; must match the init file). The deprecated ``train.memsr.lambda``
    and ``train.memsr.epsilon`` are read as ``train.memsr_opt.loss_weight`` and ``train.memsr_opt.epsilon``.
    ``train.scheduler`` may also be ``{type: OneCycleLR, max_lr: 2e-4, ...}`` (PyTorch's one-cycle schedule of the
    paper's Sec. 4.1; ``total_steps`` defaults to ``total_iter``). ``kd_opt`` works as in KDModel;
    ``feature_losses`` are not combined with MemSR's own.
    """

    TRAIN_OPTIONS = {
        **{
            k: v
            for k, v in KDModel.TRAIN_OPTIONS.items() if k != 'feature_losses'
        }, 'memsr': MEMSR_OPTIONS,
        'memsr_opt': None
    }
    FP32_TEACHER_REASON = ("its distillation targets are the features of the teacher's exact plain equivalent "
                           '(Prop. 3.6), computed in fp32.')

    def setup_method(self) -> None:
        if self.opt['train'].get('feature_losses'):
            raise ValueError(
                'MemSRModel has its own feature distillation (train.memsr_opt); remove train.feature_losses.')
        super().setup_method()
        memsr_opt = read_block(self.opt['train'].get('memsr'), MEMSR_OPTIONS, 'train.memsr')
        self.cri_memsr = self.build_memsr_loss()
        self.memsr_offset = float(memsr_opt['offset'])
        self.teacher_parts = edsr_parts(self.net_t.net)
        teacher_widths = convert_edsr(self.net_t.net, self.memsr_offset).widths
        student = bare_module(self.net_g)
        if not hasattr(student, 'widths') or not isinstance(getattr(student, 'body', None), nn.ModuleList):
            raise ValueError(f'MemSRModel needs a PlainSR student (network_g), got {type(student).__name__}.')
        self.student_widths = check_student_widths(student.widths, teacher_widths)
        if self.cri_memsr is None:
            return
        bridges = nn.ModuleList(nn.Conv2d(r, c, 1) for r, c in zip(self.student_widths, teacher_widths))
        if memsr_opt.get('bridges'):
            self.load_bridges(bridges, memsr_opt['bridges'])
        self.add_distill_modules({'memsr_bridges': bridges})
        layers = [f'body.{i}' for i in range(len(self.student_widths))]
        self.memsr_taps = self.taps(FeatureRecorder(self.net_g, layers, 'student (network_g)'))

    def build_memsr_loss(self) -> Optional[nn.Module]:
        """The distillation term of ``train.memsr_opt`` (over :data:`MEMSR_LOSS_DEFAULTS`); None when its
        ``loss_weight`` is 0."""
        loss_opt = {**MEMSR_LOSS_DEFAULTS, **(self.opt['train'].get('memsr_opt') or {})}
        for old, new in (('lambda', 'loss_weight'), ('epsilon', 'epsilon')):
            value = deprecated_value(self.opt, f'train.memsr.{old}', MEMSR_OPTIONS)
            if value is not None:
                loss_opt[new] = value
        loss = build_loss(loss_opt).to(self.device)
        return loss if getattr(loss, 'loss_weight', 1) else None

    def load_bridges(self, bridges: nn.ModuleList, path: str) -> None:
        """Bridges ``M_i`` of Algorithm 1 from a ``scripts/memsr_init.py`` file, checked against the run."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f'train.memsr.bridges: file not found: {path!r}. Write it with python '
                                    'scripts/memsr_init.py -opt <this option file>, or set it to ~ (random bridges).')
        loaded = torch.load(path, map_location='cpu', weights_only=True)
        if 'bridges' not in loaded:
            raise ValueError(f'train.memsr.bridges: {path} holds no bridges (keys {sorted(loaded)}); give the file '
                             'written by scripts/memsr_init.py.')
        offset = float(loaded.get('memsr', {}).get('offset', self.memsr_offset))
        if offset != self.memsr_offset:
            raise ValueError(f'train.memsr.offset is {self.memsr_offset:g} but {path} was computed with offset '
                             f'{offset:g}: set train.memsr.offset to {offset:g}.')
        own = bridges.state_dict()
        state = loaded['bridges']
        mismatched = [k for k in own if k not in state or state[k].shape != own[k].shape]
        if mismatched or len(state) != len(own):
            raise ValueError(f'train.memsr.bridges: {path} does not fit this student/teacher pair (first mismatch: '
                             f'{(mismatched or ["extra keys"])[0]}); recompute it with scripts/memsr_init.py for the '
                             f'widths {self.student_widths}.')
        bridges.load_state_dict(state)
        get_root_logger().info(f'MemSR: loaded {len(bridges)} bridges (Algorithm 1) from {path}.')

    def setup_schedulers(self) -> None:
        """BasicSR's schedulers, plus ``OneCycleLR`` (PyTorch's, ``total_steps`` defaulting to ``total_iter``)."""
        scheduler_opt = dict(self.opt['train'].get('scheduler') or {})
        if scheduler_opt.get('type') != 'OneCycleLR':
            return super().setup_schedulers()
        scheduler_opt.pop('type')
        scheduler_opt.setdefault('max_lr', 2e-4)
        scheduler_opt.setdefault('total_steps', int(self.opt['train']['total_iter']))
        for optimizer in self.optimizers:
            self.schedulers.append(torch.optim.lr_scheduler.OneCycleLR(optimizer, **scheduler_opt))

    def teacher_plain_features(self, lq: torch.Tensor, on_layer) -> torch.Tensor:
        """Teacher output in [0, 1] and its plain features (in the teacher's value range) passed to ``on_layer``."""
        img_range = self.net_t.img_range
        with torch.no_grad():
            return teacher_plain_forward(self.teacher_parts, lq * img_range, self.memsr_offset, on_layer) / img_range

    def compute_losses(self, current_iter: int) -> 'OrderedDict[str, torch.Tensor]':
        """Eq. 14: ``l_pix`` (Eq. 13), optional ``l_kd``, and ``l_memsr = lambda eps^alpha L_distill`` (Eq. 12)."""
        if self.cri_memsr is not None:
            with self.memsr_taps.recording() as student_features:
                self.output = self.net_g(self.lq)
        else:
            self.output = self.net_g(self.lq)
        layer_losses: List[torch.Tensor] = []

        def distill(i: int, pieces: Pieces) -> None:
            bridge = self.distill_modules['memsr_bridges'][i]
            with torch.enable_grad():
                layer_losses.append(self.cri_memsr.layer_term(bridge(student_features[f'body.{i}']), pieces))

        on_layer = distill if self.cri_memsr is not None else None
        teacher_output = self.teacher_plain_features(self.lq, on_layer)
        losses = self.reconstruction_terms(teacher_output)
        if layer_losses:
            losses['l_memsr'] = self.cri_memsr(layer_losses, current_iter, self.opt['train']['total_iter'])
        return losses
