"""kdplugins.experiments.statistics against hand-computed values (the arithmetic is in the comments)."""
import math
import pytest

from kdplugins.experiments.statistics import (MARKDOWN_HEADER, NOT_RESOLVED, RESOLVED_AGAINST, RESOLVED_FOR,
                                              compare_images, compare_images_over_seeds, compare_paired, markdown_row,
                                              t_quantile)


def test_student_t_quantiles_match_the_tables():
    # two-sided 95%: t_{0.975, df}; printed tables: df 1 -> 12.7062, 2 -> 4.3027, 3 -> 3.1824, 4 -> 2.7764
    assert t_quantile(0.975, 1) == pytest.approx(12.706205, abs=1e-6)
    assert t_quantile(0.975, 2) == pytest.approx(4.302653, abs=1e-6)
    assert t_quantile(0.975, 3) == pytest.approx(3.182446, abs=1e-6)
    assert t_quantile(0.975, 4) == pytest.approx(2.776445, abs=1e-6)
    with pytest.raises(ValueError):
        t_quantile(0.975, 0)


def test_interval_containing_zero_is_not_resolved():
    # differences A - B per seed: 28.1 - 28.0 = 0.1, 28.3 - 28.0 = 0.3, 28.2 - 28.0 = 0.2
    # mean = 0.6 / 3 = 0.2; deviations -0.1, 0.1, 0 -> sum of squares 0.02, / (3 - 1) = 0.01 -> sd 0.1
    # t_{0.975,2} = 4.302653; half-width 4.302653 * 0.1 / sqrt(3) = 0.4302653 / 1.7320508 = 0.2484138
    # interval [0.2 - 0.2484138, 0.2 + 0.2484138] = [-0.0484138, 0.4484138]: contains 0
    c = compare_paired({0: 28.1, 1: 28.3, 2: 28.2}, {0: 28.0, 1: 28.0, 2: 28.0}, 'augkd', 'kd', 'Set5')
    assert c.seeds == (0, 1, 2) and c.n == 3
    assert c.differences == pytest.approx((0.1, 0.3, 0.2))
    assert c.mean == pytest.approx(0.2)
    assert c.sd == pytest.approx(0.1)
    assert c.t == pytest.approx(4.302653, abs=1e-6)
    assert c.half_width == pytest.approx(0.2484138, abs=1e-6)
    assert (c.low, c.high) == (pytest.approx(-0.0484138, abs=1e-6), pytest.approx(0.4484138, abs=1e-6))
    assert c.verdict == NOT_RESOLVED
    assert c.missing_in_a == c.missing_in_b == () and c.note == ''


def test_interval_above_zero_is_resolved_for_and_below_zero_against():
    # differences 0.2, 0.3, 0.25, 0.25: mean 1.0 / 4 = 0.25; deviations -0.05, 0.05, 0, 0 -> sum of squares 0.005,
    # / 3 = 0.0016667 -> sd 0.0408248; t_{0.975,3} = 3.182446; half-width 3.182446 * 0.0408248 / sqrt(4) = 0.0649614
    # interval [0.1850386, 0.3149614] > 0
    a = {0: 30.2, 1: 30.3, 2: 30.25, 3: 30.25}
    b = {0: 30.0, 1: 30.0, 2: 30.0, 3: 30.0}
    c = compare_paired(a, b)
    assert c.mean == pytest.approx(0.25)
    assert c.sd == pytest.approx(0.0408248, abs=1e-6)
    assert c.half_width == pytest.approx(0.0649614, abs=1e-6)
    assert c.low == pytest.approx(0.1850386, abs=1e-6) and c.high == pytest.approx(0.3149614, abs=1e-6)
    assert c.verdict == RESOLVED_FOR
    # B - A: the same interval mirrored, [-0.3149614, -0.1850386] < 0
    mirrored = compare_paired(b, a)
    assert mirrored.low == pytest.approx(-0.3149614, abs=1e-6) and mirrored.high == pytest.approx(-0.1850386, abs=1e-6)
    assert mirrored.verdict == RESOLVED_AGAINST


