"""Published loss weights, what they were tuned against, and the one rule that carries them into BasicSR.

The rule (docs/conventions.md): BasicSR's images are in [0, 1]. A weight published for a setup whose pixel loss works
on [0, 255] images is divided by 255 (:func:`to_unit_range`). Why: with an L1 or MSE pixel term, every parameter
gradient of that term is 255 times larger on [0, 255] images (the output is 255 times the [0, 1] output), while the
distillation terms this applies to do not change with the pixel range (CSD's ratio of VGG-19 feature distances of
normalised images, FAKD's affinities of channel-normalised features, both of networks whose inner features are the
same in both setups: EDSR's ``img_range`` 255). Dividing the distillation weight by 255 gives back the published ratio
of the two gradients, which is what an optimizer sees. The range stays a fact of the weight, not an option of the
method: there is one way to set it.

Weights published for image classification (a cross-entropy of order 1 beside the distillation term: CRD Sec. 6.4
for CRD, AT, RKD) have no pixel range to convert from; the project calibrates them for SR (docs/conventions.md,
"Calibration") and keeps the published values as documented alternatives.
"""
from typing import NamedTuple

PUBLISHED_PIXEL_RANGE = 255.0


def to_unit_range(weight: float, pixel_range: float = PUBLISHED_PIXEL_RANGE) -> float:
    """The weight of a distillation term next to a [0, 1] pixel loss, from one published next to a [0, ``pixel_range``]
    pixel loss of the same form (L1 / MSE)."""
    return weight / pixel_range


class Published(NamedTuple):
    value: float
    source: str
    pixel_range: float  # the range of the pixel loss it was tuned with; 0: not a pixel-loss balance (classification)


CSD_LAMBDA_C = Published(200.0, 'CSD Sec. 4.1 (λ_C = 200) and the official code (rgb_range 255, L1 pixel loss)', 255.0)
FAKD_WEIGHT = Published(10.0, 'FAKD official code (10*SA on three taps; rgb_range 255, L1 pixel loss)', 255.0)
CRD_WEIGHT = Published(0.8, 'CRD Sec. 6.4 (β = 0.8, CIFAR-100 classification)', 0.0)
AT_WEIGHT = Published(1000.0, 'AT paper and CRD Sec. 6.4 (β = 1000, classification)', 0.0)
RKD_WEIGHTS = Published(1.0, 'RKD paper and CRD Sec. 6.4 (distance 25, angle 50; classification)', 0.0)

# the project's defaults: converted (pixel-range rule) or calibrated for SR (docs/conventions.md)
CSD_LAMBDA_C_DEFAULT = to_unit_range(CSD_LAMBDA_C.value, CSD_LAMBDA_C.pixel_range)  # 0.784
FAKD_WEIGHT_DEFAULT = to_unit_range(FAKD_WEIGHT.value, FAKD_WEIGHT.pixel_range)  # 0.0392
# calibrated for SR: the term ends near a third of the L1 pixel loss in the reproduction's runs (docs/conventions.md)
CRD_WEIGHT_DEFAULT = 1e-3  # 0.8 leaves the term at its chance level, 300 times the pixel loss
AT_WEIGHT_DEFAULT = 200.0  # 1000 leaves it at 1.75 times the pixel loss
RKD_WEIGHT_DEFAULT = 1e-3  # factor of RKD's distance 25 and angle 50; 1 leaves it at about 200 times the pixel loss
