"""report.md from real and merged runs: tables, figures, degraded inputs, the regime rule, the CLI.

The runs it reads (a real tiny CPU sweep and a synthetic GPU run) come from conftest.py beside it.
"""

from __future__ import annotations

import atexit
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench import runs as run_record
from bench.cli import main
from bench.report.markdown import compile_table, format_summary, write_report
from bench.report.regime import Regime, classify
from bench.report.tables import compile_pairs, merged_summary


def _scratch(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def subset_run(source: Path, keep, name: str) -> Path:
    """A copy of ``source`` with only the summary rows for which ``keep(row)`` is true."""
    run = run_record.load_run(source)
    summary = run.summary[[bool(keep(r)) for _, r in run.summary.iterrows()]]
    out = _scratch(f"mlpbench-{name}-") / name
    run_record.write_table(out / run_record.SUMMARY_CSV, summary)
    run_record.write_table(out / run_record.SAMPLES_CSV, run.samples[run.samples["case_id"].isin(summary["case_id"])])
    run_record.write_meta(out / run_record.META_JSON, run.meta)
    return out


# --------------------------------------------------------------------------- single CPU run


def test_cpu_report_has_every_table_and_each_case(cpu_run_dir, cpu_report) -> None:
    path, _ = cpu_report
    text = path.read_text()
    for heading in ("## At a glance", "## Figures", "## Cases", "## Matmul ceilings",
                    "## Best configuration per network size", "## Slowest phases relative to their FLOPs (top 5)",
                    "## Regimes: how they are decided", "## Environment"):
        assert heading in text, heading
    summary = run_record.load_run(cpu_run_dir).summary
    for label in summary["label"].unique():
        assert f"| {label} " in text, label
    assert "fwd/bwd/opt %" in text and "step ms (median ± IQR)" in text


def test_cpu_report_links_every_drawn_figure_and_says_why_gpu_is_missing(cpu_report) -> None:
    path, figures = cpu_report
    text = path.read_text()
    drawn = {f.name for f in figures if f.path is not None}
    assert drawn == {"throughput", "phases", "roofline", "activations"}
    for name in drawn:
        assert f"](plots/{name}.png)" in text
        assert (path.parent / "plots" / f"{name}.png").is_file()
    assert "**3. CPU → GPU speedup**: omitted, needs CPU and CUDA measurements" in text
    assert "torch.compile vs eager**: omitted, no case was measured both compiled and eager" in text
    assert not (path.parent / "plots" / "gpu_speedup.png").exists()


def test_format_summary_still_lists_one_row_per_case(cpu_run_dir) -> None:
    summary = run_record.load_run(cpu_run_dir).summary
    text = format_summary(summary)
    assert len(text.splitlines()) == 2 + summary["case_id"].nunique()
    assert len(format_summary(summary, all_phases=True).splitlines()) == 2 + len(summary)


# --------------------------------------------------------------------------- merged CPU + GPU


def test_merged_report_compares_devices_and_states_fingerprint_differences(merged_report, expected_crossover) -> None:
    path, figures = merged_report
    text = path.read_text()
    assert "**The runs' fingerprints differ**" in text
    assert "- torch: " in text and "2.11.0 (gpu-run)" in text
    assert "hostname:" in text and "gpu-host (gpu-run)" in text
    assert "## CPU → GPU" in text and "Crossover batch size per configuration" in text
    assert f"{expected_crossover:.3g}" in text  # interpolated crossover of w16 and w32
    assert {f.name for f in figures if f.path is not None} == {
        "throughput", "phases", "gpu_speedup", "compile", "roofline", "activations"}
    assert "## torch.compile vs eager" in text


def test_merged_summary_keeps_both_devices_and_names_platforms(cpu_run_dir, gpu_run_dir) -> None:
    runs = [run_record.load_run(cpu_run_dir), run_record.load_run(gpu_run_dir)]
    merged, dropped = merged_summary(runs)
    assert dropped == 0
    assert set(merged["device"]) == {"cpu", "cuda"}
    assert set(merged.loc[merged["device"] == "cuda", "platform"]) == {"Synthetic GPU (test)"}
    assert merged.loc[merged["device"] == "cpu", "platform"].str.startswith("CPU ").all()


def test_the_same_run_twice_keeps_one_row_per_case(cpu_run_dir) -> None:
    run = run_record.load_run(cpu_run_dir)
    merged, dropped = merged_summary([run, run])
    assert dropped == run.summary["case_id"].nunique()
    assert len(merged) == len(run.summary)


def test_compile_break_even_is_compile_time_over_saving(gpu_run_dir, synthetic_compile) -> None:
    compile_s, compile_factor = synthetic_compile
    merged, _ = merged_summary([run_record.load_run(gpu_run_dir)])
    pairs = compile_pairs(merged)
    assert len(pairs) == 4  # the four relu cases
    expected = compile_s / (pairs["median_s_eager"] * (1 - compile_factor))
    np.testing.assert_allclose(pairs["break_even_steps"], expected, rtol=1e-9)
    np.testing.assert_allclose(pairs["speedup"], 1 / compile_factor, rtol=1e-9)


def test_a_whole_step_compiled_case_pairs_with_the_same_eager_case(gpu_run_dir, synthetic_compile) -> None:
    """compile_scope step is a second compiled variant of the eager case (whose scope is the moot default)."""
    merged, _ = merged_summary([run_record.load_run(gpu_run_dir)])
    compiled = merged[merged["compile"] != "none"].copy()
    compiled["compile_scope"], compiled["median_s"] = "step", compiled["median_s"] / 2
    pairs = compile_pairs(pd.concat([merged, compiled], ignore_index=True))
    step_scope = pairs[pairs["compile_scope"] == "step"]
    assert len(pairs) == 8 and len(step_scope) == 4
    np.testing.assert_allclose(step_scope["speedup"], 2 / synthetic_compile[1], rtol=1e-9)
    assert "(whole step)" in compile_table(pairs)


# --------------------------------------------------------------------------- degraded inputs


def test_a_single_case_run_renders_with_reasons_for_missing_figures(tmp_path: Path, cpu_run_dir) -> None:
    first = run_record.load_run(cpu_run_dir).summary["case_id"].iloc[0]
    one = subset_run(cpu_run_dir, lambda r: r["case_id"] == first, "one-case")
    report = write_report([run_record.load_run(one)], tmp_path)
    text = report.path.read_text()
    omitted = {f.name: f.reason for f in report.figures if f.path is None}
    assert set(omitted) == {"throughput", "gpu_speedup", "compile", "activations"}
    assert "two or more batch sizes" in omitted["throughput"]
    assert "two or more activations" in omitted["activations"]
    assert "## Cases" in text and "(no batch pair: floor test)" in text


def test_a_run_with_only_failed_cases_renders(tmp_path: Path, cpu_run_dir) -> None:
    run = run_record.load_run(cpu_run_dir)
    failed = run.summary[run.summary["phase"] == "step"].head(2).copy()
    failed["status"] = ["error", "skipped"]
    failed["reason"] = ["RuntimeError: boom", "CUDA is not available on this machine"]
    folder = tmp_path / "failed-run"
    run_record.write_table(folder / run_record.SUMMARY_CSV, failed)
    run_record.write_meta(folder / run_record.META_JSON, {"preset": "test", "env": run.meta["env"], "ceilings": {}})
    report = write_report([run_record.load_run(folder)], folder)
    text = report.path.read_text()
    assert "## Cases not measured" in text and "RuntimeError: boom" in text
    assert "2 cases (1 error, 1 skipped)" in text or "2 cases (1 skipped, 1 error)" in text


def test_cases_with_fewer_threads_than_the_ceiling_are_noted(tmp_path: Path, cpu_run_dir) -> None:
    run = run_record.load_run(cpu_run_dir)
    if run.meta["env"]["torch_threads"] < 2:
        pytest.skip("torch runs single-threaded here: no case can use fewer threads than the ceiling")
    folder = tmp_path / "one-thread"
    run_record.write_table(folder / run_record.SUMMARY_CSV, run.summary.assign(threads=1))
    run_record.write_meta(folder / run_record.META_JSON, run.meta)
    text = write_report([run_record.load_run(folder)], folder).path.read_text()
    assert "ran with 1 thread(s) (`tN` in the label) while the CPU ceiling was measured with torch's default" in text


# --------------------------------------------------------------------------- CLI


def test_cli_report_writes_into_the_run_folder(capsys, cpu_run_dir) -> None:
    folder = subset_run(cpu_run_dir, lambda r: True, "cli-run")
    assert main(["report", str(folder)]) == 0
    assert (folder / "report.md").is_file() and (folder / "plots" / "phases.png").is_file()
    assert "gpu_speedup omitted" in capsys.readouterr().out


def test_cli_report_latest_means_newest_under_results_runs(tmp_path: Path, monkeypatch, cpu_run_dir) -> None:
    runs = tmp_path / "results" / "runs"
    shutil.copytree(cpu_run_dir, runs / "20990101-000000-test")
    monkeypatch.chdir(tmp_path)
    assert main(["report", "latest"]) == 0
    assert (runs / "20990101-000000-test" / "report.md").is_file()


def test_cli_report_bad_input_is_exit_2(tmp_path: Path, capsys, cpu_run_dir, gpu_run_dir) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert main(["report", str(cpu_run_dir), str(gpu_run_dir)]) == 2  # several runs need --out
    err = capsys.readouterr().err
    assert "no run folder" in err and "--out" in err


# --------------------------------------------------------------------------- regimes


def _regime_rows(times_by_batch: dict[int, float], mfu: float, optimizer_share: float = 0.1) -> pd.DataFrame:
    rows = []
    for batch, t in times_by_batch.items():
        base = {**run_record.LATER_DEFAULTS, "network": "uniform", "width": 64, "depth": 1, "in_features": 0,
                "out_features": 0, "batch": batch, "activation": "relu", "device": "cpu", "dtype": "fp32", "compile": "none",
                "optimizer": "sgd", "loss": "mse", "threads": 0, "case_id": f"c{batch}", "label": f"b{batch}",
                "status": "ok", "mfu": mfu, "mem_parameters_bytes": 1e6, "mem_gradients_bytes": 1e6,
                "mem_optimizer_state_bytes": 0}
        opt = optimizer_share * t
        rows += [{**base, "phase": "step", "median_s": t},
                 {**base, "phase": "forward", "median_s": (t - opt) / 3},
                 {**base, "phase": "backward", "median_s": 2 * (t - opt) / 3},
                 {**base, "phase": "optimizer", "median_s": opt}]
    return run_record.fill_later_columns(pd.DataFrame(rows))  # as the reader gives it: fields added later filled


@pytest.mark.parametrize("times, mfu, expected", [
    ({16: 1.0e-3, 128: 1.1e-3}, 0.01, Regime.OVERHEAD),  # 8x the batch, +10% time
    ({16: 1.0e-3, 128: 8.0e-3}, 0.05, Regime.MEMORY),  # time proportional to the batch, far below the ceiling
    ({16: 1.0e-3, 128: 8.0e-3}, 0.70, Regime.COMPUTE),  # ... at 70% of the ceiling
])
def test_regime_rule(times, mfu, expected) -> None:
    regimes = classify(_regime_rows(times, mfu))
    assert set(regimes["regime"]) == {expected.value}
    alpha = math.log(times[128] / times[16]) / math.log(8)
    np.testing.assert_allclose(regimes["alpha"], alpha)


def test_regime_borrows_alpha_across_one_field() -> None:
    rows = _regime_rows({16: 1.0e-3, 128: 1.1e-3}, 0.01)
    gelu = rows[rows["batch"] == 128].assign(activation="gelu", case_id="g128", label="gelu b128")
    regimes = classify(pd.concat([rows, gelu], ignore_index=True)).set_index("case_id")
    assert regimes.loc["g128", "alpha_borrowed_from"] == "activation"
    assert regimes.loc["g128", "regime"] == Regime.OVERHEAD.value


def test_alpha_from_a_noisy_median_is_marked() -> None:
    rows = _regime_rows({16: 1.0e-3, 128: 8.0e-3}, 0.05)
    rows["noisy"] = rows["batch"] == 128
    regimes = classify(rows)
    assert regimes["why"].str.contains(r"\(noisy\)").all()  # b16's alpha uses the noisy b128 median too


def test_the_reports_regime_rule_is_written_down_in_the_docs() -> None:
    from bench.report.regime import RULE

    docs = Path(__file__).resolve().parents[3] / "docs" / "reports.md"
    assert RULE in docs.read_text(), "docs/reports.md must quote bench.report.regime.RULE verbatim"


def test_meta_of_the_shared_run_is_json(cpu_run_dir) -> None:
    assert json.loads((cpu_run_dir / run_record.META_JSON).read_text())["preset"] == "test"


def test_the_report_flags_numerics_beyond_tolerance_beside_the_case(tmp_path: Path, cpu_run_dir) -> None:
    """fp32 eager cases read 'reference'; a case beyond its tolerance is flagged in its row and in the glance."""
    text = write_report([run_record.load_run(cpu_run_dir)], tmp_path / "plain").path.read_text()
    assert "numerics vs fp32 eager" in text and "**Numerics**" not in text
    folder = tmp_path / "flagged"
    shutil.copytree(cpu_run_dir, folder)
    summary = run_record.load_run(folder).summary.copy()
    label = summary.loc[0, "label"]
    summary["numerics"] = summary["numerics"].astype(object)
    summary.loc[summary["case_id"] == summary.loc[0, "case_id"], "numerics"] = "beyond tolerance: loss 0.5 > 1e-05"
    run_record.write_table(folder / run_record.SUMMARY_CSV, summary)
    text = write_report([run_record.load_run(folder)], folder).path.read_text()
    assert f"- **Numerics**: 1 case(s) compute beyond their tolerance" in text
    row = next(line for line in text.splitlines() if line.startswith(f"| {label} ") and "±" in line)
    assert "NUMERICS beyond tolerance: loss 0.5 > 1e-05" in row


def test_a_case_within_tolerance_reads_ok_after_the_csv_round_trip(tmp_path: Path) -> None:
    """A case within tolerance writes a blank flag, which a CSV reads back as NaN: still 'ok', never blank."""
    import pandas as pd

    from bench.report.tables import numerics_cell, numerics_flag

    frame = pd.DataFrame([{"numerics": "", "numerics_tol": 0.11, "grad_rel_err": 0.056},
                          {"numerics": "reference", "numerics_tol": math.nan, "grad_rel_err": math.nan},
                          {"numerics": "beyond tolerance: loss 1 > 0.1", "numerics_tol": 0.1, "grad_rel_err": 0.0}])
    run_record.write_table(tmp_path / "s.csv", frame)
    back = pd.read_csv(tmp_path / "s.csv").to_dict("records")
    assert [numerics_cell(r) for r in back] == ["ok (grads 0.06)", "reference",
                                                "NUMERICS beyond tolerance: loss 1 > 0.1"]
    assert [numerics_flag(r) for r in back] == ["", "", "beyond tolerance: loss 1 > 0.1"]
    assert numerics_cell({"median_s": 1.0}) == ""  # a run older than the columns
