"""Robust summary statistics of timing samples (no rendering, no torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

IQR_WARN_FRACTION = 0.10  # samples noisier than this (IQR / median) are flagged
CI_LEVEL = 0.95


@dataclass(frozen=True)
class Summary:
    n: int
    median: float
    iqr: float
    min: float
    max: float
    mean: float
    ci_low: float  # distribution-free CI of the median (binomial order statistics)
    ci_high: float
    iqr_rel: float
    noisy: bool

    def as_dict(self, prefix: str = "", unit: str = "") -> dict[str, float]:
        return {f"{prefix}{k}{unit if k not in ('n', 'iqr_rel', 'noisy') else ''}": v
                for k, v in asdict(self).items()}


def median_ci(samples: Sequence[float], level: float = CI_LEVEL) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    The number of samples below the true median is Binomial(n, 1/2); we take the
    narrowest symmetric pair of order statistics whose coverage is >= ``level``.
    With too few samples for that coverage (n < 6 at 95%) we return (min, max),
    whose coverage is then below ``level``.
    """
    x = np.sort(np.asarray(samples, dtype=float))
    n = len(x)
    if n == 0:
        return (math.nan, math.nan)
    # smallest k with P(k <= B <= n-1-k) >= level, searched from the tightest interval outwards
    for k in range(n // 2, -1, -1):
        lo, hi = k, n - 1 - k
        if lo > hi:
            continue
        coverage = sps.binom.cdf(hi, n, 0.5) - sps.binom.cdf(lo - 1, n, 0.5)
        if coverage >= level:
            return (float(x[lo]), float(x[hi]))
    return (float(x[0]), float(x[-1]))


def summarize(samples: Sequence[float]) -> Summary:
    x = np.asarray(samples, dtype=float)
    if len(x) == 0:
        nan = math.nan
        return Summary(0, nan, nan, nan, nan, nan, nan, nan, nan, False)
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    lo, hi = median_ci(x)
    iqr = float(q3 - q1)
    iqr_rel = iqr / med if med > 0 else math.nan
    return Summary(len(x), float(med), iqr, float(x.min()), float(x.max()), float(x.mean()), lo, hi, iqr_rel,
                   bool(iqr_rel > IQR_WARN_FRACTION))
