"""bench.stats: the median's confidence interval against published order statistics."""

from __future__ import annotations

from bench.stats import median_ci, summarize


def test_median_ci_matches_the_published_order_statistics():
    # 95% distribution-free CI of the median: n=20 -> (x(6), x(15)), n=10 -> (x(2), x(9)) (1-based ranks)
    assert median_ci(list(range(1, 21))) == (6.0, 15.0)
    assert median_ci(list(range(1, 11))) == (2.0, 9.0)
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.median == 3.0 and s.min == 1.0 and s.noisy
