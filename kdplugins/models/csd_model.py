"""CSD: contrastive self-distillation of a channel-splitting student inside its own teacher (Wang et al., IJCAI 2021,
Sec. 3, Eq. 1-3, Algorithm 1)."""
import torch
from basicsr.losses import build_loss
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from collections import OrderedDict
from torch import nn
from typing import Optional

from kdplugins.archs.slimmable import SlimmableMixin
from kdplugins.losses.published_weights import CSD_LAMBDA_C_DEFAULT
from kdplugins.models.distill_model import DistillModel
from kdplugins.utils.declared_options import Option, deprecated_value, read_block
from kdplugins.utils.modules import bare_module
from kdplugins.utils.registry import register

# train.csd; the weights of Eq. 1 and 3 are those of train.teacher_pixel_opt (λ_T) and train.contrastive_opt (λ_C)
CSD_OPTIONS = {
    'width_mult': Option(0.25, minimum=0, maximum=1, help="the student's width w"),
    'detach_teacher': Option(True, help='false is CSD-B (the contrastive gradient reaches the teacher)'),
    'lambda_t': Option(0.0, minimum=0, help='deprecated: λ_T', replaced_by='train.teacher_pixel_opt.loss_weight'),
    'lambda_c': Option(0.0, minimum=0, help='deprecated: λ_C', replaced_by='train.contrastive_opt.loss_weight'),
}
# λ_C: the paper's 200, tuned with an L1 pixel loss on [0, 255] images, is 200 / 255 on BasicSR's [0, 1]; K and the
# VGG layers: CSDContrastiveLoss's defaults, the paper's
CONTRASTIVE_DEFAULTS = {'type': 'CSDContrastiveLoss', 'loss_weight': CSD_LAMBDA_C_DEFAULT}


