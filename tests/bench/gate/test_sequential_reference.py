"""``bench.analysis.sequential`` line by line, against references that share no code with it (issue 50's mutants):

* the spending functions: their closed forms by hand (``math.log``, scipy's normal quantiles);
* the boundaries: the probability that a correlated normal vector leaves the boxes ``|Z_i| < c_i``, from scipy's
  ``multivariate_normal.cdf`` (Genz's quasi-Monte-Carlo integration; the look statistics ``Z_i`` of a Brownian motion
  have correlation ``sqrt(t_i / t_j)``), instead of the module's recursive numerical integration;
* the repeated interval: at one look it is the textbook Student-t interval of the mean log-ratio,
  ``scipy.stats.ttest_1samp(...).confidence_interval``, and at any look the t interval at the level the look's
  boundary leaves (``1 - 2 Phi(-c_k)``);
* the design's arithmetic (its looks, its checks, its precision rule): a hand count.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from scipy import stats as sps

from bench.analysis import sequential
from bench.analysis.sequential import Design, Interval, boundaries, spent


@pytest.fixture(autouse=True)
def _fresh_boundaries():
    """``boundaries`` is cached: computed afresh here, so that each test checks the integration itself, not a value
    another test (or, under mutmut, the clean run its mutants are forked from) left in the cache."""
    boundaries.cache_clear()
    yield
    boundaries.cache_clear()


def _exactly(message: str) -> str:
    """A pattern for ``pytest.raises`` that matches the whole message, not a part of it."""
    return "^" + re.escape(message) + "$"


def _t_interval(d: np.ndarray, level: float) -> tuple[float, float]:
    """The Student-t interval of the mean of ``d`` at ``level`` (scipy), on the ratio scale."""
    ci = sps.ttest_1samp(d, 0.0).confidence_interval(confidence_level=level)
    return math.exp(ci.low), math.exp(ci.high)


# --- spending functions -------------------------------------------------------------------------------------------

def test_pocock_spending_is_its_closed_form_and_the_default():
    """Lan-DeMets Pocock type: ``alpha ln(1 + (e - 1) t)``, by hand; t is clipped to [0, 1]."""
    t = [0.0, 0.3, 0.75, 1.0]
    want = [0.01 * math.log(1 + (math.e - 1) * x) for x in t]
    assert spent(np.array(t), 0.01, "pocock") == pytest.approx(want, rel=1e-12, abs=0)
    assert spent(np.array(t), 0.01) == pytest.approx(want, rel=1e-12, abs=0)  # the default is Pocock's
    assert spent(0.3, 0.01) == pytest.approx(0.01 * math.log(1 + (math.e - 1) * 0.3), rel=1e-12)
    assert spent(-0.5, 0.01) == 0.0 and spent(1.5, 0.01) == pytest.approx(0.01, rel=1e-12)  # clipped
    assert spent(np.array([1.0, 2.0]), 0.05) == pytest.approx([0.05, 0.05], rel=1e-12)


def test_obrien_fleming_spending_is_its_closed_form():
    """Lan-DeMets O'Brien-Fleming type: ``2 - 2 Phi(z_{alpha/2} / sqrt t)`` (scipy's ``norm.cdf``/``norm.ppf``),
    0 at t = 0, all of alpha at t = 1 and beyond."""
    alpha = 0.05
    z = sps.norm.ppf(1 - alpha / 2)
    t = np.array([0.0, 0.1, 0.5, 0.8, 1.0])
    want = [0.0] + [2 - 2 * sps.norm.cdf(z / math.sqrt(x)) for x in t[1:]]
    got = spent(t, alpha, "obf")
    assert got == pytest.approx(want, rel=1e-9, abs=1e-15)
    assert got[0] == 0.0 and got[-1] == pytest.approx(alpha, rel=1e-12)
    assert spent(-1.0, alpha, "obf") == 0.0 and spent(3.0, alpha, "obf") == pytest.approx(alpha, rel=1e-12)


def test_an_unknown_spending_function_is_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=_exactly("unknown spending function 'haybittle'; valid: pocock, obf")):
        spent(0.5, 0.05, "haybittle")


# --- boundaries -----------------------------------------------------------------------------------------------

def _crossed_by_each_look(fractions, bounds) -> list[float]:
    """P(|Z_i| >= c_i for some i <= k), k = 1..K, for the look statistics of a Brownian motion in the information:
    ``Z`` jointly normal, corr(Z_i, Z_j) = sqrt(t_i / t_j) for t_i <= t_j; scipy's multivariate normal CDF."""
    t = np.asarray(fractions)
    c = np.asarray(bounds)
    corr = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    out = []
    for k in range(1, len(t) + 1):
        mvn = sps.multivariate_normal(mean=np.zeros(k), cov=corr[:k, :k], maxpts=100_000 * k, abseps=1e-10,
                                      releps=1e-10, seed=0)  # seeded: Genz's lattice is randomised
        out.append(1 - float(mvn.cdf(c[:k], lower_limit=-c[:k])))
    return out


