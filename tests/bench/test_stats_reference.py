"""bench.analysis.stats and the gate's compare_samples against scipy, numpy and hand counts (issue 50: mutmut's survivors).

Each test here was written against a mutant that the older tests let through (`make mutation
MODULES="bench/analysis/stats.py bench/analysis/interleaved.py"`); the reference is never the module's own output.
"""

from __future__ import annotations

import json
import math
from math import comb

import numpy as np
import pytest
import scipy.stats

from bench.analysis.interleaved import MIN_SAMPLES, Verdict, compare_samples
from bench.analysis.stats import IQR_WARN_FRACTION, median_ci, ratio_of_medians_ci, summarize

SUMMARY_FIELDS = ["n", "median", "iqr", "min", "max", "mean", "ci_low", "ci_high", "iqr_rel", "noisy"]


def _seconds(n: int, seed: int) -> np.ndarray:
    """Step times as a shared machine gives them: about a millisecond, skewed."""
    return 1e-3 * np.random.default_rng(seed).lognormal(0.0, 0.3, n)


@pytest.mark.parametrize("n, seed", [(7, 1), (12, 2), (50, 3)])
def test_summary_of_step_times_is_numpys_and_scipys(n, seed):
    x = _seconds(n, seed)
    s = summarize(list(x))
    iqr = scipy.stats.iqr(x)  # q3 - q1, numpy's linear percentiles
    ci = scipy.stats.quantile_test(x, q=np.median(x), p=0.5).confidence_interval(0.95)
    assert s.n == n
    assert s.median == pytest.approx(np.median(x), rel=1e-12)
    assert s.iqr == pytest.approx(iqr, rel=1e-12)
    assert (s.min, s.max) == (x.min(), x.max())
    assert s.mean == pytest.approx(sum(x) / n, rel=1e-12)
    if not math.isnan(ci.low):
        assert (s.ci_low, s.ci_high) == (ci.low, ci.high)
    # seconds are far below 1: the relative spread is defined for any positive median
    assert s.iqr_rel == pytest.approx(iqr / np.median(x), rel=1e-12)
    assert s.noisy == (iqr / np.median(x) > 0.10)


def test_the_noisy_flag_is_strictly_above_ten_percent():
    # median 10, quartiles 9.5 and 10.5 (numpy's linear interpolation): IQR / median is exactly 0.1
    assert IQR_WARN_FRACTION == 0.1
    at = summarize([9.0, 10.0, 11.0])
    assert at.iqr_rel == 0.1 and not at.noisy
    above = summarize([8.9, 10.0, 11.1])  # quartiles 9.45, 10.55
    assert above.iqr_rel > 0.1 and above.noisy


def test_a_zero_median_has_no_relative_spread():
    # median 0, IQR 1 (quartiles 0 and 1): IQR / median is undefined, never infinite, and not "noisy"
    s = summarize([0.0, 0.0, 0.0, 1.0, 2.0])
    assert s.median == 0.0 and s.iqr == 1.0
    assert math.isnan(s.iqr_rel) and s.noisy is False


def test_an_empty_sample_summarizes_to_nans():
    s = summarize([])
    assert s.n == 0 and s.noisy is False
    for field in SUMMARY_FIELDS[1:-1]:
        value = getattr(s, field)
        assert isinstance(value, float) and math.isnan(value), field
    assert median_ci([]) == pytest.approx((math.nan, math.nan), nan_ok=True)


def test_one_sample_is_its_own_summary():
    s = summarize([2.5e-3])
    assert (s.n, s.median, s.iqr, s.min, s.max, s.mean, s.ci_low, s.ci_high, s.iqr_rel, s.noisy) == \
        (1, 2.5e-3, 0.0, 2.5e-3, 2.5e-3, 2.5e-3, 2.5e-3, 2.5e-3, 0.0, False)


def test_summary_as_dict_names_each_column_with_its_prefix_and_unit():
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    d = s.as_dict(prefix="step_", unit="_s")
    # hand-written: the unit goes on the measured values only, not on the count, the ratio or the flag
    assert list(d) == ["step_n", "step_median_s", "step_iqr_s", "step_min_s", "step_max_s", "step_mean_s",
                       "step_ci_low_s", "step_ci_high_s", "step_iqr_rel", "step_noisy"]
    assert list(d.values()) == [getattr(s, f) for f in SUMMARY_FIELDS]
    assert list(s.as_dict()) == SUMMARY_FIELDS


