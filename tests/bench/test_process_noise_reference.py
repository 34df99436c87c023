"""The spread between processes in compare's noise model (issue 49, ``noise.process_se`` and ``case_verdict``'s
``between_processes``), against hand counts: the log ratio's variance is the sum of its independent parts."""

from __future__ import annotations

import math

import pytest

from bench.analysis import noise
from bench.analysis.verdict import Verdict

# A factor built by hand: 1.0 (log 0), one case's between-run spread 0.03, the factor's own error 0.01.
FACTOR = noise.CommonFactor(n_cases=12, log_factor=0.0, spread=0.03, se=0.01, estimated=True)


def test_process_se_pools_each_run_s_process_spread_by_hand():
    # each run: Var(log median of k processes) = log(1 + cv)^2 / k; the ratio's variance is the sum of both
    assert noise.process_se(0.1, 4, 0.2, 2) == pytest.approx(math.sqrt(math.log(1.1) ** 2 / 4 + math.log(1.2) ** 2 / 2))
    assert noise.process_se(0.1, 2, math.nan, math.nan) == pytest.approx(math.log(1.1) / math.sqrt(2))  # k = 2 counts
    assert noise.process_se(math.nan, math.nan, 0.3, 3) == pytest.approx(math.log(1.3) / math.sqrt(3))


@pytest.mark.parametrize("cv, k", [(0.2, 1), (0.0, 3), (-0.1, 3), (math.nan, 3), (0.2, math.nan), (None, 3),
                                   (0.2, None), (math.inf, 3), (0.2, math.inf)])
def test_a_run_whose_spread_was_not_measured_adds_nothing(cv, k):
    assert noise.process_se(cv, k, 0.1, 4) == pytest.approx(math.log(1.1) / 2)


def _sigma(ci_low: float, ci_high: float, between: float) -> float:
    within = (math.log(ci_high) - math.log(ci_low)) / (2 * 1.96)
    return math.sqrt(within ** 2 + 0.03 ** 2 + 0.01 ** 2 + between ** 2)


@pytest.mark.parametrize("between", [0.0, 0.05, 0.3])
def test_the_spread_between_processes_adds_to_the_case_s_variance(between):
    ratio, low, high = 1.2, 1.17, 1.23
    v = noise.case_verdict(ratio, low, high, FACTOR, between_processes=between)
    assert v.z == pytest.approx(math.log(1.2) / _sigma(low, high, between))
    assert v.relative == pytest.approx(1.2)


@pytest.mark.parametrize("between", [math.nan, math.inf, -math.inf])
def test_a_spread_that_is_not_a_number_counts_as_none(between):
    plain = noise.case_verdict(1.2, 1.17, 1.23, FACTOR)
    v = noise.case_verdict(1.2, 1.17, 1.23, FACTOR, between_processes=between)
    assert v.z == pytest.approx(plain.z) and v.verdict is plain.verdict is Verdict.SLOWER
    assert "between processes" not in v.reason


def test_a_large_spread_between_processes_turns_a_verdict_inconclusive_and_says_how_much():
    sure = noise.case_verdict(1.2, 1.17, 1.23, FACTOR)
    unsure = noise.case_verdict(1.2, 1.17, 1.23, FACTOR, between_processes=0.5)
    assert sure.verdict is Verdict.SLOWER  # z = log 1.2 / 0.0348 = 5.2 >= 3.5
    assert unsure.verdict is Verdict.INCONCLUSIVE  # z = log 1.2 / 0.502 = 0.36
    assert f"{math.expm1(0.5):.1%} of it between processes" in unsure.reason  # 64.9%
    assert "between processes" not in sure.reason
