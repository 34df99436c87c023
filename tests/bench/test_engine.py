"""Trust checks of the benchmark engine: cases, timing protocol, runner, store, CLI (CPU only here).

One real smoke sweep (the `smoke` preset, one compiled case) runs once per session
through the CLI; the other tests use tiny eager cases with a short timing config.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.utils.benchmark as tbench

from bench import runner, store
from bench.cases import PRESETS, Case
from bench.cli import main as cli_main
from bench.stats import median_ci, summarize
from bench.timing import Phase, TimingConfig, measure

FAST = TimingConfig(repeats=5, warmup_s=0.05, min_block_s=0.005)
REPO = Path(__file__).resolve().parents[2]
PHASE_SUM_TOLERANCE = 0.35  # instrumented phases vs the plain step: clock reads and noise, never 35%+ apart
TIMER_AGREEMENT_BAND = (0.5, 2.0)  # engine vs torch.utils.benchmark on a noisy shared 2-core box

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
    run = store.load_run(smoke_run)
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
    summary = store.load_run(smoke_run).summary
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
    summary = store.load_run(smoke_run).summary
    for _, row in summary.iterrows():
        case = Case.from_row(row.to_dict())
        assert case.case_id == row["case_id"] and case.label == row["label"]


def test_resume_skips_measured_cases(smoke_run, tmp_path):
    copy = tmp_path / "resumed"
    copy.mkdir()
    for name in (store.SUMMARY_CSV, store.SAMPLES_CSV, store.META_JSON):
        (copy / name).write_bytes((smoke_run / name).read_bytes())
    run = store.load_run(copy)
    dropped = run.summary["case_id"].iloc[0]
    store.write_table(copy / store.SUMMARY_CSV, run.summary[run.summary["case_id"] != dropped])
    measured: list[Case] = []

    def fake_measure(case, config):
        measured.append(case)
        return measure(case, FAST)

    cases = [Case.from_row(r) for r in run.meta["cases"]]
    runner.run_sweep(cases, copy, FAST, resume=True, progress=False, measure_fn=fake_measure)
    assert [c.case_id for c in measured] == [dropped]
    resumed = store.load_run(copy).summary
    assert sorted(set(resumed["case_id"])) == sorted(c.case_id for c in cases)
    assert len(resumed) == len(cases) * len(Phase)


# --------------------------------------------------------------------------- the timing protocol


def test_phases_add_up_to_the_whole_step():
    case = Case(width=256, depth=2, batch=64, threads=1)  # one thread: immune to OpenMP oversubscription
    m = measure(case, TimingConfig(repeats=9, warmup_s=0.1, min_block_s=0.02))
    step = summarize(m.samples[Phase.STEP]).median
    parts = sum(summarize(m.samples[p]).median for p in (Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER))
    assert abs(parts / step - 1) < PHASE_SUM_TOLERANCE, (parts, step)
    assert summarize(m.samples[Phase.INFERENCE]).median < step


def test_engine_agrees_with_torch_utils_benchmark():
    """The whole-step median equals torch.utils.benchmark's blocked_autorange on the same step (loose band)."""
    case = Case(network="fashion_mnist", batch=64, threads=1)
    ours = summarize(measure(case, TimingConfig(repeats=9, warmup_s=0.1)).samples[Phase.STEP]).median
    from bench.timing import build_step

    step = build_step(case)
    x, y = case.make_batch(torch.Generator().manual_seed(1))
    timer = tbench.Timer(stmt="step.step(x, y)", globals={"step": step, "x": x, "y": y}, num_threads=1)
    theirs = timer.blocked_autorange(min_run_time=0.5).median
    assert TIMER_AGREEMENT_BAND[0] < ours / theirs < TIMER_AGREEMENT_BAND[1], (ours, theirs)


def test_first_step_is_not_in_the_samples():
    m = measure(Case(width=32, depth=1, batch=8), FAST)
    assert not math.isnan(m.first_step_s)
    assert all(len(m.samples[p]) == FAST.repeats for p in Phase)
    assert m.iters_per_block[Phase.STEP] >= 1


def test_threads_are_set_per_case_and_restored():
    before = torch.get_num_threads()
    m = measure(Case(width=32, depth=1, batch=8, threads=1), FAST)
    assert m.threads == 1
    assert torch.get_num_threads() == before


def test_gradients_do_not_accumulate_between_steps():
    from bench.timing import build_step

    case = Case(width=16, depth=1, batch=4)
    step = build_step(case)
    x, y = case.make_batch()
    step.step(x, y)
    assert all(p.grad is None for p in step.model.parameters())


# --------------------------------------------------------------------------- failure is data


def test_cuda_request_without_cuda_is_skipped(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the skip path does not apply")
    cases = [Case(width=16, depth=1, batch=4, device="cuda"), Case(width=16, depth=1, batch=4)]
    runner.run_sweep(cases, tmp_path / "run", FAST, progress=False)
    summary = store.load_run(tmp_path / "run").summary
    statuses = summary.groupby("device")["status"].agg(set).to_dict()
    assert statuses == {"cuda": {"skipped"}, "cpu": {"ok"}}
    assert "CUDA is not available" in summary[summary["device"] == "cuda"]["reason"].iloc[0]


@pytest.mark.parametrize("exc, status", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
    (RuntimeError("compile failed: inductor error\nlong traceback"), "error"),
])
def test_failures_become_rows_and_the_sweep_goes_on(tmp_path, monkeypatch, exc, status):
    bad = Case(width=24, depth=1, batch=4)

    def flaky(case, config):
        if case == bad:
            raise exc
        return measure(case, config)

    monkeypatch.setattr(runner, "measure", flaky)
    runner.run_sweep([bad, Case(width=16, depth=1, batch=4)], tmp_path / "run", FAST, progress=False)
    summary = store.load_run(tmp_path / "run").summary
    row = summary[summary["case_id"] == bad.case_id].iloc[0]
    assert row["status"] == status and "\n" not in row["reason"] and row["reason"]
    assert set(summary[summary["case_id"] != bad.case_id]["status"]) == {"ok"}


