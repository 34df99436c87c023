"""bench.analysis.stats: the median's confidence interval against published order statistics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from bench.analysis.stats import median_ci, summarize


def test_median_ci_matches_the_published_order_statistics():
    # 95% distribution-free CI of the median: n=20 -> (x(6), x(15)), n=10 -> (x(2), x(9)) (1-based ranks)
    assert median_ci(list(range(1, 21))) == (6.0, 15.0)
    assert median_ci(list(range(1, 11))) == (2.0, 9.0)
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.median == 3.0 and s.min == 1.0 and s.noisy


@pytest.mark.parametrize("level", [0.95, 0.99])
def test_median_ci_is_scipys_order_statistic_interval_for_every_n(level):
    """scipy.stats.quantile_test's interval for the median (order statistics X_(lo), X_(hi) whose coverage is
    P(lo < B <= hi), B ~ Binomial(n, 1/2)) for n = 1..120; where scipy finds none, ours is (min, max). An interval
    one order statistic too narrow (coverage counted from lo - 1) differs at n = 8, 9, 11, ...: 87 of n <= 200."""
    for n in range(1, 121):
        x = np.arange(1.0, n + 1.0)
        found = scipy.stats.quantile_test(x, q=0, p=0.5).confidence_interval(level)
        expected = (x[0], x[-1]) if np.isnan(found.low) or np.isnan(found.high) else (found.low, found.high)
        assert median_ci(x, level) == (float(expected[0]), float(expected[1])), n
