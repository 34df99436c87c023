"""Adaptive rounds whose error rates hold however often the data are looked at: a group-sequential design.

Interleaved A/B timing (``compare --confirm``, ``check --against``) adds rounds until the interval of B/A is
narrower than a precision (``--precision``, 5%) or a time budget ends. Looking at the interval after every few
rounds and stopping when it suits is the textbook way to inflate the false-alarm rate: a fixed 99% interval
checked at 20 looks excludes 1 under the null far more often than 1% of the time (the test of this module
measures it). The procedure here keeps it at alpha:

* **Repeated confidence intervals** (Jennison and Turnbull, *Group Sequential Methods*, 2000, ch. 9) on the
  paired log-ratio: round ``r``'s A and B blocks ran back to back, ``d_r = log(B_r / A_r)``; at a look after
  ``n`` rounds the interval is ``mean(d) +- c_k * sd(d) / sqrt(n)``. With boundaries ``c_k`` from an
  alpha-spending function, the intervals of all looks together cover the true ratio with probability
  ``1 - alpha``, whatever rule decides when to stop: so stopping on precision, on the budget, or on the verdict
  itself keeps a verdict's false-alarm rate at most alpha.
* **Lan-DeMets alpha spending** (Lan and DeMets, Biometrika 1983): by information fraction ``t = n / max_rounds``
  at most ``alpha(t)`` is spent. ``pocock``: ``alpha * ln(1 + (e - 1) t)`` (Pocock-type: nearly flat boundaries,
  suited to stopping early; the default); ``obf``: ``2 - 2 Phi(z_{alpha/2} / sqrt t)`` (O'Brien-Fleming-type:
  spends almost nothing early).
* The boundaries are exact for a normal statistic with independent increments, computed by recursive numerical
  integration (Armitage, McPherson and Rowe 1969; Jennison and Turnbull ch. 19), as gsDesign and ldbounds do;
  with the variance estimated, each ``c_k`` becomes the Student-t quantile of the same tail probability on
  ``n - 1`` degrees of freedom.

No torch here: the gate's coordinator and ``compare`` import it without starting torch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize
from scipy import stats as sps

SPENDING = ("pocock", "obf")
GRID_POINTS = 201  # odd: Simpson's rule on each look's continuation region (801 moves a boundary by < 1e-8)
MAX_BOUNDARY = 40.0  # a look that spends nothing has no finite boundary; this stands for infinity


def spent(t: np.ndarray | float, alpha: float, spending: str = "pocock") -> np.ndarray:
    """Two-sided alpha spent by information fraction ``t`` (Lan-DeMets spending functions)."""
    t = np.clip(np.asarray(t, dtype=float), 0.0, 1.0)
    if spending == "pocock":
        return alpha * np.log1p((math.e - 1) * t)
    if spending == "obf":
        with np.errstate(divide="ignore"):
            return np.where(t > 0, 2 * sps.norm.sf(sps.norm.isf(alpha / 2) / np.sqrt(np.maximum(t, 1e-300))), 0.0)
    raise ValueError(f"unknown spending function {spending!r}; valid: {', '.join(SPENDING)}")


def _simpson(points: int, width: float) -> np.ndarray:
    w = np.ones(points)
    w[1:-1:2], w[2:-1:2] = 4.0, 2.0
    return w * width / (points - 1) / 3


@functools.lru_cache(maxsize=64)
def boundaries(fractions: tuple[float, ...], alpha: float, spending: str = "pocock") -> tuple[float, ...]:
    """Symmetric two-sided z boundaries ``c_1..c_K`` at increasing information ``fractions`` in (0, 1]: under the
    null, P(|Z_k| >= c_k at the first such look k <= j) equals ``spent(t_j)`` for each j (Z_k the standardised
    statistic of the first k looks' data, a Brownian motion in the information)."""
    t = np.asarray(fractions, dtype=float)
    if not len(t) or np.any(np.diff(t) <= 0) or t[0] <= 0 or t[-1] > 1 + 1e-12:
        raise ValueError(f"information fractions must increase within (0, 1], got {fractions}")
    increments = np.diff(np.concatenate([[0.0], spent(t, alpha, spending)]))
    bounds = [float(sps.norm.isf(increments[0] / 2)) if increments[0] > 0 else MAX_BOUNDARY]
    # density of the score S_1 = Z_1 sqrt(t_1) on its continuation region, on a grid
    edge = bounds[0] * math.sqrt(t[0])
    grid = np.linspace(-edge, edge, GRID_POINTS)
    mass = sps.norm.pdf(grid, scale=math.sqrt(t[0])) * _simpson(GRID_POINTS, 2 * edge)
    for k in range(1, len(t)):
        sd = math.sqrt(t[k] - t[k - 1])
        root_t = math.sqrt(t[k])

        def crossing(c: float) -> float:
            b = c * root_t
            return float(np.sum(mass * (sps.norm.sf((b - grid) / sd) + sps.norm.cdf((-b - grid) / sd))))

        if increments[k] <= 0 or crossing(MAX_BOUNDARY) >= increments[k]:
            c = MAX_BOUNDARY
        else:
            c = float(optimize.brentq(lambda c: crossing(c) - increments[k], 1e-9, MAX_BOUNDARY, xtol=1e-10))
        bounds.append(c)
        edge = c * root_t
        new_grid = np.linspace(-edge, edge, GRID_POINTS)
        density = sps.norm.pdf((new_grid[:, None] - grid[None, :]) / sd) @ mass / sd
        grid, mass = new_grid, density * _simpson(GRID_POINTS, 2 * edge)
    return tuple(bounds)


@dataclass(frozen=True)
class Design:
    """When to look and how much error to spend: a look after ``first_look`` rounds and every ``look_every`` after,
    up to ``max_rounds``; two-sided ``alpha`` over all looks together; stop once the interval's half-width is at
    most ``precision`` of the ratio (0: never on precision)."""

    alpha: float = 0.01
    max_rounds: int = 200
    first_look: int = 10
    look_every: int = 5
    precision: float = 0.05
    spending: str = "pocock"

    def __post_init__(self) -> None:
        if not (0 < self.alpha < 1) or self.spending not in SPENDING:
            raise ValueError(f"alpha must be in (0, 1) and spending one of {', '.join(SPENDING)}")
        if not (3 <= self.first_look <= self.max_rounds) or self.look_every < 1:
            raise ValueError("need 3 <= first_look <= max_rounds and look_every >= 1")
        if not (0 <= self.precision < 1):
            raise ValueError(f"precision must be a fraction in [0, 1), got {self.precision}")

    @property
    def looks(self) -> tuple[int, ...]:
        """The rounds after which the data are looked at (the last is ``max_rounds``)."""
        rounds = list(range(self.first_look, self.max_rounds + 1, self.look_every))
        return tuple(rounds if rounds[-1] == self.max_rounds else [*rounds, self.max_rounds])

    def is_look(self, rounds: int) -> bool:
        return rounds in self.looks

    def z_boundary(self, rounds: int) -> float:
        """The normal boundary of the look after ``rounds`` rounds (a look of ``looks``)."""
        looks = self.looks
        if rounds not in looks:
            raise ValueError(f"{rounds} rounds is not a look of this design ({looks[0]}, {looks[1:2]}..)")
        fractions = tuple(n / self.max_rounds for n in looks)
        return boundaries(fractions, self.alpha, self.spending)[looks.index(rounds)]

    def interval(self, a_s: Sequence[float] | np.ndarray, b_s: Sequence[float] | np.ndarray) -> "Interval":
        """The repeated confidence interval of B/A after ``n`` paired rounds (a look), the rounds along the last
        axis: one case's samples give floats; a stack of sessions (``sessions x n``) gives an array each."""
        d = np.log(np.asarray(b_s, dtype=float)) - np.log(np.asarray(a_s, dtype=float))
        n = d.shape[-1]
        z = self.z_boundary(n)
        crit = float(sps.t.isf(sps.norm.sf(z), n - 1)) if z < MAX_BOUNDARY else math.inf
        centre, half = np.mean(d, axis=-1), crit * np.std(d, axis=-1, ddof=1) / math.sqrt(n)
        if d.ndim == 1:
            centre, half = float(centre), float(half)
        return Interval(n, np.exp(centre), np.exp(centre - half), np.exp(centre + half), crit, half)

    def precise(self, interval: "Interval"):
        """The interval reaches the precision: each end within ``precision`` of the ratio (an array for a stack)."""
        return (self.precision > 0) & (interval.half_width <= math.log1p(self.precision))


@dataclass(frozen=True)
class Interval:
    rounds: int
    ratio: float | np.ndarray  # exp(mean log(B/A)): the geometric mean of the paired ratios
    low: float | np.ndarray
    high: float | np.ndarray
    critical: float  # the t boundary used at this look
    half_width: float | np.ndarray  # half the interval's width on the log scale: log(high / ratio)
