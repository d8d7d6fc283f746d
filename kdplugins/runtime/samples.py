"""Data sets whose samples, when one cannot be read, stop the run naming the file, the data set and the fix.

basicsr's paired datasets decode each sample's image bytes with OpenCV; a corrupt file gives ``None`` and the run
stops with ``'NoneType' object has no attribute 'astype'`` deep inside basicsr, naming neither the file nor the data
set. The pipeline wraps every training and validation set in :class:`NamedSamples` (the training set through
:class:`~kdplugins.runtime.exact_resume.PerSampleSeededDataset`), the one place every sample passes through; the
sample itself is unchanged. *Every device*; in a data worker the error reaches the main process with its message.
"""
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
    """``dataset`` whose failing ``__getitem__`` raises :class:`SampleReadError` naming the sample's files. Other
    attributes are the dataset's."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def read(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except Exception as error:  # noqa: B902  (whatever decoding raised)
            opt = getattr(self.dataset, 'opt', {}) or {}
            raise SampleReadError(
                f"datasets.{opt.get('phase', '?')} ({opt.get('name', type(self.dataset).__name__)}): the sample "
                f'{describe_sample(self.dataset, index)} cannot be read ({type(error).__name__}: {error}): a corrupt '
                'or truncated image, or a key the LMDB lacks. Replace or remove that image (and rebuild the LMDB with '
                'scripts/create_lmdb.py).') from error

    def __getitem__(self, index: Any) -> Any:
        return self.read(int(index))

    def __getattr__(self, name: str):
        if name == 'dataset':  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)