def test_a_lower_confidence_gives_a_narrower_interval():
    # the first test's differences at 90%: t_{0.95,2} = 2.919986; half-width 2.919986 * 0.1 / sqrt(3) = 0.1685855
    # interval [0.0314145, 0.3685855] > 0: resolved at 90% where 95% was not
    c = compare_paired({0: 0.1, 1: 0.3, 2: 0.2}, {0: 0.0, 1: 0.0, 2: 0.0}, confidence=0.9)
    assert c.t == pytest.approx(2.919986, abs=1e-6)
    assert c.half_width == pytest.approx(0.1685855, abs=1e-6)
    assert c.verdict == RESOLVED_FOR
    with pytest.raises(ValueError):
        compare_paired({0: 1.0}, {0: 1.0}, confidence=95)


def test_pairing_by_seed_uses_only_seeds_on_both_sides_and_reports_the_others():
    # A has seeds 0, 1, 2, 3; B has 0, 1, 2, 5 (out of order): pairs 0, 1, 2; 3 only in A, 5 only in B
    # differences 27.5 - 27.0 = 0.5, 28.0 - 27.0 = 1.0, 27.75 - 27.0 = 0.75 (exact in binary); seed 3 (A 99.0) unused
    # mean 2.25 / 3 = 0.75; deviations -0.25, 0.25, 0 -> sum of squares 0.125, / 2 = 0.0625 -> sd 0.25
    # half-width 4.302653 * 0.25 / sqrt(3) = 0.6210345; interval [0.1289655, 1.3710345] > 0
    a = {3: 99.0, 0: 27.5, 1: 28.0, 2: 27.75}
    b = {5: 0.0, 2: 27.0, 1: 27.0, 0: 27.0}
    c = compare_paired(a, b, 'kd', 'scratch', 'Set14')
    assert c.seeds == (0, 1, 2)
    assert c.differences == (0.5, 1.0, 0.75)
    assert c.missing_in_b == (3, ) and c.missing_in_a == (5, )
    assert c.mean == 0.75 and c.sd == 0.25
    assert c.half_width == pytest.approx(0.6210345, abs=1e-6)
    assert c.verdict == RESOLVED_FOR
    assert c.note == 'kd missing for seed 5; scratch missing for seed 3'


def test_one_paired_seed_gives_the_difference_but_no_interval():
    # seed 1 only on both sides: difference 28.5 - 28.25 = 0.25; no sd, no t with 0 degrees of freedom
    c = compare_paired({0: 28.0, 1: 28.5}, {1: 28.25}, 'augkd', 'kd', 'Set5')
    assert c.n == 1 and c.mean == 0.25
    assert c.sd is c.t is c.half_width is c.low is c.high is None
    assert c.verdict == NOT_RESOLVED
    assert c.note == 'one paired seed: no interval (Student t needs at least 2); kd missing for seed 0'
    assert markdown_row(c) == ('| augkd - kd | Set5 | 1 | +0.2500 | n/a | n/a | not resolved at this scale '
                               '| one paired seed: no interval (Student t needs at least 2); kd missing for seed 0 |')


def test_no_paired_seed():
    c = compare_paired({0: 28.0}, {1: 28.0})
    assert c.n == 0 and c.mean is None and c.sd is None and c.verdict == NOT_RESOLVED
    assert c.note == 'no seed on both sides: no comparison; A missing for seed 1; B missing for seed 0'
    assert markdown_row(c).startswith('| A - B |  | 0 | n/a | n/a | n/a | not resolved at this scale |')


def test_equal_differences_have_sd_zero_and_a_point_interval():
    # differences 1.5 - 1.0 = 0.5 and 2.5 - 2.0 = 0.5: mean 0.5, sd 0, half-width t * 0 / sqrt(2) = 0 -> [0.5, 0.5] > 0
    c = compare_paired({0: 1.5, 1: 2.5}, {0: 1.0, 1: 2.0})
    assert (c.mean, c.sd, c.half_width, c.low, c.high) == (0.5, 0.0, 0.0, 0.5, 0.5)
    assert c.verdict == RESOLVED_FOR
    # all differences 0: [0, 0] contains 0
    same = compare_paired({0: 1.5, 1: 2.5}, {0: 1.5, 1: 2.5})
    assert (same.mean, same.sd, same.low, same.high) == (0.0, 0.0, 0.0, 0.0)
    assert same.verdict == NOT_RESOLVED


