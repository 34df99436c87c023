"""The adaptive rounds' group-sequential design (``bench.analysis.sequential``), against independent references:
published Lan-DeMets boundaries, a Monte-Carlo of the null with a fixed seed, and the naive procedure that peeks
at a fixed alpha (shown to exceed it)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench.analysis import sequential
from bench.analysis.sequential import Design, boundaries


def test_pocock_type_boundaries_are_the_published_ones():
    """Reference: the Lan-DeMets Pocock-type boundaries of five equally spaced looks at two-sided alpha 0.05, as
    tabulated by ldbounds (Reboussin, DeMets, Kim and Lan 2000) and gsDesign: 2.4380, 2.4268, 2.4101, 2.3966,
    2.3859."""
    got = boundaries((0.2, 0.4, 0.6, 0.8, 1.0), 0.05, "pocock")
    assert got == pytest.approx((2.4380, 2.4268, 2.4101, 2.3966, 2.3859), abs=1e-4)  # 4 decimals


def test_a_single_look_is_the_fixed_sample_quantile():
    """One look at full information spends all of alpha: the two-sided normal quantile (scipy)."""
    for spending in sequential.SPENDING:
        assert boundaries((1.0,), 0.01, spending)[0] == pytest.approx(sps.norm.isf(0.005), rel=1e-9)


@pytest.mark.parametrize("spending", sequential.SPENDING)
def test_the_boundaries_cross_with_the_spent_probability_in_a_monte_carlo_brownian_motion(spending):
    """Reference: a Monte-Carlo of the standardised statistic at each look (Brownian motion in the information, fixed
    seed, independent of the numerical integration): the fraction that has crossed by look k is the spent alpha at
    t_k, within 4 binomial standard errors."""
    t = np.array([0.1, 0.25, 0.4, 0.55, 0.7, 0.85, 1.0])
    alpha = 0.05
    c = np.array(boundaries(tuple(t), alpha, spending))
    rng = np.random.default_rng(49)
    n = 200_000
    score = np.cumsum(rng.standard_normal((n, len(t))) * np.sqrt(np.diff(np.concatenate([[0], t]))), axis=1)
    crossed = np.maximum.accumulate(np.abs(score / np.sqrt(t)) >= c, axis=1).mean(axis=0)
    want = sequential.spent(t, alpha, spending)
    assert np.all(np.abs(crossed - want) <= 4 * np.sqrt(want * (1 - want) / n) + 1e-4), (crossed, want)


def _draws(sessions: int, seed: int, sd: float = 0.08, shift: float = 0.0, heavy: bool = False) -> np.ndarray:
    """Paired log-ratios log(B_r / A_r), ``sessions x 200`` rounds: per-round spread ``sd``, normal or Student-t with
    3 degrees of freedom (a shared machine's bursts), centred on ``shift`` (0: the null, A/A)."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_t(3, (sessions, 200)) / math.sqrt(3) if heavy else rng.standard_normal((sessions, 200))
    return noise * sd + shift


def _alarms(d: np.ndarray, looks, claim) -> float:
    """Fraction of sessions with a claim at some look; ``claim(d[:, :n]) -> (claimed, stopped)`` per session, and a
    session stops at its first claim or stop (what ``interleaved_samples`` does)."""
    open_ = np.ones(len(d), dtype=bool)
    claimed = np.zeros(len(d), dtype=bool)
    for n in looks:
        now, stop = claim(d[:, :n])
        claimed |= open_ & now
        open_ &= ~(now | stop)
    return float(claimed.mean())


def _sequential(design: Design, min_effect: float = 0.0):
    """The design's repeated interval with the gate's rule (``stats.verdict_of``, vectorised: ratio beyond the
    minimum effect and the interval beyond 1); a session also stops once its interval reaches the precision."""
    def claim(d):
        i = design.interval(np.ones(d.shape), np.exp(d))
        slower = (i.ratio >= 1 + min_effect) & (i.low > 1)
        faster = (i.ratio <= 1 / (1 + min_effect)) & (i.high < 1)
        return slower | faster, design.precise(i)
    return claim


def _naive(alpha: float):
    """Peek at every look with a fixed ``1 - alpha`` t interval (scipy) and claim at the first that excludes 0."""
    def claim(d):
        n = d.shape[1]
        half = sps.t.isf(alpha / 2, n - 1) * np.std(d, axis=1, ddof=1) / math.sqrt(n)
        mean = d.mean(axis=1)
        return (mean - half > 0) | (mean + half < 0), np.zeros(len(d), dtype=bool)
    return claim


@pytest.mark.parametrize("heavy", [False, True], ids=["normal", "heavy-tailed"])
def test_under_the_null_the_adaptive_rounds_alarm_at_most_alpha_and_peeking_at_a_fixed_alpha_more(heavy):
    """Monte-Carlo of A/A sessions (fixed seed): looks every 5 rounds from 10 to 200. With no minimum effect and no
    stop on precision (the most looks: the hardest case for the error rate) the design's false alarms stay within
    alpha plus 3 binomial standard errors; the naive procedure (a fixed 99% interval at every look, the same
    data) exceeds alpha several times over. Noise per round: 8% (about the CPU clock's paired spread under load)."""
    design = Design(precision=0.0)
    sessions = 8000
    d = _draws(sessions, 7, heavy=heavy)
    rate = _alarms(d, design.looks, _sequential(design))
    naive = _alarms(d, design.looks, _naive(design.alpha))
    se = math.sqrt(design.alpha * (1 - design.alpha) / sessions)
    assert rate <= design.alpha + 3 * se, rate
    assert naive > 3 * design.alpha, naive


def test_a_real_change_is_found_and_the_interval_reaches_the_precision():
    """Power (same Monte-Carlo): a +10% change at 8% noise per round is called a regression in nearly every session,
    with the 5% minimum effect; a session that reaches 5% precision stops with an interval within 5% of its ratio."""
    design = Design()
    assert _alarms(_draws(2000, 11, shift=math.log(1.10)), design.looks, _sequential(design, 0.05)) >= 0.95
    d = _draws(1, 3)[0]
    stop = next(n for n in design.looks if design.precise(design.interval(np.ones(n), np.exp(d[:n]))))
    interval = design.interval(np.ones(stop), np.exp(d[:stop]))
    assert interval.high / interval.ratio <= 1.05 + 1e-12 and interval.ratio / interval.low <= 1.05 + 1e-12
    earlier = design.looks[design.looks.index(stop) - 1]
    assert not design.precise(design.interval(np.ones(earlier), np.exp(d[:earlier])))


def test_the_gate_s_comparison_uses_the_design_s_interval():
    """``compare_sequential`` decides on the repeated interval (not the fixed bootstrap): 10 rounds of a steady +10%
    with 1% noise: its interval is the design's, and the verdict a regression."""
    from bench.analysis.interleaved import compare_sequential

    design = Design()
    a = np.full(10, 1e-3)
    b = a * np.exp(math.log(1.1) + _draws(1, 5, sd=0.01)[0, :10])
    c = compare_sequential(a, b, design)
    i = design.interval(a, b)
    assert (c.ratio, c.ci_low, c.ci_high) == pytest.approx((i.ratio, i.low, i.high))
    assert c.verdict.value == "regression" and c.confidence == pytest.approx(0.99)


def test_a_look_outside_the_design_and_a_bad_design_are_refused():
    with pytest.raises(ValueError, match="not a look"):
        Design().z_boundary(11)
    with pytest.raises(ValueError):
        Design(first_look=2)
    with pytest.raises(ValueError):
        Design(spending="haybittle")
    with pytest.raises(ValueError, match="increase"):
        boundaries((0.5, 0.4), 0.05)
