"""``mlpbench history evaluate``: detection rate, delay and false alarms of ``history check`` on simulated series.

Each simulated series has ``LENGTH`` commits of value ``1 + noise * N(0, 1)``; a step series is
multiplied by ``1 + step`` from commit ``STEP_AT`` on. ``history check --last N`` is run as CI
would run it: after every commit from ``FIRST_CHECK`` on, on the history up to that commit.

- a step series is **detected** when a check flags a change point within ``TOLERANCE`` commits of
  the true one; the **delay** is the number of commits after the step at that first check (0: the
  check of the first slower commit flagged it);
- a series without a step has a **false alarm** when any of its checks flags anything; the rate
  per check is given too. Flags far from the true step in a step series are counted apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .detect import PENALTY_PER_LOG_N, check_series

LENGTH = 60
STEP_AT = 30
FIRST_CHECK = 10  # a check needs some history before it
TOLERANCE = 2  # commits between the flagged and the true change point
DEFAULT_SERIES = 100
DEFAULT_LAST = 10


@dataclass(frozen=True)
class Scenario:
    name: str
    noise_rel: float  # one point's standard deviation, as a fraction of the level
    step_rel: float  # 0: no step


SCENARIOS = (
    Scenario("+3% at commit 30, 5% noise (wall-clock)", 0.05, 0.03),
    Scenario("+1% at commit 30, 0.05% noise (instruction counts)", 0.0005, 0.01),
    Scenario("+10% at commit 30, 5% noise", 0.05, 0.10),
    Scenario("no step, 5% noise", 0.05, 0.0),
    Scenario("no step, 0.05% noise", 0.0005, 0.0),
)


@dataclass(frozen=True)
class Outcome:
    scenario: Scenario
    series: int
    detected: int  # step series: detected within TOLERANCE of the step
    delays: tuple[int, ...]  # of the detected ones, in commits after the step
    series_with_alarm: int  # no-step series with any flag; step series with a flag away from the step
    alarms: int  # flagged checks
    checks: int

    @property
    def detection_rate(self) -> float:
        return self.detected / self.series if self.scenario.step_rel else math.nan

    @property
    def false_alarm_rate(self) -> float:
        return self.series_with_alarm / self.series


class _Key:
    metric = "median_s"  # a measured metric: the minimum history applies


class _Measured:
    key = _Key()

    def __init__(self, values):
        self.values = tuple(values)


def simulate(scenario: Scenario, rng: np.random.Generator) -> np.ndarray:
    x = 1.0 + scenario.noise_rel * rng.standard_normal(LENGTH)
    if scenario.step_rel:
        x[STEP_AT:] *= 1.0 + scenario.step_rel
    return x


def run_scenario(scenario: Scenario, series: int = DEFAULT_SERIES, last: int = DEFAULT_LAST,
                 seed: int = 0, penalty_per_log_n: float = PENALTY_PER_LOG_N) -> Outcome:
    rng = np.random.default_rng(seed)
    detected, delays, with_alarm, alarms, checks = 0, [], 0, 0, 0
    for _ in range(series):
        x = simulate(scenario, rng)
        found_at, stray = None, False
        for t in range(FIRST_CHECK, LENGTH):
            flagged = check_series(_Measured(x[:t + 1]), last, penalty_per_log_n).flagged  # as `check` decides
            checks += 1
            alarms += bool(flagged)
            near = [c for c in flagged if scenario.step_rel and abs(c.index - STEP_AT) <= TOLERANCE]
            stray |= len(flagged) > len(near)
            if near and found_at is None:
                found_at = t
        detected += found_at is not None
        if found_at is not None:
            delays.append(found_at - STEP_AT)
        with_alarm += stray
    return Outcome(scenario, series, detected, tuple(delays), with_alarm, alarms, checks)


def render(outcomes: list[Outcome], last: int, penalty_per_log_n: float) -> str:
    lines = [f"| series (x{outcomes[0].series}, {LENGTH} commits, `check --last {last}` after every commit "
             f"from {FIRST_CHECK}, penalty {penalty_per_log_n:g} log n) | detected | delay, commits (median, max) | series with a false alarm | "
             f"flagged checks |", "|---|---:|---:|---:|---:|"]
    for o in outcomes:
        detected = f"{o.detected}/{o.series} ({o.detection_rate:.0%})" if o.scenario.step_rel else "-"
        delay = f"{int(np.median(o.delays))}, {max(o.delays)}" if o.delays else "-"
        lines.append(f"| {o.scenario.name} | {detected} | {delay} | {o.series_with_alarm}/{o.series} | "
                     f"{o.alarms}/{o.checks} |")
    return "\n".join(lines) + "\n"
