"""Data sets whose samples, when one cannot be read, stop the run naming the file, the data set and the fix.

basicsr's paired datasets decode each sample's image bytes with OpenCV; a corrupt file gives ``None`` and the run
stops with ``'NoneType' object has no attribute 'astype'`` deep inside basicsr, naming neither the file nor the data
set. The pipeline wraps every training and validation set in :class:`NamedSamples` (the training set through
:class:`~kdplugins.runtime.exact_resume.PerSampleSeededDataset`), the one place every sample passes through; the
sample itself is unchanged. *Every device*; in a data worker the error reaches the main process with its message.
"""
import sys
from torch.utils.data import Dataset
from typing import Any

from kdplugins.utils.errors import ConfigurationError


class SampleReadError(ConfigurationError, RuntimeError):
    """A sample of a data set cannot be read; the message names its files and the fix."""


def describe_sample(dataset: Dataset, index: int) -> str:
    """The files (or LMDB keys) of sample ``index`` of a basicsr paired dataset, else its index."""
    paths = getattr(dataset, 'paths', None)
    if isinstance(paths, list) and 0 <= index < len(paths) and isinstance(paths[index], dict):
        return ', '.join(f'{key} {value}' for key, value in paths[index].items())
    return f'index {index}'


class NamedSamples(Dataset):
    """``dataset`` whose failing ``__getitem__`` raises :class:`SampleReadError` naming the sample's files, or, with
    ``skip_unreadable`` (``datasets.train.skip_unreadable: true``, an explicit opt-in), warns naming them, counts
    them and gives the next readable sample instead (the same one in every run: the replacement is the next index).
    Other attributes are the dataset's."""

    def __init__(self, dataset: Dataset, skip_unreadable: bool = False) -> None:
        self.dataset = dataset
        self.skip_unreadable = skip_unreadable
        self.skipped = 0  # in this process (each data worker counts its own)

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, index: int) -> Any:
        opt = getattr(self.dataset, 'opt', {}) or {}
        where = f"datasets.{opt.get('phase', '?')} ({opt.get('name', type(self.dataset).__name__)})"
        for attempt in range(len(self.dataset)):
            position = (index + attempt) % len(self.dataset)
            try:
                return self.dataset[position]
            except Exception as error:  # noqa: B902  (whatever decoding raised)
                sample = describe_sample(self.dataset, position)
                if not self.skip_unreadable:
                    raise SampleReadError(
                        f'{where}: the sample {sample} cannot be read ({type(error).__name__}: {error}): a corrupt or '
                        'truncated image, or a key the LMDB lacks. Replace or remove that image (and rebuild the LMDB '
                        'with python -m kdplugins.create_lmdb), or set datasets.train.skip_unreadable: true to skip '
                        'such samples.') from error
                self.skipped += 1
                print(
                    f'WARNING: {where}: the sample {sample} cannot be read ({type(error).__name__}: {error}); skipped '
                    f'(skip_unreadable), the next one taken instead. {self.skipped} sample(s) skipped so far in this '
                    'process.',
                    file=sys.stderr,
                    flush=True)
        raise SampleReadError(f'{where}: no sample of the data set can be read. Check dataroot_gt / dataroot_lq.')

    def __getitem__(self, index: Any) -> Any:
        return self.read(int(index))

    def __getattr__(self, name: str):
        if name == 'dataset':  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)
