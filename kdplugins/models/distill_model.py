"""DistillModel: what every kdplugins model shares (the method models override only what their paper changes)."""
import functools
import torch
import torch.distributed as dist
import weakref
from basicsr.archs import build_network
from basicsr.losses import build_loss
from basicsr.metrics import calculate_metric
from basicsr.models.sr_model import SRModel
from basicsr.utils import get_root_logger, tensor2img
from basicsr.utils.dist_util import master_only
from collections import OrderedDict
from torch import nn
from typing import Callable, Dict, List, Optional, Tuple, TypeVar, Union

from kdplugins.distill.conv_lora import (LORA_OPTIONS, add_conv_lora_from_state, apply_conv_lora, has_conv_lora,
                                         lora_paths, with_initial_branches)
from kdplugins.distill.recorder import FeatureRecorder, InputSubstitution
from kdplugins.distill.speed import DTYPES, SPEED_OPTIONS, MixedPrecision, compile_in_place, to_channels_last
from kdplugins.distill.teacher import (TeacherCheckError, TeacherScaleError, build_teachers, img_range_option,
                                       teacher_and_bicubic_psnr)
from kdplugins.utils.basicsr_options import SR_TRAIN_OPTIONS
from kdplugins.utils.checkpoint import CheckpointMismatchError, matched_share_problem, read_state_dict
from kdplugins.utils.checkpoint_io import save_network_file, write_training_state
from kdplugins.utils.declared_options import read_block
from kdplugins.utils.errors import ConfigurationError
from kdplugins.utils.modules import bare_module
from kdplugins.utils.padding import forward_padded
from kdplugins.utils.train_state import (broadcast_from_rank0, capture_rng_state, gather_from_ranks, kept_rng_state,
                                         restore_rng_state, tensors_digest)

Taps = TypeVar('Taps', bound=Union[FeatureRecorder, InputSubstitution])


class SkippedBatchesError(ConfigurationError, FloatingPointError):
    """More batches than ``train.max_skipped_share`` were skipped as non-finite."""