def test_median_ci_takes_the_published_ranks_for_large_n():
    # 95% distribution-free interval of the median, n = 100: ranks 40 and 61 (1-based), coverage 0.9648
    # (binomial tables); beyond n = 120 (the older test's range) against scipy's quantile_test
    assert median_ci(np.arange(1.0, 101.0)) == (40.0, 61.0)
    assert scipy.stats.binom.cdf(60, 100, 0.5) - scipy.stats.binom.cdf(39, 100, 0.5) >= 0.95
    for n in (150, 200, 333):
        x = np.arange(1.0, n + 1.0)
        ci = scipy.stats.quantile_test(x, q=np.median(x), p=0.5).confidence_interval(0.95)
        assert median_ci(x) == (ci.low, ci.high), n


def test_median_ci_of_unsorted_samples_is_that_of_the_sorted():
    x = _seconds(30, 4)
    assert median_ci(list(x)) == median_ci(sorted(x))
    ci = scipy.stats.quantile_test(x, q=np.median(x), p=0.5).confidence_interval(0.95)
    assert median_ci(list(x)) == (ci.low, ci.high)


def test_the_unpaired_default_resamples_each_side_alone():
    # runs of different lengths cannot be paired: the default must accept them, and equal scipy's unpaired interval
    a, b = _seconds(8, 5), 1.3 * _seconds(13, 6)
    got = ratio_of_medians_ci(a, b, level=0.95, resamples=2000)
    ref = scipy.stats.bootstrap((a, b), lambda x, y, axis=-1: np.median(y, axis=axis) / np.median(x, axis=axis),
                                paired=False, confidence_level=0.95, n_resamples=2000, method="percentile",
                                random_state=np.random.default_rng(0)).confidence_interval
    assert got == (pytest.approx(ref.low, rel=1e-12), pytest.approx(ref.high, rel=1e-12))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the division by a zero median, on purpose
