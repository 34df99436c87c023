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
  The step must also pass a Mann-Whitney U test of the two segments at ``STEP_ALPHA`` (1%), and exceed
  ``MIN_STEP_NOISE`` (2) x the series' noise: judged against the between-run noise of the series itself.
- **Enough history** (issue 41: two identical runs as two commits once failed a build): a change point of
  a measured metric (timings, instruction counts) fails a check only with ``MIN_POINTS_EACH_SIDE`` (5)
  points in the segment before it and in the segment after it. Why 5: with k points a side, the most
  extreme split a rank test can see has a two-sided p of 2 / C(2k, k): 0.10 at k=3, 0.029 at k=4, 0.0079
  at k=5. Below 5 no test of the two segments can reach 1%, whatever the data; and one point's noise
  from the differences of fewer than 10 points is itself a guess. A series shorter than
  ``2 * MIN_POINTS_EACH_SIDE`` says "not enough history", and a younger change is *pending*, never a failure.
- **Exact series** (FLOPs, bytes, compile counts; by metric, never because a short timing series
  happened to repeat a value): every change of value is a change point, its step exact; no model and
  no minimum history are needed. Only these are ever called "exact".
- **Verdicts** (issue 47: two identical runs as two commits were published as "+43.1% significant", step
  interval and noise "exact"): a change point is *significant* only when its test passes **and** it has enough
  history; one without enough history is neither significant nor "not significant": it is "not enough
  history". A measured series that repeats its values (two commits, or instruction counts that happen to be
  equal) is tested like any other: a Mann-Whitney test and a bootstrap interval of its segments (none with one
  point a side: a test of one point against one has p = 1).
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
MIN_STEP_NOISE = 2.0  # a significant step moves the median by more than twice one point's noise
EXACT_NOISE_REL = 1e-12  # noise below this fraction of the level: an exact counter
MIN_POINTS_EACH_SIDE = 5  # a measured metric's change fails only with this many points before and after (above)
STEP_ALPHA = 0.01  # two-sided Mann-Whitney U of the two segments
MEASURED_METRICS = ("median_s", "instructions_per_step")  # noisy: never "exact", and need a minimum history
VERDICT_SIGNIFICANT, VERDICT_NOT_SIGNIFICANT = "significant", "not significant"
VERDICT_TOO_SHORT = "not enough history"  # what every surface says where a verdict would need more commits


@dataclass(frozen=True)
class ChangePoint:
    index: int  # the first point of the new segment
    before: float  # median of the segment before
    after: float  # median of the segment after
    ci_low: float  # 95% interval of after - before
    ci_high: float
    noise: float  # the series' noise (one point's robust standard deviation)
    min_step_noise: float = MIN_STEP_NOISE
    n_before: int = 0  # points in the segments either side (0: an exact change, no minimum applies)
    n_after: int = 0
    p_value: float = 0.0  # Mann-Whitney U of the two segments, two-sided (0 for an exact change)
    exact: bool = False  # an exact counter's change: no minimum history applies

    @property
    def step(self) -> float:
        return self.after - self.before

    @property
    def step_rel(self) -> float:
        return self.step / self.before if self.before else math.nan

    @property
    def passes_test(self) -> bool:
        """The step's interval excludes 0, it exceeds ``min_step_noise`` x the noise, the rank test is below 1%."""
        return ((self.ci_low > 0 or self.ci_high < 0) and abs(self.step) > self.min_step_noise * self.noise
                and self.p_value < STEP_ALPHA)

    @property
    def enough_history(self) -> bool:
        """Exact changes always; a measured one with ``MIN_POINTS_EACH_SIDE`` points in each segment."""
        return self.exact or min(self.n_before, self.n_after) >= MIN_POINTS_EACH_SIDE

    @property
    def significant(self) -> bool:
        """A verdict: the test passes on enough history (a change without it is never called significant)."""
        return self.passes_test and self.enough_history

    @property
    def verdict(self) -> str:
        """``VERDICT_SIGNIFICANT``, ``VERDICT_NOT_SIGNIFICANT`` or ``VERDICT_TOO_SHORT`` (no verdict yet)."""
        if not self.enough_history:
            return VERDICT_TOO_SHORT
        return VERDICT_SIGNIFICANT if self.passes_test else VERDICT_NOT_SIGNIFICANT

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
                  min_segment: int = MIN_SEGMENT, min_step_noise: float = MIN_STEP_NOISE,
                  exact: bool | None = None) -> list[ChangePoint]:
    """Every change point of the series, significant or not (``ChangePoint.significant`` says).

    ``exact``: the metric is an exact counter (True), a measured one (False: never taken for exact, however
    few its points), or unknown (None: exact when the noise is 0).
    """
    x = np.asarray(values, dtype=float)
    noise = series_noise(x)
    level = float(np.median(np.abs(x))) if len(x) else 0.0
    silent = noise <= EXACT_NOISE_REL * max(level, 1e-300)
    if len(x) >= 2 and (exact or (exact is None and silent)):
        return _exact_changes(x, 0.0)
    if silent:  # a measured series that repeats its values (too few points, or nearly exact instruction counts):
        changes = [i for i in range(1, len(x)) if x[i] != x[i - 1]]  # each change, tested on the segments around it
        bounds = [0, *changes, len(x)]
        return [_step(x, bounds[k], i, bounds[k + 2], 0.0, min_step_noise) for k, i in enumerate(changes)]
    if len(x) < 2 * min_segment:
        return []
    z = (x - np.median(x)) / noise
    breaks = ruptures.KernelCPD(kernel="linear", min_size=min_segment).fit(z).predict(
        pen=penalty_per_log_n * math.log(len(x)))
    bounds = [0, *breaks]  # breaks end with len(x)
    return [_step(x, bounds[i - 1], bounds[i], bounds[i + 1], noise, min_step_noise) for i in range(1, len(bounds) - 1)]


