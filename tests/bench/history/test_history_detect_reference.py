"""history detection's statistics, each recomputed here by hand or with scipy/numpy/ruptures (issue 50).

Each test checks one piece of bench/history/detect.py against an independent count: the noise against a hand
median-of-differences, the rank test against ``scipy.stats.mannwhitneyu``, the step's interval against
``scipy.stats.bootstrap`` called with the parameters the module documents (seed 0, 2000 resamples, percentile),
the segmentation against ruptures' own ``Pelt(model="l2")``, and the verdict's boundaries at values a double
holds exactly. Fast: no test here runs more than a few detections.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import ruptures
from scipy import stats as sps

from bench.history.detect import (ChangePoint, SeriesCheck, change_points, check_series, is_exact, recent,
                                  series_noise, step_ci)


class _Key:
    def __init__(self, metric):
        self.metric = metric


class _Series:
    """A ``store.Series`` as check_series reads it: values, commits and (optionally) a key naming the metric."""

    def __init__(self, values, metric=None):
        self.values = tuple(values)
        self.commits = tuple(f"c{i}" for i in range(len(self.values)))
        if metric is not None:
            self.key = _Key(metric)


def _scipy_step_ci(before, after, level=0.95):
    """The documented interval, from scipy directly: percentile bootstrap of median(after) - median(before),
    2000 resamples, each segment on its own, generator seeded 0."""
    res = sps.bootstrap((np.asarray(before, float), np.asarray(after, float)),
                        lambda x, y, axis=-1: np.median(y, axis=axis) - np.median(x, axis=axis),
                        vectorized=True, paired=False, confidence_level=level, n_resamples=2000,
                        method="percentile", random_state=np.random.default_rng(0))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _pelt(x, penalty_per_log_n, min_size=3):
    """ruptures' own PELT with the least-squares cost, on the series in units of its noise (the reference for
    where the change points are)."""
    z = (x - np.median(x)) / series_noise(x)
    return ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(z).predict(pen=penalty_per_log_n * math.log(len(x)))


# --- the noise -----------------------------------------------------------------------------------------------

def test_the_noise_is_1_4826_times_the_mad_of_the_differences_over_root_2_by_hand():
    # differences 1, 2, 3, 4: median 2.5, absolute deviations 1.5, .5, .5, 1.5, their median 1.0
    assert series_noise([0.0, 1.0, 3.0, 6.0, 10.0]) == pytest.approx(1.4826 / math.sqrt(2), rel=1e-12)
    # differences 2, -1, 5: median 2, deviations 0, 3, 3 -> MAD 3 (the median of the deviations, not of the diffs)
    assert series_noise([1.0, 3.0, 2.0, 7.0]) == pytest.approx(3 * 1.4826 / math.sqrt(2), rel=1e-12)
    assert series_noise([1, 3, 2, 7]) == pytest.approx(3 * 1.4826 / math.sqrt(2), rel=1e-12)  # ints too


def test_the_noise_agrees_with_scipys_normal_scaled_mad_of_the_differences():
    x = 1.0 + 0.05 * np.random.default_rng(11).standard_normal(41)
    expected = sps.median_abs_deviation(np.diff(x), scale="normal") / math.sqrt(2)  # 1/Phi^-1(3/4) = 1.482602...
    assert series_noise(x) == pytest.approx(expected, rel=1e-4)


def test_no_difference_is_no_noise():
    assert series_noise([]) == 0.0 and series_noise([3.0]) == 0.0
    assert series_noise([3.0, 5.0]) == 0.0  # one difference: its deviation from itself is 0


# --- a change point's verdict, at its boundaries --------------------------------------------------------------

_SIDES = {"n_before": 5, "n_after": 5}


def test_step_and_relative_step_by_hand():
    cp = ChangePoint(3, 4.0, 5.0, 0.5, 1.5, noise=0.25, **_SIDES)
    assert cp.step == 1.0 and cp.step_rel == 0.25 and cp.step_over_noise == 4.0
    drop = ChangePoint(3, 4.0, 3.0, -1.5, -0.5, noise=0.25, **_SIDES)
    assert drop.step == -1.0 and drop.step_rel == -0.25 and drop.step_over_noise == 4.0  # |step| / noise
    assert math.isnan(ChangePoint(3, 0.0, 1.0, 0.5, 1.5, noise=0.25).step_rel)  # no level to be relative to
    assert ChangePoint(3, 1.0, 2.0, 1.0, 1.0, noise=0.0).step_over_noise == math.inf


def test_the_interval_must_exclude_zero_strictly():
    assert not ChangePoint(5, 1.0, 2.0, 0.0, 1.5, noise=0.25, **_SIDES).passes_test  # touches 0
    assert not ChangePoint(5, 2.0, 1.0, -1.5, 0.0, noise=0.25, **_SIDES).passes_test
    assert ChangePoint(5, 1.0, 2.0, 2.0 ** -20, 1.5, noise=0.25, **_SIDES).passes_test
    assert ChangePoint(5, 2.0, 1.0, -1.5, -(2.0 ** -20), noise=0.25, **_SIDES).passes_test
    # an interval wholly on one side is enough, whichever side: its other end is free
    assert ChangePoint(5, 2.0, 1.0, -1.5, -0.5, noise=0.25, **_SIDES).passes_test
    assert not ChangePoint(5, 1.0, 2.0, math.nan, math.nan, noise=0.25, **_SIDES).passes_test  # no interval


def test_the_step_must_exceed_twice_the_noise_strictly():
    assert not ChangePoint(5, 1.0, 2.0, 0.5, 1.5, noise=0.5, **_SIDES).passes_test  # exactly 2 x 0.5
    assert ChangePoint(5, 1.0, 2.0, 0.5, 1.5, noise=0.5 - 2.0 ** -20, **_SIDES).passes_test
    assert not ChangePoint(5, 2.0, 1.0, -1.5, -0.5, noise=0.5, **_SIDES).passes_test  # a drop: |step| too
    assert ChangePoint(5, 2.0, 1.0, -1.5, -0.5, noise=0.5 - 2.0 ** -20, **_SIDES).passes_test
    # the factor is the change point's own: 3 x noise 0.3 = 0.9 < 1.0 < 4 x 0.3
    assert ChangePoint(5, 1.0, 2.0, 0.5, 1.5, noise=0.3, min_step_noise=3.0, **_SIDES).passes_test
    assert not ChangePoint(5, 1.0, 2.0, 0.5, 1.5, noise=0.3, min_step_noise=4.0, **_SIDES).passes_test


def test_the_rank_test_must_be_below_one_percent_strictly():
    assert not ChangePoint(5, 1.0, 2.0, 0.5, 1.5, noise=0.25, p_value=0.01, **_SIDES).passes_test
    assert ChangePoint(5, 1.0, 2.0, 0.5, 1.5, noise=0.25, p_value=0.0099, **_SIDES).passes_test


def test_five_points_on_each_side_give_a_verdict_four_on_either_do_not():
    args = (5, 1.0, 2.0, 0.5, 1.5, 0.25)
    assert ChangePoint(*args, n_before=5, n_after=5).verdict == "significant"
    assert ChangePoint(*args, n_before=4, n_after=9).verdict == "not enough history"
    assert ChangePoint(*args, n_before=9, n_after=4).verdict == "not enough history"
    assert not ChangePoint(*args, n_before=4, n_after=9).significant
    assert ChangePoint(*args, exact=True).significant  # exact: no minimum (n_before = n_after = 0)
    failing = ChangePoint(5, 1.0, 2.0, 0.5, 1.5, 0.25, p_value=0.5, **_SIDES)
    assert failing.verdict == "not significant" and not failing.significant
    assert ChangePoint(5, 1.0, 2.0, 0.5, 1.5, 0.25, p_value=0.5, n_before=2, n_after=9).verdict == "not enough history"


# --- exact counters ---------------------------------------------------------------------------------------------

def test_an_exact_counters_changes_count_their_sides_by_hand():
    x = [1000.0] * 7 + [1100.0] * 2 + [1050.0]
    first, second = change_points(x, exact=True)
    assert (first.index, first.before, first.after, first.n_before, first.n_after) == (7, 1000.0, 1100.0, 7, 2)
    assert (second.index, second.before, second.after, second.n_before, second.n_after) == (9, 1100.0, 1050.0, 2, 1)
    assert first.exact and second.exact and first.p_value == 0.0 and first.noise == 0.0
    assert (second.ci_low, second.ci_high) == (-50.0, -50.0)
    assert change_points([5.0], exact=True) == [] and change_points([], exact=True) == []


def test_a_counter_named_exact_is_exact_even_when_it_is_noisy():
    x = [10.0, 11.0, 10.0, 12.0, 10.0, 10.0]
    found = change_points(x, exact=True)
    assert [(c.index, c.step) for c in found] == [(1, 1.0), (2, -1.0), (3, 2.0), (4, -2.0)]
    assert [(c.ci_low, c.ci_high) for c in found] == [(1.0, 1.0), (-1.0, -1.0), (2.0, 2.0), (-2.0, -2.0)]
    assert [(c.n_before, c.n_after) for c in found] == [(1, 1), (1, 1), (1, 1), (1, 2)]  # segments 0|1|2|3|4,5
    assert all(c.exact and c.significant for c in found)


def test_two_points_are_enough_for_an_exact_change():
    (cp,) = change_points([1.0, 2.0], exact=True)
    assert cp.exact and (cp.index, cp.step, cp.n_before, cp.n_after) == (1, 1.0, 1, 1) and cp.significant
    (cp,) = change_points([5.0, 6.0])  # unknown kind, no noise from one difference: exact
    assert cp.exact and cp.index == 1


def test_a_series_of_unknown_kind_is_exact_only_when_silent():
    x = [7.0] * 4 + [8.0] * 4
    (cp,) = change_points(x)  # exact=None, noise 0: an exact counter
    assert cp.exact and cp.index == 4 and cp.significant
    (cp,) = change_points(x, exact=False)  # a measured metric that repeats: tested, never exact
    assert not cp.exact and cp.verdict == "not enough history"  # 4 a side
    # a series whose noise is tiny next to its level but not zero is not silent: not taken for exact
    noisy = 1e6 + np.array([0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 3.0, 1.0, 0.0])
    assert series_noise(noisy) > 1e-12 * 1e6
    assert not any(c.exact for c in change_points(noisy))


def test_silence_is_judged_against_the_series_level():
    """Noise below 1e-12 of the median |value| is silence: a counter of 1.1e12 that moves by eighths is exact."""
    base = 2.0 ** 40  # a double holds it and its neighbours 0.125 apart (its ulp is 2^-12)
    ramp = 0.125 * np.array([0, 1, 3, 6, 10, 15, 21, 28, 36, 45])  # differences 1..9 eighths: MAD 2 eighths
    wobble = base + ramp
    assert series_noise(wobble) == pytest.approx(0.25 * 1.4826 / math.sqrt(2)) and 0.27 < 1e-12 * base
    assert [c.index for c in change_points(wobble)] == list(range(1, 10))
    assert all(c.exact for c in change_points(wobble))
    # the same ramp around 1: noisy next to its level, so measured (never exact)
    assert not any(c.exact for c in change_points(1.0 + ramp))
    # a negative counter: the level is the median of |values|
    assert all(c.exact for c in change_points(-wobble))


def test_silence_includes_noise_equal_to_1e_12_of_the_level():
    """The boundary, at doubles that hit it exactly: x = L, L, L + d, L, L has differences 0, d, -d, 0, whose
    deviations from their median 0 have the median d / 2; its noise 1.4826 (d / 2) / sqrt 2 equals 1e-12 L for the L
    found below, and exceeds it for the next double down."""
    d = 2.0 ** -20
    noise = 1.4826 * (d / 2) / math.sqrt(2)
    level = noise / 1e-12
    for _ in range(40):  # the double whose 1e-12 x is the noise exactly (the product rounds; a few ulps away)
        if 1e-12 * level == noise:
            break
        level = float(np.nextafter(level, np.inf if 1e-12 * level < noise else -np.inf))
    assert 1e-12 * level == noise
    below = float(np.nextafter(level, -np.inf))
    assert 1e-12 * below < noise and (level + d) - level == d and (below + d) - below == d

    def series(v):
        return [v, v, v + d, v, v]

    assert series_noise(series(level)) == noise == series_noise(series(below))
    assert [(c.index, c.exact) for c in change_points(series(level))] == [(2, True), (3, True)]  # silent: exact
    assert change_points(series(below)) == []  # noisy: 5 points are too few for PELT


def test_a_nanosecond_series_with_a_small_noise_is_measured_not_exact():
    """Silence is relative to the level only: a 1 ns series with 0.01% noise has a noise of 1e-13 s, far above
    1e-12 of its level (1e-21 s). Its 1% step is found by PELT (ruptures' reference) and is not exact."""
    rng = np.random.default_rng(24)
    x = 1e-9 * (1.0 + 1e-4 * rng.standard_normal(20)) * np.where(np.arange(20) >= 10, 1.01, 1.0)
    found = change_points(x)
    assert [c.index for c in found] == _pelt(x, 6.0)[:-1] == [10]
    assert not found[0].exact and found[0].significant


def test_an_empty_series_has_no_change_and_no_numpy_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # np.median of nothing would warn "Mean of empty slice"
        assert change_points([]) == [] and change_points([], exact=False) == []
        assert series_noise([]) == 0.0


# --- measured series that repeat their values --------------------------------------------------------------

def test_a_repeating_measured_series_is_tested_on_the_segments_around_each_change():
    x = [5.0] * 6 + [6.0] * 5 + [4.0] * 2
    first, second = change_points(x, exact=False)
    # first change: segment [0, 6) against [6, 11); second: [6, 11) against [11, 13)
    assert (first.index, first.n_before, first.n_after, first.before, first.after) == (6, 6, 5, 5.0, 6.0)
    assert (second.index, second.n_before, second.n_after, second.before, second.after) == (11, 5, 2, 6.0, 4.0)
    assert first.p_value == pytest.approx(sps.mannwhitneyu(x[6:11], x[:6], alternative="two-sided").pvalue)
    assert second.p_value == pytest.approx(sps.mannwhitneyu(x[11:], x[6:11], alternative="two-sided").pvalue)
    assert (first.ci_low, first.ci_high) == pytest.approx((1.0, 1.0))
    assert first.noise == 0.0 and first.min_step_noise == 2.0 and not first.exact
    assert first.verdict == "significant" and second.verdict == "not enough history"


def test_one_point_on_a_side_has_no_interval_two_do():
    # (the differences of each series are mostly 0: MAD 0, a silent series)
    (one,) = change_points([1.0] * 5 + [2.0], exact=False)
    assert math.isnan(one.ci_low) and math.isnan(one.ci_high) 
    assert one.p_value == pytest.approx(sps.mannwhitneyu([2.0], [1.0] * 5, alternative="two-sided").pvalue)
    (two,) = change_points([1.0] * 5 + [2.0] * 2, exact=False)
    assert (two.ci_low, two.ci_high) == pytest.approx((1.0, 1.0))
    (first,) = change_points([1.0] + [2.0] * 5, exact=False)  # one point before
    assert math.isnan(first.ci_low) and math.isnan(first.ci_high)


def test_min_step_noise_reaches_a_repeating_series_change():
    (cp,) = change_points([5.0] * 6 + [6.0] * 5, exact=False, min_step_noise=7.0)
    assert cp.min_step_noise == 7.0


# --- PELT on a noisy series --------------------------------------------------------------------------------------

def test_a_noisy_step_is_segmented_as_ruptures_pelt_and_each_side_tested_with_scipy():
    rng = np.random.default_rng(21)
    x = 1.0 + 0.02 * rng.standard_normal(24)
    x[8:16] += 0.2
    x[16:] += 0.05
    found = change_points(x, penalty_per_log_n=2.0, min_step_noise=1.5)
    bounds = [0, *_pelt(x, 2.0)]
    assert [c.index for c in found] == bounds[1:-1] and len(found) >= 2
    noise = series_noise(x)
    for k, cp in enumerate(found, start=1):
        before, after = x[bounds[k - 1]:bounds[k]], x[bounds[k]:bounds[k + 1]]
        assert (cp.n_before, cp.n_after) == (len(before), len(after))
        assert cp.before == pytest.approx(np.median(before)) and cp.after == pytest.approx(np.median(after))
        assert cp.p_value == pytest.approx(sps.mannwhitneyu(after, before, alternative="two-sided").pvalue)
        assert (cp.ci_low, cp.ci_high) == pytest.approx(_scipy_step_ci(before, after))
        assert cp.noise == pytest.approx(noise) and cp.min_step_noise == 1.5 and not cp.exact


def test_the_penalty_and_minimum_segment_reach_the_segmentation():
    rng = np.random.default_rng(22)
    x = 1.0 + 0.05 * rng.standard_normal(40)
    x[20:] += 0.06
    low = [c.index for c in change_points(x, penalty_per_log_n=0.5)]
    assert low == _pelt(x, 0.5)[:-1]
    assert low != [c.index for c in change_points(x)]  # the default 6 log n finds fewer
    assert [c.index for c in change_points(x, penalty_per_log_n=0.5, min_segment=6)] == _pelt(x, 0.5, 6)[:-1]
    assert _pelt(x, 0.5, 6) != _pelt(x, 0.5)


def test_a_large_counter_with_a_tiny_relative_noise_is_segmented_about_its_median():
    """1e12 with 1e-9 relative noise (noisy: far above 1e-12 of the level) and a 4-noise step at commit 15. In noise
    units the series sits 2e9 from 0; the least-squares cost of uncentred values loses every digit of the step
    (checked: uncentred, ruptures breaks 20 of 20 such seeds elsewhere than centred). Centred on the median, it is found there."""
    rng = np.random.default_rng(25)
    x = 1e12 * (1.0 + 1e-9 * rng.standard_normal(30)) * np.where(np.arange(30) >= 15, 1.0 + 4e-9, 1.0)
    assert series_noise(x) > 1e-12 * 1e12 * 100
    found = change_points(x)
    assert [c.index for c in found] == _pelt(x, 6.0)[:-1] == [15] and not found[0].exact


def test_the_default_penalty_is_6_log_n():
    """One noise pattern, two step sizes either side of where ruptures' PELT starts to split at 6 log n: 0.0555 is
    split at 5.8 log n and not at 6; 0.057 at 6 and not at 6.2 (scanned in steps of 0.0005 with ruptures)."""
    base = 1.0 + 0.05 * np.random.default_rng(26).standard_normal(40)
    below, above = base.copy(), base.copy()
    below[20:] += 0.0555
    above[20:] += 0.057
    assert _pelt(below, 5.8) == [21, 40] and _pelt(below, 6.0) == [40]
    assert _pelt(above, 6.0) == [21, 40] and _pelt(above, 6.2) == [40]
    assert change_points(below) == [] and [c.index for c in change_points(above)] == [21]
    assert [c.index for c in check_series(_Series(above, "median_s"), last=40).change_points] == [21]


def test_a_noisy_series_of_exactly_two_segments_is_segmented():
    x = np.array([1.0, 1.01, 0.99, 5.0, 5.01, 4.99])  # 6 = 2 x 3 points: PELT can split it, and does
    assert [c.index for c in change_points(x)] == _pelt(x, 6.0)[:-1] == [3]


def test_a_noisy_series_shorter_than_two_segments_has_no_change():
    x = [1.0, 1.3, 0.9, 5.0, 5.2]  # 5 < 2 x 3 points: no segmentation, however large the jump
    assert change_points(x) == []
    assert change_points(x, min_segment=2) != []  # 5 >= 2 x 2: PELT may split it
    assert [c.index for c in change_points(x, min_segment=2)] == _pelt(np.array(x), 6.0, 2)[:-1]


def test_the_step_interval_is_scipys_percentile_bootstrap_seeded_0():
    before = [1.0, 1.1, 0.9, 1.05, 0.97, 1.02]
    after = [1.3, 1.22, 1.41, 1.28, 1.35]
    assert step_ci(before, after) == pytest.approx(_scipy_step_ci(before, after), rel=1e-12)
    assert step_ci(before, after, level=0.5) == pytest.approx(_scipy_step_ci(before, after, 0.5), rel=1e-12)
    low, high = step_ci(before, after)
    assert low < np.median(after) - np.median(before) < high  # and the sign: after minus before
    assert step_ci([1, 1, 1], [3, 3]) == (2.0, 2.0)  # ints: float, every resample the same


# --- which change points a check reports ------------------------------------------------------------------

def test_recent_takes_the_significant_changes_from_the_first_of_the_last_n_commits():
    sig = ChangePoint(10, 1.0, 2.0, 0.5, 1.5, noise=0.25, **_SIDES)
    not_sig = ChangePoint(12, 1.0, 2.0, -0.5, 1.5, noise=0.25, **_SIDES)
    assert recent([sig, not_sig], 20, last=10) == [sig]  # index 10 = 20 - 10: the first of the last 10 commits
    assert recent([sig, not_sig], 21, last=10) == []  # index 10 is the 11th commit from the end


def test_is_exact_reads_the_metric():
    assert is_exact(_Series([1.0], "median_s")) is False
    assert is_exact(_Series([1.0], "instructions_per_step")) is False
    assert is_exact(_Series([1.0], "matmul_flops")) is True
    assert is_exact(_Series([1.0])) is None


def test_a_check_with_too_little_history_counts_the_points_it_needs():
    check = check_series(_Series([1.0, 1.2, 1.1, 1.3, 1.0, 1.2, 1.1, 1.3, 1.0], "median_s"), last=10)
    assert not check.enough_history and check.points_needed == 1  # 2 x 5 - 9
    check = check_series(_Series([1.0, 1.2, 1.1, 1.3, 1.0, 1.2, 1.1, 1.3, 1.0, 1.2], "median_s"), last=10)
    assert check.enough_history and check.points_needed == 0
    assert check_series(_Series([1.0, 2.0], "matmul_flops"), last=10).enough_history  # exact: no minimum
    assert SeriesCheck(_Series([1.0] * 3), 0.0, (), (), enough_history=False).points_needed == 7


def test_a_check_sorts_its_recent_changes_into_flagged_and_pending():
    """A step found with 5 points after it is flagged; the same step with 4 after, whose test passes, is pending;
    an old change is neither; the check's noise is the series' (recomputed by hand above)."""
    steady = [1.00, 1.01, 0.99, 1.02, 0.98, 1.00, 1.01, 0.99, 1.00, 1.02, 0.99, 1.01]
    step = [2.00, 2.01, 1.99, 2.02, 1.98]
    full = check_series(_Series(steady + step, "median_s"), last=10)
    assert [c.index for c in full.flagged] == [12] and full.pending == ()
    assert full.noise == pytest.approx(series_noise(steady + step))
    cp = full.flagged[0]
    assert cp.p_value == pytest.approx(sps.mannwhitneyu(step, steady, alternative="two-sided").pvalue)
    # 17 commits, the change at index 12: the first of the last 5, outside the last 4
    assert [c.index for c in check_series(_Series(steady + step, "median_s"), last=5).flagged] == [12]
    outside = check_series(_Series(steady + step, "median_s"), last=4)
    assert outside.flagged == () and outside.pending == () and [c.index for c in outside.change_points] == [12]
    short = check_series(_Series(steady + step[:4], "median_s"), last=10)
    assert short.flagged == () and [c.index for c in short.pending] == [12]
    assert short.pending[0].verdict == "not enough history" and short.pending[0].passes_test
    old = check_series(_Series(steady + step[:4], "median_s"), last=3)  # the step is 4 commits back
    assert old.flagged == () and old.pending == ()
    edge = check_series(_Series(steady + step[:4], "median_s"), last=4)  # ... the first of the last 4
    assert [c.index for c in edge.pending] == [12]
    # a failing test is never pending: two points on a side with no interval
    tiny = check_series(_Series(steady + step[:1], "median_s"), last=10)
    assert tiny.pending == () and tiny.flagged == ()


def test_check_series_passes_its_penalty_on():
    rng = np.random.default_rng(23)
    x = 1.0 + 0.05 * rng.standard_normal(40)
    x[20:] += 0.06
    check = check_series(_Series(x, "median_s"), last=40, penalty_per_log_n=0.5)
    assert [c.index for c in check.change_points] == _pelt(x, 0.5)[:-1]


# --- issue 47, pinned: two identical runs are not significant, a real step is ----------------------------------

def test_two_runs_of_the_same_code_are_not_significant_and_a_real_step_is_with_scipys_statistics():
    # two runs of one commit each, the second 43.1% slower by noise alone: one point a side
    aa = check_series(_Series([1.0, 1.431], "median_s"), last=10)
    (cp,) = aa.change_points
    assert sps.mannwhitneyu([1.431], [1.0], alternative="two-sided").pvalue == 1.0 == cp.p_value
    assert not cp.significant and cp.verdict == "not enough history" and not cp.exact and aa.flagged == ()
    # two identical runs, the same value twice: no change at all
    assert check_series(_Series([1.0, 1.0], "median_s"), last=10).change_points == ()
    # twelve commits of the same code (2% noise): no significant change
    rng = np.random.default_rng(47)
    same = 1.0 + 0.02 * rng.standard_normal(12)
    assert not any(c.significant for c in check_series(_Series(same, "median_s"), last=10).change_points)
    # a real +20% step at index 6 of 12: significant, each statistic as scipy/numpy compute it
    x = same * np.where(np.arange(12) >= 6, 1.2, 1.0)
    (cp,) = check_series(_Series(x, "median_s"), last=10).flagged
    before, after = x[:6], x[6:]
    p = sps.mannwhitneyu(after, before, alternative="two-sided", method="exact").pvalue
    assert p == pytest.approx(2 / math.comb(12, 6)) and cp.p_value == pytest.approx(p) and p < 0.01
    assert cp.step == pytest.approx(np.median(after) - np.median(before))
    low, high = _scipy_step_ci(before, after)
    assert (cp.ci_low, cp.ci_high) == pytest.approx((low, high)) and low > 0
    assert abs(cp.step) > 2 * sps.median_abs_deviation(np.diff(x), scale="normal") / math.sqrt(2)
    assert cp.index == 6 and cp.verdict == "significant"