class DistillModel(SRModel):
    """A student ``network_g`` trained as in ``SRModel``, an optional frozen teacher, trainable distillation modules,
    and the machinery every method needs. Not registered: a method subclasses it and overrides

    - :meth:`setup_method` (its losses and modules, after the teacher, the EMA copy and the pixel loss exist),
    - :meth:`compute_losses` (the weighted terms of one step; one backward pass, one optimizer step),
    - for a method without a frozen ``network_t`` (CSD): ``HAS_FROZEN_TEACHER = False`` and :meth:`teacher_output`.

    Shared here: ``self.rng`` (a generator on the training device seeded with ``manual_seed + rank``: a method's
    randomness must come from it; its state is saved per rank with Python's, NumPy's and torch's, so a resumed run
    repeats an uninterrupted one exactly); the teacher (:func:`~kdplugins.distill.teacher.build_teacher`, never trained,
    saved or DDP-wrapped) and its check against bicubic before iteration 1; EMA; ``train.speed``; one optimizer over
    the student and ``distill_modules``; non-finite losses; gradient averaging of ``distill_modules`` under DDP; the
    teacher's validation, logged as ``Teacher (...) on <set>`` and as ``metrics/<set>/teacher_<metric>`` (datasets are
    never renamed); atomic training states holding ``distill_modules``, every rank's generator state and the gradient
    scaler; ``check_rank_sync``.

    Options (``train``, besides ``SRModel``'s): ``check_rank_sync`` (compare digests of the student and
    ``distill_modules`` of all ranks at each checkpoint), ``skip_nonfinite_batches`` (a NaN / infinite term stops the
    run naming the term and the iteration, or, when true, skips that batch on every rank), ``speed``
    (:mod:`kdplugins.distill.speed`), ``lora`` (ConvLoRA branches on the student's convolutions, trained while its
    base is frozen or trains: :mod:`kdplugins.distill.conv_lora`); with a frozen teacher also ``teacher_img_range``
    (255 for [0, 255] teachers) and ``teacher_check`` (false skips the bicubic check).
    """

    TRAIN_OPTIONS = {
        **SR_TRAIN_OPTIONS, 'check_rank_sync': False,
        'skip_nonfinite_batches': False,
        'max_skipped_share': 0.1,
        'min_matched_weights': 0.5,
        'speed': SPEED_OPTIONS,
        'lora': LORA_OPTIONS
    }
    TEACHER_TRAIN_OPTIONS = {'teacher_img_range': 1.0, 'teacher_check': True}
    HAS_FROZEN_TEACHER = True
    # why the teacher must stay fp32 (train.speed.teacher_precision), or None when it may run in bf16 / fp16
    FP32_TEACHER_REASON: Optional[str] = None

    def __init__(self, opt: dict):
        given = (opt.get('train') or {}).get('lora') if opt.get('is_train') else None
        self.lora_options = read_block(given, LORA_OPTIONS, 'train.lora') if given else None
        super().__init__(opt)

    # ----------------------------------------------------------------------------------------------------------
    # setup
    def model_to_device(self, net: nn.Module) -> nn.Module:
        """basicsr's, after giving the student its ConvLoRA branches (``train.lora``): ``SRModel.__init__`` calls it
        on the student right after building it, so the branches exist before the student is DDP-wrapped, loaded
        (:meth:`load_network`) and optimized."""
        if self.lora_options and net is getattr(self, 'net_g', None) and not has_conv_lora(net):
            self.add_lora_branches(net)
        return super().model_to_device(net)

    def add_lora_branches(self, net: nn.Module) -> None:
        """``train.lora`` on ``net`` (the student or its EMA copy: the same branches from the same seed)."""
        paths = apply_conv_lora(net, self.lora_options, seed=int(self.opt.get('manual_seed') or 0))
        get_root_logger().info(f'ConvLoRA branches on {len(paths)} convolutions of network_g: {", ".join(paths)}; '
                               f'base {"trained" if self.lora_options["train_base"] else "frozen"}.')

    def init_training_settings(self) -> None:
        self.net_g.train()
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(int(self.opt.get('manual_seed') or 0) + int(self.opt.get('rank', 0)))
        # frozen teachers by section name (network_t, network_t_<name>); net_t is network_t, the one most methods use
        self.teachers = build_teachers(self.opt, self.device) if self.HAS_FROZEN_TEACHER else {}
        self.net_t = self.teachers.get('network_t')
        self.check_teachers()
        self.setup_ema()
        self.cri_pix = self.build_pixel_loss()
        # the distillation modules that learn or keep state (feature losses with their connectors and banks,
        # MemSR's bridges): trained with the student, saved in the training state, resumed
        self.distill_modules = nn.ModuleDict()
        self.setup_method()
        self.setup_speed()
        self.setup_optimizers()
        self.setup_schedulers()
        self._teacher_validated = set()
        self.batches = {'done': 0, 'skipped': 0}  # non-finite batches skipped (train.skip_nonfinite_batches)

    def build_pixel_loss(self) -> Optional[nn.Module]:
        """``train.pixel_opt`` (student vs HR), or None."""
        pixel_opt = self.opt['train'].get('pixel_opt')
        return build_loss(dict(pixel_opt)).to(self.device) if pixel_opt else None

    def setup_method(self) -> None:
        """The method's losses and modules (``self.distill_modules`` for trainable ones)."""
        raise NotImplementedError

    def add_distill_modules(self, modules: Dict[str, nn.Module]) -> None:
        """Add trainable distillation modules, moved to the device and made equal on all ranks (ranks are seeded
        differently)."""
        for name, module in modules.items():
            self.distill_modules[name] = module
        self.distill_modules.to(self.device)
        broadcast_from_rank0(self.distill_modules)

    def setup_speed(self) -> None:
        """``train.speed``: layout of networks and batches, the step's precision, the teacher's precision."""
        self.speed = read_block(self.opt['train'].get('speed'), SPEED_OPTIONS, 'train.speed')
        if self.speed['teacher_precision'] != 'fp32' and self.FP32_TEACHER_REASON:
            raise ValueError(f'train.speed.teacher_precision must be fp32 for {type(self).__name__}: '
                             f'{self.FP32_TEACHER_REASON}')
        self.precision = MixedPrecision(self.speed['precision'], self.device)
        teachers = list(self.teachers.values())
        if self.speed['channels_last']:
            to_channels_last([self.net_g, getattr(self, 'net_g_ema', None), *teachers, self.distill_modules])
        if self.speed['teacher_precision'] != 'fp32':
            for teacher in teachers:
                teacher.to(DTYPES[self.speed['teacher_precision']])
        networks = {'student': [bare_module(self.net_g)], 'teacher': teachers}
        for name in self.speed['compile'] or []:
            if not networks[name]:
                raise ValueError(f'train.speed.compile: {type(self).__name__} has no separate {name} network; '
                                 f'remove {name} from the list.')
            for network in networks[name]:
                compile_in_place(network, self.speed['compile_backend'])

    def check_teachers(self) -> None:
        """Stop before the first iteration when a frozen teacher does worse than bicubic upscaling, or upscales by
        another factor, on the first pairs of the first validation set (without one: the first training crops);
        ``train.teacher_check: false`` skips it."""
        datasets = self.opt.get('datasets') or {}
        val_opts = [o for phase, o in datasets.items() if phase.split('_')[0] == 'val']
        check_opts = val_opts[:1] or [o for phase, o in datasets.items() if phase == 'train']
        if not self.teachers or not self.opt['train'].get('teacher_check', True) or not check_opts:
            return
        from basicsr.data import build_dataset
        with kept_rng_state():  # training crops are random: the run's random streams stay as they were
            dataset = build_dataset(dict(check_opts[0]))
            scale = int(self.opt['scale'])
            for network, teacher in self.teachers.items():
                self.check_teacher(network, teacher, dataset, scale)

    def check_teacher(self, network: str, teacher: nn.Module, dataset, scale: int) -> None:
        """One teacher's check against bicubic (:meth:`check_teachers`)."""
        name = dataset.opt['name']
        try:
            teacher_psnr, bicubic = teacher_and_bicubic_psnr(teacher, dataset, scale, self.device)
        except TeacherScaleError as error:
            raise TeacherScaleError(f'{network} on {name}: {error}') from None
        get_root_logger().info(f'Teacher check of {network} on {name}: teacher {teacher_psnr:.2f} dB, bicubic '
                               f'{bicubic:.2f} dB (PSNR-Y of the first pairs).')
        if teacher_psnr < bicubic:
            path_opt, label = self.opt['path'], network[len('network_'):]
            range_option = img_range_option(network)
            raise TeacherCheckError(
                f'The teacher ({network}) scores {teacher_psnr:.2f} dB on the first pairs of {name}, below bicubic '
                f'upscaling ({bicubic:.2f} dB): it is not the trained teacher it should be. Likely causes: the value '
                f'range ({network} img_range, train.{range_option} = {self.opt["train"].get(range_option, 1)}: a '
                f'[0, 255] arch scales inside, do not scale twice), keys that did not load (path.strict_load_{label} '
                f'= {path_opt.get(f"strict_load_{label}", True)}, param_key_{label} = '
                f'{path_opt.get(f"param_key_{label}", "params")!r}), or an arch / scale that does not match the '
                f'checkpoint {path_opt.get(f"pretrain_{network}")!r}. To train against this teacher on purpose, set '
                'train.teacher_check: false.')

    def setup_ema(self) -> None:
        """EMA copy of the student, as in ``SRModel`` (``train.ema_decay``)."""
        self.ema_decay = self.opt['train'].get('ema_decay', 0)
        if self.ema_decay <= 0:
            return
        get_root_logger().info(f'Use Exponential Moving Average with decay: {self.ema_decay}')
        self.net_g_ema = build_network(self.opt['network_g']).to(self.device)
        if self.lora_options:
            self.add_lora_branches(self.net_g_ema)
        load_path = self.opt['path'].get('pretrain_network_g')
        if load_path is not None:
            self.load_network(self.net_g_ema, load_path, self.opt['path'].get('strict_load_g', True), 'params_ema')
        else:
            self.model_ema(0)
        self.net_g_ema.eval()

    def setup_optimizers(self) -> None:
        """One optimizer over the student and the trainable distillation modules (``optim_g``)."""
        train_opt = self.opt['train']
        params = [p for p in self.net_g.parameters() if p.requires_grad]
        params += [p for p in self.distill_modules.parameters() if p.requires_grad]
        optim_opt = dict(train_opt['optim_g'])
        optim_type = optim_opt.pop('type')
        self.optimizer_g = self.get_optimizer(optim_type, params, **optim_opt)
        self.optimizers.append(self.optimizer_g)

    # ----------------------------------------------------------------------------------------------------------
    # training step
    def feed_data(self, data: dict) -> None:
        super().feed_data(data)
        self.index = data['index'].to(self.device) if 'index' in data else None
        if getattr(self, 'speed', None) and self.speed['channels_last']:
            self.lq = self.lq.contiguous(memory_format=torch.channels_last)
            if hasattr(self, 'gt'):
                self.gt = self.gt.contiguous(memory_format=torch.channels_last)

    def compute_losses(self, current_iter: int) -> 'OrderedDict[str, torch.Tensor]':
        """The weighted loss terms of one step, by logged name; sets ``self.output`` (the student on the LR batch)."""
        raise NotImplementedError

    def reconstruction_terms(self, teacher_output: Optional[torch.Tensor]) -> 'OrderedDict[str, torch.Tensor]':
        """``l_pix = pixel_opt(S(LR), HR)`` and ``l_kd = kd_opt(S(LR), T(LR))`` of ``self.output`` (each when its
        loss is set; AugKD Eq. 1-2)."""
        losses = OrderedDict()
        if self.cri_pix is not None:
            losses['l_pix'] = self.cri_pix(self.output, self.gt)
        if getattr(self, 'cri_kd', None) is not None:
            losses['l_kd'] = self.cri_kd(self.output, teacher_output)
        return losses

    def optimize_parameters(self, current_iter: int) -> None:
        self.optimizer_g.zero_grad()
        with self.precision.autocast():
            losses = self.compute_losses(current_iter)
        self.batches['done'] += 1
        if not self.losses_are_finite(losses, current_iter):
            self.batches['skipped'] += 1
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
        grads = [p.grad for p in self.distill_modules.parameters() if p.grad is not None]
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
    # validation: the student as in SRModel, and the teacher under its own metric names
    TEACHER_DESCRIPTION = 'network_t'  # how the logs name the teacher

    def teacher_output(self, lq: torch.Tensor) -> torch.Tensor:
        """The teacher's output for a validation image (no autograd, eval mode, [0, 1] range)."""
        return forward_padded(self.net_t, lq, int(self.opt['scale']))

    def teacher_changes(self) -> bool:
        """Whether the teacher trains (validated at every validation) or is frozen (validated once per set)."""
        return False

    def validated_teachers(self) -> List[Tuple[str, str, Callable[[torch.Tensor], torch.Tensor]]]:
        """(description, metric prefix, forward) of each teacher that validation logs: the teacher of
        :meth:`teacher_output` as ``TEACHER_DESCRIPTION`` under ``teacher_<metric>``, then every further frozen
        teacher ``network_t_<name>`` under its section name and ``teacher_t_<name>_<metric>``."""
        scale = int(self.opt['scale'])
        teachers = [(self.TEACHER_DESCRIPTION, 'teacher', self.teacher_output)]
        for network, teacher in self.teachers.items():
            if network != 'network_t':
                forward = functools.partial(forward_padded, teacher, scale=scale)
                teachers.append((network, f'teacher_{network[len("network_"):]}', forward))
        return teachers

    def nondist_validation(self, dataloader, current_iter, tb_logger, save_img) -> None:
        dataset_name = dataloader.dataset.opt['name']
        if self.is_train and self.opt['val'].get('metrics') and (self.teacher_changes()
                                                                 or dataset_name not in self._teacher_validated):
            self._teacher_validated.add(dataset_name)
            for description, prefix, forward in self.validated_teachers():
                self.validate_teacher(dataloader, current_iter, tb_logger, forward, description, prefix)
        super().nondist_validation(dataloader, current_iter, tb_logger, save_img)

    def test(self) -> None:
        """``SRModel.test`` with inputs padded to the student's window size (SwinIR; :func:`forward_padded`), on the
        network itself, not its DistributedDataParallel wrapper: basicsr validates on rank 0 alone, and the wrapper's
        forward broadcasts the buffers of a network that has any (a collective the other ranks never join: gloo aborts a
        rank, NCCL hangs; tests/test_multiprocess.py)."""
        net = self.net_g_ema if hasattr(self, 'net_g_ema') else bare_module(self.net_g)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            self.output = forward_padded(net, self.lq, int(self.opt['scale']))
        net.train(was_training)

    def validate_teacher(self, dataloader, current_iter: int, tb_logger, forward: Callable[[torch.Tensor],
                                                                                           torch.Tensor],
                         description: str, prefix: str) -> Dict[str, float]:
        """Metrics of a teacher (``forward``) on a validation set, logged as ``Teacher (<description>) on <set>: ...``
        and as ``metrics/<set>/<prefix>_<metric>``."""
        metric_opts = self.opt['val']['metrics']
        totals = {name: 0.0 for name in metric_opts}
        for count, val_data in enumerate(dataloader, start=1):
            with torch.no_grad():
                output = forward(val_data['lq'].to(self.device))
            metric_data = {'img': tensor2img([output.cpu()]), 'img2': tensor2img([val_data['gt']])}
            for name, metric_opt in metric_opts.items():
                totals[name] += calculate_metric(metric_data, metric_opt)
        results = {name: total / count for name, total in totals.items()}
        dataset_name = dataloader.dataset.opt['name']
        get_root_logger().info(f'Teacher ({description}) on {dataset_name}: ' +
                               ', '.join(f'{name}: {value:.4f}' for name, value in results.items()))
        if tb_logger:
            for name, value in results.items():
                tb_logger.add_scalar(f'metrics/{dataset_name}/{prefix}_{name}', value, current_iter)
        return results

    # ----------------------------------------------------------------------------------------------------------
    # teardown
    def taps(self, tap: Taps) -> Taps:
        """Register a feature recorder or an input substitution of the model: its hooks are removed from the networks
        when the model is garbage-collected (or by :meth:`remove_feature_taps`)."""
        self._taps = getattr(self, '_taps', [])
        self._taps.append(tap)
        weakref.finalize(self, tap.remove)  # not __del__: a finalizer on the model kept DDP alive past gc.collect()
        return tap

    def remove_feature_taps(self) -> None:
        """Remove the hooks of every registered tap from the networks (they cannot record again)."""
        for tap in getattr(self, '_taps', []):
            tap.remove()

    # ----------------------------------------------------------------------------------------------------------
    # checkpoints and resume
    WRITES_CHECKPOINTS_WHOLE = True  # network files and training states go through kdplugins.utils.checkpoint_io

    @classmethod
    def saved_networks(cls, opt: dict) -> List[str]:
        """The networks whose weights a checkpoint holds: the student (its EMA copy inside its file); frozen
        teachers are never saved, so a resume loads them from their own checkpoints again."""
        return ['network_g']

    @master_only
    def save_network(self, net, net_label: str, current_iter, param_key='params') -> None:
        """basicsr's network file, written whole or not at all (:func:`~kdplugins.utils.checkpoint_io
        .save_network_file`)."""
        save_network_file(self, net, net_label, current_iter, param_key)

    def save(self, epoch: int, current_iter: int) -> None:
        """Student (and EMA) weights as ``SRModel`` saves them; the training state also holds the distillation
        modules and every rank's generator states. A frozen teacher is never saved."""
        self.check_skipped_share(current_iter)
        self._rng_states = gather_from_ranks(capture_rng_state(self.rng))
        if self.opt['train'].get('check_rank_sync'):
            self.check_rank_sync(current_iter)
        super().save(epoch, current_iter)

    def check_skipped_share(self, current_iter: int) -> None:
        """Stop, before this checkpoint is written, a run that skipped more than ``train.max_skipped_share`` of its
        batches as non-finite (a run whose every batch was skipped would end with exit 0 and untrained weights)."""
        done, skipped = self.batches['done'], self.batches['skipped']
        limit = float(self.opt['train'].get('max_skipped_share', 0.1))
        if skipped and skipped > limit * done:
            at = 'the end of training' if current_iter == -1 else f'iteration {current_iter}'
            raise SkippedBatchesError(
                f'{skipped} of the {done} batches so far were skipped as non-finite (train.skip_nonfinite_batches), '
                f'more than train.max_skipped_share = {limit}: the run stops at {at} without writing this checkpoint; '
                f'the last one in {self.opt["path"].get("models")} is kept. Check the loss weights, the learning rate '
                'and the data, or raise train.max_skipped_share if such batches are expected.')

    def load_network(self, net, load_path: str, strict: bool = True, param_key: Optional[str] = 'params') -> None:
        """basicsr's ``load_network``; a non-strict load (``strict_load_g: false``) must fill at least
        ``train.min_matched_weights`` of the network's tensors (basicsr only logs the keys it skipped).

        ConvLoRA (:mod:`kdplugins.distill.conv_lora`): a checkpoint of the base network loads into a student with
        branches, which keep their initialisation; a checkpoint with branches loads into a student without them
        (testing) after giving it those branches."""
        bare = self.get_bare_model(net)
        if has_conv_lora(bare) or not self.is_train:
            state = read_state_dict(load_path, param_key, 'module.', option='the checkpoint')
            if has_conv_lora(bare) != bool(lora_paths(state)):
                if has_conv_lora(bare):
                    state = with_initial_branches(bare, state)
                else:
                    add_conv_lora_from_state(bare, state)
                bare.load_state_dict(state, strict=strict)  # torch's, whose load hooks convert layouts (SPAN)
                return
        if not strict:
            own = self.get_bare_model(net).state_dict()
            problem = matched_share_problem(
                own, read_state_dict(load_path, param_key, 'module.', option='the checkpoint'),
                float((self.opt.get('train') or {}).get('min_matched_weights', 0.5)), 'student (network_g)',
                f'The checkpoint {load_path}', 'Check network_g against the checkpoint (type, widths, scale) and '
                'path.param_key_g, or lower train.min_matched_weights for a deliberate partial start.')
            if problem:
                raise CheckpointMismatchError(problem)
        super().load_network(net, load_path, strict, param_key)

    def rank_synced_modules(self) -> List[nn.Module]:
        """The modules ``check_rank_sync`` compares across ranks (a method adds those it trains besides)."""
        return [bare_module(self.net_g), self.distill_modules]

    def check_rank_sync(self, current_iter: int) -> None:
        modules = self.rank_synced_modules()
        digests = gather_from_ranks(tensors_digest(modules))
        logger = get_root_logger()
        logger.info(f'Rank weight digests at iter {current_iter}: ' + ' '.join(digests))
        if len(set(digests)) > 1:
            raise RuntimeError(f'Ranks hold different student weights at iter {current_iter}: {digests}. '
                               'The checkpoint of rank 0 has been kept; check for rank-dependent code paths.')

    @master_only
    def save_training_state(self, epoch: int, current_iter: int) -> None:
        """basicsr's training state plus ``distill_modules``, ``rng_states`` and ``grad_scaler``, written whole or
        not at all (:func:`~kdplugins.utils.checkpoint_io.write_training_state`)."""
        if current_iter == -1:
            return
        write_training_state(
            self,
            epoch,
            current_iter,
            distill_modules={
                k: v.cpu()
                for k, v in self.distill_modules.state_dict().items()
            },
            rng_states=self._rng_states,
            grad_scaler=self.precision.state_dict(),
            batches=dict(self.batches),
            **self.extra_training_state())

    def extra_training_state(self) -> dict:
        """What a method adds to the training state (gathered from every rank in :meth:`save` before rank 0 writes
        it); read back by its :meth:`resume_training`."""
        return {}

    def resume_training(self, resume_state: dict) -> None:
        super().resume_training(resume_state)
        self.distill_modules.load_state_dict(resume_state.get('distill_modules', {}))
        self.precision.load_state_dict(resume_state.get('grad_scaler'))
        self.batches = dict(resume_state.get('batches', self.batches))
        rng_states: Optional[list] = resume_state.get('rng_states')
        world_size = self.opt.get('world_size', 1)
        if rng_states is not None and len(rng_states) == world_size:
            restore_rng_state(rng_states[self.opt.get('rank', 0)], self.rng)
        else:
            get_root_logger().warning(f'Resume: the training state holds generator states of '
                                      f'{len(rng_states or [])} ranks, this run has {world_size}; random streams '
                                      'restart from the seed, so the run will not repeat an uninterrupted one.')
