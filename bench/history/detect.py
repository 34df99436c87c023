"""Change points in one series (values in commit order), with ruptures' PELT and a penalty scaled by the noise.

The method, and why:

- **Noise** of a series: the robust standard deviation of one point, from the median absolute
  deviation of its first differences (``1.4826 * MAD(diff) / sqrt(2)``). Differences cancel a
  level shift, so a step (one large difference) barely moves it, where the plain spread of the
  series would count the step as noise.
- **Segmentation**: PELT with the least-squares cost on the series in units of that noise, with
  the penalty ``PENALTY_PER_LOG_N * log(n)`` (a BIC-style penalty: a new segment must explain more
  than the noise would by chance); ``MIN_SEGMENT`` points per segment. ruptures' ``KernelCPD``
  with the linear kernel is that cost, solved in C: the same breakpoints as ``Pelt(model="l2")``
  (checked on 200 random series) about 100x faster.
- **Step** at a change point: the median of the segment after it minus the median of the segment
  before it, with a 95% percentile-bootstrap interval of that difference (``scipy.stats.bootstrap``,
  each segment resampled on its own). The change is *significant* when that interval excludes 0
  and the step is larger than ``MIN_STEP_NOISE`` x the series' noise: the median moved by more
  than the series' own noise.
- **Exact series** (noise 0: FLOPs, bytes, compile counts): every change of value is a change
  point, its step exact; no model is needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import ruptures
from scipy import stats as sps

MAD_TO_SIGMA = 1.4826  # MAD of a normal sample x this = its standard deviation
PENALTY_PER_LOG_N = 6.0  # pen = this x log(n), series in units of its noise; 3/4/6 evaluated in docs/history.md
MIN_SEGMENT = 3  # points per segment: a change is found 2 commits after it at the earliest
STEP_CI_LEVEL = 0.95
STEP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0  # the same history always gives the same intervals
MIN_STEP_NOISE = 1.0  # a significant step moves the median by more than one point's noise
EXACT_NOISE_REL = 1e-12  # noise below this fraction of the level: an exact counter


@dataclass(frozen=True)
class ChangePoint:
    index: int  # the first point of the new segment
    before: float  # median of the segment before
    after: float  # median of the segment after
    ci_low: float  # 95% interval of after - before
    ci_high: float
    noise: float  # the series' noise (one point's robust standard deviation)
    min_step_noise: float = MIN_STEP_NOISE

    @property
    def step(self) -> float:
        return self.after - self.before

    @property
    def step_rel(self) -> float:
        return self.step / self.before if self.before else math.nan

    @property
    def significant(self) -> bool:
        return (self.ci_low > 0 or self.ci_high < 0) and abs(self.step) > self.min_step_noise * self.noise

    @property
    def step_over_noise(self) -> float:
        return abs(self.step) / self.noise if self.noise > 0 else math.inf


def series_noise(values: Sequence[float]) -> float:
    """One point's robust standard deviation, from the first differences (a step barely moves it)."""
    diffs = np.diff(np.asarray(values, dtype=float))
    if len(diffs) == 0:
        return 0.0
    return float(MAD_TO_SIGMA * np.median(np.abs(diffs - np.median(diffs))) / math.sqrt(2))


def change_points(values: Sequence[float], *, penalty_per_log_n: float = PENALTY_PER_LOG_N,
                  min_segment: int = MIN_SEGMENT, min_step_noise: float = MIN_STEP_NOISE) -> list[ChangePoint]:
    """Every change point of the series, significant or not (``ChangePoint.significant`` says)."""
    x = np.asarray(values, dtype=float)
    noise = series_noise(x)
    level = float(np.median(np.abs(x))) if len(x) else 0.0
    if len(x) >= 2 and noise <= EXACT_NOISE_REL * max(level, 1e-300):
        return _exact_changes(x, noise)
    if len(x) < 2 * min_segment:
        return []
    z = (x - np.median(x)) / noise
    breaks = ruptures.KernelCPD(kernel="linear", min_size=min_segment).fit(z).predict(
        pen=penalty_per_log_n * math.log(len(x)))
    bounds = [0, *breaks]  # breaks end with len(x)
    return [_step(x, bounds[i - 1], bounds[i], bounds[i + 1], noise, min_step_noise) for i in range(1, len(bounds) - 1)]


def _exact_changes(x: np.ndarray, noise: float) -> list[ChangePoint]:
    changes = [i for i in range(1, len(x)) if x[i] != x[i - 1]]
    return [ChangePoint(i, float(x[i - 1]), float(x[i]), float(x[i] - x[i - 1]), float(x[i] - x[i - 1]), noise)
            for i in changes]


def _step(x: np.ndarray, start: int, index: int, end: int, noise: float, min_step_noise: float) -> ChangePoint:
    before, after = x[start:index], x[index:end]
    low, high = step_ci(before, after)
    return ChangePoint(index, float(np.median(before)), float(np.median(after)), low, high, noise, min_step_noise)


def step_ci(before: Sequence[float], after: Sequence[float], level: float = STEP_CI_LEVEL) -> tuple[float, float]:
    """Percentile-bootstrap interval of median(after) - median(before), each segment resampled on its own."""
    a, b = np.asarray(before, dtype=float), np.asarray(after, dtype=float)

    def diff_of_medians(x, y, axis=-1):
        return np.median(y, axis=axis) - np.median(x, axis=axis)

    result = sps.bootstrap((a, b), diff_of_medians, vectorized=True, paired=False, confidence_level=level,
                           n_resamples=STEP_RESAMPLES, method="percentile",
                           random_state=np.random.default_rng(BOOTSTRAP_SEED))
    low, high = result.confidence_interval
    return float(low), float(high)


def recent(points: Sequence[ChangePoint], n_values: int, last: int) -> list[ChangePoint]:
    """The significant change points among the last ``last`` commits of a series of ``n_values``."""
    return [c for c in points if c.significant and c.index >= n_values - last]


@dataclass(frozen=True)
class SeriesCheck:
    """One series (a ``store.Series``: ``values``, ``commits``...) with its change points."""

    series: Any
    noise: float
    change_points: tuple[ChangePoint, ...]
    flagged: tuple[ChangePoint, ...]  # significant, within the last ``last`` commits


def check_series(series: Any, last: int, penalty_per_log_n: float = PENALTY_PER_LOG_N) -> SeriesCheck:
    found = change_points(series.values, penalty_per_log_n=penalty_per_log_n)
    return SeriesCheck(series, series_noise(series.values), tuple(found),
                       tuple(recent(found, len(series.values), last)))