@pytest.mark.parametrize("spending", sequential.SPENDING)
def test_the_boundaries_spend_alpha_exactly_by_the_multivariate_normal(spending):
    """Unequal looks (0.2, 0.55, 1.0) at alpha 0.05: the probability of having crossed by look k, from the joint normal
    law of the look statistics, is the spent alpha at t_k to 3e-7. Genz's error here is below 7e-8 over seeds 0-4
    (the module's integration agrees with a 10x longer Genz run to 2e-9); a wrong Simpson weight moves it by 7e-7 or
    more."""
    t = (0.2, 0.55, 1.0)
    c = boundaries(t, 0.05, spending)
    assert _crossed_by_each_look(t, c) == pytest.approx(list(spent(np.array(t), 0.05, spending)), abs=3e-7)
    assert boundaries(t, 0.05) == boundaries(t, 0.05, "pocock")  # the default


def test_a_look_that_spends_nothing_has_no_finite_boundary():
    """O'Brien-Fleming type at t = 1e-4 and 2e-4 spends exactly 0 in double precision (2 Phi(-196) underflows): those
    looks get ``MAX_BOUNDARY``, and the last look, with nearly all the information, the fixed-sample quantile
    z_{alpha/2} (scipy), since crossing earlier was impossible."""
    assert spent(np.array([1e-4, 2e-4]), 0.05, "obf").tolist() == [0.0, 0.0]
    c = boundaries((1e-4, 2e-4, 1.0), 0.05, "obf")
    assert c[:2] == (sequential.MAX_BOUNDARY, sequential.MAX_BOUNDARY)
    assert c[2] == pytest.approx(sps.norm.isf(0.025), abs=1e-6)


@pytest.mark.parametrize("fractions", [(), (0.0, 1.0), (-0.5, 1.0), (0.5, 0.5, 1.0), (0.4, 0.3), (0.5, 1.1)])
def test_fractions_that_do_not_increase_within_zero_to_one_are_refused(fractions):
    with pytest.raises(ValueError, match="information fractions must increase within"):
        boundaries(fractions, 0.05)


def test_a_last_fraction_a_rounding_error_above_one_is_accepted():
    """``n / max_rounds`` can land a hair above 1 in floating point; 1 + 1e-13 is still the last look."""
    assert boundaries((0.5, 1 + 1e-13), 0.05) == pytest.approx(boundaries((0.5, 1.0), 0.05), abs=1e-9)


# --- the design -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [dict(alpha=0.0), dict(alpha=1.0), dict(alpha=1.5), dict(alpha=-0.01)])
def test_an_alpha_outside_zero_to_one_is_refused(kwargs):
    with pytest.raises(ValueError, match=_exactly("alpha must be in (0, 1) and spending one of pocock, obf")):
        Design(**kwargs)


def test_an_unknown_spending_is_refused_with_a_valid_alpha():
    with pytest.raises(ValueError, match=_exactly("alpha must be in (0, 1) and spending one of pocock, obf")):
        Design(alpha=0.01, spending="haybittle")


