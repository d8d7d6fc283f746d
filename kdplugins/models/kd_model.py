"""KDModel: the shared base of every distillation method of kdplugins."""
import inspect
import os
import torch
import torch.distributed as dist
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.dist_util import master_only
from basicsr.utils.registry import DATASET_REGISTRY, LOSS_REGISTRY, MODEL_REGISTRY
from collections import OrderedDict
from torch import nn
from typing import Dict, List, Optional, Tuple

from kdplugins.distill.recorder import FeatureRecorder
from kdplugins.distill.speed import (DTYPES, SPEED_DEFAULTS, MixedPrecision, compile_in_place, speed_options,
                                     to_channels_last)
from kdplugins.distill.teacher import build_teacher, teacher_and_bicubic_psnr
from kdplugins.utils.basicsr_options import SR_TRAIN_OPTIONS
from kdplugins.utils.modules import bare_module
from kdplugins.utils.padding import forward_padded
from kdplugins.utils.registry import register
from kdplugins.utils.train_state import (broadcast_from_rank0, capture_rng_state, gather_from_ranks, restore_rng_state,
                                         tensors_digest)


@register(MODEL_REGISTRY)
class KDModel(SRModel):
    """Student ``network_g`` trained as in ``SRModel``, plus a frozen teacher ``network_t`` (Eq. 1-2 of AugKD).

    Loss per iteration: ``pixel_opt(S(LR), HR) + kd_opt(S(LR), T(LR)) + sum of feature_losses`` (each optional,
    at least one required), one backward pass, one optimizer step. Each term is logged under its own name.

    Options (besides ``SRModel``'s):
        network_t, path.pretrain_network_t / param_key_t / strict_load_t / strip_prefix_t: the teacher
            (:func:`kdplugins.distill.teacher.build_teacher`), never trained, never saved, never DDP-wrapped.
        train.teacher_img_range: value range of the teacher's checkpoint (255 for [0, 255] teachers).
        train.kd_opt: a loss between student and teacher outputs, e.g. ``{type: L1Loss, loss_weight: 1}``.
        train.feature_losses: list of ``{type, student_layer, teacher_layer, ...}``; the loss receives the two
            recorded features. A loss whose constructor takes ``student_channels`` / ``teacher_channels`` gets them
            from a probe forward; its trainable parameters (connectors) join the optimizer, the training state and
            resume. A loss whose constructor takes ``num_train_images`` gets the size of the training dataset (before
            ``dataset_enlarge_ratio``). A loss whose ``forward`` takes ``index`` gets the dataset indices of the batch
            (the dataset must be ``PairedImageDatasetWithIndex``); one whose ``forward`` takes ``generator`` gets
            ``self.rng``.
        train.probe_size: side of the random LR input of the probe forward (default 32) that checks the teacher's
            scale against the student's and measures the tapped feature shapes.
        train.check_rank_sync: at each checkpoint, compare digests of the student and connector weights of all
            ranks, log them and stop with an error if they differ.
        train.skip_nonfinite_batches: a NaN / infinite loss term stops training with an error naming the term and the
            iteration (default), or, when true, skips that batch on every rank with a warning.
        train.teacher_check: before the first iteration, the teacher's PSNR-Y on up to 3 validation pairs must beat
            bicubic upscaling of the same LR (a teacher below it is loaded wrongly); false skips the check.
        train.speed: ``channels_last``, ``precision`` (autocast and, for fp16, a gradient scaler saved with the
            training state), ``teacher_precision`` and ``compile`` (:mod:`kdplugins.distill.speed`).

    Randomness of a method must come from ``self.rng`` (a generator on the training device, seeded with
    ``manual_seed + rank``): its state is saved per rank with Python's, NumPy's and torch's, so that a resumed run
    repeats an uninterrupted one exactly.
    """

    # the ``train`` options this model reads, with their defaults (checked before anything is built)
    TRAIN_OPTIONS = {
        **SR_TRAIN_OPTIONS, 'kd_opt': None,
        'feature_losses': None,
        'teacher_img_range': 1.0,
        'check_rank_sync': False,
        'probe_size': 32,
        'skip_nonfinite_batches': False,
        'teacher_check': True,
        'speed': SPEED_DEFAULTS
    }

    def init_training_settings(self) -> None:
        train_opt = self.opt['train']
        self.net_g.train()
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(int(self.opt.get('manual_seed') or 0) + int(self.opt.get('rank', 0)))
        self.net_t = build_teacher(self.opt, self.device)
        self.check_teacher()
        self.setup_ema()
        self.cri_pix = build_loss(train_opt['pixel_opt']).to(self.device) if train_opt.get('pixel_opt') else None
        self.cri_kd = build_loss(train_opt['kd_opt']).to(self.device) if train_opt.get('kd_opt') else None
        self.feature_loss_opts: List[dict] = list(train_opt.get('feature_losses') or [])
        self.net_distill = nn.ModuleDict()
        self.setup_distillation()
        if self.cri_pix is None and self.cri_kd is None and len(self.net_distill) == 0:
            raise ValueError('KDModel has no loss: set train.pixel_opt, train.kd_opt or train.feature_losses.')
        self.setup_speed()
        self.setup_optimizers()
        self.setup_schedulers()
        self._teacher_validated = set()

    def setup_speed(self) -> None:
        """``train.speed``: layout of networks and batches, the step's precision, the teacher's precision."""
        self.speed = speed_options(self.opt['train'])
        self.precision = MixedPrecision(self.speed['precision'], self.device)
        if self.speed['channels_last']:
            to_channels_last(
                [self.net_g,
                 getattr(self, 'net_g_ema', None),
                 getattr(self, 'net_t', None), self.net_distill])
        if self.speed['teacher_precision'] != 'fp32':
            self.net_t.to(DTYPES[self.speed['teacher_precision']])
        networks = {'student': bare_module(self.net_g), 'teacher': getattr(self, 'net_t', None)}
        for name in self.speed['compile']:
            if networks[name] is None:
                raise ValueError(f'train.speed.compile: {type(self).__name__} has no separate {name} network; '
                                 f'remove {name} from the list.')
            compile_in_place(networks[name], self.speed['compile_backend'])

    def check_teacher(self) -> None:
        """Stop before the first iteration when the teacher does worse than bicubic upscaling on the first pairs of
        the first validation set (``train.teacher_check: false`` skips it; no validation set: nothing to check)."""
        val_opts = [o for phase, o in (self.opt.get('datasets') or {}).items() if phase.split('_')[0] == 'val']
        if not self.opt['train'].get('teacher_check', True) or not val_opts:
            return
        from basicsr.data import build_dataset
        dataset = build_dataset(dict(val_opts[0]))
        scale = int(self.opt['scale'])
        teacher, bicubic = teacher_and_bicubic_psnr(self.net_t, dataset, scale, self.device)
        logger = get_root_logger()
        logger.info(f'Teacher check on {val_opts[0]["name"]}: teacher {teacher:.2f} dB, bicubic {bicubic:.2f} dB '
                    '(PSNR-Y of the first pairs).')
        if teacher < bicubic:
            path_opt = self.opt['path']
            raise ValueError(
                f'The teacher (network_t) scores {teacher:.2f} dB on the first pairs of {val_opts[0]["name"]}, below '
                f'bicubic upscaling ({bicubic:.2f} dB): it is not the trained teacher it should be. Likely causes: '
                f'the value range (network_t img_range, train.teacher_img_range = '
                f'{self.opt["train"].get("teacher_img_range", 1)}: a [0, 255] arch scales inside, do not scale twice), '
                f'keys that did not load (path.strict_load_t = {path_opt.get("strict_load_t", True)}, param_key_t = '
                f'{path_opt.get("param_key_t", "params")!r}), or an arch / scale that does not match the checkpoint '
                f'{path_opt.get("pretrain_network_t")!r}. To train against this teacher on purpose, set '
                'train.teacher_check: false.')

    def setup_ema(self) -> None:
        """EMA copy of the student, as in ``SRModel`` (``train.ema_decay``)."""
        self.ema_decay = self.opt['train'].get('ema_decay', 0)
        if self.ema_decay <= 0:
            return
        get_root_logger().info(f'Use Exponential Moving Average with decay: {self.ema_decay}')
        self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path is not None:
            self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
        else:
            self.model_ema(0)
        self.net_g_ema.eval()

    # ----------------------------------------------------------------------------------------------------------
    # distillation pieces: probe, feature recorders, feature losses with their connectors
    def setup_distillation(self) -> None:
        """Probe the teacher and the student, check their scales, build recorders and feature losses."""
        student_layers = [o['student_layer'] for o in self.feature_loss_opts]
        teacher_layers = [o['teacher_layer'] for o in self.feature_loss_opts]
        self.student_recorder = FeatureRecorder(self.net_g, student_layers, 'student (network_g)')
        self.teacher_recorder = FeatureRecorder(self.net_t.net, teacher_layers, 'teacher (network_t)')
        student_shapes, teacher_shapes = self.probe_shapes()
        for i, loss_opt in enumerate(self.feature_loss_opts):
            name = self.feature_loss_name(i)
            extra = {
                'student_channels': student_shapes[loss_opt['student_layer']][1],
                'teacher_channels': teacher_shapes[loss_opt['teacher_layer']][1]
            }
            if 'num_train_images' in inspect.signature(LOSS_REGISTRY.get(loss_opt['type'])).parameters:
                extra['num_train_images'] = self.num_train_images()
            self.net_distill[name] = self.build_feature_loss(loss_opt, extra)
        self.net_distill.to(self.device)
        broadcast_from_rank0(self.net_distill)  # ranks were seeded differently

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
    def build_feature_loss(loss_opt: dict, extra: Dict[str, Optional[int]]) -> nn.Module:
        loss_opt = {k: v for k, v in loss_opt.items() if k not in ('student_layer', 'teacher_layer')}
        accepted = inspect.signature(LOSS_REGISTRY.get(loss_opt['type'])).parameters
        loss_opt.update({k: v for k, v in extra.items() if k in accepted and k not in loss_opt})
        return build_loss(loss_opt)

    @torch.no_grad()
    def probe_shapes(self) -> Tuple[Dict[str, torch.Size], Dict[str, torch.Size]]:
        """One forward of teacher and student on a random LR patch: checks that both upscale alike and returns the
        shapes of the recorded features."""
        size = int(self.opt['train'].get('probe_size', 32))
        probe = torch.rand(1, 3, size, size, generator=self.rng, device=self.device)
        student = bare_module(self.net_g)
        was_training = student.training
        student.eval()
        out_s = student(probe)
        student.train(was_training)
        out_t = self.net_t(probe)
        if out_s.shape != out_t.shape:
            raise ValueError(
                f'The teacher and the student upscale differently: for a {size}x{size} input the student '
                f'(network_g, scale {self.opt.get("scale")}) returns {tuple(out_s.shape[-2:])} but the teacher '
                f'(network_t) returns {tuple(out_t.shape[-2:])}. Set the scale option of network_t (upscale / scale) '
                'to the scale of the student and of the data, and use a teacher checkpoint trained for it.')
        student_shapes = {k: v.shape for k, v in self.student_recorder.features.items()}
        teacher_shapes = {k: v.shape for k, v in self.teacher_recorder.features.items()}
        self.student_recorder.features.clear()
        self.teacher_recorder.features.clear()
        return student_shapes, teacher_shapes

    def setup_optimizers(self) -> None:
        """One optimizer over the student and the trainable distillation modules (``optim_g``)."""
        train_opt = self.opt['train']
        params = [p for p in self.net_g.parameters() if p.requires_grad]
        params += [p for p in self.net_distill.parameters() if p.requires_grad]
        optim_opt = dict(train_opt['optim_g'])
        optim_type = optim_opt.pop('type')
        self.optimizer_g = self.get_optimizer(optim_type, params, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    # ----------------------------------------------------------------------------------------------------------
    # training step
    def feed_data(self, data: dict) -> None:
        super().feed_data(data)
        self.index = data['index'].to(self.device) if 'index' in data else None
        if getattr(self, 'speed', SPEED_DEFAULTS)['channels_last']:
            self.lq = self.lq.contiguous(memory_format=torch.channels_last)
            if hasattr(self, 'gt'):
                self.gt = self.gt.contiguous(memory_format=torch.channels_last)

    def teacher_forward(self, lq: torch.Tensor) -> torch.Tensor:
        """Teacher output for ``lq`` (no autograd, eval mode, [0, 1] range)."""
        return self.net_t(lq)

    def compute_losses(self, current_iter: int) -> 'OrderedDict[str, torch.Tensor]':
        """Weighted loss terms of one iteration; a method adds its own terms by overriding this."""
        self.output = self.net_g(self.lq)
        teacher_output = self.teacher_forward(self.lq)
        losses = OrderedDict()
        if self.cri_pix is not None:
            losses['l_pix'] = self.cri_pix(self.output, self.gt)
        if self.cri_kd is not None:
            losses['l_kd'] = self.cri_kd(self.output, teacher_output)
        losses.update(self.feature_losses())
        return losses

    def feature_losses(self) -> 'OrderedDict[str, torch.Tensor]':
        """The feature losses on the latest forward passes; a method that appends samples to the LR batch in that
        pass (AugKD) gets the losses of the first ``len(self.lq)`` samples, the LR batch."""
        losses = OrderedDict()
        batch = self.lq.size(0)
        for loss_opt, (name, loss) in zip(self.feature_loss_opts, self.net_distill.items()):
            student_feat = self.student_recorder.features[loss_opt['student_layer']][:batch]
            teacher_feat = self.teacher_recorder.features[loss_opt['teacher_layer']][:batch].float()
            losses[name] = loss(student_feat, teacher_feat, **self.feature_loss_kwargs(name, loss))
        return losses

    def feature_loss_kwargs(self, name: str, loss: nn.Module) -> dict:
        """``index`` and ``generator`` for a feature loss whose ``forward`` takes them."""
        accepted = inspect.signature(loss.forward).parameters
        kwargs = {}
        if 'index' in accepted:
            if self.index is None:
                raise ValueError(f'{name} needs the dataset index of each sample, but the training dataset does not '
                                 'return one: set datasets.train.type to PairedImageDatasetWithIndex (same options as '
                                 'PairedImageDataset).')
            kwargs['index'] = self.index
        if 'generator' in accepted:
            kwargs['generator'] = self.rng
        return kwargs

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad()
        with self.precision.autocast():
            losses = self.compute_losses(current_iter)
        if not self.losses_are_finite(losses, current_iter):
            self.log_dict = OrderedDict()
            return
        self.precision.backward(sum(losses.values()))
        self.average_distill_gradients()
        self.precision.step(self.optimizer_g)
        self.log_dict = self.reduce_loss_dict(losses)
        if self.ema_decay > 0:
            self.model_ema(decay=self.ema_decay)

    def losses_are_finite(self, losses: Dict[str, torch.Tensor], current_iter: int) -> bool:
        """False when a term is NaN or infinite on any rank and ``train.skip_nonfinite_batches`` is set (the batch is
        skipped on every rank, with a warning); raises otherwise, before the weights are touched, so the checkpoints
        written so far stay the last good ones."""
        finite = torch.stack([torch.isfinite(value.detach()).all() for value in losses.values()])
        flag = (~finite).any().float()
        if self.opt['dist']:
            dist.all_reduce(flag)
        if flag.item() == 0:  # one host synchronization per step (basicsr's logging makes several anyway)
            return True
        bad = [name for name, ok in zip(losses, finite.tolist()) if not ok]
        where = ', '.join(bad) if bad else 'a term on another rank'
        if self.opt['train'].get('skip_nonfinite_batches'):
            get_root_logger().warning(f'Non-finite loss ({where}) at iteration {current_iter}: batch skipped '
                                      '(train.skip_nonfinite_batches).')
            return False
        raise FloatingPointError(
            f'Non-finite loss ({where}) at iteration {current_iter}. Training stopped before this step changed the '
            f'weights; the last checkpoint in {self.opt["path"].get("models")} is the last good one. Check the loss '
            'weights, the learning rate and the data, or set train.skip_nonfinite_batches: true to skip such batches.')

    def average_distill_gradients(self) -> None:
        """Average the gradients of the distillation modules over ranks (DDP only does it for ``net_g``)."""
        if not self.opt['dist']:
            return
        grads = [p.grad for p in self.net_distill.parameters() if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    # ----------------------------------------------------------------------------------------------------------
    # validation: the student as in SRModel, and the teacher once per dataset
    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img) -> None:
        dataset_name = dataloader.dataset.opt['name']
        if self.is_train and self.opt['val'].get('metrics') and dataset_name not in self._teacher_validated:
            self._teacher_validated.add(dataset_name)
            self.validate_teacher(dataloader, current_iter, tb_logger)
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def test(self) -> None:
        """``SRModel.test`` with inputs padded to the student's window size (SwinIR; :func:`forward_padded`)."""
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else self.net_g
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.output = forward_padded(net, self.lq, int(self.opt['scale']))
        net.train(was_training)

    def validate_teacher(self, dataloader, current_iter: int, tb_logger) -> Dict[str, float]:
        """Metrics of the teacher on a validation set (logged once, at the first validation)."""
        metric_opts = self.opt['val']['metrics']
        totals = {name: 0.0 for name in metric_opts}
        for count, val_data in enumerate(dataloader, start=1):
            output = forward_padded(self.net_t, val_data['lq'].to(self.device), int(self.opt['scale']))
            metric_data = {'img': tensor2img([output.cpu()]), 'img2': tensor2img([val_data['gt']])}
            for name, metric_opt in metric_opts.items():
                totals[name] += calculate_metric(metric_data, metric_opt)
        results = {name: total / count for name, total in totals.items()}
        dataset_name = dataloader.dataset.opt['name']
        get_root_logger().info(f'Teacher (network_t) on {dataset_name}: ' +
                               ', '.join(f'{name}: {value:.4f}' for name, value in results.items()))
        if tb_logger:
            for name, value in results.items():
                tb_logger.add_scalar(f'metrics/{dataset_name}/teacher_{name}', value, current_iter)
        return results

    # ----------------------------------------------------------------------------------------------------------
    # checkpoints and resume
    def save(self, epoch: int, current_iter: int) -> None:
        """Student (and EMA) weights as ``SRModel`` saves them; the training state also holds the distillation
        modules and every rank's generator states. The teacher is never saved."""
        self._rng_states = gather_from_ranks(capture_rng_state(self.rng))
        if self.opt['train'].get('check_rank_sync'):
            self.check_rank_sync(current_iter)
        super().save(epoch, current_iter)

    def check_rank_sync(self, current_iter: int) -> None:
        modules = [bare_module(self.net_g), self.net_distill]
        digests = gather_from_ranks(tensors_digest(modules))
        logger = get_root_logger()
        logger.info(f'Rank weight digests at iter {current_iter}: ' + ' '.join(digests))
        if len(set(digests)) > 1:
            raise RuntimeError(f'Ranks hold different student weights at iter {current_iter}: {digests}. '
                               'The checkpoint of rank 0 has been kept; check for rank-dependent code paths.')

    @master_only
    def save_training_state(self, epoch: int, current_iter: int) -> None:
        if current_iter == -1:
            return
        state = {
            'epoch': epoch,
            'iter': current_iter,
            'optimizers': [o.state_dict() for o in self.optimizers],
            'schedulers': [s.state_dict() for s in self.schedulers],
            'distill_modules': {
                k: v.cpu()
                for k, v in self.net_distill.state_dict().items()
            },
            'rng_states': self._rng_states,
            'grad_scaler': self.precision.state_dict(),
        }
        path = os.path.join(self.opt['path']['training_states'], f'{current_iter}.state')
        torch.save(state, path + '.tmp')
        os.replace(path + '.tmp', path)

    def resume_training(self, resume_state: dict) -> None:
        super().resume_training(resume_state)
        self.net_distill.load_state_dict(resume_state.get('distill_modules', {}))
        self.precision.load_state_dict(resume_state.get('grad_scaler'))
        rng_states: Optional[list] = resume_state.get('rng_states')
        world_size = self.opt.get('world_size', 1)
        if rng_states is not None and len(rng_states) == world_size:
            restore_rng_state(rng_states[self.opt.get('rank', 0)], self.rng)
        else:
            get_root_logger().warning(f'Resume: the training state holds generator states of '
                                      f'{len(rng_states or [])} ranks, this run has {world_size}; random streams '
                                      'restart from the seed, so the run will not repeat an uninterrupted one.')
