"""bench.runner and the run record (bench.runs): a real smoke sweep through the CLI, failures as rows, resume, atomic writes.

One real smoke sweep (the `smoke` preset, one compiled case) runs once per session
through the CLI; the other tests use tiny eager cases with a short timing config.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from bench import runner
from bench import runs as run_record
from bench.cases import PRESETS, Case
from bench.cli import main as cli_main
from bench.timing import Phase, TimingConfig, measure

FAST = TimingConfig(repeats=5, warmup_s=0.05, min_block_s=0.005)

# Columns documented in the README ("Results") that every summary.csv carries.
DOCUMENTED_COLUMNS = [
    "network", "width", "depth", "batch", "activation", "device", "dtype", "compile", "optimizer", "loss",
    "threads", "case_id", "label", "phase", "status", "reason", "n", "median_s", "iqr_s", "min_s",
    "ci_low_s", "ci_high_s", "iqr_rel", "noisy", "iters_per_block", "samples_per_s", "matmul_flops", "tflops",
    "ceiling_tflops", "mfu", "mem_total_bytes", "peak_mem_bytes", "first_step_s", "compile_s",
    "compile_graphs", "graph_breaks", "recompiles", "phase_sum_gap", "optimizer_impl", "torch_threads",
]


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke") / "run"
    assert cli_main(["run", "--preset", "smoke", "--out", str(out), "--no-progress", "--no-show",
                     "--repeats", "5", "--warmup-s", "0.05"]) == 0
    return out


# --------------------------------------------------------------------------- the smoke sweep


def test_smoke_run_has_documented_files_and_columns(smoke_run):
    run = run_record.load_run(smoke_run)
    assert set(DOCUMENTED_COLUMNS) <= set(run.summary.columns)
    cases = {Case.from_row(r) for r in run.meta["cases"]}
    assert cases == set(PRESETS["smoke"].cases())
    assert set(run.summary["status"]) == {"ok"}
    assert set(run.summary["phase"]) == {p.value for p in Phase}
    assert len(run.summary) == len(cases) * len(Phase)
    # every raw sample is kept: n in the summary equals the rows in samples.csv
    counts = run.samples.groupby(["case_id", "phase"]).size()
    for _, row in run.summary.iterrows():
        assert counts[(row["case_id"], row["phase"])] == row["n"] >= 5
    assert run.meta["env"]["torch"] == torch.__version__
    assert "cpu/fp32" in run.meta["ceilings"] and run.meta["ceilings"]["cpu/fp32"]["measured_tflops"] > 0


def test_smoke_compiled_case_really_compiled(smoke_run):
    summary = run_record.load_run(smoke_run).summary
    step = summary[summary["phase"] == "step"]
    compiled = step[step["compile"] != "none"]
    assert len(compiled) == 1
    row = compiled.iloc[0]
    assert row["compile_graphs"] >= 2  # training graph + inference graph (grad mode is a guard)
    assert row["recompiles"] == 0 and row["graph_breaks"] == 0
    assert row["compile_s"] > 0 and row["compile_s"] < row["first_step_s"]
    eager = step[step["compile"] == "none"]
    assert eager["compile_s"].isna().all() and (eager["compile_graphs"] == 0).all()


def test_rows_round_trip_to_the_same_case(smoke_run):
    summary = run_record.load_run(smoke_run).summary
    for _, row in summary.iterrows():
        case = Case.from_row(row.to_dict())
        assert case.case_id == row["case_id"] and case.label == row["label"]


def test_resume_skips_measured_cases(smoke_run, tmp_path):
    copy = tmp_path / "resumed"
    copy.mkdir()
    for name in (run_record.SUMMARY_CSV, run_record.SAMPLES_CSV, run_record.META_JSON):
        (copy / name).write_bytes((smoke_run / name).read_bytes())
    run = run_record.load_run(copy)
    dropped = run.summary["case_id"].iloc[0]
    run_record.write_table(copy / run_record.SUMMARY_CSV, run.summary[run.summary["case_id"] != dropped])
    measured: list[Case] = []

    def fake_measure(case, config, **progress):
        measured.append(case)
        return measure(case, FAST)

    cases = [Case.from_row(r) for r in run.meta["cases"]]
    runner.run_sweep(cases, copy, FAST, resume=True, progress=False, measure_fn=fake_measure)
    assert [c.case_id for c in measured] == [dropped]
    resumed = run_record.load_run(copy).summary
    assert sorted(set(resumed["case_id"])) == sorted(c.case_id for c in cases)
    assert len(resumed) == len(cases) * len(Phase)


# --------------------------------------------------------------------------- failure is data


def test_cuda_request_without_cuda_is_skipped(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the skip path does not apply")
    cases = [Case(width=16, depth=1, batch=4, device="cuda"), Case(width=16, depth=1, batch=4)]
    runner.run_sweep(cases, tmp_path / "run", FAST, progress=False)
    summary = run_record.load_run(tmp_path / "run").summary
    statuses = summary.groupby("device")["status"].agg(set).to_dict()
    assert statuses == {"cuda": {"skipped"}, "cpu": {"ok"}}
    assert "CUDA is not available" in summary[summary["device"] == "cuda"]["reason"].iloc[0]


@pytest.mark.parametrize("exc, status", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
    (RuntimeError("compile failed: inductor error\nlong traceback"), "error"),
])
def test_failures_become_rows_and_the_sweep_goes_on(tmp_path, monkeypatch, exc, status):
    bad = Case(width=24, depth=1, batch=4)

    def flaky(case, config, **progress):
        if case == bad:
            raise exc
        return measure(case, config, **progress)

    monkeypatch.setattr(runner, "measure", flaky)
    runner.run_sweep([bad, Case(width=16, depth=1, batch=4)], tmp_path / "run", FAST, progress=False)
    summary = run_record.load_run(tmp_path / "run").summary
    row = summary[summary["case_id"] == bad.case_id].iloc[0]
    assert row["status"] == status and "\n" not in row["reason"] and row["reason"]
    assert set(summary[summary["case_id"] != bad.case_id]["status"]) == {"ok"}


def test_interrupt_keeps_finished_cases_and_previous_files_readable(tmp_path, monkeypatch):
    cases = [Case(width=16, depth=1, batch=4), Case(width=24, depth=1, batch=4), Case(width=32, depth=1, batch=4)]

    def interrupt_on_third(case, config, **progress):
        if case == cases[2]:
            raise KeyboardInterrupt
        return measure(case, config)

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        runner.run_sweep(cases, out, FAST, progress=False, measure_fn=interrupt_on_third)
    run = run_record.load_run(out)
    assert set(run.summary["case_id"]) == {cases[0].case_id, cases[1].case_id}
    assert run.meta["interrupted"] is True


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / run_record.SUMMARY_CSV
    run_record.write_table(path, pd.DataFrame({"a": [1, 2]}))

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        run_record.write_table(path, pd.DataFrame({"a": [3]}))
    assert pd.read_csv(path)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == [run_record.SUMMARY_CSV]  # no temp file left behind
