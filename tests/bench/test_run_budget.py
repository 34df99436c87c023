"""``mlpbench run --max-run-s``: the run starts a case only while its time left covers the case's prediction.

References: ``time.sleep`` (a step that sleeps a known time) and the wall clock, never the budget's own numbers.
"""

from __future__ import annotations

import dataclasses
import time

import pytest
import torch

from bench.engine import budget, runner
from bench import runs
from bench.instruments import timing
from bench.case.cases import Case
from bench.limits.ceiling import Ceiling
from bench.cli import main as cli_main
from bench.instruments.timing import Measurement, TimingConfig

FAST = TimingConfig(repeats=5, warmup_s=0.05, min_block_s=0.005)
SLEEP_S = 0.5
SLOW_STEP_S = 0.4


@pytest.fixture(autouse=True)
def _warm_process():
    """The first optimiser of a process imports torch._dynamo (seconds): not a case's time."""
    torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)


def _instant_ceiling(device, dtype, sizes=None, budget_s=0.0):
    return Ceiling(device, dtype, "fake cpu", 0.1, 256, None, None, torch.get_num_threads(), (256,), budget_s, 0.0)


def _steps(out):
    summary = runs.load_run(out).summary
    return summary[summary["phase"] == "step"].set_index("case_id")


def test_cases_whose_prediction_exceeds_the_time_left_are_not_started(tmp_path, monkeypatch):
    monkeypatch.setattr("bench.limits.ceiling.measure_ceiling", _instant_ceiling)
    monkeypatch.setattr(runner, "prior_case_s", lambda case, rate, config: budget.CaseEstimate(SLEEP_S, 0.0, SLEEP_S))
    started = []

    def sleepy(case, config, on_predict=None):
        started.append(case)
        time.sleep(SLEEP_S)
        return Measurement(case, status="skipped", reason="fake: nothing measured", measure_s=SLEEP_S)

    cases = [Case(width=8 * (i + 1), depth=1, batch=4) for i in range(5)]
    # 1.3 s: starts at t=0 (1.3 s left) and t~0.5 (0.8 s left); at t~1.0 only 0.3 s < 0.5 s is left
    runner.run_sweep(cases, tmp_path / "run", FAST, progress=False, measure_fn=sleepy, max_run_s=1.3)
    assert started == cases[:2]
    steps = _steps(tmp_path / "run")
    for case in cases[2:]:
        reason = steps.loc[case.case_id, "reason"]
        assert reason.startswith("run budget: predicted 0.5 s for the case >") and "--max-run-s 1.3" in reason
        assert f"mlpbench run {case.cli_flags()}" in reason
    assert runs.load_run(tmp_path / "run").meta["max_run_s"] == 1.3


def test_a_case_predicted_after_its_first_step_beyond_the_time_left_is_skipped_and_the_next_measured(
        tmp_path, monkeypatch):
    slow, fast = Case(width=48, depth=1, batch=4), Case(width=16, depth=1, batch=4)
    real_build = timing.build_step

    def build(case):
        step = real_build(case)
        if case == slow:  # a step of 0.4 s: >= 5 rounds x 2 blocks x 0.4 s = 4 s of measuring
            inner = step.step
            step.step = lambda x, y: (time.sleep(SLOW_STEP_S), inner(x, y))
        return step

    monkeypatch.setattr(timing, "build_step", build)
    monkeypatch.setattr("bench.limits.ceiling.measure_ceiling", _instant_ceiling)
    start = time.perf_counter()
    # 3.5 s: the slow case's first two steps (0.8 s) leave room for the fast one, not for its 4 s of measuring
    runner.run_sweep([slow, fast], tmp_path / "run", FAST, progress=False, max_run_s=3.5)
    steps = _steps(tmp_path / "run")
    assert steps.loc[slow.case_id, "status"] == "skipped"
    assert steps.loc[slow.case_id, "reason"].startswith("run budget: predicted")
    assert "s of measuring >" in steps.loc[slow.case_id, "reason"]
    assert steps.loc[slow.case_id, "predicted_measure_s"] >= FAST.repeats * 2 * SLOW_STEP_S
    assert steps.loc[fast.case_id, "status"] == "ok", steps.loc[fast.case_id, "reason"]
    assert time.perf_counter() - start < FAST.repeats * 2 * SLOW_STEP_S  # the slow case was not measured


def test_the_prior_grows_with_flops_and_charges_compiled_cases_their_compile():
    small, large = Case(width=256, depth=2, batch=64), Case(width=2048, depth=2, batch=64)
    assert budget.step_matmul_flops(large) == 64 * budget.step_matmul_flops(small)  # FLOPs go as width^2
    rate = 1.0  # TFLOP/s
    a, b = budget.prior_case_s(small, rate), budget.prior_case_s(large, rate)
    assert b.step_s > a.step_s
    compiled = budget.prior_case_s(small.with_(compile="default"), rate)
    assert compiled.total_s == pytest.approx(a.total_s + budget.COMPILE_ALLOWANCE_S["cpu"])


@pytest.mark.parametrize("value", ["0", "-3", "abc", "nan"])
def test_a_bad_run_budget_is_one_line_exit_2(tmp_path, capsys, value):
    out = tmp_path / "out"
    assert cli_main(["run", "--width", "8", "--max-run-s", value, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--max-run-s: {value!r} is not a positive number of seconds" in err and not out.exists()