@register(MODEL_REGISTRY)
class CSDModel(DistillModel):
    """One slimmable ``network_g`` (``SlimEDSR``, ``SlimRCAN``, ``SlimCARN``) trained as teacher (width 1.0) and
    student CSSR-Net (width ``w``) at once, sharing weights (Algorithm 1). Per iteration, one backward pass of

    ``L = L1(S, GT) + λ_T L1(T, GT) + λ_C CL(S, T.detach(), negatives)``   (Eq. 1 and 3)

    with ``S = net_g(LR, w)``, ``T = net_g(LR, 1.0)``, ``CL`` the contrastive loss of Eq. 2
    (:class:`~kdplugins.losses.csd_loss.CSDContrastiveLoss`) and one optimizer over all weights. Logged terms:
    ``l_pix`` (student), ``l_pix_t`` (teacher), ``l_csd``. There is no ``network_t``: the teacher is ``net_g`` at
    width 1.0. RNG, checkpoints, resume and ``check_rank_sync`` are those of :class:`DistillModel`.

    Training starts from a pretrained width-1.0 network (``path.pretrain_network_g``, e.g. BasicSR's EDSR / RCAN
    checkpoints) as Algorithm 1 does; without one a warning names the paper's setup.

    Options:
        train.csd.width_mult: ``w`` (default 0.25).
        train.csd.detach_teacher: default true; false is CSD-B (the contrastive gradient also reaches the teacher).
        train.pixel_opt: the student's reconstruction term of Eq. 1 (default ``{type: L1Loss, loss_weight: 1}``).
        train.teacher_pixel_opt: the teacher's, ``λ_T L1(T, GT)``: over ``pixel_opt`` (the same loss and weight by
            default: λ_T = 1); ``loss_weight: 0`` is the paper's CSD-A (no teacher reconstruction term).
        train.contrastive_opt: the contrastive term ``λ_C CL`` (``type`` default ``CSDContrastiveLoss``;
            ``loss_weight`` λ_C default 200 / 255 = 0.784: the paper's 200 was tuned with an L1 pixel loss on
            [0, 255] images, docs/conventions.md; 0 is joint training (J-T), with no VGG at all; ``num_negatives`` K
            default 10, ``vgg_weights``...).
        train.csd.lambda_t, train.csd.lambda_c: deprecated names of ``teacher_pixel_opt.loss_weight`` (times
            ``pixel_opt.loss_weight``) and ``contrastive_opt.loss_weight``.
        val.width_mult: width of the validated / tested student (default ``train.csd.width_mult`` in training,
            1.0 otherwise). In training, every validation also validates the teacher (width 1.0), logged as
            ``Teacher (width 1.0) on <name>`` and ``metrics/<name>/teacher_<metric>``.
    """

    TRAIN_OPTIONS = {
        **DistillModel.TRAIN_OPTIONS, 'csd': CSD_OPTIONS,
        'teacher_pixel_opt': None,
        'contrastive_opt': None
    }
    HAS_FROZEN_TEACHER = False  # the width-1.0 network is the teacher
    FP32_TEACHER_REASON = ('its teacher is the width-1.0 network being trained (use train.speed.precision for the '
                           'whole step).')
    TEACHER_DESCRIPTION = 'width 1.0'
    VAL_OPTIONS = ('width_mult', )

    def __init__(self, opt: dict):
        self.csd = read_block((opt.get('train') or {}).get('csd'), CSD_OPTIONS, 'train.csd')
        default_width = self.csd['width_mult'] if opt.get('is_train') else 1.0
        self.eval_width = float((opt.get('val') or {}).get('width_mult', default_width))
        super().__init__(opt)
        net = bare_module(self.net_g)
        if not isinstance(net, SlimmableMixin):
            raise ValueError(f'CSDModel needs a slimmable network_g (SlimEDSR, SlimRCAN or SlimCARN, with the same '
                             f'arguments as EDSR / RCAN / CARN); got {type(net).__name__}.')
        net.check_width(self.eval_width)
        if self.is_train:
            net.check_width(self.csd['width_mult'])
            if not self.opt['path'].get('pretrain_network_g') and not self.opt['path'].get('resume_state'):
                get_root_logger().warning(
                    'CSD: path.pretrain_network_g is not set, so the width-1.0 network (the teacher) starts from '
                    'random weights. The CSD paper (Algorithm 1) and its code start from a pretrained network: set '
                    'path.pretrain_network_g to a BasicSR EDSR / RCAN checkpoint (they load into SlimEDSR / SlimRCAN).')

    # ----------------------------------------------------------------------------------------------------------
    # setup: the teacher's reconstruction loss and the contrastive loss
    def pixel_loss_opt(self) -> dict:
        """``train.pixel_opt``, default ``{type: L1Loss}`` (weight 1)."""
        return dict(self.opt['train'].get('pixel_opt') or {'type': 'L1Loss'})

    def build_pixel_loss(self) -> nn.Module:
        """The student's reconstruction term of Eq. 1 (``train.pixel_opt``)."""
        return build_loss(self.pixel_loss_opt()).to(self.device)

    def setup_method(self) -> None:
        self.cri_pix_t = self.build_teacher_pixel_loss()
        self.cri_csd = self.build_contrastive_loss()
        lambda_t, lambda_c = (0 if loss is None else getattr(loss, 'loss_weight', 1)
                              for loss in (self.cri_pix_t, self.cri_csd))
        get_root_logger().info(f'CSD: student width {self.csd["width_mult"]}, λ_T {lambda_t} (teacher_pixel_opt), λ_C '
                               f'{lambda_c} (contrastive_opt), detach_teacher {self.csd["detach_teacher"]}.')

    def build_teacher_pixel_loss(self) -> Optional[nn.Module]:
        """The teacher's reconstruction term of Eq. 1, ``λ_T L1(T, GT)``: ``train.teacher_pixel_opt`` over
        ``pixel_opt``; ``None`` for CSD-A (``loss_weight`` 0)."""
        pixel_opt = self.pixel_loss_opt()
        loss_opt = {**pixel_opt, **(self.opt['train'].get('teacher_pixel_opt') or {})}
        lambda_t = deprecated_value(self.opt, 'train.csd.lambda_t', CSD_OPTIONS,
                                    lambda value: float(value) * pixel_opt.get('loss_weight', 1.0))
        if lambda_t is not None:
            loss_opt['loss_weight'] = lambda_t
        loss = build_loss(loss_opt).to(self.device)
        return loss if getattr(loss, 'loss_weight', 1) else None

    def build_contrastive_loss(self) -> Optional[nn.Module]:
        """The contrastive term of Eq. 3, ``λ_C CL``: ``train.contrastive_opt`` over :data:`CONTRASTIVE_DEFAULTS`,
        the positive detached unless CSD-B; ``None`` for J-T (``loss_weight`` 0: no VGG is built)."""
        loss_opt = {**CONTRASTIVE_DEFAULTS, **(self.opt['train'].get('contrastive_opt') or {})}
        lambda_c = deprecated_value(self.opt, 'train.csd.lambda_c', CSD_OPTIONS, float)
        if lambda_c is not None:
            loss_opt['loss_weight'] = lambda_c
        if loss_opt['loss_weight'] == 0:
            return None
        loss_opt['detach_positive'] = bool(self.csd['detach_teacher'])
        loss = build_loss(loss_opt).to(self.device)
        batch = (self.opt.get('datasets', {}).get('train') or {}).get('batch_size_per_gpu')
        if batch is not None and hasattr(loss, 'check_batch'):
            loss.check_batch(int(batch))
        return loss

    # ----------------------------------------------------------------------------------------------------------
    # training step (Algorithm 1)
    def teacher_needs_grad(self) -> bool:
        return self.cri_pix_t is not None or (self.cri_csd is not None and not self.csd['detach_teacher'])

    def compute_losses(self, current_iter: int) -> 'OrderedDict[str, torch.Tensor]':
        """Eq. 1 and 3: student and teacher forwards of the same batch, reconstruction and contrastive terms."""
        losses = OrderedDict()
        self.output = self.net_g(self.lq, width_mult=self.csd['width_mult'])
        losses['l_pix'] = self.cri_pix(self.output, self.gt)
        if self.cri_pix_t is None and self.cri_csd is None:
            return losses
        with torch.set_grad_enabled(self.teacher_needs_grad()):
            teacher_output = self.net_g(self.lq, width_mult=1.0)
        if self.cri_pix_t is not None:
            losses['l_pix_t'] = self.cri_pix_t(teacher_output, self.gt)
        if self.cri_csd is not None:
            positive = teacher_output.detach() if self.csd['detach_teacher'] else teacher_output
            losses['l_csd'] = self.cri_csd(self.output, positive, self.lq, generator=self.rng)
        return losses

    # ----------------------------------------------------------------------------------------------------------
    # validation and test at a width
    def forward_eval(self, lq: torch.Tensor, width_mult: float) -> torch.Tensor:
        """Output of the network (its EMA copy if any) at ``width_mult``, in eval mode, without autograd."""
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else bare_module(self.net_g)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            output = net(lq, width_mult=width_mult)
        net.train(was_training)
        return output

    def test(self) -> None:
        """``SRModel.test`` at ``self.eval_width``."""
        self.output = self.forward_eval(self.lq, self.eval_width)

    def teacher_output(self, lq: torch.Tensor) -> torch.Tensor:
        """The teacher: the network at width 1.0."""
        return self.forward_eval(lq, 1.0)

    def teacher_changes(self) -> bool:
        return True  # the teacher trains: validated at every validation
