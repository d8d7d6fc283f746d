"""AugKD (Sec. 3.3-3.4 of the AugKD paper): KD on zoom-in / zoom-out auxiliary samples with label consistency."""
import torch
from basicsr.losses import build_loss
from basicsr.utils import get_root_logger
from basicsr.utils.registry import MODEL_REGISTRY
from collections import OrderedDict
from typing import Optional

from kdplugins.distill.invertible_augment import OPERATIONS, InvertibleAugment
from kdplugins.distill.multi_teacher import MultiTeacherError
from kdplugins.distill.zoom import crop_origins, zoom_in, zoom_out
from kdplugins.models.kd_model import KDModel
from kdplugins.utils.declared_options import Option, read_block
from kdplugins.utils.modules import bare_module
from kdplugins.utils.registry import register

# The paper (Sec. 3.4, App. A.1) names the operations (flips, 90/180/270-degree rotations, colour inversion) and the
# samples (the auxiliary ones) but no probabilities and no number of zoom-in crops. Defaults: one zoom-in crop per
# sample (App. A.1's "randomly cropping"); hflip, vflip and rot90 at 0.5 each, which draws the 8 flips and rotations
# of the square uniformly (each combination is a distinct one), and inversion at 0.5; on both auxiliary samples.
# The authors' earlier code (DUKD) is the option set DUKD_LABEL_CONSISTENCY (docs/augkd.md).
AUXILIARY_SAMPLES = ('zoom_in', 'zoom_out')
UNIFORM_FLIPS_ROTATIONS_INVERSION = {'hflip': 0.5, 'vflip': 0.5, 'rot90': 0.5, 'invert': 0.5}
# yapf: disable
AUGKD_OPTIONS = {
    'n_zoom_in': Option(1, minimum=0, help='zoom-in crops per sample'),
    'zoom_in_non_overlapping': Option(False, help='crops from distinct cells of a grid of LR-sized cells'),
    'zoom_out': Option(True, help='the MATLAB-bicubic zoom-out sample'),
    'zoom_out_min_size': Option(1, minimum=1, help='smallest zoomed-out side; below it zoom-out is skipped'),
    'label_consistency': Option(UNIFORM_FLIPS_ROTATIONS_INVERSION, choices=OPERATIONS, minimum=0, maximum=1,
                                help='{operation: probability} of F; {} switches it off'),
    'label_consistency_samples': Option(list(AUXILIARY_SAMPLES), choices=AUXILIARY_SAMPLES,
                                        help='the auxiliary samples whose student input is augmented'),
}
# yapf: enable
# DUKD's code: inversion, horizontal and vertical flips and transpose, 0.3 each, on the zoom-in samples only
DUKD_LABEL_CONSISTENCY = {
    'label_consistency': {
        'invert': 0.3,
        'hflip': 0.3,
        'vflip': 0.3,
        'transpose': 0.3
    },
    'label_consistency_samples': ['zoom_in'],
}


