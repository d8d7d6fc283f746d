"""CSD: contrastive self-distillation of a channel-splitting student inside its own teacher (Wang et al., IJCAI 2021,
Sec. 3, Eq. 1-3, Algorithm 1)."""
import torch
from basicsr.losses import build_loss
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from collections import OrderedDict
from contextlib import contextmanager
from torch import nn
from typing import Iterator, Optional

from kdplugins.archs.slimmable import SlimmableMixin
from kdplugins.distill.speed import SPEED_DEFAULTS, speed_options
from kdplugins.losses.published_weights import CSD_LAMBDA_C_DEFAULT
from kdplugins.models.kd_model import KDModel
from kdplugins.utils.basicsr_options import SR_TRAIN_OPTIONS
from kdplugins.utils.modules import bare_module
from kdplugins.utils.registry import register

# lambda_c: the paper's 200, tuned with an L1 pixel loss on [0, 255] images, is 200 / 255 on BasicSR's [0, 1]
CSD_DEFAULTS = {'width_mult': 0.25, 'lambda_t': 1.0, 'lambda_c': CSD_LAMBDA_C_DEFAULT, 'detach_teacher': True}
CONTRASTIVE_DEFAULTS = {'type': 'CSDContrastiveLoss', 'num_negatives': 10}


def csd_options(opt: dict) -> dict:
    """``train.csd`` with the paper's defaults (Sec. 4.1); unknown keys are an error."""
    given = dict((opt.get('train') or {}).get('csd') or {})
    unknown = sorted(set(given) - set(CSD_DEFAULTS))
    if unknown:
        raise ValueError(f'Unknown option(s) train.csd.{unknown}; valid options: {", ".join(CSD_DEFAULTS)}.')
    options = {**CSD_DEFAULTS, **given}
    for key in ('lambda_t', 'lambda_c'):
        if float(options[key]) < 0:
            raise ValueError(f'train.csd.{key} must be >= 0, got {options[key]}.')
        options[key] = float(options[key])
    return options


@register(MODEL_REGISTRY)
class CSDModel(KDModel):
    """One slimmable ``network_g`` (``SlimEDSR``, ``SlimRCAN``, ``SlimCARN``) trained as teacher (width 1.0) and
    student CSSR-Net (width ``w``) at once, sharing weights (Algorithm 1). Per iteration, one backward pass of

    ``L = L1(S, GT) + λ_T L1(T, GT) + λ_C CL(S, T.detach(), negatives)``   (Eq. 1 and 3)

    with ``S = net_g(LR, w)``, ``T = net_g(LR, 1.0)``, ``CL`` the contrastive loss of Eq. 2
    (:class:`~kdplugins.losses.csd_loss.CSDContrastiveLoss`) and one optimizer over all weights. Logged terms:
    ``l_pix`` (student), ``l_pix_t`` (teacher), ``l_csd``. There is no ``network_t``: the teacher is ``net_g`` at
    width 1.0. RNG, checkpoints, resume and ``check_rank_sync`` are those of :class:`KDModel`.

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
            1.0 otherwise). In training, every validation also validates the teacher (width 1.0), logged as the
            dataset ``<name>_teacher``.
    """

    # no teacher network, no feature losses: the width-1.0 network is the teacher
    TRAIN_OPTIONS = {
        **SR_TRAIN_OPTIONS, 'csd': CSD_DEFAULTS,
        'contrastive_opt': None,
        'check_rank_sync': False,
        'skip_nonfinite_batches': False,
        'speed': SPEED_DEFAULTS
    }
    VAL_OPTIONS = ('width_mult', )

    def __init__(self, opt: dict):
        self.csd = csd_options(opt)
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
    # setup: no network_t, no feature losses; the contrastive loss
    def init_training_settings(self) -> None:
        train_opt = self.opt['train']
        self.net_g.train()
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(int(self.opt.get('manual_seed') or 0) + int(self.opt.get('rank', 0)))
        self.setup_ema()
        self.cri_pix = build_loss(dict(train_opt.get('pixel_opt') or {'type': 'L1Loss'})).to(self.device)
        self.cri_csd = self.build_contrastive_loss()
        self.feature_loss_opts = []
        self.net_distill = nn.ModuleDict()  # empty: KDModel's optimizer, state and rank checks cover net_g only
        self.setup_speed()
        self.setup_optimizers()
        self.setup_schedulers()
        self._teacher_validated = set()
        get_root_logger().info(f'CSD: student width {self.csd["width_mult"]}, lambda_t {self.csd["lambda_t"]}, '
                               f'lambda_c {self.csd["lambda_c"]}, detach_teacher {self.csd["detach_teacher"]}.')

    def setup_speed(self) -> None:
        if speed_options(self.opt['train'])['teacher_precision'] != 'fp32':
            raise ValueError('train.speed.teacher_precision must be fp32 for CSDModel: its teacher is the width-1.0 '
                             'network being trained (use train.speed.precision for the whole step).')
        super().setup_speed()

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
    @contextmanager
    def evaluated_at(self, width_mult: float) -> Iterator[None]:
        previous = self.eval_width
        self.eval_width = width_mult
        try:
            yield
        finally:
            self.eval_width = previous

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

    def teacher_forward(self, lq: torch.Tensor) -> torch.Tensor:
        """The teacher: the network at width 1.0."""
        return self.forward_eval(lq, 1.0)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img) -> None:
        """In training: the teacher (width 1.0, logged as ``<name>_teacher``, images not saved), then the student
        (``val.width_mult``, logged as ``<name>``). Otherwise: the network at ``val.width_mult``."""
        dataset_opt = dataloader.dataset.opt
        name = dataset_opt['name']
        if self.is_train:
            get_root_logger().info(f'CSD validation on {name}: teacher = width 1.0 ({name}_teacher), '
                                   f'student = width {self.eval_width} ({name}).')
            dataset_opt['name'] = f'{name}_teacher'
            try:
                with self.evaluated_at(1.0):
                    SRModel.nondist_validation(self, dataloader, current_iter, tb_logger, False)
            finally:
                dataset_opt['name'] = name
        SRModel.nondist_validation(self, dataloader, current_iter, tb_logger, save_img)
