"""bench.engine.runner and the run record (bench.runs): a real smoke sweep through the CLI, failures as rows, resume, atomic writes.

One real smoke sweep (the `smoke` preset, one compiled case) runs once per session
through the CLI; the other tests use tiny eager cases with a short timing config.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from bench.engine import runner
from bench import runs as run_record
from bench.case.cases import PRESETS, Case
from bench.cli import main as cli_main
from bench.instruments.timing import Phase, TimingConfig, measure

FAST = TimingConfig(repeats=5, warmup_s=0.05, min_block_s=0.005)

# Columns documented in docs/results.md that every summary.csv carries.
DOCUMENTED_COLUMNS = [
    "network", "width", "depth", "batch", "activation", "device", "dtype", "compile", "optimizer", "loss",
    "threads", "case_id", "label", "phase", "status", "reason", "n", "median_s", "iqr_s", "min_s",
    "ci_low_s", "ci_high_s", "iqr_rel", "noisy", "iters_per_block", "samples_per_s", "matmul_flops", "tflops",
    "ceiling_tflops", "mfu", "mem_total_bytes", "peak_mem_bytes", "first_step_s", "compile_s",
    "compile_graphs", "graph_breaks", "recompiles", "phase_sum_gap", "optimizer_impl", "torch_threads",
]


DYNAMO_FRAME_METRIC = "_compile.compile_inner"  # torch._dynamo's own timer of one frame's compilation
SMOKE_FRAME_COMPILE_S: list[float] = []  # what dynamo timed while the smoke run compiled (filled by smoke_run)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    from torch._dynamo.utils import compilation_time_metrics

    out = tmp_path_factory.mktemp("smoke") / "run"
    before = len(compilation_time_metrics.get(DYNAMO_FRAME_METRIC, []))
    assert cli_main(["run", "--preset", "smoke", "--out", str(out), "--no-progress", "--no-show",
                     "--repeats", "5", "--warmup-s", "0.05"]) == 0
    SMOKE_FRAME_COMPILE_S[:] = compilation_time_metrics.get(DYNAMO_FRAME_METRIC, [])[before:]
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


def test_smoke_run_limits_bound_its_cases(smoke_run):
    """Issue 39's invariants over a real run: no peak below its measured ceiling (a peak that the device beat
    is withdrawn, with its reason), and no speed-of-light floor above the measured median."""
    run = run_record.load_run(smoke_run)
    for key, c in run.meta["ceilings"].items():
        assert c["datasheet_tflops"] is None or c["datasheet_tflops"] >= c["measured_tflops"], (key, c)
    rows = run.summary
    peaked = rows.dropna(subset=["peak_tflops"])
    assert (peaked["peak_tflops"] >= peaked["ceiling_tflops"]).all()
    for key, d in run.meta["dispatch"].items():  # measured at the start and the end; the lower pass is kept
        assert d["per_op_s"] == min(d["per_op_s_start"], d["per_op_s_end"]) > 0, (key, d)
    floors = rows.dropna(subset=["sol_fraction"])
    assert len(floors) == len(rows) and (floors["sol_s"] > 0).all()
    worst = floors.nlargest(3, "sol_fraction")[["label", "phase", "sol_fraction", "sol_bound", "median_s"]]
    assert (floors["sol_fraction"] <= 1).all(), worst.to_string()


def test_smoke_compiled_case_really_compiled(smoke_run):
    summary = run_record.load_run(smoke_run).summary
    step = summary[summary["phase"] == "step"]
    compiled = step[step["compile"] != "none"]
    assert len(compiled) == 1
    row = compiled.iloc[0]
    assert row["compile_graphs"] >= 2  # training graph + inference graph (grad mode is a guard)
    assert row["recompiles"] == 0 and row["graph_breaks"] == 0
    assert row["compile_s"] > 0 and row["compile_s"] < row["first_step_s"]
    # compile_s (first step - steady step) holds the training graph's compilation, which dynamo timed
    # itself: its first frame compiled in the run (the inference graph's comes later, on its own)
    if not SMOKE_FRAME_COMPILE_S:
        pytest.skip(f"torch {torch.__version__} keeps no {DYNAMO_FRAME_METRIC} timings")
    assert row["compile_s"] >= 0.9 * SMOKE_FRAME_COMPILE_S[0], (row["compile_s"], SMOKE_FRAME_COMPILE_S)
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


# --------------------------------------------------------------------------- derived columns, by value

FAKE_CEILING_TFLOPS, FAKE_DATASHEET_TFLOPS = 0.05, 0.4  # distinct, so MFU against the wrong one shows
DERIVED_CASES = [Case(width=16, depth=1, batch=4, threads=1), Case(network="teaching", batch=8, optimizer="adam", threads=1),
                 Case(width=24, depth=2, batch=6, activation="gelu", optimizer="sgd_momentum", threads=1),
                 Case(network="fashion_mnist", batch=5, optimizer="adamw", threads=1)]  # 1 thread: no OpenMP stalls
HAND_BUILT_OPTIMIZERS = {"sgd": lambda p: torch.optim.SGD(p, lr=0.01),
                         "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.01, momentum=0.9),
                         "adam": lambda p: torch.optim.Adam(p, lr=1e-3), "adamw": lambda p: torch.optim.AdamW(p, lr=1e-3)}


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _reference_accounting(case: Case) -> dict[str, float]:
    """FlopCounterMode's matmul FLOPs per phase and the bytes of the real tensors of one step, by hand."""
    from torch.utils.flop_counter import FlopCounterMode

    model = case.build_model()
    x, y = case.make_batch(torch.Generator().manual_seed(0))
    loss_fn = torch.nn.MSELoss() if case.loss == "mse" else torch.nn.CrossEntropyLoss()
    with FlopCounterMode(display=False) as forward:
        out = model(x)
    with FlopCounterMode(display=False) as backward:
        loss_fn(out, y).backward()
    optimizer = HAND_BUILT_OPTIMIZERS[case.optimizer](model.parameters())
    grads = _tensor_bytes(p.grad for p in model.parameters())
    optimizer.step()
    state = _tensor_bytes(t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t))
    return {"forward": forward.get_total_flops(), "backward": backward.get_total_flops(),
            "parameters": sum(p.numel() for p in model.parameters()),
            "mem_parameters_bytes": _tensor_bytes(model.parameters()), "mem_gradients_bytes": grads,
            "mem_optimizer_state_bytes": state, "mem_data_bytes": _tensor_bytes((x, y))}


