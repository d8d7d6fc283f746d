"""Exact resume: N iterations straight and N/2 + ``--auto_resume`` N/2 give bitwise equal weights, with or without
data workers, whatever the multiprocessing start method. The pieces kdplugins' pipeline
(:func:`kdplugins.pipeline.train_pipeline`) builds the training data with; nothing here replaces a name of basicsr,
and basicsr's own ``train_pipeline`` keeps its sampler and augmentation streams. *Every device* (CUDA included):

- :class:`ResumableEnlargedSampler` (basicsr's ``EnlargedSampler``) leaves out, after a resume, the samples that the
  resumed epoch consumed before the checkpoint (:func:`skip_resumed_samples`; basicsr replays the epoch from its
  start), and gives every index a seed derived from (``manual_seed``, epoch, rank, position in the epoch):
  :class:`SeededIndex`.
- The training dataset is wrapped in :class:`PerSampleSeededDataset`, which draws each sample's random crop and flips
  (Python's, NumPy's and torch's CPU generators) from that seed and gives the streams back afterwards. A data worker's
  own random stream restarts at a resume and depends on the number of workers; the seeds do neither.

Every class here is defined at module level, so a DataLoader worker started by ``spawn`` or ``forkserver``
(basicsr's ``init_dist`` sets ``spawn``) unpickles the dataset and the indices by name.
"""
import numpy as np
import random
import torch
from basicsr.data.data_sampler import EnlargedSampler
from typing import Any, Iterator, Optional

from kdplugins.runtime.samples import NamedSamples


def sample_seed(manual_seed: int, epoch: int, rank: int, position: int) -> int:
    return int(np.random.SeedSequence([manual_seed, epoch, rank, position]).generate_state(1)[0])


class SeededIndex(int):
    """A dataset index that carries the seed of the sample's random augmentations."""

    def __new__(cls, index: int, seed: int) -> 'SeededIndex':
        value = super().__new__(cls, index)
        value.seed = seed
        return value

    def __reduce__(self):
        return SeededIndex, (int(self), self.seed)


class PerSampleSeededDataset(NamedSamples):
    """``dataset`` whose ``__getitem__`` runs with Python's, NumPy's and torch's CPU random generators seeded by the
    seed of a :class:`SeededIndex` (and given back unchanged afterwards); a sample that cannot be read is named
    (:class:`~kdplugins.runtime.samples.NamedSamples`). Other attributes are the dataset's."""

    def __getitem__(self, index: Any):
        if not isinstance(index, SeededIndex):
            return self.read(int(index))
        states = random.getstate(), np.random.get_state(), torch.get_rng_state()
        random.seed(index.seed)
        np.random.seed(index.seed)
        torch.default_generator.manual_seed(index.seed)  # the CPU generator only: CUDA streams are left alone
        try:
            return self.read(int(index))
        finally:
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])


class ResumableEnlargedSampler(EnlargedSampler):
    """``EnlargedSampler`` yielding :class:`SeededIndex` indices, that can leave out the first samples of one epoch
    (the part done before a resume)."""

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


def skip_resumed_samples(train_loader, train_sampler: ResumableEnlargedSampler, resume_state: Optional[dict],
                         manual_seed: int, logger) -> None:
    """Seed the sampler's indices from ``manual_seed`` and, after a resume, leave out the samples of the resumed epoch
    done before the checkpoint (a batch size or dataset that changed since: the epoch is replayed, with a warning)."""
    train_sampler.manual_seed = manual_seed
    if resume_state is None:
        return
    epoch, current_iter = int(resume_state['epoch']), int(resume_state['iter'])
    iters_per_epoch = len(train_loader)
    consumed_iters = current_iter - epoch * iters_per_epoch
    consumed_samples = consumed_iters * train_loader.batch_size
    if 0 <= consumed_samples <= train_sampler.num_samples:
        train_sampler.skip_in_epoch(epoch, consumed_samples)
        logger.info(f'Resume: skipping the {consumed_iters} iterations already done in epoch {epoch}.')
    else:
        logger.warning(f'Resume: cannot locate iteration {current_iter} in epoch {epoch} ({iters_per_epoch} '
                       'iterations per epoch; batch size or dataset changed?). The epoch is replayed from its start, '
                       'as basicsr does.')
