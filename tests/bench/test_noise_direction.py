"""The direction of a case verdict after the run-level factor (bench.analysis.noise), on ratios whose truth is constructed.

A machine 1.5x slower in every case is the run-level factor; a case 20% faster than that (B/A 1.2, still above 1)
is FASTER, not slower, and the overall verdict follows it; the mirror on a machine that got faster. The z and the
relative change are recomputed by hand from scipy's normal MAD and numpy's median.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.analysis import noise

N_CASES = 12
CI = 0.01  # each ratio's 95% interval: +-1%


def _ratios(machine: float, moved: float, index: int = 5, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ratios = machine * np.exp(0.02 * rng.standard_normal(N_CASES))
    ratios[index] *= moved
    return ratios


def _verdicts(ratios):
    f = noise.common_factor(np.log(ratios))
    return f, [noise.case_verdict(r, r * (1 - CI), r * (1 + CI), f) for r in ratios]


@pytest.mark.parametrize("machine, moved, expected", [
    (1.5, 0.8, noise.Verdict.FASTER),  # machine 1.5x slower, the case 20% faster than that: B/A 1.2 > 1, faster
    (0.6, 1.3, noise.Verdict.SLOWER),  # machine faster (0.6x), the case 30% slower than that: B/A 0.78 < 1, slower
    (1.0, 0.7, noise.Verdict.FASTER),
    (1.0, 1.3, noise.Verdict.SLOWER),
])
def test_a_case_verdict_is_its_move_beyond_the_run_factor_and_the_overall_verdict_follows(machine, moved, expected):
    ratios = _ratios(machine, moved)
    f, verdicts = _verdicts(ratios)
    assert verdicts[5].verdict is expected, verdicts[5].reason
    assert verdicts[5].relative == pytest.approx(moved, rel=0.05)
    assert all(v.verdict is noise.Verdict.INCONCLUSIVE for i, v in enumerate(verdicts) if i != 5)
    overall = noise.overall_verdict(verdicts, f)
    assert overall.verdict is expected
    assert overall.counts[expected.value] == 1 and f"1 of {N_CASES} cases {expected.value}" in overall.reason


def test_the_z_and_relative_change_are_the_hand_computed_ones():
    """d = log(ratio) - median(log ratios); sigma = hypot(CI's se, normal MAD, 1.2533 MAD / sqrt(n)); z = d / sigma."""
    ratios = _ratios(1.5, 0.8)
    logs = np.log(ratios)
    f, verdicts = _verdicts(ratios)
    centre = float(np.median(logs))
    spread = max(noise.CASE_NOISE_FLOOR, float(sps.median_abs_deviation(logs, scale="normal")))
    se_ci = (math.log(1 + CI) - math.log(1 - CI)) / (2 * 1.96)
    sigma = math.sqrt(se_ci ** 2 + spread ** 2 + (1.2533 * spread / math.sqrt(N_CASES)) ** 2)
    for r, v in zip(ratios, verdicts):
        d = math.log(r) - centre
        assert v.relative == pytest.approx(math.exp(d), rel=1e-9)
        assert v.z == pytest.approx(d / sigma, rel=1e-3)
    assert verdicts[5].z < -noise.Z_VERDICT  # faster: a negative z


def test_a_case_faster_and_one_slower_is_mixed_and_neither_wins():
    ratios = _ratios(1.5, 0.7)
    ratios[9] *= 1.4
    f, verdicts = _verdicts(ratios)
    assert (verdicts[5].verdict, verdicts[9].verdict) == (noise.Verdict.FASTER, noise.Verdict.SLOWER)
    overall = noise.overall_verdict(verdicts, f)
    assert overall.verdict is noise.Verdict.INCONCLUSIVE and "mixed: 1 slower, 1 faster" in overall.reason


def test_identical_cases_at_the_noise_floor_call_both_directions_and_leave_a_small_move():
    """Every case 1.5x and no interval: the spread is the floor (2%), so a 4% move is within noise (z ~ -1.9), and
    20% faster / 25% slower beyond the factor are called in their own direction."""
    f = noise.common_factor([math.log(1.5)] * N_CASES)
    assert f.spread == noise.CASE_NOISE_FLOOR
    assert noise.case_verdict(1.5 * 0.96, 0, 0, f).verdict is noise.Verdict.INCONCLUSIVE
    assert noise.case_verdict(1.5 * 0.80, 0, 0, f).verdict is noise.Verdict.FASTER
    assert noise.case_verdict(1.5 * 1.25, 0, 0, f).verdict is noise.Verdict.SLOWER
