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
from kdplugins.utils.declared_options import Option, read_block
from kdplugins.utils.modules import bare_module
from kdplugins.utils.registry import register

# lambda_c: the paper's 200, tuned with an L1 pixel loss on [0, 255] images, is 200 / 255 on BasicSR's [0, 1]
CSD_OPTIONS = {
    'width_mult': Option(0.25, minimum=0, maximum=1, help="the student's width w"),
    'lambda_t': Option(1.0, minimum=0, help="λ_T, the teacher's reconstruction term; 0 is CSD-A"),
    'lambda_c': Option(CSD_LAMBDA_C_DEFAULT, minimum=0, help='λ_C, the contrastive term; 0 is joint training (J-T)'),
    'detach_teacher': Option(True, help='false is CSD-B (the contrastive gradient reaches the teacher)'),
}
CONTRASTIVE_DEFAULTS = {'type': 'CSDContrastiveLoss', 'num_negatives': 10}


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
        train.csd.lambda_t: λ_T (default 1); 0 is the paper's CSD-A (no teacher reconstruction term).
        train.csd.lambda_c: λ_C (default 200 / 255 = 0.784: the paper's 200 was tuned with an L1 pixel loss on
            [0, 255] images, docs/conventions.md); 0 is joint training (J-T), with no VGG at all.
        train.csd.detach_teacher: default true; false is CSD-B (the contrastive gradient also reaches the teacher).
        train.contrastive_opt: options of the contrastive loss (``type`` default ``CSDContrastiveLoss``,
            ``num_negatives`` K default 10, ``vgg_weights``...; not ``loss_weight``: that is ``lambda_c``).
        train.pixel_opt: the reconstruction loss of both terms of Eq. 1 (default ``L1Loss``).
        val.width_mult: width of the validated / tested student (default ``train.csd.width_mult`` in training,
            1.0 otherwise). In training, every validation also validates the teacher (width 1.0), logged as
            ``Teacher (width 1.0) on <name>`` and ``metrics/<name>/teacher_<metric>``.
    """

    TRAIN_OPTIONS = {**DistillModel.TRAIN_OPTIONS, 'csd': CSD_OPTIONS, 'contrastive_opt': None}
    HAS_FROZEN_TEACHER = False  # the width-1.0 network is the teacher
    FP32_TEACHER_REASON = ('its teacher is the width-1.0 network being trained (use train.speed.precision for the '
                           'whole step).')
    TEACHER_DESCRIPTION = 'width 1.0'
    VAL_OPTIONS = ('width_mult', )

    def __init__(self, opt: dict):
        self.csd = read_block((opt.get('train') or {}).get('csd'), CSD_OPTIONS, 'train.csd')
        self.csd.update(lambda_t=float(self.csd['lambda_t']), lambda_c=float(self.csd['lambda_c']))
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
    # setup: the contrastive loss
    def build_pixel_loss(self) -> nn.Module:
        """The reconstruction loss of both terms of Eq. 1 (``train.pixel_opt``, default L1)."""
        return build_loss(dict(self.opt['train'].get('pixel_opt') or {'type': 'L1Loss'})).to(self.device)

    def setup_method(self) -> None:
        self.cri_csd = self.build_contrastive_loss()
        get_root_logger().info(f'CSD: student width {self.csd["width_mult"]}, lambda_t {self.csd["lambda_t"]}, '
                               f'lambda_c {self.csd["lambda_c"]}, detach_teacher {self.csd["detach_teacher"]}.')

    def build_contrastive_loss(self) -> Optional[nn.Module]:
        """The loss of ``train.contrastive_opt`` with ``loss_weight = λ_C``; ``None`` for J-T (λ_C = 0)."""
        loss_opt = dict(self.opt['train'].get('contrastive_opt') or {})
        if 'loss_weight' in loss_opt:
            raise ValueError('train.contrastive_opt.loss_weight is not used by CSDModel: set λ_C as '
                             'train.csd.lambda_c.')
        if self.csd['lambda_c'] == 0:
            return None
        loss_opt = {**CONTRASTIVE_DEFAULTS, **loss_opt, 'loss_weight': self.csd['lambda_c']}
        loss_opt['detach_positive'] = bool(self.csd['detach_teacher'])
        loss = build_loss(loss_opt).to(self.device)
        batch = (self.opt.get('datasets', {}).get('train') or {}).get('batch_size_per_gpu')
        if batch is not None and hasattr(loss, 'check_batch'):
            loss.check_batch(int(batch))
        return loss

    # ----------------------------------------------------------------------------------------------------------
    # training step (Algorithm 1)
    def teacher_needs_grad(self) -> bool:
        return self.csd['lambda_t'] > 0 or (self.cri_csd is not None and not self.csd['detach_teacher'])

    def compute_losses(self, current_iter: int) -> 'OrderedDict[str, torch.Tensor]':
        """Eq. 1 and 3: student and teacher forwards of the same batch, reconstruction and contrastive terms."""
        losses = OrderedDict()
        self.output = self.net_g(self.lq, width_mult=self.csd['width_mult'])
        losses['l_pix'] = self.cri_pix(self.output, self.gt)
        if self.csd['lambda_t'] == 0 and self.cri_csd is None:
            return losses
        with torch.set_grad_enabled(self.teacher_needs_grad()):
            teacher_output = self.net_g(self.lq, width_mult=1.0)
        if self.csd['lambda_t'] > 0:
            losses['l_pix_t'] = self.csd['lambda_t'] * self.cri_pix(teacher_output, self.gt)
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