def _exact_changes(x: np.ndarray, noise: float) -> list[ChangePoint]:
    changes = [i for i in range(1, len(x)) if x[i] != x[i - 1]]
    bounds = [0, *changes, len(x)]
    return [ChangePoint(i, float(x[i - 1]), float(x[i]), float(x[i] - x[i - 1]), float(x[i] - x[i - 1]), noise,
                        n_before=i - bounds[k], n_after=bounds[k + 2] - i, exact=True)
            for k, i in enumerate(changes)]


def _step(x: np.ndarray, start: int, index: int, end: int, noise: float, min_step_noise: float) -> ChangePoint:
    before, after = x[start:index], x[index:end]
    # a bootstrap needs two points a side: with one, there is no interval (NaN: never significant)
    low, high = step_ci(before, after) if min(len(before), len(after)) >= 2 else (math.nan, math.nan)
    p = float(sps.mannwhitneyu(after, before, alternative="two-sided").pvalue)
    return ChangePoint(index, float(np.median(before)), float(np.median(after)), low, high, noise, min_step_noise,
                       len(before), len(after), p)


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
    flagged: tuple[ChangePoint, ...]  # significant (so with enough history), within the last ``last`` commits
    pending: tuple[ChangePoint, ...] = ()  # recent, its test passes, but too few points on a side for a verdict
    enough_history: bool = True  # False: a measured series shorter than 2 x MIN_POINTS_EACH_SIDE

    @property
    def points_needed(self) -> int:
        return 0 if self.enough_history else 2 * MIN_POINTS_EACH_SIDE - len(self.series.values)


def is_exact(series: Any) -> bool | None:
    """True for exact counters, False for measured metrics, None when the series does not say."""
    key = getattr(series, "key", None)
    return None if key is None else key.metric not in MEASURED_METRICS


def check_series(series: Any, last: int, penalty_per_log_n: float = PENALTY_PER_LOG_N) -> SeriesCheck:
    exact = is_exact(series)
    found = change_points(series.values, penalty_per_log_n=penalty_per_log_n, exact=exact)
    n = len(series.values)
    enough = bool(exact) or n >= 2 * MIN_POINTS_EACH_SIDE  # a shorter measured series has no change with 5 a side
    return SeriesCheck(series, series_noise(series.values), tuple(found), tuple(recent(found, n, last)),
                       tuple(c for c in found if c.index >= n - last and c.passes_test and not c.enough_history),
                       enough)
