"""The gate's comparison of interleaved samples (``bench.analysis.interleaved``) on adaptive rounds
(``compare_sequential``) and through its one entry point (``compare_interleaved``), field by field, against
references that share no code with it (issue 50's mutants):

* with one look, the design's repeated interval is the textbook Student-t interval of the mean log-ratio
  (``scipy.stats.ttest_1samp(...).confidence_interval``) and its ratio the geometric mean (``scipy.stats.gmean``);
* with fixed rounds, the interval is scipy's own paired percentile bootstrap at the gate's seed and resamples;
* the medians (numpy), the Mann-Whitney p-values (scipy, each direction) and the verdict of hand-made data.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats as sps

from bench.analysis.interleaved import MIN_EFFECT, compare_interleaved, compare_sequential
from bench.analysis.sequential import Design
from bench.analysis.stats import BOOTSTRAP_SEED, GATE_RESAMPLES
from bench.analysis.verdict import Verdict


def _paired(n: int, ratio: float, sd: float = 0.01, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A's blocks drift by 20%; each B block follows its A at ``ratio`` with ``sd`` paired noise."""
    rng = np.random.default_rng(seed)
    a = 1e-3 * np.exp(0.2 * rng.standard_normal(n))
    return a, a * ratio * np.exp(sd * rng.standard_normal(n))


def _one_look(n: int, alpha: float = 0.05) -> Design:
    return Design(alpha=alpha, first_look=n, max_rounds=n)


def _t_interval(a, b, level: float) -> tuple[float, float]:
    ci = sps.ttest_1samp(np.log(np.asarray(b) / np.asarray(a)), 0.0).confidence_interval(confidence_level=level)
    return math.exp(ci.low), math.exp(ci.high)


def _ratio_of_medians(a, b, axis=-1):
    return np.median(b, axis=axis) / np.median(a, axis=axis)


def _bootstrap(a, b, level: float) -> tuple[float, float]:
    """scipy's paired percentile bootstrap of median(B)/median(A) at the gate's documented seed and resamples."""
    ci = sps.bootstrap((a, b), _ratio_of_medians, paired=True, vectorized=True, method="percentile",
                       n_resamples=GATE_RESAMPLES, confidence_level=level,
                       random_state=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
    return float(ci.low), float(ci.high)


def test_every_field_of_a_sequential_comparison_against_scipy_and_numpy():
    """12 paired rounds, B 10% slower, one look at alpha 0.05: the t interval and geometric mean (scipy), the medians
    (numpy), both one-sided Mann-Whitney p-values of B against A (scipy; the drift of A makes them differ from 0 and
    1), a 95% confidence, the minimum effect given and ``paired``; and a regression."""
    a, b = _paired(12, 1.10)
    c = compare_sequential(list(a), list(b), _one_look(12), min_effect=0.03)
    assert (c.n_a, c.n_b) == (12, 12)
    assert c.median_a_s == pytest.approx(float(np.median(a)), rel=1e-15)
    assert c.median_b_s == pytest.approx(float(np.median(b)), rel=1e-15)
    assert c.ratio == pytest.approx(sps.gmean(b / a), rel=1e-12)
    assert (c.ci_low, c.ci_high) == pytest.approx(_t_interval(a, b, 0.95), rel=1e-10)
    greater = sps.mannwhitneyu(b, a, alternative="greater").pvalue
    less = sps.mannwhitneyu(b, a, alternative="less").pvalue
    assert 0.05 < greater < 0.95 and abs(greater - less) > 0.1  # the data tell the two directions apart
    assert (c.p_slower, c.p_faster) == pytest.approx((greater, less), rel=1e-12)
    assert c.confidence == pytest.approx(0.95, rel=1e-12)
    assert c.min_effect == 0.03 and c.paired is True
    assert c.verdict is Verdict.SLOWER


@pytest.mark.parametrize("ratio, min_effect, verdict", [
    (1.10, MIN_EFFECT, Verdict.SLOWER),
    (1 / 1.10, MIN_EFFECT, Verdict.FASTER),
    (1.0, MIN_EFFECT, Verdict.INCONCLUSIVE),
    (1.10, 0.20, Verdict.INCONCLUSIVE),  # beyond the noise but under the minimum effect given
    (1 / 1.10, 0.20, Verdict.INCONCLUSIVE),
])
def test_the_sequential_verdict_by_hand(ratio, min_effect, verdict):
    """1% paired noise over 10 rounds: a 10% change is far outside the interval (the t interval, scipy, checked to
    exclude 1 by hand here), so the minimum effect alone decides."""
    a, b = _paired(10, ratio)
    low, high = _t_interval(a, b, 0.99)
    assert (low > 1 or high < 1) if ratio != 1.0 else (low < 1 < high)
    assert compare_sequential(a, b, _one_look(10, alpha=0.01), min_effect).verdict is verdict


def test_sequential_comparisons_refuse_unpaired_or_too_few_samples():
    a, b = _paired(6, 1.1)
    message = "need as many paired samples per side, at least 5, got"
    with pytest.raises(ValueError, match="^" + re.escape(f"{message} 6 and 5") + "$"):
        compare_sequential(a, b[:5], _one_look(5))
    with pytest.raises(ValueError, match="^" + re.escape(f"{message} 4 and 4") + "$"):
        compare_sequential(a[:4], b[:4], _one_look(4))  # a look of its design, but under MIN_SAMPLES
    assert compare_sequential(a[:5], b[:5], _one_look(5)).n_a == 5  # exactly MIN_SAMPLES is enough


def test_compare_interleaved_without_a_design_is_the_paired_bootstrap():
    """Fixed rounds: scipy's paired percentile bootstrap at 1 - alpha (the default 99%, and 90% when given), the ratio
    of medians (numpy), the minimum effect given."""
    a, b = _paired(12, 1.10, sd=0.03)
    c = compare_interleaved(a, b)
    assert c.paired is True and c.confidence == pytest.approx(0.99)
    assert c.ratio == pytest.approx(np.median(b) / np.median(a), rel=1e-12)
    assert (c.ci_low, c.ci_high) == pytest.approx(_bootstrap(a, b, 0.99), rel=1e-12)
    c90 = compare_interleaved(a, b, alpha=0.10, min_effect=0.5)
    assert (c90.ci_low, c90.ci_high) == pytest.approx(_bootstrap(a, b, 0.90), rel=1e-12)
    assert _bootstrap(a, b, 0.90) != pytest.approx(_bootstrap(a, b, 0.99), rel=1e-6)  # the level shows
    assert c90.confidence == pytest.approx(0.90) and c90.min_effect == 0.5
    assert c.verdict is Verdict.SLOWER and c90.verdict is Verdict.INCONCLUSIVE  # 10% is under a 50% minimum


def test_compare_interleaved_with_a_design_is_the_repeated_interval():
    """Adaptive rounds: the design's interval (one look: the t interval, scipy), its alpha's confidence, not the
    bootstrap's 99%, and the minimum effect given."""
    a, b = _paired(12, 1.10)
    c = compare_interleaved(a, b, _one_look(12, alpha=0.05))
    assert (c.ci_low, c.ci_high) == pytest.approx(_t_interval(a, b, 0.95), rel=1e-10)
    assert c.ratio == pytest.approx(sps.gmean(b / a), rel=1e-12)
    assert c.confidence == pytest.approx(0.95) and c.paired is True and c.verdict is Verdict.SLOWER
    assert compare_interleaved(a, b, _one_look(12, alpha=0.05), min_effect=0.5).verdict is Verdict.INCONCLUSIVE
