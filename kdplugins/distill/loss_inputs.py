"""What a distillation model gives a feature loss besides the two features: the one place where these inputs are
named, described and provided.

A loss asks for them by name in two class attributes (nothing is inferred from its signature)::

    class MyLoss(nn.Module):
        BUILD_INPUTS = ('student_channels', 'teacher_channels')  # constructor keywords, filled in by the model
        STEP_INPUTS = ('index', )  # forward keywords, given at every step

A loss without them gets the two features only. An input given explicitly in the loss's options is kept.
"""
from typing import Callable, Dict, Tuple

# constructor inputs: measured once, before training
BUILD_INPUTS = {
    'student_channels': 'channels of the student feature at student_layer (from the probe forward)',
    'teacher_channels': 'channels of the teacher feature at teacher_layer (from the probe forward)',
    'num_train_images': 'images in datasets.train before dataset_enlarge_ratio (for example, CRD memory-bank rows)',
}
# forward inputs: given at every step
STEP_INPUTS = {
    'index': 'dataset index of each sample of the batch (datasets.train.type: PairedImageDatasetWithIndex)',
    'generator': "the model's generator self.rng (seeded per rank, saved with the training state and resumed)",
}


def requested(loss_cls: type, kind: str) -> Tuple[str, ...]:
    """The ``BUILD_INPUTS`` or ``STEP_INPUTS`` a loss class asks for, checked against the names above."""
    known = BUILD_INPUTS if kind == 'BUILD_INPUTS' else STEP_INPUTS
    names = tuple(getattr(loss_cls, kind, ()))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f'{loss_cls.__name__}.{kind} asks for {unknown}; a distillation model provides '
                         f'{", ".join(known)} (kdplugins/distill/loss_inputs.py).')
    return names


def build_inputs(loss_cls: type, loss_opt: dict, available: Dict[str, Callable[[], object]]) -> dict:
    """Constructor keywords for ``loss_cls``: each requested input not already in ``loss_opt``, from
    ``available[name]()``."""
    return {name: available[name]() for name in requested(loss_cls, 'BUILD_INPUTS') if name not in loss_opt}


def step_inputs(loss_cls: type, available: Dict[str, Callable[[], object]]) -> dict:
    """Forward keywords for a loss of ``loss_cls`` at this step, from ``available[name]()``."""
    return {name: available[name]() for name in requested(loss_cls, 'STEP_INPUTS')}