def test_derived_columns_follow_their_definitions(tmp_path, monkeypatch):
    """Every derived column recomputed from samples.csv, FlopCounterMode, real tensors and the ceiling."""
    from bench.limits.ceiling import Ceiling

    def fake_ceiling(device, dtype, sizes=None, budget_s=None):
        return Ceiling(device, dtype, "fake cpu", FAKE_CEILING_TFLOPS, 256, FAKE_DATASHEET_TFLOPS, "test",
                       torch.get_num_threads(), (256,), 1.0, 0.0)

    monkeypatch.setattr("bench.limits.ceiling.measure_ceiling", fake_ceiling)
    runner.run_sweep(DERIVED_CASES, tmp_path / "run", FAST, progress=False)
    run = run_record.load_run(tmp_path / "run")
    assert [c["measured_tflops"] for c in run.meta["ceilings"].values()] == [FAKE_CEILING_TFLOPS]
    seconds = run.samples.groupby(["case_id", "phase"])["seconds"]
    for case in DERIVED_CASES:
        ref = _reference_accounting(case)
        flops = {"step": ref["forward"] + ref["backward"], "forward": ref["forward"], "backward": ref["backward"],
                 "optimizer": 0, "inference": ref["forward"]}
        rows = run.summary[run.summary["case_id"] == case.case_id].set_index("phase")
        assert set(rows["status"]) == {"ok"} and set(rows.index) == set(flops)
        for phase, row in rows.iterrows():
            median_s = float(np.median(seconds.get_group((case.case_id, phase))))
            tflops = flops[phase] / median_s / 1e12
            expected = {"median_s": median_s, "samples_per_s": case.batch / median_s, "matmul_flops": flops[phase],
                        "tflops": tflops, "ceiling_tflops": FAKE_CEILING_TFLOPS, "mfu": tflops / FAKE_CEILING_TFLOPS,
                        "peak_tflops": FAKE_DATASHEET_TFLOPS, "mfu_peak": tflops / FAKE_DATASHEET_TFLOPS,
                        **{k: v for k, v in ref.items() if k not in ("forward", "backward")}}
            for column, value in expected.items():
                assert row[column] == pytest.approx(value, rel=1e-9), (case.label, phase, column)
            assert row["mem_total_bytes"] == sum(row[f"mem_{k}_bytes"] for k in (
                "parameters", "gradients", "optimizer_state", "saved_activations", "data"))
            assert row["first_step_s"] > 0 and math.isnan(row["compile_s"])  # eager: no compile time
        medians = rows["median_s"]
        phase_sum = medians["forward"] + medians["backward"] + medians["optimizer"]
        assert rows.loc["step", "phase_sum_gap"] == pytest.approx(phase_sum / medians["step"] - 1, rel=1e-9)


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
