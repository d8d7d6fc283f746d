"""Paired comparisons "is A better than B" over seeds and over images.

Two methods trained with the same seed share the initialization and the data order, so the comparison is paired:
the per-seed difference ``d_i = A_i - B_i`` (e.g. final PSNR on one validation set) removes what the seed does to both.
Over the ``n`` seeds present on both sides this module computes

* the mean paired difference ``mean = sum(d_i) / n``,
* its sample standard deviation ``sd = sqrt(sum((d_i - mean)^2) / (n - 1))``,
* the two-sided confidence interval of Student's t with ``n - 1`` degrees of freedom:
  ``mean ± t_{(1 + confidence) / 2, n - 1} * sd / sqrt(n)`` (95% by default: ``t_{0.975, n - 1}``), taken from
  ``scipy.stats.ttest_rel(a, b).confidence_interval(confidence)`` (``tests/test_stats.py`` checks it against the
  formula and the t tables),
* a verdict: ``'resolved for'`` where the interval lies above 0, ``'resolved against'`` where it lies below 0, and
  ``'not resolved at this scale'`` where it contains 0 or where fewer than 2 seeds pair (no interval).

Seeds present on one side only are not used; they are reported (``missing_in_a`` / ``missing_in_b``). With all
differences equal the standard deviation is 0 and the interval is the single point ``mean``.

The per-image comparison pairs the images of one evaluation (same seed, or averaged over the paired seeds) and
counts how many improve, e.g. "12 of 19 Set5 + Set14 images improve".
"""
import statistics
from dataclasses import dataclass
from scipy import stats
from typing import Hashable, Mapping, Optional, Tuple

RESOLVED_FOR = 'resolved for'
RESOLVED_AGAINST = 'resolved against'
NOT_RESOLVED = 'not resolved at this scale'


def t_quantile(probability: float, degrees_of_freedom: int) -> float:
    """The ``probability`` quantile of Student's t distribution with ``degrees_of_freedom`` (``scipy.stats.t.ppf``)."""
    if degrees_of_freedom < 1:
        raise ValueError(f'Student t needs at least 1 degree of freedom, got {degrees_of_freedom}')
    return float(stats.t.ppf(probability, degrees_of_freedom))


@dataclass(frozen=True)
class PairedComparison:
    """A - B over the seeds present on both sides.

    Attributes:
        a, b: names of the two methods (A is the one claimed better).
        dataset: what was measured (e.g. ``'Set5'``); free text.
        seeds: the paired seeds, sorted.
        differences: ``A - B`` of each paired seed, in the order of ``seeds``.
        missing_in_a: seeds with a result for B only (not used).
        missing_in_b: seeds with a result for A only (not used).
        confidence: the two-sided level of the interval (0.95).
        mean: mean paired difference; None without paired seeds.
        sd: sample standard deviation of the differences (``n - 1`` in the denominator); None below 2 seeds.
        t: ``t_{(1 + confidence) / 2, n - 1}``; None below 2 seeds.
        half_width: ``t * sd / sqrt(n)``; None below 2 seeds.
        low, high: the interval ``mean ± half_width``; None below 2 seeds.
        verdict: :data:`RESOLVED_FOR`, :data:`RESOLVED_AGAINST` or :data:`NOT_RESOLVED`.
    """
    a: str
    b: str
    dataset: str
    seeds: Tuple[Hashable, ...]
    differences: Tuple[float, ...]
    missing_in_a: Tuple[Hashable, ...]
    missing_in_b: Tuple[Hashable, ...]
    confidence: float
    mean: Optional[float]
    sd: Optional[float]
    t: Optional[float]
    half_width: Optional[float]
    low: Optional[float]
    high: Optional[float]
    verdict: str

    @property
    def n(self) -> int:
        """The number of paired seeds."""
        return len(self.seeds)

    @property
    def note(self) -> str:
        """Why there is no interval (no paired seed, one paired seed) and which seeds are unpaired; '' otherwise."""
        notes = []
        if self.n == 0:
            notes.append('no seed on both sides: no comparison')
        elif self.n == 1:
            notes.append('one paired seed: no interval (Student t needs at least 2)')
        if self.missing_in_a:
            notes.append(f'{self.a} missing for seed {", ".join(str(s) for s in self.missing_in_a)}')
        if self.missing_in_b:
            notes.append(f'{self.b} missing for seed {", ".join(str(s) for s in self.missing_in_b)}')
        return '; '.join(notes)


def _sorted(keys) -> Tuple[Hashable, ...]:
    try:
        return tuple(sorted(keys))
    except TypeError:  # keys of mixed types: their order of appearance
        return tuple(keys)


