"""Compatibility fixes that let ``basicsr==1.4.2`` run on current torch/torchvision and without CUDA.

Everything here is installed once by :func:`install` (called by ``import kdplugins``). Nothing edits basicsr's files
and nothing changes the CUDA path: each override falls back to basicsr's own function whenever CUDA is available.

1. ``torchvision.transforms.functional_tensor`` was removed in torchvision 0.17, but
   ``basicsr/data/degradations.py`` imports it. An alias to ``torchvision.transforms.functional`` is put in
   ``sys.modules`` before basicsr is imported.
2. ``basicsr.utils.dist_util._init_dist_pytorch`` divides by ``torch.cuda.device_count()``: without CUDA the
   process group is created with the ``gloo`` backend instead.
3. ``BaseModel.model_to_device`` wraps DDP with ``device_ids=[torch.cuda.current_device()]``: without CUDA the
   DDP wrapper is built without ``device_ids``.
4. ``basicsr.train.load_resume_state`` maps the resume state to CUDA: without CUDA it is mapped to the CPU.
   The resumed position (epoch, iteration) is also recorded so that :class:`ResumableEnlargedSampler` can skip the
   samples that were consumed in the resumed epoch before the checkpoint (basicsr replays the epoch from its
   start, which makes a resumed run differ from an uninterrupted one). The sampler also hands every sample a seed
   derived from (``manual_seed``, epoch, rank, position in the epoch), and the training dataset draws its random
   crop and flips from that seed: with ``num_worker_per_gpu > 0`` the workers' own random streams restart at a
   resume, so without it the augmentations after a resume differed from the uninterrupted run's.
5. ``basicsr.train.check_resume`` points ``pretrain_network_<x>`` at ``net_<x>_<iter>.pth`` for every network,
   including the teacher ``network_t`` that is never saved: the teacher's path and param key are kept.
"""
import numpy as np
import os
import random
import sys
from typing import Any, Iterator

_installed = False


def _alias_functional_tensor() -> None:
    import torchvision.transforms.functional as functional
    sys.modules.setdefault('torchvision.transforms.functional_tensor', functional)


def _init_dist_pytorch_any_device(backend: str = 'nccl', **kwargs) -> None:
    import torch
    import torch.distributed as dist
    if torch.cuda.is_available():
        return _BASICSR['init_dist_pytorch'](backend, **kwargs)
    dist.init_process_group(backend='gloo', **kwargs)


def _model_to_device_any_device(self, net):
    import torch
    from torch.nn.parallel import DistributedDataParallel
    if torch.cuda.is_available() or not self.opt['dist']:
        return _BASICSR['model_to_device'](self, net)
    net = net.to(self.device)
    return DistributedDataParallel(net, find_unused_parameters=self.opt.get('find_unused_parameters', False))


def _load_resume_state_any_device(opt: dict):
    import torch
    if torch.cuda.is_available():
        resume_state = _BASICSR['load_resume_state'](opt)
    else:
        resume_state = _load_resume_state_on_cpu(opt)
    if resume_state is not None:
        opt['resume_position'] = {'epoch': int(resume_state['epoch']), 'iter': int(resume_state['iter'])}
    return resume_state


def _load_resume_state_on_cpu(opt: dict):
    """basicsr's ``load_resume_state`` with the state mapped to the CPU (same lookup of the latest state)."""
    import torch
    from basicsr.train import check_resume
    from basicsr.utils import scandir
    state_path = None if opt['auto_resume'] else opt['path'].get('resume_state')
    if opt['auto_resume']:
        states_dir = os.path.join('experiments', opt['name'], 'training_states')
        states = list(scandir(states_dir, suffix='state', recursive=False)) if os.path.isdir(states_dir) else []
        if states:
            latest = max(int(float(name.split('.state')[0])) for name in states)
            state_path = os.path.join(states_dir, f'{latest}.state')
            opt['path']['resume_state'] = state_path
    if not state_path:
        return None
    resume_state = torch.load(state_path, map_location='cpu', weights_only=False)
    check_resume(opt, resume_state['iter'])
    return resume_state


def _check_resume_keeping_teacher(opt: dict, resume_iter: int) -> None:
    kept = {
        key: opt['path'][key]
        for key in ('pretrain_network_t', 'param_key_t', 'strict_load_t') if key in opt['path']
    }
    _BASICSR['check_resume'](opt, resume_iter)
    opt['path'].update(kept)