def test_an_interval_with_an_infinite_end_is_no_interval():
    # A's median is 1, but a resample of A drawing 4 or more of its 3 zeros has median 0 (8.6% of them): those
    # ratios are infinite, so the upper end is not finite (inf, or NaN from interpolating inf); the lower one is
    a = np.array([0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    b = np.full(7, 2.0) + np.arange(7) * 1e-3
    with np.errstate(invalid="ignore"):
        ends = np.percentile(_resampled_ratios(a, b, 4000), [2.5, 97.5])
    assert math.isfinite(ends[0]) and not math.isfinite(ends[1])  # the premise, by a hand-rolled bootstrap
    got = ratio_of_medians_ci(a, b, level=0.95, resamples=4000)
    assert math.isnan(got[0]) and math.isnan(got[1])


def _resampled_ratios(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    rng = np.random.default_rng(7)
    with np.errstate(divide="ignore"):
        return np.array([np.median(rng.choice(b, b.size)) / np.median(rng.choice(a, a.size)) for _ in range(k)])


# ---- the gate's compare_samples ----

def test_too_few_samples_on_either_side_is_an_error_and_the_minimum_is_enough():
    ok = [1.0, 1.1, 0.9, 1.05, 0.95]
    assert MIN_SAMPLES == 5
    with pytest.raises(ValueError, match="at least 5 samples per side, got 4 and 5"):
        compare_samples(ok[:4], ok)
    with pytest.raises(ValueError, match="got 5 and 4"):
        compare_samples(ok, ok[:4])
    assert compare_samples(ok, ok).verdict == Verdict.PASS
    with pytest.raises(ValueError, match="paired samples need equal counts, got 5 and 6"):
        compare_samples(ok, ok + [1.0], paired=True)


def test_the_reported_p_values_are_the_exact_mann_whitney_ones():
    # B entirely above A, 5 a side: of the C(10, 5) = 252 equally likely rankings only one puts all of B on top,
    # so P(B > A by chance) = 1/252; "B < A" is then certain to be at least as extreme: p = 1
    a = [1.0, 1.01, 1.02, 1.03, 1.04]
    b = [2.0, 2.01, 2.02, 2.03, 2.04]
    c = compare_samples(a, b)
    assert c.p_slower == pytest.approx(1 / comb(10, 5), rel=1e-9)
    assert c.p_faster == pytest.approx(1.0)
    assert compare_samples(b, a).p_faster == pytest.approx(1 / 252, rel=1e-9)
    assert (c.n_a, c.n_b, c.paired) == (5, 5, False)


def test_the_counts_and_pairing_are_those_passed():
    a, b = _seconds(6, 8), _seconds(9, 9)
    c = compare_samples(a, b)
    assert (c.n_a, c.n_b, c.paired) == (6, 9, False)
    assert c.median_a_s == np.median(a) and c.median_b_s == np.median(b)
    assert compare_samples(a, b[:6], paired=True).paired is True


def test_a_significant_but_small_speedup_is_below_the_minimum_effect():
    # B is 3% faster in every pair: significant, but 0.97 is above 1 / 1.05; the mirror of the small slowdown
    a = 1e-3 * (1 + 0.01 * np.sin(np.arange(12)))
    c = compare_samples(a, 0.97 * a, paired=True)
    assert c.ci_high < 1 and c.verdict == Verdict.PASS


def test_a_large_but_unsure_speedup_passes():
    # medians 1.0 -> 0.8, but both sides spread from 0.5 to 1.5: the 99% interval reaches above 1
    a = [0.5, 0.6, 0.7, 1.0, 1.0, 1.0, 1.3, 1.4, 1.5]
    b = [0.5, 0.55, 0.6, 0.7, 0.8, 1.2, 1.3, 1.4, 1.5]
    ends = np.percentile(_resampled_ratios(np.array(a), np.array(b), 4000), [0.5, 99.5])
    assert ends[1] > 1  # the premise, by a hand-rolled bootstrap
    c = compare_samples(a, b)
    assert c.ratio == pytest.approx(0.8) and c.verdict == Verdict.PASS


def test_a_ratio_exactly_at_the_minimum_effect_counts():
    # medians 1.0 and 1.05 exactly, every resampled ratio >= 1.04/1.01: a regression of exactly 5%; mirrored
    a = [0.99, 1.0, 1.0, 1.0, 1.01] * 2
    b = [1.04, 1.05, 1.05, 1.05, 1.06] * 2
    assert compare_samples(a, b).verdict == Verdict.REGRESSION
    assert compare_samples(b, a).verdict == Verdict.IMPROVEMENT


def test_an_interval_that_ends_at_exactly_one_is_not_significant():
    # B's median is 1.1, but 17% of B's resamples (6+ of its 4 ones in 10 draws) have median 1.0 = A's: the
    # lower 0.5% end is exactly 1, which is no evidence of a slowdown; mirrored for a speedup
    a = [1.0] * 10
    b = [1.0] * 4 + [1.1] * 6
    assert scipy.stats.binom.sf(5, 10, 0.4) > 0.005
    slower = compare_samples(a, b)
    assert slower.ci_low == 1.0 and slower.ratio >= 1.05 and slower.verdict == Verdict.PASS
    faster = compare_samples(b, a)
    assert faster.ci_high == 1.0 and faster.verdict == Verdict.PASS


def test_timing_comparison_as_dict_is_the_json_the_gate_writes():
    c = compare_samples([1.0, 1.1, 0.9, 1.05, 0.95], [2.0, 2.1, 1.9, 2.05, 1.95])
    d = c.as_dict()
    assert list(d) == ["n_a", "n_b", "median_a_s", "median_b_s", "ratio", "ci_low", "ci_high", "p_slower",
                       "p_faster", "confidence", "min_effect", "paired", "verdict"]
    assert d["verdict"] == "regression" and d["n_a"] == 5 and d["ratio"] == pytest.approx(2.0)
    assert d["confidence"] == pytest.approx(0.99) and d["min_effect"] == 0.05 and d["paired"] is False
    assert json.loads(json.dumps(d)) == d
