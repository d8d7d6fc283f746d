"""Real-world SR distillation: KD composed with Real-ESRGAN's second-order degradations (Wang et al., ICCVW 2021)
synthesised on the device, in its ESRNet stage (pixel + KD) and its ESRGAN stage (pixel, perceptual, GAN + KD).

Composition, not copies: the low-resolution batch is made by basicsr's own ``RealESRNetModel.feed_data`` /
``RealESRGANModel.feed_data`` (basicsr/models/realesrnet_model.py, realesrgan_model.py), called as functions on this
model, with basicsr's ``DiffJPEG``, ``USMSharp``, ``filter2D``, noise functions and training pair pool
(``_dequeue_and_enqueue``). Nothing of basicsr is patched; what basicsr does on CUDA only is done here on the
model's device instead: its ``__init__`` moves the JPEG and USM modules with ``.cuda()`` (here ``.to(device)``, the
JPEG module's output made contiguous for ``filter2D`` on the CPU: :class:`ContiguousOutput`), and its pair pool
allocates itself with ``.cuda()`` on first use (here it is allocated beforehand on the device, so basicsr's
``_dequeue_and_enqueue`` finds it and runs unchanged). docs/realworld_kd.md.
"""
import contextlib
import numpy as np
import random
import torch
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.models.realesrgan_model import RealESRGANModel
from basicsr.models.realesrnet_model import RealESRNetModel
from basicsr.utils import DiffJPEG, USMSharp, get_root_logger
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import MODEL_REGISTRY
from collections import OrderedDict
from torch import nn
from typing import Dict, Iterator, List

from kdplugins.data.degradation_options import ESRNET_TOP_LEVEL, GAN_TOP_LEVEL, Spec
from kdplugins.models.distill_model import DistillModel
from kdplugins.models.kd_model import KDModel
from kdplugins.utils.modules import bare_module
from kdplugins.utils.registry import register
from kdplugins.utils.train_state import gather_from_ranks


def draw_seed(manual_seed: int, rank: int, draw: int) -> int:
    """The seed of the ``draw``-th synthesised batch of ``rank`` (a 32-bit integer, as NumPy's ``seed`` takes)."""
    return int(np.random.SeedSequence([manual_seed, rank, draw]).generate_state(1)[0])


@contextlib.contextmanager
def seeded_global_streams(seed: int, device: torch.device) -> Iterator[None]:
    """Python's, NumPy's and torch's CPU generators, and the current CUDA device's when ``device`` is CUDA, seeded
    with ``seed`` for the block and given back as they were afterwards."""
    states = random.getstate(), np.random.get_state()
    cuda = [torch.cuda.current_device()] if device.type == 'cuda' else []
    with torch.random.fork_rng(devices=cuda):
        random.seed(seed)
        np.random.seed(seed)
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed(seed)  # the current device only
        try:
            yield
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])