@pytest.mark.parametrize("kwargs", [dict(first_look=2), dict(first_look=11, max_rounds=10), dict(look_every=0),
                                    dict(look_every=-5)])
def test_looks_outside_the_rounds_are_refused(kwargs):
    with pytest.raises(ValueError, match=_exactly("need 3 <= first_look <= max_rounds and look_every >= 1")):
        Design(**kwargs)


@pytest.mark.parametrize("precision", [1.0, 1.5, -0.01])
def test_a_precision_outside_zero_to_one_is_refused(precision):
    with pytest.raises(ValueError, match=_exactly(f"precision must be a fraction in [0, 1), got {precision}")):
        Design(precision=precision)


def test_the_edges_of_the_valid_designs_are_accepted():
    """The smallest first look (3), a first look that is the last (one look), a look every round, precision 0 (never
    stop on it) and just under 1, alpha just inside (0, 1): each is a design."""
    assert Design(first_look=3, max_rounds=3).looks == (3,)
    assert Design(first_look=3, max_rounds=6, look_every=1).looks == (3, 4, 5, 6)
    assert Design(first_look=10, max_rounds=10).looks == (10,)
    for kwargs in (dict(precision=0.0), dict(precision=0.99), dict(alpha=1e-6), dict(alpha=0.999),
                   dict(spending="obf")):
        Design(**kwargs)


def test_the_looks_by_hand():
    """From ``first_look`` every ``look_every`` rounds, and always the last round."""
    assert Design(first_look=10, look_every=5, max_rounds=23).looks == (10, 15, 20, 23)
    assert Design(first_look=10, look_every=5, max_rounds=20).looks == (10, 15, 20)
    d = Design(first_look=10, look_every=5, max_rounds=20)
    assert [n for n in range(25) if d.is_look(n)] == [10, 15, 20]


def test_each_look_s_boundary_is_the_boundary_at_its_information_fraction():
    """Looks after 10, 15 and 20 of 20 rounds: information fractions 0.5, 0.75, 1 (by hand). The boundaries themselves
    are checked against the multivariate normal above; each look takes its own, by its place."""
    for spending, alpha in (("pocock", 0.01), ("obf", 0.05)):
        d = Design(alpha=alpha, first_look=10, look_every=5, max_rounds=20, spending=spending)
        want = boundaries((0.5, 0.75, 1.0), alpha, spending)
        assert len(set(want)) == 3  # the looks' boundaries differ, so the wrong look's would be seen
        assert [d.z_boundary(n) for n in (10, 15, 20)] == list(want)


def test_a_round_that_is_not_a_look_is_refused_naming_the_looks():
    with pytest.raises(ValueError, match=_exactly("16 rounds is not a look of this design (10, (15,)..)")):
        Design(first_look=10, look_every=5, max_rounds=30).z_boundary(16)


# --- the repeated confidence interval ------------------------------------------------------------------------------

def _paired(n: int, seed: int, shift: float = 0.05, sd: float = 0.04) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = 1e-3 * np.exp(0.2 * rng.standard_normal(n))  # A's blocks drift; B follows each A
    return a, a * np.exp(shift + sd * rng.standard_normal(n))


def test_one_look_is_the_textbook_t_interval_of_the_mean_log_ratio():
    """A single look spends all of alpha at once: the repeated interval is the ``1 - alpha`` Student-t interval of the
    mean of log(B/A) on n - 1 degrees of freedom (scipy's ttest_1samp), exponentiated."""
    n, alpha = 12, 0.01
    a, b = _paired(n, 1)
    d = np.log(b / a)
    i = Design(alpha=alpha, first_look=n, max_rounds=n).interval(a, b)
    low, high = _t_interval(d, 1 - alpha)
    assert (i.low, i.high) == pytest.approx((low, high), rel=1e-10)
    assert i.ratio == pytest.approx(sps.gmean(b / a), rel=1e-12)
    assert i.rounds == n
    assert i.critical == pytest.approx(sps.t.ppf(1 - alpha / 2, n - 1), rel=1e-10)
    assert i.half_width == pytest.approx(math.log(high / i.ratio), rel=1e-10)
    assert isinstance(i.ratio, float) and isinstance(i.low, float) and isinstance(i.half_width, float)