def compare_paired(a: Mapping[Hashable, float],
                   b: Mapping[Hashable, float],
                   a_name: str = 'A',
                   b_name: str = 'B',
                   dataset: str = '',
                   confidence: float = 0.95) -> PairedComparison:
    """Pair the per-seed results ``a`` and ``b`` (``{seed: value}``, e.g. final PSNR on one set) by seed and compute
    the mean of ``a[seed] - b[seed]``, its sample standard deviation and its Student t interval (see the module).

    Seeds present on one side only are reported in ``missing_in_a`` / ``missing_in_b`` and not used. One paired seed
    gives the mean without an interval; no paired seed gives neither; both are :data:`NOT_RESOLVED`.
    """
    if not 0 < confidence < 1:
        raise ValueError(f'confidence must be in (0, 1), got {confidence}')
    seeds = _sorted(seed for seed in a if seed in b)
    differences = tuple(float(a[seed]) - float(b[seed]) for seed in seeds)
    missing_in_a = _sorted(seed for seed in b if seed not in a)
    missing_in_b = _sorted(seed for seed in a if seed not in b)
    n = len(differences)
    mean = statistics.mean(differences) if n else None
    sd = t = half_width = low = high = None
    verdict = NOT_RESOLVED
    if n >= 2:
        sd = statistics.stdev(differences)
        t = t_quantile((1 + confidence) / 2, n - 1)
        if sd == 0:  # scipy warns of catastrophic cancellation for equal differences: the interval is the point
            low = high = mean
        else:
            interval = stats.ttest_rel([float(a[s]) for s in seeds],
                                       [float(b[s]) for s in seeds]).confidence_interval(confidence)
            low, high = float(interval.low), float(interval.high)
        half_width = (high - low) / 2
        if low > 0:
            verdict = RESOLVED_FOR
        elif high < 0:
            verdict = RESOLVED_AGAINST
    return PairedComparison(a_name, b_name, dataset, seeds, differences, missing_in_a, missing_in_b, confidence, mean,
                            sd, t, half_width, low, high, verdict)


MARKDOWN_HEADER = ('| comparison | set | paired seeds | mean difference [dB] | sd [dB] | 95% interval [dB] | verdict '
                   '| note |\n|---|---|---:|---:|---:|---:|---|---|')


def markdown_row(comparison: PairedComparison, digits: int = 4) -> str:
    """One row of the table under :data:`MARKDOWN_HEADER`: ``A - B``, set, ``n``, mean, sd, interval, verdict and
    note (no interval / unpaired seeds); a missing value is written ``n/a``."""

    def number(value: Optional[float]) -> str:
        return 'n/a' if value is None else f'{value:+.{digits}f}'

    c = comparison
    sd = 'n/a' if c.sd is None else f'{c.sd:.{digits}f}'
    interval = 'n/a' if c.low is None else f'[{number(c.low)}, {number(c.high)}]'
    return (f'| {c.a} - {c.b} | {c.dataset} | {c.n} | {number(c.mean)} | {sd} | {interval} | {c.verdict} '
            f'| {c.note} |')


@dataclass(frozen=True)
class ImageComparison:
    """A - B image by image (e.g. per-image PSNR of one seed, or its mean over the paired seeds).

    Attributes:
        images: the images present on both sides, sorted.
        differences: ``A - B`` per image, in the order of ``images``.
        missing_in_a, missing_in_b: images with a value on one side only (not used).
        improved: images with ``A - B > 0``.
        worse: images with ``A - B < 0``.
        unchanged: images with ``A - B == 0``.
    """
    images: Tuple[Hashable, ...]
    differences: Tuple[float, ...]
    missing_in_a: Tuple[Hashable, ...]
    missing_in_b: Tuple[Hashable, ...]
    improved: int
    worse: int
    unchanged: int

    @property
    def n(self) -> int:
        """The number of paired images."""
        return len(self.images)

    @property
    def mean(self) -> Optional[float]:
        """Mean per-image difference (None without paired images)."""
        return statistics.mean(self.differences) if self.differences else None

    def summary(self, label: str) -> str:
        """E.g. ``'12 of 19 Set5 + Set14 images improve'`` (``label`` = ``'Set5 + Set14'``)."""
        return f'{self.improved} of {self.n} {label} images improve'


def compare_images(a: Mapping[Hashable, float], b: Mapping[Hashable, float]) -> ImageComparison:
    """Pair the per-image results ``a`` and ``b`` (``{image: value}``) by image and count the images where
    ``a[image] - b[image]`` is positive (improve), negative (worse) or 0."""
    images = _sorted(image for image in a if image in b)
    differences = tuple(float(a[image]) - float(b[image]) for image in images)
    return ImageComparison(images, differences, _sorted(i for i in b if i not in a),
                           _sorted(i for i in a if i not in b), sum(d > 0 for d in differences),
                           sum(d < 0 for d in differences), sum(d == 0 for d in differences))


def compare_images_over_seeds(a: Mapping[Hashable, Mapping[Hashable, float]],
                              b: Mapping[Hashable, Mapping[Hashable, float]]) -> ImageComparison:
    """Per-image comparison over several seeds (``{seed: {image: value}}``): each image's value is averaged over the
    seeds present on both sides, then :func:`compare_images` pairs the images (an image counts where both sides have
    it for every paired seed)."""
    seeds = [seed for seed in a if seed in b]
    if not seeds:
        return compare_images({}, {})

    def mean_over_seeds(results: Mapping[Hashable, Mapping[Hashable, float]]) -> dict:
        images = [image for image in results[seeds[0]] if all(image in results[seed] for seed in seeds)]
        return {image: statistics.mean(float(results[seed][image]) for seed in seeds) for image in images}

    return compare_images(mean_over_seeds(a), mean_over_seeds(b))