class ContiguousOutput(nn.Module):
    """``module`` whose output is made contiguous. basicsr's ``DiffJPEG`` returns a tensor with channels-last
    strides (a permute); on the CPU ``F.interpolate`` keeps them, and basicsr's ``filter2D`` then fails on ``.view``
    (the sinc filter after JPEG in the second stage). The values are unchanged."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.module(*args, **kwargs).contiguous()


class SynthesisedBatches:
    """The training batch of a real-world model: basicsr's ``feed_data`` of ``BASICSR_MODEL`` synthesises the LR from
    the HR and the kernels of ``RealESRGANDataset`` once per batch, and student and teacher(s) both read that one
    ``self.lq``.

    Randomness. basicsr draws the degradations (resize kind and scale, noise kind and level, JPEG quality, the order of
    the last stage, the crop, the pool's shuffle) from the *global* streams: Python's ``random``, NumPy's
    ``np.random``, torch's CPU generator (``randperm`` of the pool) and the device's generator (noise, JPEG quality).
    Here each synthesis runs with those streams reseeded from (``manual_seed``, rank, number of batches synthesised so
    far) and given back afterwards (:func:`seeded_global_streams`), rather than continuing a generator whose state is
    saved: the global streams are also consumed by everything else in the process (data loading without workers,
    the teacher check, validation, the DataLoader's base seed, other plugins), so a saved state would have to be
    captured at exactly the same point of all of them; a per-batch seed makes each batch a function of its seed, its
    HR and kernels (which kdplugins' sampler seeds per sample: :mod:`kdplugins.runtime.exact_resume`) and the pair
    pool alone. The ranks draw differently (the rank is in the seed), as Real-ESRGAN's ranks do. The count of
    batches and the pair pool (``queue_lr``, ``queue_gt``, ``queue_ptr``) of every rank are saved in the training
    state (``pair_pools``) and resumed, so N/2 iterations + resume N/2 equal N iterations bitwise. The pool is large
    at Real-ESRGAN's scale (``queue_size`` 180 of 256x256 HR: about 150 MB a rank).
    """

    BASICSR_MODEL: type
    TOP_LEVEL_OPTIONS: Dict[str, Spec]

    def setup_degradations(self) -> None:
        """basicsr's JPEG and USM modules on the device, and the pair pool allocated where basicsr's
        ``_dequeue_and_enqueue`` looks for it."""
        self.jpeger = ContiguousOutput(DiffJPEG(differentiable=False)).to(self.device)
        self.usm_sharpener = USMSharp().to(self.device)
        self.queue_size = int(self.opt.get('queue_size', 180))
        self.queue_ptr = 0
        self.degradation_draws = 0
        if not self.opt.get('high_order_degradation', True):  # given pairs: no synthesis, no pool
            self.queue_lr = self.queue_gt = torch.zeros(0)
            return
        gt_size, scale = int(self.opt['gt_size']), int(self.opt['scale'])
        self.queue_lr = torch.zeros(self.queue_size, 3, gt_size // scale, gt_size // scale, device=self.device)
        self.queue_gt = torch.zeros(self.queue_size, 3, gt_size, gt_size, device=self.device)

    def _dequeue_and_enqueue(self) -> None:
        """basicsr's training pair pool of ``BASICSR_MODEL``, which its ``feed_data`` calls by this name."""
        self.BASICSR_MODEL._dequeue_and_enqueue(self)

    def synthesises(self) -> bool:
        """Whether ``feed_data`` synthesises the LR: in training, not in validation, unless high_order_degradation is
        false."""
        return self.is_train and not getattr(self, 'validating', False) and self.opt.get('high_order_degradation', True)

    def feed_data(self, data: dict) -> None:
        if not self.synthesises():  # given pairs (validation, or high_order_degradation: false)
            super().feed_data(data)
            return
        seed = draw_seed(int(self.opt.get('manual_seed') or 0), int(self.opt.get('rank', 0)), self.degradation_draws)
        with seeded_global_streams(seed, self.device):
            self.BASICSR_MODEL.feed_data(self, data)
        self.degradation_draws += 1
        self.index = None  # the pool mixes batches: a sample's dataset index is not known
        if self.speed['channels_last']:
            self.lq = self.lq.contiguous(memory_format=torch.channels_last)
            self.gt = self.gt.contiguous(memory_format=torch.channels_last)

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img) -> None:
        """Validation on given pairs, without synthesis (as basicsr's real-world models validate; they switch
        ``is_train`` off for it, which would also switch off kdplugins' validation of the teacher)."""
        self.validating = True
        try:
            super().nondist_validation(dataloader, current_iter, tb_logger, save_img)
        finally:
            self.validating = False

    def check_teachers(self) -> None:
        """The teacher check on the first validation set; without one it is skipped (the training set has no LR)."""
        datasets = self.opt.get('datasets') or {}
        if not any(phase.split('_')[0] == 'val' for phase in datasets):
            if self.teachers and self.opt['train'].get('teacher_check', True):
                get_root_logger().info('Teacher check skipped: no validation set (the real-world training set has no '
                                       'LR images to check the teacher on).')
            return
        super().check_teachers()

    def pool_state(self) -> dict:
        return {
            'queue_lr': self.queue_lr.cpu(),
            'queue_gt': self.queue_gt.cpu(),
            'queue_ptr': self.queue_ptr,
            'draws': self.degradation_draws
        }

    def save(self, epoch: int, current_iter: int) -> None:
        self._pool_states = gather_from_ranks(self.pool_state())  # every rank's pool, for rank 0 to write
        super().save(epoch, current_iter)

    def extra_training_state(self) -> dict:
        return {'pair_pools': self._pool_states}

    def resume_training(self, resume_state: dict) -> None:
        super().resume_training(resume_state)
        pools = resume_state.get('pair_pools') or []
        rank, world_size = int(self.opt.get('rank', 0)), int(self.opt.get('world_size', 1))
        if len(pools) != world_size:
            get_root_logger().warning(f'Resume: the training state holds the pair pools of {len(pools)} ranks, this '
                                      f'run has {world_size}; the pools start empty and the degradations restart '
                                      'from the seed, so the run will not repeat an uninterrupted one.')
            return
        pool = pools[rank]
        self.queue_lr = pool['queue_lr'].to(self.device)
        self.queue_gt = pool['queue_gt'].to(self.device)
        self.queue_ptr = int(pool['queue_ptr'])
        self.degradation_draws = int(pool['draws'])


@register(MODEL_REGISTRY)
class RealESRNetKDModel(SynthesisedBatches, KDModel):
    """The ESRNet stage of Real-ESRGAN with distillation: ``pixel_opt(S(LR), HR) + kd_opt(S(LR), T(LR)) + feature
    losses`` (as :class:`~kdplugins.models.kd_model.KDModel`) on batches that basicsr's ``RealESRNetModel.feed_data``
    synthesises (:class:`SynthesisedBatches`); the HR target is USM-sharpened when ``gt_usm`` is true, as there.

    Options: :class:`KDModel`'s; the top-level degradation options ``RealESRNetModel`` reads
    (:data:`~kdplugins.data.degradation_options.ESRNET_TOP_LEVEL`); ``datasets.train`` of type ``RealESRGANDataset``.
    """

    BASICSR_MODEL = RealESRNetModel
    TOP_LEVEL_OPTIONS = ESRNET_TOP_LEVEL

    def setup_method(self) -> None:
        self.setup_degradations()
        super().setup_method()


@register(MODEL_REGISTRY)
class RealESRNetPlainModel(SynthesisedBatches, DistillModel):
    """The ESRNet stage without a teacher: ``pixel_opt(S(LR), HR)`` on batches that basicsr's
    ``RealESRNetModel.feed_data`` synthesises, on any device and resumed exactly (:class:`SynthesisedBatches`). It
    trains the CPU-sized teacher of options/train/RealWorldKD/ and the student alone, the baseline of the
    distillation: with the same ``manual_seed`` and data it draws the very same LR batches as
    :class:`RealESRNetKDModel` (the draws depend on the seed, the rank and the batch count only).

    Options: :class:`~kdplugins.models.distill_model.DistillModel`'s (``train.pixel_opt`` required) and those of
    :class:`RealESRNetKDModel` but the teacher's.
    """

    BASICSR_MODEL = RealESRNetModel
    TOP_LEVEL_OPTIONS = ESRNET_TOP_LEVEL
    HAS_FROZEN_TEACHER = False

    def setup_method(self) -> None:
        self.setup_degradations()
        if self.cri_pix is None:
            raise ValueError(f'{type(self).__name__} has no loss: set train.pixel_opt (Real-ESRGAN: L1Loss, weight 1).')

    def compute_losses(self, current_iter: int) -> 'OrderedDict[str, torch.Tensor]':
        self.output = self.net_g(self.lq)
        return self.reconstruction_terms(None)

    def validated_teachers(self) -> list:
        return []


@register(MODEL_REGISTRY)
class RealESRGANKDModel(SynthesisedBatches, KDModel):
    """The ESRGAN stage of Real-ESRGAN with distillation. Per iteration, on the batch that basicsr's
    ``RealESRGANModel.feed_data`` synthesises, as ``RealESRGANModel.optimize_parameters`` does, plus the KD terms:

    1. generator (every ``net_d_iters`` iterations after ``net_d_init_iters``), discriminator frozen:
       ``l_g_pix = pixel_opt(S(LR), HR')``, ``l_kd = kd_opt(S(LR), T(LR))``, feature losses,
       ``l_g_percep`` / ``l_g_style = perceptual_opt(S(LR), HR')``, ``l_g_gan = gan_opt(D(S(LR)), real)``; one
       backward pass, one step of ``optim_g`` (student and distillation modules);
    2. discriminator: ``l_d_real = gan_opt(D(HR'), real)``, ``l_d_fake = gan_opt(D(S(LR)), fake)``, one step of
       ``optim_d``;
    3. the EMA copy of the student (``ema_decay``).

    ``HR'`` is the USM-sharpened HR where ``l1_gt_usm`` / ``percep_gt_usm`` / ``gan_gt_usm`` say so. The teacher is a
    frozen network (no gradients, in no optimizer, never saved): the GAN step cannot change it. The discriminator is
    saved as ``net_d_<iter>.pth`` and resumed with its optimizer and scheduler; the EMA inside ``net_g_<iter>.pth``.
    Only fp32 steps (``train.speed.precision``).

    Options: :class:`KDModel`'s, and ``network_d`` (``path.pretrain_network_d``), ``train.optim_d``,
    ``train.gan_opt``, ``train.perceptual_opt``, ``train.net_d_iters``, ``train.net_d_init_iters`` as basicsr's
    ``SRGANModel`` reads them; the top-level options of ``RealESRGANModel``
    (:data:`~kdplugins.data.degradation_options.GAN_TOP_LEVEL`).
    """

    BASICSR_MODEL = RealESRGANModel
    TOP_LEVEL_OPTIONS = GAN_TOP_LEVEL
    TRAIN_OPTIONS = {**KDModel.TRAIN_OPTIONS, 'optim_d': None, 'gan_opt': None, 'net_d_iters': 1, 'net_d_init_iters': 0}

    def setup_method(self) -> None:
        self.setup_degradations()
        super().setup_method()
        train_opt, path_opt = self.opt['train'], self.opt['path']
        for key in ('network_d', ):
            if key not in self.opt:
                raise ValueError(f'{type(self).__name__} needs a discriminator: add a network_d section (Real-ESRGAN: '
                                 'type: UNetDiscriminatorSN, num_in_ch: 3, num_feat: 64, skip_connection: true).')
        for key in ('gan_opt', 'optim_d'):
            if not train_opt.get(key):
                raise ValueError(f'{type(self).__name__} needs train.{key} (Real-ESRGAN: see '
                                 'options/train/RealWorldKD/ and docs/realworld_kd.md).')
        self.net_d = self.model_to_device(build_network(self.opt['network_d']))
        self.print_network(self.net_d)
        load_path = path_opt.get('pretrain_network_d')
        if load_path is not None:
            self.load_network(self.net_d, load_path, path_opt.get('strict_load_d', True),
                              path_opt.get('param_key_d', 'params'))
        self.net_d.train()
        perceptual = train_opt.get('perceptual_opt')
        self.cri_perceptual = build_loss(dict(perceptual)).to(self.device) if perceptual else None
        self.cri_gan = build_loss(dict(train_opt['gan_opt'])).to(self.device)
        self.net_d_iters = int(train_opt.get('net_d_iters', 1))
        self.net_d_init_iters = int(train_opt.get('net_d_init_iters', 0))

    def setup_speed(self) -> None:
        super().setup_speed()
        if self.speed['precision'] != 'fp32':
            raise ValueError(f'train.speed.precision: {type(self).__name__} trains in fp32 only (the generator and the '
                             'discriminator steps share no gradient scaler); remove the setting.')

    def setup_optimizers(self) -> None:
        super().setup_optimizers()
        optim_opt = dict(self.opt['train']['optim_d'])
        optim_type = optim_opt.pop('type')
        self.optimizer_d = self.get_optimizer(optim_type, self.net_d.parameters(), **optim_opt)
        self.optimizers.append(self.optimizer_d)

    @classmethod
    def saved_networks(cls, opt: dict) -> List[str]:
        return ['network_g', 'network_d']

    def rank_synced_modules(self) -> List[nn.Module]:
        return super().rank_synced_modules() + [bare_module(self.net_d)]

    def feed_data(self, data: dict) -> None:
        super().feed_data(data)
        if self.is_train and not getattr(self, 'validating', False) and not self.synthesises():
            self.gt_usm = self.usm_sharpener(self.gt)  # training on given pairs (high_order_degradation: false)

    def target(self, option: str) -> torch.Tensor:
        """The HR target of a term: sharpened when the top-level ``option`` is true (as ``RealESRGANModel``)."""
        return self.gt_usm if self.opt[option] else self.gt

    def generator_losses(self) -> 'OrderedDict[str, torch.Tensor]':
        """The generator's weighted terms on ``self.lq``; sets ``self.output``."""
        with self.student_taps.recording() as student_features:
            self.output = self.net_g(self.lq)
        with self.teacher_taps.recording() as teacher_features:
            teacher_output = self.teacher_forward(self.lq, self.gt)
        losses = OrderedDict()
        if self.cri_pix is not None:
            losses['l_g_pix'] = self.cri_pix(self.output, self.target('l1_gt_usm'))
        if self.cri_kd is not None:
            losses['l_kd'] = self.cri_kd(self.output, teacher_output)
        losses.update(self.feature_loss_terms(student_features, teacher_features))
        if self.cri_perceptual is not None:
            percep, style = self.cri_perceptual(self.output, self.target('percep_gt_usm'))
            if percep is not None:
                losses['l_g_percep'] = percep
            if style is not None:
                losses['l_g_style'] = style
        losses['l_g_gan'] = self.cri_gan(self.net_d(self.output), True, is_disc=False)
        return losses

    def optimize_parameters(self, current_iter: int) -> None:
        self.net_d.requires_grad_(False)
        self.optimizer_g.zero_grad()
        losses: 'OrderedDict[str, torch.Tensor]' = OrderedDict()
        if current_iter % self.net_d_iters == 0 and current_iter > self.net_d_init_iters:
            losses = self.generator_losses()
            self.batches['done'] += 1
            if not self.losses_are_finite(losses, current_iter):
                self.batches['skipped'] += 1
                self.log_dict = OrderedDict()
                return
            sum(losses.values()).backward()
            self.average_distill_gradients()
            self.optimizer_g.step()
        else:
            with torch.no_grad():  # only the discriminator learns from this batch
                self.output = self.net_g(self.lq)
        self.net_d.requires_grad_(True)
        self.optimizer_d.zero_grad()
        real_d_pred = self.net_d(self.target('gan_gt_usm'))
        losses['l_d_real'] = self.cri_gan(real_d_pred, True, is_disc=True)
        losses['l_d_real'].backward()
        fake_d_pred = self.net_d(self.output.detach().clone())
        losses['l_d_fake'] = self.cri_gan(fake_d_pred, False, is_disc=True)
        losses['l_d_fake'].backward()
        self.optimizer_d.step()
        losses['out_d_real'] = real_d_pred.detach().mean()
        losses['out_d_fake'] = fake_d_pred.detach().mean()
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)
        self.log_dict = self.reduce_loss_dict(losses)

    @master_only
    def save_training_state(self, epoch: int, current_iter: int) -> None:
        """The discriminator (``net_d_<iter>.pth``, as ``SRGANModel`` names it), then the training state."""
        self.save_network(self.net_d, 'net_d', current_iter)
        super().save_training_state(epoch, current_iter)