@register(MODEL_REGISTRY)
class AugKDModel(KDModel):
    """``L = L_rec + λ_kd L_kd + λ_augkd L_augkd`` (AugKD Eq. 1-4), one backward pass per iteration.

    Per iteration, from the (LR, HR) batch of the dataset:

    - ``l_pix = pixel_opt(S(LR), HR)`` and ``l_kd = kd_opt(S(LR), T(LR))`` (Eq. 1, 2, from ``KDModel``);
    - zoom-in: ``n_zoom_in`` random crops of each HR patch with the LR patch's size; the teacher's output on them is
      the only target: ``l_augkd_zi = augkd_opt(F^-1(S(F(LR_zi))), T(LR_zi))``;
    - zoom-out: the LR patch downscaled by the scale with MATLAB bicubic (the dataset's degradation):
      ``l_augkd_zo = augkd_opt(F^-1(S(F(LR_zo))), T(LR_zo))`` and ``l_pix_zo = pixel_opt(F^-1(S(F(LR_zo))), LR)``;
    - ``F`` is a per-sample random composition of invertible augmentations applied to the student's input only,
      ``F^-1`` its exact inverse (Sec. 3.4, :class:`~kdplugins.distill.invertible_augment.InvertibleAugment`).

    ``l_augkd_zi + l_augkd_zo`` is ``λ_augkd L_augkd`` of Eq. 3 (with several zoom-in crops, the zoom-in term is the
    mean over all crops). LR and zoom-in crops have the same shape and go through the student in one call and
    through the teacher in one call, whose recorded features give the feature losses of the LR samples.

    Options (``train.augkd``, declared in :data:`AUGKD_OPTIONS`): ``n_zoom_in``, ``zoom_in_non_overlapping``
    (crops from distinct cells of a grid of LR-sized cells, at most ``scale^2``), ``zoom_out``,
    ``zoom_out_min_size`` (zoom-out is skipped, with one warning, when the zoomed-out patch is smaller),
    ``label_consistency`` (``{name: probability}``, names ``hflip``, ``vflip``, ``rot90``, ``rot180``, ``rot270``,
    ``transpose``, ``invert``; ``{}`` switches it off), ``label_consistency_samples`` (which auxiliary samples get
    it: ``[zoom_in, zoom_out]``). :data:`DUKD_LABEL_CONSISTENCY` is the authors' earlier code's set.
    ``train.augkd_opt``: the loss of the auxiliary terms (default ``{type: L1Loss, loss_weight: 1}``).
    """

    TRAIN_OPTIONS = {**KDModel.TRAIN_OPTIONS, 'augkd': AUGKD_OPTIONS, 'augkd_opt': None}

    def setup_method(self) -> None:
        self.augkd = self.augkd_options()
        self.augment = InvertibleAugment(self.augkd['label_consistency'])
        augkd_opt = self.opt['train'].get('augkd_opt') or {'type': 'L1Loss', 'loss_weight': 1.0}
        self.cri_augkd = build_loss(dict(augkd_opt)).to(self.device)
        self._zoom_out_warned = False
        super().setup_method()
        if self.multi_teacher['combine'] == 'error':
            raise MultiTeacherError(
                "train.multi_teacher.combine: error weighs teachers by their error against HR, but AugKD's auxiliary "
                'samples (zoom-in crops of HR, the zoom-out sample) have no HR at the output size. Use combine: mean '
                'or fixed with AugKDModel, or KDModel for combine: error.')
        self.check_zoom_out_size()

    def augkd_options(self) -> dict:
        options = read_block(self.opt['train'].get('augkd'), AUGKD_OPTIONS, 'train.augkd')
        options['label_consistency'] = dict(options['label_consistency'] or {})
        options['label_consistency_samples'] = list(options['label_consistency_samples'] or [])
        scale = int(self.opt['scale'])
        if options['zoom_in_non_overlapping'] and int(options['n_zoom_in']) > scale**2:
            raise ValueError(f'train.augkd.n_zoom_in is {options["n_zoom_in"]} but only scale^2 = {scale**2} '
                             'non-overlapping LR-sized crops fit in an HR patch: lower n_zoom_in or set '
                             'zoom_in_non_overlapping: false.')
        return options

    def check_zoom_out_size(self) -> None:
        """Fail early, with the fix, when the networks cannot take the zoomed-out patches of this training set."""
        gt_size = self.opt['datasets'].get('train', {}).get('gt_size') if 'datasets' in self.opt else None
        if not self.augkd['zoom_out'] or not gt_size:
            return
        size = self.zoom_out_size(int(gt_size) // int(self.opt['scale']))
        if size is None:
            return
        probe = torch.rand(1, 3, size, size, generator=self.rng, device=self.device)
        for role, net in (('teacher (network_t)', self.net_t), ('student (network_g)', bare_module(self.net_g))):
            try:
                with torch.no_grad():
                    net(probe)
            except RuntimeError as error:
                raise ValueError(
                    f'The {role} cannot process the {size}x{size} zoom-out patches of this training '
                    f'set ({error}). Set train.augkd.zoom_out_min_size to {size + 1} or more to skip '
                    'zoom-out, train.augkd.zoom_out: false, or a larger datasets.train.gt_size.') from error

    def zoom_out_size(self, lq_size: int) -> Optional[int]:
        """Side of the zoomed-out patch of an ``lq_size`` LR patch, or None when zoom-out does not apply."""
        scale = int(self.opt['scale'])
        if lq_size % scale or lq_size // scale < int(self.augkd['zoom_out_min_size']):
            return None
        return lq_size // scale

    def zoom_out_applies(self) -> bool:
        if not self.augkd['zoom_out']:
            return False
        height, width = self.lq.shape[-2:]
        if self.zoom_out_size(height) is not None and self.zoom_out_size(width) is not None:
            return True
        if not self._zoom_out_warned:
            self._zoom_out_warned = True
            get_root_logger().warning(
                f'AugKD: zoom-out skipped: the {height}x{width} LR patches zoomed out by {self.opt["scale"]} are not '
                f'whole or smaller than train.augkd.zoom_out_min_size = {self.augkd["zoom_out_min_size"]}. '
                'This warning is not repeated.')
        return False

    def draw_augmentations(self, batch: int, samples: str) -> torch.Tensor:
        """Per-sample flags of ``F`` for the ``samples`` (``zoom_in`` / ``zoom_out``); none drawn (identity) when label
        consistency is off for them."""
        if samples in self.augkd['label_consistency_samples']:
            return self.augment.draw(batch, self.rng)
        return torch.zeros(batch, len(self.augment.names), dtype=torch.bool, device=self.rng.device)

    def student_on_augmented(self, lq: torch.Tensor) -> torch.Tensor:
        """``F^-1(S(F(x)))`` of the zoom-out samples with ``F`` drawn per sample."""
        flags = self.draw_augmentations(lq.size(0), 'zoom_out')
        return self.augment.invert(self.net_g(self.augment.apply(lq, flags)), flags)

    def compute_losses(self, current_iter: int) -> 'OrderedDict[str, torch.Tensor]':
        batch = self.lq.size(0)
        losses = OrderedDict()
        if self.zoom_out_applies():
            lq_zo = zoom_out(self.lq, int(self.opt['scale']))
            out_zo = self.student_on_augmented(lq_zo)
            if self.cri_pix is not None:
                losses['l_pix_zo'] = self.cri_pix(out_zo, self.lq)
            losses['l_augkd_zo'] = self.cri_augkd(out_zo, self.teacher_forward(lq_zo))
        lq_zi = self.zoom_in_samples()
        flags = self.draw_augmentations(lq_zi.size(0), 'zoom_in')
        with self.student_taps.recording() as student_features:
            output = self.net_g(torch.cat([self.lq, self.augment.apply(lq_zi, flags)]))
        with self.teacher_taps.recording() as teacher_features:
            teacher_output = self.teacher_forward(torch.cat([self.lq, lq_zi]))
        self.output = output[:batch]
        losses.update(self.reconstruction_terms(teacher_output[:batch]))
        if lq_zi.size(0):
            losses['l_augkd_zi'] = self.cri_augkd(self.augment.invert(output[batch:], flags), teacher_output[batch:])
        # the feature losses of the LR batch (the first ``batch`` samples of the recorded forward)
        losses.update(self.feature_loss_terms(student_features, teacher_features, batch))
        return losses

    def zoom_in_samples(self) -> torch.Tensor:
        """``n_zoom_in`` LR-sized crops of each HR patch, ``(n_zoom_in * batch, C, h, w)``."""
        crop_size = tuple(self.lq.shape[-2:])
        origins = crop_origins(
            self.lq.size(0), int(self.augkd['n_zoom_in']), tuple(self.gt.shape[-2:]), crop_size, self.rng,
            bool(self.augkd['zoom_in_non_overlapping']))
        return zoom_in(self.gt, origins, crop_size)
