"""PairedImageDataset that also returns the index of each sample (for methods that need sample identity)."""
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.registry import DATASET_REGISTRY

from kdplugins.utils.registry import register


@register(DATASET_REGISTRY)
class PairedImageDatasetWithIndex(PairedImageDataset):
    """Same options and items as basicsr's ``PairedImageDataset``, plus ``index``: the position of the pair in the
    dataset (``0 .. len - 1``, the same on every rank and in every epoch), e.g. the memory-bank slot of CRD."""

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        item['index'] = index
        return item
