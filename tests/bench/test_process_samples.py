"""Sampling across processes (issue 49, pyperf's method): which cases, the spread recorded, and its use by compare's
noise model. References: numpy/pandas on the samples the run wrote, and the noise model's formula by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.analysis import noise
from bench.case.cases import Case
from bench.engine import process_samples
from bench.engine.process_samples import processes_for, spread
from bench.instruments.timing import TimingConfig


def test_only_compiled_cases_are_sampled_across_processes_and_quick_asks_for_three():
    from bench.model.sweep_file import load_preset

    eager, compiled = Case(width=8, threads=1), Case(width=8, threads=1, compile="default")
    assert processes_for(eager, TimingConfig()) == processes_for(compiled, TimingConfig()) == 1
    three = TimingConfig(processes=3)
    assert (processes_for(eager, three), processes_for(compiled, three)) == (1, 3)
    assert load_preset("quick").processes == load_preset("full").processes == 3
    assert load_preset("smoke").processes is None  # make test's smoke run compiles its case once
    with pytest.raises(ValueError, match="processes"):
        TimingConfig(processes=0)


def test_the_spread_is_the_standard_deviation_of_the_log_medians():
    """By hand: medians 1, 2 and 4 have logs 0, ln 2, 2 ln 2, whose sample standard deviation is ln 2: a factor 2,
    i.e. +100%."""
    assert spread([[1.0, 0.9, 1.1], [2.0, 2.0, 5.0], [4.0, 3.0, 4.5]]) == pytest.approx(1.0)
    assert math.isnan(spread([[1.0, 2.0]]))


def test_compare_s_noise_model_adds_the_spread_between_processes():
    """The same move is slower with no spread between processes and inconclusive with a large one, whose share
    the reason names. By hand: log(1.3) = 0.262; 3 processes each side at 40% spread add
    sqrt(2 * log(1.4)^2 / 3) = 0.275 to the noise, so |z| falls below Z_VERDICT."""
    factor = noise.common_factor([0.0] * 12)  # twelve unmoved cases: factor 1, the case noise its floor
    se = noise.process_se(0.4, 3, 0.4, 3)
    assert se == pytest.approx(math.sqrt(2 * math.log(1.4) ** 2 / 3))
    assert noise.process_se(0.4, 1, math.nan, math.nan) == 0.0  # one process: its spread was not measured
    sure = noise.case_verdict(1.3, 1.28, 1.32, factor)
    unsure = noise.case_verdict(1.3, 1.28, 1.32, factor, between_processes=se)
    assert sure.verdict is noise.Verdict.SLOWER
    assert unsure.verdict is noise.Verdict.INCONCLUSIVE and "between processes" in unsure.reason


@pytest.mark.e2e  # one child process imports torch (~10 s on the loaded 2-core box)
def test_a_case_measured_in_two_processes_records_each_sample_s_process_and_their_spread(tmp_path, monkeypatch):
    """An eager case stands in for a compiled one (``sampled_across`` patched): no compile in the test."""
    from bench.engine.runner import run_sweep

    monkeypatch.setattr(process_samples, "sampled_across", lambda case: True)
    from bench.runs import load_run

    config = TimingConfig(repeats=4, warmup_s=0.0, min_block_s=0.002, processes=2)
    run_sweep([Case(width=16, depth=1, batch=4, threads=1)], tmp_path / "run", config, progress=False, limits=False)
    run = load_run(tmp_path / "run")
    step = run.samples[run.samples["phase"] == "step"]
    assert step.groupby("process").size().to_dict() == {0: 4, 1: 4}
    row = run.summary[run.summary["phase"] == "step"].iloc[0]
    medians = step.groupby("process")["seconds"].median().to_numpy()
    assert row["processes"] == 2
    assert row["between_process_cv"] == pytest.approx(math.expm1(np.std(np.log(medians), ddof=1)))
    assert row["median_s"] == pytest.approx(float(step["seconds"].median()))  # every process's samples pooled
