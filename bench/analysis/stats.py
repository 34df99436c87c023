"""Robust statistics of timing samples (no rendering, no torch): summaries, and the ratio of two medians.

One home for the bootstrap interval of a ratio of medians, used by both readers of
it, each at one documented level:

* ``mlpbench compare`` (two runs, unpaired): ``COMPARE_CI_LEVEL`` = 95%, ``COMPARE_RESAMPLES``.
  A person reads a table of many cases; the table says that about 1 in 20 identical
  cases is flagged by chance.
* the timing gate (``mlpbench check``, interleaved A/B blocks, paired): ``GATE_CI_LEVEL`` = 99%
  (``--alpha`` overrides it), ``GATE_RESAMPLES``. It fails CI, so a 3-case A/A run must stay
  well under 1 false alarm in 20.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats as sps

IQR_WARN_FRACTION = 0.10  # samples noisier than this (IQR / median) are flagged
CI_LEVEL = 0.95  # of the median's distribution-free interval in every summary

COMPARE_CI_LEVEL = 0.95
COMPARE_RESAMPLES = 4000  # percentile endpoints move < 1% of the ratio between seeds at 12 samples a side
GATE_CI_LEVEL = 0.99  # one-sided 0.5% per case, so a 3-case A/A run stays well under 1 in 20
GATE_RESAMPLES = 2000  # percentile interval; 10 resamples beyond each 0.5% tail, plenty for a verdict
BOOTSTRAP_SEED = 0  # an interval is a function of the samples alone: the same runs always print the same


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
        coverage = sps.binom.cdf(hi, n, 0.5) - sps.binom.cdf(lo, n, 0.5)  # P(lo < B <= hi): X_(lo) <= m <= X_(hi)
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


def ratio_of_medians_ci(a_s: Sequence[float], b_s: Sequence[float], *, level: float, resamples: int,
                        paired: bool = False, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile-bootstrap interval of median(B) / median(A); NaNs when it is not finite.

    ``paired``: ``a_s[i]`` and ``b_s[i]`` ran back to back (interleaved A/B), so they are
    resampled together and the machine state they shared cancels; otherwise each side is
    resampled on its own (two runs made at different times).
    """
    a, b = np.asarray(a_s, dtype=float), np.asarray(b_s, dtype=float)

    def ratio_of_medians(x, y, axis=-1):
        return np.median(y, axis=axis) / np.median(x, axis=axis)

    result = sps.bootstrap((a, b), ratio_of_medians, vectorized=True, paired=paired, confidence_level=level,
                           n_resamples=resamples, method="percentile",
                           random_state=np.random.default_rng(seed))  # `rng=` only from scipy 1.15
    low, high = result.confidence_interval
    return (float(low), float(high)) if math.isfinite(low) and math.isfinite(high) else (math.nan, math.nan)
