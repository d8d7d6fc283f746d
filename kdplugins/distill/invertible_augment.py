"""Invertible augmentations for label-consistency regularization (AugKD, Sec. 3.4).

The student sees ``F(x)``, the teacher sees ``x``, and the student's output is brought back with the exact inverse:
``||F^-1(S(F(x))) - T(x)||_1``. ``F`` is a composition of the named operations below, each drawn independently per
sample with its own probability and applied in the fixed order of :data:`OPERATIONS`; ``F^-1`` applies the inverse
of each drawn operation in the reverse order. Flips and rotations permute pixels and are exact on any tensor,
square or not; the colour inversion ``1 - x`` is exact in float32 for every value on the grid of multiples of
2^-24 in [0, 1] (all values ``torch.rand`` draws); elsewhere ``1 - (1 - x)`` can differ from ``x`` by the rounding
of ``1 - x`` (at most 2^-25).
"""
import torch
from typing import Callable, Dict, Mapping, Tuple

Op = Callable[[torch.Tensor], torch.Tensor]


def _hflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1)


def _vflip(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-2)


def _rotation(quarter_turns: int) -> Op:
    return lambda x: torch.rot90(x, quarter_turns, dims=(-2, -1))


def _transpose(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(-2, -1)


def _invert(x: torch.Tensor) -> torch.Tensor:
    return 1 - x


# name: (operation, its inverse), in the order a composition applies them
OPERATIONS: Dict[str, Tuple[Op, Op]] = {
    'hflip': (_hflip, _hflip),
    'vflip': (_vflip, _vflip),
    'rot90': (_rotation(1), _rotation(-1)),
    'rot180': (_rotation(2), _rotation(-2)),
    'rot270': (_rotation(3), _rotation(-3)),
    'transpose': (_transpose, _transpose),
    'invert': (_invert, _invert),
}
SWAPS_SHAPE = ('rot90', 'rot270', 'transpose')  # operations that swap height and width


class InvertibleAugment:
    """Per-sample random compositions of invertible augmentations and their exact inverses.

    Args:
        probabilities: ``{name: probability}`` for names in :data:`OPERATIONS`; each sample draws each operation
            independently with its probability.

    ``draw`` returns a ``(batch, n_ops)`` boolean tensor of the drawn operations; ``apply`` and ``invert`` take a
    batch and those flags. Operations that swap height and width need square samples when a batch mixes them.
    """

    def __init__(self, probabilities: Mapping[str, float]):
        unknown = sorted(set(probabilities) - set(OPERATIONS))
        if unknown:
            raise ValueError(f'Unknown augmentation(s) {unknown} in label_consistency; valid names: '
                             f'{", ".join(OPERATIONS)}.')
        for name, probability in probabilities.items():
            if not 0.0 <= float(probability) <= 1.0:
                raise ValueError(f'label_consistency.{name}: probability {probability} is outside [0, 1].')
        self.names = [name for name in OPERATIONS if name in probabilities]
        self.probabilities = torch.tensor([float(probabilities[name]) for name in self.names], dtype=torch.float64)

    def draw(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Boolean flags ``(batch, n_ops)``: which operations each sample gets."""
        device = generator.device
        uniform = torch.rand(batch, len(self.names), generator=generator, device=device, dtype=torch.float64)
        return uniform < self.probabilities.to(device)

    def apply(self, x: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """``F(x)``: the drawn operations of each sample, in the order of :data:`OPERATIONS`."""
        for column, name in enumerate(self.names):
            x = self._where(flags[:, column], OPERATIONS[name][0], x)
        return x

    def invert(self, y: torch.Tensor, flags: torch.Tensor) -> torch.Tensor:
        """``F^-1(y)``: the inverses of the drawn operations of each sample, in reverse order."""
        for column in reversed(range(len(self.names))):
            y = self._where(flags[:, column], OPERATIONS[self.names[column]][1], y)
        return y

    @staticmethod
    def _where(mask: torch.Tensor, op: Op, x: torch.Tensor) -> torch.Tensor:
        """``op(x)`` for the samples of ``mask``, ``x`` for the others (no host synchronization for square samples)."""
        transformed = op(x)
        if transformed.shape == x.shape:
            return torch.where(mask.view(-1, *([1] * (x.dim() - 1))), transformed, x)
        if bool(mask.all()):  # a quarter turn or transpose of non-square samples: only whole batches can turn
            return transformed
        if not bool(mask.any()):
            return x
        raise ValueError(f'Cannot rotate or transpose some samples of a batch of non-square {tuple(x.shape[-2:])} '
                         f'samples: use square training patches or drop {SWAPS_SHAPE} from label_consistency.')