def test_interrupt_keeps_finished_cases_and_previous_files_readable(tmp_path, monkeypatch):
    cases = [Case(width=16, depth=1, batch=4), Case(width=24, depth=1, batch=4), Case(width=32, depth=1, batch=4)]

    def interrupt_on_third(case, config):
        if case == cases[2]:
            raise KeyboardInterrupt
        return measure(case, config)

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        runner.run_sweep(cases, out, FAST, progress=False, measure_fn=interrupt_on_third)
    run = store.load_run(out)
    assert set(run.summary["case_id"]) == {cases[0].case_id, cases[1].case_id}
    assert run.meta["interrupted"] is True


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / store.SUMMARY_CSV
    store.write_table(path, pd.DataFrame({"a": [1, 2]}))

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.write_table(path, pd.DataFrame({"a": [3]}))
    assert pd.read_csv(path)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == [store.SUMMARY_CSV]  # no temp file left behind


# --------------------------------------------------------------------------- cases and sweeps


def test_case_validation_names_the_bad_value():
    with pytest.raises(ValueError, match="width must be >= 1"):
        Case(width=0)
    with pytest.raises(ValueError, match="unknown activation 'nope'.*relu"):
        Case(activation="nope")
    with pytest.raises(ValueError, match="unknown compile mode 'fast'.*reduce-overhead"):
        Case(compile="fast")
    with pytest.raises(ValueError, match="fp16.*cuda"):
        Case(dtype="fp16")


def test_named_networks_normalise_their_fixed_fields():
    a = Case(network="fashion_mnist", width=999, activation="gelu", loss="mse")
    b = Case(network="fashion_mnist")
    assert a == b and a.loss == "cross_entropy" and a.case_id == b.case_id


def test_quick_preset_covers_every_dimension_twice():
    cases = PRESETS["quick"].cases()
    uniform = [c for c in cases if c.network == "uniform"]
    assert len({c.width for c in uniform}) >= 3 and len({c.batch for c in uniform}) >= 3
    assert len({c.activation for c in uniform}) >= 3 and len({c.depth for c in uniform}) >= 2
    assert {c.dtype for c in cases} >= {"fp32", "bf16"} and {c.compile for c in cases} >= {"none", "default"}
    assert {"teaching", "fashion_mnist"} <= {c.network for c in cases}


def test_median_ci_matches_the_published_order_statistics():
    # 95% distribution-free CI of the median: n=20 -> (x(6), x(15)), n=10 -> (x(2), x(9)) (1-based ranks)
    assert median_ci(list(range(1, 21))) == (6.0, 15.0)
    assert median_ci(list(range(1, 11))) == (2.0, 9.0)
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.median == 3.0 and s.min == 1.0 and s.noisy


# --------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("argv, message", [
    (["run", "--batch", "12,abc"], "'abc' is not an integer"),
    (["run", "--width", "0"], "width must be >= 1"),
    (["run", "--activation", "swishy"], "unknown activation 'swishy'"),
    (["run", "--preset", "huge"], "unknown preset 'huge'"),
    (["run", "--batch", "8,,16"], "malformed list"),
    (["run", "--repeats", "0"], "repeats must be >= 1"),
    (["show", "/nonexistent/run"], "no run folder"),
])
def test_bad_cli_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code = cli_main(argv + (["--out", str(out)] if argv[0] == "run" else []))
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("mlpbench: error:") and message in err
    assert not out.exists()


def test_dry_run_lists_cases_and_measures_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert cli_main(["run", "--preset", "quick", "--device", "cpu", "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"{len(PRESETS['quick'].cases())} cases (dry run" in text and not out.exists()


def test_console_entry_point_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "bench", "run", "--list-presets"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "quick" in proc.stdout and "smoke" in proc.stdout


# --------------------------------------------------------------------------- CUDA (where it exists)

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("compile_mode", ["none", "reduce-overhead"])
def test_cuda_case_measures_with_events_and_memory(compile_mode):
    case = Case(width=512, depth=2, batch=256, device="cuda", dtype="bf16", compile=compile_mode)
    m = measure(case, FAST)
    assert m.status == "ok"
    step = summarize(m.samples[Phase.STEP]).median
    parts = sum(summarize(m.samples[p]).median for p in (Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER))
    assert abs(parts / step - 1) < PHASE_SUM_TOLERANCE * 2  # launch-bound tiny steps: looser
    assert set(m.peak_mem_bytes) == set(Phase) and all(v > 0 for v in m.peak_mem_bytes.values())
    if compile_mode != "none":
        assert m.compile_graphs >= 2 and m.recompiles == 0


@cuda
def test_cuda_analytic_memory_is_below_the_measured_peak():
    import mlp

    case = Case(width=1024, depth=3, batch=512, device="cuda")
    m = measure(case, FAST)
    mem = mlp.memory(case.build_model(), case.batch, case.input_shape, case.loss, case.optimizer, case.dtype)
    # the end of forward holds parameters + saved activations + data; the forward peak includes them
    resident = mem.parameters_bytes + mem.saved_activations_bytes + mem.data_bytes
    assert resident <= m.peak_mem_bytes[Phase.FORWARD]


@cuda
def test_cuda_ceiling_is_measured():
    from bench.ceiling import measure_ceiling

    c = measure_ceiling("cuda", "bf16", sizes=(2048,))
    assert c.measured_tflops > 1 and c.device_name