def _create_train_val_dataloader_resuming(opt: dict, logger):
    result = _BASICSR['create_train_val_dataloader'](opt, logger)
    train_loader, train_sampler = result[0], result[1]
    opt['datasets']['train']['num_images'] = len(train_loader.dataset)  # for losses with per-sample state (CRD)
    if not isinstance(train_sampler, ResumableEnlargedSampler):
        return result
    train_sampler.manual_seed = opt['manual_seed']
    seed_augmentations_per_sample(train_loader.dataset)
    position = opt.get('resume_position')
    if position is not None:
        iters_per_epoch = len(train_loader)
        consumed_iters = position['iter'] - position['epoch'] * iters_per_epoch
        consumed_samples = consumed_iters * train_loader.batch_size
        if 0 <= consumed_samples <= train_sampler.num_samples:
            train_sampler.skip_in_epoch(position['epoch'], consumed_samples)
            logger.info(f"Resume: skipping the {consumed_iters} iterations already done in epoch {position['epoch']}.")
        else:
            logger.warning(f'Resume: cannot locate iteration {position["iter"]} in epoch {position["epoch"]} '
                           f'({iters_per_epoch} iterations per epoch; batch size or dataset changed?). '
                           'The epoch is replayed from its start, as basicsr does.')
    return result


class SeededIndex(int):
    """A dataset index that carries the seed of the sample's random augmentations."""

    def __new__(cls, index: int, seed: int) -> 'SeededIndex':
        value = super().__new__(cls, index)
        value.seed = seed
        return value

    def __reduce__(self):
        return SeededIndex, (int(self), self.seed)


def sample_seed(manual_seed: int, epoch: int, rank: int, position: int) -> int:
    return int(np.random.SeedSequence([manual_seed, epoch, rank, position]).generate_state(1)[0])


def _seeded_getitem(self, index: Any):
    """The dataset's ``__getitem__`` with python's and numpy's global random streams seeded by the sample's seed
    (and given back unchanged afterwards), when the index carries one."""
    if not isinstance(index, SeededIndex):
        return super(type(self), self).__getitem__(index)
    states = random.getstate(), np.random.get_state()
    random.seed(index.seed)
    np.random.seed(index.seed)
    try:
        return super(type(self), self).__getitem__(int(index))
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])


def seed_augmentations_per_sample(dataset) -> None:
    """Make ``dataset`` (an instance) draw its augmentations from the seeds of :class:`SeededIndex` indices."""
    cls = type(dataset)
    if cls.__dict__.get('__getitem__') is not _seeded_getitem:
        dataset.__class__ = type(f'PerSampleSeeded{cls.__name__}', (cls, ), {'__getitem__': _seeded_getitem})


def _resumable_sampler_class():
    from basicsr.data.data_sampler import EnlargedSampler

    class ResumableEnlargedSampler(EnlargedSampler):
        """``EnlargedSampler`` that can leave out the first samples of one epoch (the part done before a resume)."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.skipped = {}
            self.manual_seed = 0

        def skip_in_epoch(self, epoch: int, num_samples: int) -> None:
            self.skipped = {epoch: num_samples}

        def __iter__(self) -> Iterator[int]:
            skipped = self.skipped.get(self.epoch, 0)
            for position, index in enumerate(super().__iter__()):
                if position >= skipped:  # the seed is made when the sample is drawn (about 16 us each)
                    yield SeededIndex(index, sample_seed(self.manual_seed, self.epoch, self.rank, position))

        def __len__(self) -> int:
            return self.num_samples - self.skipped.get(self.epoch, 0)

    return ResumableEnlargedSampler


_BASICSR = {}
ResumableEnlargedSampler = None


def install() -> None:
    """Install all fixes (idempotent). Must run before the first ``import basicsr``."""
    global _installed, ResumableEnlargedSampler
    if _installed:
        return
    _alias_functional_tensor()
    import basicsr.train
    from basicsr.models.base_model import BaseModel
    from basicsr.utils import dist_util
    _BASICSR.update(
        init_dist_pytorch=dist_util._init_dist_pytorch,
        model_to_device=BaseModel.model_to_device,
        load_resume_state=basicsr.train.load_resume_state,
        check_resume=basicsr.train.check_resume,
        create_train_val_dataloader=basicsr.train.create_train_val_dataloader)
    ResumableEnlargedSampler = _resumable_sampler_class()
    dist_util._init_dist_pytorch = _init_dist_pytorch_any_device
    BaseModel.model_to_device = _model_to_device_any_device
    basicsr.train.load_resume_state = _load_resume_state_any_device
    basicsr.train.check_resume = _check_resume_keeping_teacher
    basicsr.train.create_train_val_dataloader = _create_train_val_dataloader_resuming
    basicsr.train.EnlargedSampler = ResumableEnlargedSampler
    _installed = True