def test_a_later_look_is_the_t_interval_at_the_level_its_boundary_leaves():
    """At look k the normal boundary c_k leaves two-sided ``2 Phi(-c_k)`` (scipy); the repeated interval is the t
    interval at that level (wider than the fixed 99% one: the price of looking several times)."""
    design = Design(alpha=0.01, first_look=10, look_every=5, max_rounds=20)
    a, b = _paired(15, 2)
    c = design.z_boundary(15)
    level = 1 - 2 * sps.norm.sf(c)
    i = design.interval(list(a), list(b))
    assert (i.low, i.high) == pytest.approx(_t_interval(np.log(b / a), level), rel=1e-10)
    assert i.high / i.low > (lambda lo, hi: hi / lo)(*_t_interval(np.log(b / a), 0.99))


def test_a_stack_of_sessions_gives_each_row_its_own_interval():
    """``sessions x n``: each row's interval is that row's t interval (scipy, one row at a time)."""
    n = 10
    design = Design(alpha=0.05, first_look=n, max_rounds=n)
    rows = [_paired(n, seed, shift=0.02 * seed, sd=0.01 * (seed + 1)) for seed in range(3)]
    a = np.stack([r[0] for r in rows])
    b = np.stack([r[1] for r in rows])
    i = design.interval(a, b)
    assert i.ratio.shape == i.low.shape == i.high.shape == i.half_width.shape == (3,)
    for row, (ra, rb) in enumerate(rows):
        low, high = _t_interval(np.log(rb / ra), 0.95)
        assert (i.low[row], i.high[row]) == pytest.approx((low, high), rel=1e-10)
        assert i.ratio[row] == pytest.approx(sps.gmean(rb / ra), rel=1e-12)
        assert i.half_width[row] == pytest.approx(math.log(high / i.ratio[row]), rel=1e-10)


def test_a_look_without_a_boundary_gives_the_whole_half_line():
    """O'Brien-Fleming type at alpha 0.01 spends nothing by round 3 of 1000 (2 Phi(-z_{0.005} / sqrt(0.003)) underflows
    to 0): no finite critical value, the interval is (0, inf) and never precise."""
    design = Design(alpha=0.01, spending="obf", first_look=3, look_every=997, max_rounds=1000)
    assert design.z_boundary(3) == sequential.MAX_BOUNDARY
    i = design.interval([1.0, 1.0, 1.0], [1.1, 1.2, 1.15])
    assert i.critical == math.inf and i.low == 0.0 and i.high == math.inf
    assert not design.precise(i)


# --- the precision rule ---------------------------------------------------------------------------------------

def _interval(half_width) -> Interval:
    return Interval(10, 1.0, np.exp(-half_width), np.exp(half_width), 2.0, half_width)


def test_precise_means_a_half_width_at_most_log_one_plus_precision():
    """Each end within 25% of the ratio: half-width on the log scale at most log(1.25), the boundary included (25%: 1.25
    is exact in binary, so log(1.25) is the one double at the boundary)."""
    design = Design(precision=0.25)
    edge = math.log(1.25)
    assert design.precise(_interval(edge))
    assert design.precise(_interval(0.0))
    assert not design.precise(_interval(math.nextafter(edge, 1.0)))
    assert not design.precise(_interval(0.5))
    assert design.precise(_interval(np.array([0.01, 0.5, edge]))).tolist() == [True, False, True]


def test_precision_zero_never_stops_even_on_a_zero_width_interval():
    """``precision=0``: never stop on precision, even when every round gave the same ratio (sd 0, width 0)."""
    design = Design(precision=0.0, first_look=10, max_rounds=10)
    i = design.interval(np.full(10, 2e-3), np.full(10, 2e-3))
    assert i.half_width == 0.0 and i.ratio == 1.0
    assert not design.precise(i)
    assert not Design(precision=0.0).precise(_interval(np.array([0.0, 0.01]))).any()