def test_markdown_row():
    # differences 0.5, 1.0, 0.75 (see the pairing test): mean +0.75, sd 0.25, interval [+0.1290, +1.3710]
    c = compare_paired({0: 27.5, 1: 28.0, 2: 27.75}, {0: 27.0, 1: 27.0, 2: 27.0}, 'kd', 'scratch', 'Set5')
    row = markdown_row(c)
    assert row == '| kd - scratch | Set5 | 3 | +0.7500 | 0.2500 | [+0.1290, +1.3710] | resolved for |  |'
    header, rule = MARKDOWN_HEADER.splitlines()
    assert header.count('|') == rule.count('|') == row.count('|')


def test_per_image_differences_count_the_images_that_improve():
    # 19 images (Set5 + Set14): A - B = +0.125 on 12, -0.25 on 5, 0 on 2
    names = [f'Set5/{i}' for i in range(5)] + [f'Set14/{i}' for i in range(14)]
    b = {name: 25.0 for name in names}
    a = {name: 25.0 + d for name, d in zip(names, [0.125] * 12 + [-0.25] * 5 + [0.0] * 2)}
    a['Set14/extra'] = 30.0  # on one side only: not counted
    c = compare_images(a, b)
    assert c.n == 19 and (c.improved, c.worse, c.unchanged) == (12, 5, 2)
    assert c.missing_in_b == ('Set14/extra', ) and c.missing_in_a == ()
    # mean (12 * 0.125 - 5 * 0.25) / 19 = (1.5 - 1.25) / 19 = 0.25 / 19
    assert c.mean == pytest.approx(0.25 / 19)
    assert c.summary('Set5 + Set14') == '12 of 19 Set5 + Set14 images improve'


def test_per_image_differences_averaged_over_the_paired_seeds():
    # seeds 0 and 1 on both sides (seed 2 in A only, not used); image 'x': A (30 + 31) / 2 = 30.5, B (30.25 + 30.25)
    # / 2 = 30.25 -> +0.25 improves; image 'y': A (20 + 20) / 2 = 20, B (21 + 19.5) / 2 = 20.25 -> -0.25 worse;
    # image 'z' lacks seed 1 in B: not paired
    a = {0: {'x': 30.0, 'y': 20.0, 'z': 1.0}, 1: {'x': 31.0, 'y': 20.0, 'z': 1.0}, 2: {'x': 0.0, 'y': 99.0}}
    b = {0: {'x': 30.25, 'y': 21.0, 'z': 1.0}, 1: {'x': 30.25, 'y': 19.5}}
    c = compare_images_over_seeds(a, b)
    assert c.images == ('x', 'y') and c.differences == (0.25, -0.25)
    assert (c.improved, c.worse, c.unchanged) == (1, 1, 0)
    assert c.missing_in_a == () and c.missing_in_b == ('z', )
    assert compare_images_over_seeds({0: {'x': 1.0}}, {1: {'x': 1.0}}).n == 0


def test_interval_half_width_scales_with_one_over_sqrt_n():
    # the same differences 0.1, 0.3, 0.2 repeated twice (n = 6): mean 0.2; sum of squares 2 * 0.02 = 0.04, / 5 ->
    # sd sqrt(0.008) = 0.0894427; t_{0.975,5} = 2.570582;
    # half-width 2.570582 * 0.0894427 / sqrt(6) = 0.2299197 / 2.4494897 = 0.0938644
    # interval [0.1061356, 0.2938644] > 0: six seeds resolve what three did not
    differences = [0.1, 0.3, 0.2] * 2
    c = compare_paired(dict(enumerate(differences)), {seed: 0.0 for seed in range(6)})
    assert c.sd == pytest.approx(math.sqrt(0.008))
    assert c.half_width == pytest.approx(0.0938644, abs=1e-6)
    assert c.verdict == RESOLVED_FOR


def test_scipy_interval_equals_the_student_t_formula():
    """The interval comes from scipy.stats.ttest_rel: it must be mean ± t_{0.975, n-1} * sd / sqrt(n) computed
    directly from the differences."""
    a = {seed: 30 + 0.013 * seed**2 for seed in range(7)}
    b = {seed: 30 + 0.011 * seed + 0.002 * (-1)**seed for seed in range(7)}
    c = compare_paired(a, b)
    d = [a[s] - b[s] for s in range(7)]
    mean = sum(d) / 7
    sd = (sum((x - mean)**2 for x in d) / 6)**0.5
    half = t_quantile(0.975, 6) * sd / 7**0.5
    assert (c.low, c.high, c.half_width) == pytest.approx((mean - half, mean + half, half), abs=1e-12)
