"""Is B slower than A? The timing gate's test, for samples that are noisy but interleaved.

Each sample is the mean seconds per training step over one block. A case is a
regression only when the slowdown is large enough to matter *and* the data
show it beyond the noise:

* effect: the ratio of medians B/A is at least ``1 + min_effect``;
* significance: the ``1 - alpha`` bootstrap interval of that ratio lies above 1.
  With interleaved A/B blocks the bootstrap resamples (A[r], B[r]) as pairs: the
  two ran back to back and shared the machine's state, which then cancels.

Improvements are the mirror image. The one-sided Mann-Whitney U p-value is
reported beside it as a second, unpaired opinion; it does not decide. Medians
throughout, because a shared machine's noise comes in bursts: a few blocks hit
by another job are outliers, not a shift.

The constants were chosen on a pilot (docs/perf-gate.md) before the figures
reported there were measured.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from .stats import GATE_CI_LEVEL, GATE_RESAMPLES, ratio_of_medians_ci

MIN_EFFECT = 0.05  # smaller slowdowns are not flagged: A/A runs here spread several per cent either way
ALPHA = round(1 - GATE_CI_LEVEL, 12)  # 0.01: the gate's one documented level (bench.analysis.stats), as --alpha's default
MIN_SAMPLES = 5  # fewer blocks per side cannot separate a 99% interval from 1


class Verdict(str, enum.Enum):
    REGRESSION = "regression"
    IMPROVEMENT = "improvement"
    PASS = "pass"


@dataclass(frozen=True)
class TimingComparison:
    n_a: int
    n_b: int
    median_a_s: float
    median_b_s: float
    ratio: float  # median(B) / median(A): > 1 means B is slower
    ci_low: float
    ci_high: float
    p_slower: float  # Mann-Whitney U, one-sided, H1: B > A (reported, not deciding)
    p_faster: float  # ... H1: B < A
    verdict: Verdict
    confidence: float = 1 - ALPHA  # of [ci_low, ci_high]
    min_effect: float = MIN_EFFECT
    paired: bool = False

    def as_dict(self) -> dict[str, object]:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__ if k != "verdict"},
                "verdict": self.verdict.value}


def verdict_of(ratio: float, ci_low: float, ci_high: float, min_effect: float) -> Verdict:
    """A regression: at least ``min_effect`` slower and the interval above 1; an improvement the mirror image."""
    if ratio >= 1 + min_effect and ci_low > 1:
        return Verdict.REGRESSION
    if ratio <= 1 / (1 + min_effect) and ci_high < 1:
        return Verdict.IMPROVEMENT
    return Verdict.PASS


def compare_samples(a_s: Sequence[float], b_s: Sequence[float], min_effect: float = MIN_EFFECT,
                    alpha: float = ALPHA, paired: bool = False) -> TimingComparison:
    """Compare timing samples of A (before) and B (after); see the module docstring for the rule.

    ``paired``: ``a_s[i]`` and ``b_s[i]`` ran back to back (interleaved A/B), so the
    bootstrap resamples them together and the machine's state they shared cancels.
    """
    a, b = np.asarray(a_s, dtype=float), np.asarray(b_s, dtype=float)
    if len(a) < MIN_SAMPLES or len(b) < MIN_SAMPLES:
        raise ValueError(f"need at least {MIN_SAMPLES} samples per side, got {len(a)} and {len(b)}")
    if paired and len(a) != len(b):
        raise ValueError(f"paired samples need equal counts, got {len(a)} and {len(b)}")
    ratio = float(np.median(b) / np.median(a))
    ci_low, ci_high = ratio_of_medians_ci(a, b, level=1 - alpha, resamples=GATE_RESAMPLES, paired=paired)
    p_slower = float(sps.mannwhitneyu(b, a, alternative="greater").pvalue)
    p_faster = float(sps.mannwhitneyu(b, a, alternative="less").pvalue)
    verdict = verdict_of(ratio, ci_low, ci_high, min_effect)
    return TimingComparison(len(a), len(b), float(np.median(a)), float(np.median(b)), ratio, ci_low, ci_high,
                            p_slower, p_faster, verdict, 1 - alpha, min_effect, paired)


def compare_sequential(a_s: Sequence[float], b_s: Sequence[float], design, min_effect: float = MIN_EFFECT
                       ) -> TimingComparison:
    """Interleaved samples gathered in adaptive rounds (``bench.analysis.sequential.Design``): the same rule as
    ``compare_samples``, on the repeated confidence interval of the paired ratio at the look they stopped at, whose
    coverage holds however the number of rounds was chosen. ``ratio`` is the geometric mean of the paired ratios."""
    a, b = np.asarray(a_s, dtype=float), np.asarray(b_s, dtype=float)
    if len(a) != len(b) or len(a) < MIN_SAMPLES:
        raise ValueError(f"need as many paired samples per side, at least {MIN_SAMPLES}, got {len(a)} and {len(b)}")
    interval = design.interval(a, b)
    ratio, ci_low, ci_high = interval.ratio, interval.low, interval.high
    verdict = verdict_of(ratio, ci_low, ci_high, min_effect)
    return TimingComparison(len(a), len(b), float(np.median(a)), float(np.median(b)), ratio, ci_low, ci_high,
                            float(sps.mannwhitneyu(b, a, alternative="greater").pvalue),
                            float(sps.mannwhitneyu(b, a, alternative="less").pvalue), verdict, 1 - design.alpha,
                            min_effect, paired=True)


def compare_interleaved(a_s: Sequence[float], b_s: Sequence[float], design=None, min_effect: float = MIN_EFFECT,
                        alpha: float = ALPHA) -> TimingComparison:
    """Interleaved A/B samples: on ``design``'s repeated confidence interval when the rounds were adaptive (a
    ``bench.analysis.sequential.Design``), else the fixed-rounds paired bootstrap (``compare_samples``)."""
    if design is None:
        return compare_samples(a_s, b_s, min_effect, alpha, paired=True)
    return compare_sequential(a_s, b_s, design, min_effect)
