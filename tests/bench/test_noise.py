"""The between-run noise model (bench.noise) against scipy, and on states whose truth is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from bench import noise


def test_the_run_level_factor_and_the_case_noise_are_scipys_median_and_normal_mad() -> None:
    rng = np.random.default_rng(0)
    log_ratios = 0.3 + 0.05 * rng.standard_normal(30)
    f = noise.common_factor(log_ratios)
    assert f.log_factor == pytest.approx(float(np.median(log_ratios)), rel=1e-12)
    assert f.spread == pytest.approx(float(sps.median_abs_deviation(log_ratios, scale="normal")), rel=1e-3)
    assert f.factor == pytest.approx(math.exp(0.3), rel=0.05) and f.estimated


def test_too_few_cases_take_the_prior_noise() -> None:
    f = noise.common_factor([0.0, 0.01, -0.01])
    assert not f.estimated and f.spread == noise.CASE_NOISE_PRIOR


def test_every_case_slower_together_is_the_machine_one_case_beyond_it_is_the_code() -> None:
    """1.55x in every case (issue 41's A/A pair) is the run-level factor; one case 1.3x beyond it is slower."""
    rng = np.random.default_rng(1)
    ratios = 1.55 * np.exp(0.02 * rng.standard_normal(12))
    ratios[3] *= 1.3
    f = noise.common_factor(np.log(ratios))
    verdicts = [noise.case_verdict(r, r * 0.98, r * 1.02, f) for r in ratios]
    assert [v.verdict for v in verdicts].count(noise.Verdict.SLOWER) == 1
    assert verdicts[3].verdict is noise.Verdict.SLOWER and verdicts[3].relative == pytest.approx(1.3, rel=0.05)
    assert all(v.verdict is noise.Verdict.INCONCLUSIVE for i, v in enumerate(verdicts) if i != 3)
    overall = noise.overall_verdict(verdicts, f)
    assert overall.verdict is noise.Verdict.SLOWER and "1 of 12 cases slower" in overall.reason


def test_the_false_alarm_rate_of_the_case_rule_on_normal_noise_is_below_scipys_tail() -> None:
    """A/A with normal case noise: the rule's per-case rate stays under 2 x P(|Z| >= Z_VERDICT) + sampling slack."""
    rng = np.random.default_rng(2)
    alarms = total = 0
    for _ in range(400):
        r = 0.05 * rng.standard_normal(12)
        f = noise.common_factor(r)
        alarms += sum(noise.case_verdict(math.exp(x), math.exp(x) * 0.99, math.exp(x) * 1.01, f).verdict
                      is not noise.Verdict.INCONCLUSIVE for x in r)
        total += len(r)
    assert alarms / total <= 0.01
    assert 2 * sps.norm.sf(noise.Z_VERDICT) < 0.001  # the nominal rate, if the noise were normal and known


def _meta(load: float, tflops: float, cpu: str = "AMD EPYC") -> dict:
    return {"env": {"cpu_model": cpu, "torch": "2.14.1", "torch_threads": 2, "cpu_count": 2},
            "load_average_1m_start": load, "load_average_1m_end": load,
            "ceilings": {"cpu/fp32/t1": {"measured_tflops": tflops,
                                         "pass_tflops": {"start": tflops, "end": tflops * 0.9}}}}


def test_machine_states_that_differ_say_by_how_much_and_block_the_verdicts() -> None:
    a, b = noise.machine_state(_meta(0.4, 0.100)), noise.machine_state(_meta(3.7, 0.052))
    diffs = noise.state_differences(a, b)
    texts = [d.text for d in diffs if d.decisive]
    assert texts == ["load 0.4 vs 3.7 (+3.3; tolerance 1.0)", "matmul ceiling cpu/fp32/t1 100 vs 52 GFLOP/s (B/A 0.52)"]
    f = noise.common_factor(np.log([1.6] * 12))
    v = noise.case_verdict(3.0, 2.9, 3.1, f, [d for d in diffs if d.decisive])
    assert v.verdict is noise.Verdict.INCONCLUSIVE and v.reason.startswith("machine states differ: load 0.4 vs 3.7")
    assert noise.state_differences(a, noise.machine_state(_meta(0.6, 0.098))) == []
    other = noise.state_differences(a, noise.machine_state(_meta(0.4, 0.100, cpu="Intel Xeon")))
    assert [d.text for d in other] == ["cpu_model AMD EPYC vs Intel Xeon"] and other[0].decisive


def test_the_run_record_keeps_the_drift_during_the_run() -> None:
    record = noise.run_record(_meta(3.0, 0.1))
    assert record["ceiling_drift"] == {"cpu/fp32/t1": pytest.approx(0.9)}
    assert record["ceiling_drift_max_rel"] == pytest.approx(1 / 0.9 - 1) and record["busy"] is True
