"""compare: bootstrap ratio of medians against scipy, a run against itself, a known slowdown, CPU -> GPU joins."""

from __future__ import annotations

import dataclasses
import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from bench import runs as run_record
from bench.cli import main
from bench.report import compare, tables
from bench.report.compare import Ratio, bootstrap_ratio, compare_runs
from bench.report.tables import crossover_batches, device_speedup

KNOWN_SLOWDOWN = 1.5


def test_identity_fields_match_the_case_dataclass_and_env_keys() -> None:
    from bench.case.cases import Case
    from bench.instruments.env import COMPARABILITY_KEYS

    assert run_record.CASE_COLUMNS == tuple(f.name for f in dataclasses.fields(Case))
    assert tables.identity_columns() == [c for c in run_record.CASE_COLUMNS if c not in run_record.PARALLEL_DEFAULTS]
    defaults = {f.name: f.default for f in dataclasses.fields(Case)}
    assert run_record.PARALLEL_DEFAULTS == {k: defaults[k] for k in run_record.PARALLEL_DEFAULTS}
    assert compare.COMPARABILITY_KEYS == tuple(COMPARABILITY_KEYS)


def _ratio_of_medians(x, y, axis=-1):
    return np.median(y, axis=axis) / np.median(x, axis=axis)


def _scipy_interval(a, b, level: float, paired: bool, resamples: int) -> tuple[float, float]:
    from bench.analysis.stats import BOOTSTRAP_SEED

    ci = sps.bootstrap((a, b), _ratio_of_medians, paired=paired, vectorized=True, method="percentile",
                       n_resamples=resamples, confidence_level=level,
                       random_state=np.random.default_rng(BOOTSTRAP_SEED)).confidence_interval
    return float(ci.low), float(ci.high)


def test_bootstrap_interval_equals_scipys() -> None:
    """compare: 95%, unpaired (two runs made at different times); the gate: 99%, paired (interleaved blocks).

    The same seed and resamples as the documented settings, so the intervals must be *equal* to
    scipy.stats.bootstrap's, not merely close; the data are chosen so that another level or the
    other pairing gives a visibly different interval (checked too, so this test can tell).
    """
    from bench.analysis.interleaved import compare_samples
    from bench.analysis.stats import COMPARE_RESAMPLES, GATE_RESAMPLES

    rng = np.random.default_rng(1)
    a = rng.lognormal(mean=0.0, sigma=0.1, size=12)
    b = a * rng.lognormal(mean=0.1, sigma=0.02, size=12)  # B's blocks follow A's: pairing matters
    assert COMPARE_RESAMPLES >= 2000 and GATE_RESAMPLES >= 2000  # enough for stable 95% / 99% endpoints
    ours = bootstrap_ratio(a, b)
    expected = _scipy_interval(a, b, 0.95, False, COMPARE_RESAMPLES)
    assert ours.ratio == pytest.approx(np.median(b) / np.median(a), rel=1e-12)
    assert (ours.low, ours.high) == pytest.approx(expected, rel=1e-12)
    for other in (_scipy_interval(a, b, 0.90, False, COMPARE_RESAMPLES),
                  _scipy_interval(a, b, 0.95, True, COMPARE_RESAMPLES)):
        assert other != pytest.approx(expected, rel=1e-3)  # the data tell the level and the pairing apart
    gate = compare_samples(a, b, paired=True)
    assert (gate.ci_low, gate.ci_high) == pytest.approx(_scipy_interval(a, b, 0.99, True, GATE_RESAMPLES), rel=1e-12)


def test_within_run_readings() -> None:
    assert Ratio(1.02, 0.97, 1.08, "x").verdict == "within noise"
    assert Ratio(1.30, 1.10, 1.50, "x").verdict == "B slower"
    assert Ratio(0.70, 0.60, 0.80, "x").verdict == "B faster"
    assert Ratio(math.nan, math.nan, math.nan, "x").verdict == "n/a"


def test_a_run_compared_with_itself_shows_no_significant_difference(cpu_run_dir) -> None:
    run = run_record.load_run(cpu_run_dir)
    comparison = compare.compare(run, run, phases=("step", "forward", "backward", "optimizer", "inference"))
    table, ignored = comparison.table, comparison.ignored
    assert ignored == []
    assert len(table) == len(run.summary[run.summary["status"] == "ok"])
    assert set(table["within_run"]) == {"within noise"}
    assert set(table["verdict"]) == {"inconclusive"} and comparison.overall.verdict.value == "inconclusive"
    assert set(table["method"]) == {"bootstrap"}
    np.testing.assert_allclose(table["ratio"], 1.0)


def test_cli_compare_with_itself(capsys, cpu_run_dir) -> None:
    assert main(["compare", str(cpu_run_dir), str(cpu_run_dir), "--all-phases"]) == 0
    out = capsys.readouterr().out
    assert "inconclusive" in out and "| slower" not in out and "| faster" not in out
    assert "Fingerprints agree" in out


def _slowed_copy(tmp_path: Path, source: Path, factor_of) -> tuple[Path, dict]:
    """A copy of the shared run with every case-phase slowed by ``factor_of(samples)``; returns the factors."""
    folder = tmp_path / "slow"
    shutil.copytree(source, folder)
    run = run_record.load_run(folder)
    summary, samples = run.summary.copy(), run.samples.copy()
    factors = {key: factor_of(group["seconds"].to_numpy()) for key, group in samples.groupby(["case_id", "phase"])}
    samples["seconds"] *= [factors[k] for k in zip(samples["case_id"], samples["phase"])]
    scale = [factors.get(k, 1.0) for k in zip(summary["case_id"], summary["phase"])]
    for col in ("median_s", "iqr_s", "min_s", "max_s", "mean_s", "ci_low_s", "ci_high_s"):
        summary[col] = summary[col] * scale
    run_record.write_table(folder / run_record.SUMMARY_CSV, summary)
    run_record.write_table(folder / run_record.SAMPLES_CSV, samples)
    return folder, factors


def _beyond_noise(seconds: np.ndarray) -> float:
    # slower by 1.5x *beyond* the case's own spread: every B sample exceeds every A sample by 1.5x
    return KNOWN_SLOWDOWN * seconds.max() / seconds.min()


def _far_beyond_noise(seconds: np.ndarray) -> float:
    """2x the case's max/min to the 4th: far beyond any interval its samples allow. A ratio's interval
    is scale-free, so a shift of 3x max/min is not enough where 3 samples spread widely (a bootstrap median of 3
    ranges over all of them: the log interval is ~2 log(max/min) wide); this one stays over 7 standard errors
    however wide the spread, and 2x clears the 15% prior of a run with too few cases (bench.analysis.noise)."""
    return 2.0 * (seconds.max() / seconds.min()) ** 4


def test_a_slowdown_beyond_the_noise_is_significant(tmp_path: Path, cpu_run_dir) -> None:
    folder, factors = _slowed_copy(tmp_path, cpu_run_dir, _beyond_noise)
    table, _ = compare_runs(run_record.load_run(cpu_run_dir), run_record.load_run(folder))
    step_factors = {k[0]: v for k, v in factors.items() if k[1] == "step"}
    run = run_record.load_run(cpu_run_dir).summary
    expected = [step_factors[c] for c in run[(run["phase"] == "step") & (run["status"] == "ok")]["case_id"]]
    np.testing.assert_allclose(table["ratio"], expected)
    assert set(table["within_run"]) == {"B slower"}  # the within-run reading; the verdicts: tests/bench/test_noise.py


def test_without_samples_the_summary_intervals_are_used(tmp_path: Path, cpu_run_dir) -> None:
    folder, _ = _slowed_copy(tmp_path, cpu_run_dir, lambda seconds: KNOWN_SLOWDOWN)
    (folder / run_record.SAMPLES_CSV).unlink()
    table, _ = compare_runs(run_record.load_run(cpu_run_dir), run_record.load_run(folder))
    assert set(table["method"]) == {"summary CIs"}
    assert (table["ci_low"] <= table["ratio"]).all() and (table["ratio"] <= table["ci_high"]).all()


def test_cpu_and_gpu_runs_are_matched_ignoring_the_device(capsys, cpu_run_dir, gpu_run_dir) -> None:
    table, ignored = compare_runs(run_record.load_run(cpu_run_dir), run_record.load_run(gpu_run_dir))
    assert ignored == ["device"]
    assert len(table) == 5  # the uniform eager cases; the teaching net has no GPU row
    assert main(["compare", str(cpu_run_dir), str(gpu_run_dir)]) == 0
    out = capsys.readouterr().out
    assert "WARNING: the fingerprints differ" in out and "ignoring device" in out


def test_device_speedup_and_crossover_on_the_synthetic_gpu_run(cpu_run_dir, gpu_run_dir, expected_crossover) -> None:
    runs = [run_record.load_run(cpu_run_dir), run_record.load_run(gpu_run_dir)]
    summary, _ = tables.merged_summary(runs)
    speed = device_speedup(summary)
    eager = speed[speed["compile"] == "none"]
    np.testing.assert_allclose(eager.loc[eager["batch"] == 4, "speedup"], 0.5)
    np.testing.assert_allclose(eager.loc[eager["batch"] == 16, "speedup"], 4.0)
    cross = crossover_batches(eager)
    relu = cross[(cross["activation"] == "relu")]
    assert len(relu) == 2
    np.testing.assert_allclose(relu["crossover_batch"], expected_crossover)
    assert (relu["wins_from"] == 16).all()


def test_device_speedup_ignores_the_cpu_thread_count_of_cuda_cases() -> None:
    """A CPU reference run at threads=1 joins the CUDA cases (which record torch's default, 0).

    This was issue 17's first H100 run: the 2-core reference had threads=1, the CUDA run 0, so the
    join on every field but device found no case measured on both.
    """
    from bench.runs import Status

    base = {f: 0 for f in tables.identity_columns(["device", "batch", "threads"])}
    rows = []
    for device, threads, seconds in (("cpu", 1, [1.0, 8.0]), ("cpu", 2, [0.6, 5.0]), ("cuda", 0, [2.0, 2.0])):
        for batch, s in zip((4, 64), seconds):
            rows.append({**base, "device": device, "threads": threads, "batch": batch, "phase": "step",
                         "status": Status.OK, "median_s": s, "label": f"b{batch} {device}", "platform": device})
    speed = device_speedup(pd.DataFrame(rows))
    assert sorted(zip(speed["threads"], speed["batch"], speed["speedup"])) == [
        (1, 4, 0.5), (1, 64, 4.0), (2, 4, 0.3), (2, 64, 2.5)]
    cross = crossover_batches(speed).set_index("threads")
    assert list(cross["wins_from"].loc[[1, 2]]) == [64, 64]


@pytest.mark.parametrize("ratios, wins_from, crossover", [
    ([2.0, 3.0], 4, 4),  # the GPU wins everywhere: from the smallest batch
    ([0.2, 0.5], math.nan, math.nan),  # never
    ([0.5, 2.0, 0.9, 4.0], 64, 16 * 4 ** (math.log(1 / 0.9) / math.log(4 / 0.9))),  # the last crossing counts
])
def test_crossover_edge_cases(ratios, wins_from, crossover) -> None:
    batches = [4, 8, 16, 64][:len(ratios)] if len(ratios) == 4 else [4, 16]
    frame = pd.DataFrame({f: [0] * len(ratios) for f in tables.identity_columns(["device", "batch"])})
    frame["batch"], frame["speedup"] = batches, ratios
    row = crossover_batches(frame).iloc[0]
    np.testing.assert_allclose([row["wins_from"], row["crossover_batch"]], [wins_from, crossover], equal_nan=True)


def test_compare_bad_input_is_exit_2(tmp_path: Path, capsys, cpu_run_dir) -> None:
    assert main(["compare", str(cpu_run_dir), str(tmp_path / "nope")]) == 2
    assert "no run folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- verdicts (bench.analysis.noise)


def test_a_slowdown_in_some_cases_is_caught_and_names_only_them(tmp_path: Path, cpu_run_dir) -> None:
    """Known by construction: 2 of the cases (1 where a busy machine left fewer than 6 ok: 2 of 4 would move the
    run-level factor, a median) far beyond their own spread (``_far_beyond_noise``), the others untouched."""
    run = run_record.load_run(cpu_run_dir)
    ids = list(dict.fromkeys(run.summary.loc[run.summary["status"] == "ok", "case_id"]))
    slowed = set(ids[:2] if len(ids) >= 6 else ids[:1])  # a minority: the run-level factor (a median) stays 1
    folder, _ = _slowed_copy(tmp_path, cpu_run_dir,
                             lambda s: 1.0)  # an identical copy first
    samples = run.samples.copy()
    factors = {k: (_far_beyond_noise(g["seconds"].to_numpy()) if k[0] in slowed else 1.0)
               for k, g in samples.groupby(["case_id", "phase"])}
    samples["seconds"] *= [factors[k] for k in zip(samples["case_id"], samples["phase"])]
    summary = run.summary.copy()
    scale = [factors.get(k, 1.0) for k in zip(summary["case_id"], summary["phase"])]
    for col in ("median_s", "iqr_s", "min_s", "max_s", "mean_s", "ci_low_s", "ci_high_s"):
        summary[col] = summary[col] * scale
    run_record.write_table(folder / run_record.SUMMARY_CSV, summary)
    run_record.write_table(folder / run_record.SAMPLES_CSV, samples)
    comparison = compare.compare(run, run_record.load_run(folder))
    table = comparison.table
    assert set(table.loc[table["case_id"].isin(slowed), "verdict"]) == {"slower"}
    assert set(table.loc[~table["case_id"].isin(slowed), "verdict"]) == {"inconclusive"}
    assert comparison.overall.verdict.value == "slower" and f"{len(slowed)} of {len(ids)} cases slower" in comparison.overall.reason


def test_every_case_slower_alike_is_inconclusive_and_the_within_run_reading_is_not(tmp_path: Path,
                                                                                  cpu_run_dir) -> None:
    """Issue 41's false alarm: every case 1.5x slower together is the run-level factor, not a verdict."""
    folder, _ = _slowed_copy(tmp_path, cpu_run_dir, lambda seconds: KNOWN_SLOWDOWN)
    comparison = compare.compare(run_record.load_run(cpu_run_dir), run_record.load_run(folder))
    assert set(comparison.table["verdict"]) == {"inconclusive"}
    assert comparison.factors["step"].factor == pytest.approx(KNOWN_SLOWDOWN)
    assert comparison.overall.verdict.value == "inconclusive"


def test_machine_states_that_differ_make_the_comparison_inconclusive(tmp_path: Path, capsys, cpu_run_dir) -> None:
    import json

    folder, _ = _slowed_copy(tmp_path, cpu_run_dir, lambda s: 1.0)
    meta = json.loads((folder / "meta.json").read_text())
    base = json.loads((cpu_run_dir / "meta.json").read_text())
    load = float(base.get("load_average_1m_start") or 0.0)
    meta["load_average_1m_start"] = meta["load_average_1m_end"] = load + 5.0
    (folder / "meta.json").write_text(json.dumps(meta))
    assert main(["compare", str(cpu_run_dir), str(folder)]) == 0
    out = capsys.readouterr().out
    assert "Verdict: **inconclusive**: machine states differ: load" in out and "(+" in out


def test_report_of_two_runs_draws_b_against_a_with_the_verdicts(tmp_path: Path, cpu_run_dir, monkeypatch) -> None:
    from bench.report import plots

    monkeypatch.setattr(plots, "render_all", lambda *args, **kwargs: [])  # the run figures are tested elsewhere
    folder, _ = _slowed_copy(tmp_path, cpu_run_dir, lambda seconds: KNOWN_SLOWDOWN)
    out = tmp_path / "report"
    assert main(["report", str(cpu_run_dir), str(folder), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    assert "## Runs compared" in text and "### slow against cpu-run" in text
    assert "Run-level factor (step): 1.500" in text and "| inconclusive |" in text
    assert (out / "plots" / "compare-slow.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _numerics_flagged_copy(tmp_path: Path, source: Path, flag: str) -> tuple[Path, str, str]:
    """A copy of the shared run in which one case's numerics read ``flag`` (as a change that spoils it would)."""
    folder = tmp_path / "numerics"
    shutil.copytree(source, folder)
    summary = run_record.load_run(folder).summary.copy()
    case_id, label = summary.loc[0, "case_id"], summary.loc[0, "label"]
    summary["numerics"] = summary["numerics"].astype(object)
    summary.loc[summary["case_id"] == case_id, "numerics"] = flag
    run_record.write_table(folder / run_record.SUMMARY_CSV, summary)
    return folder, case_id, label


def test_compare_marks_a_case_whose_numerics_are_flagged_beside_its_ratio(tmp_path: Path, capsys, cpu_run_dir) -> None:
    """The shared run's cases are fp32 eager (each its own reference: no flag, no column); a copy whose first case
    reads beyond tolerance gets the column, on that case's line only, saying which side."""
    assert set(run_record.load_run(cpu_run_dir).summary["numerics"]) == {"reference"}
    assert main(["compare", str(cpu_run_dir), str(cpu_run_dir)]) == 0
    assert "numerics vs fp32 eager" not in capsys.readouterr().out
    flag = "beyond tolerance: grads 1 > 2.3e-05"
    folder, case_id, label = _numerics_flagged_copy(tmp_path, cpu_run_dir, flag)
    assert main(["compare", str(cpu_run_dir), str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(line for line in lines if line.startswith("| case"))
    assert header.rstrip(" |").endswith("numerics vs fp32 eager")
    flagged = [line for line in lines if f"B: {flag}" in line]
    assert len(flagged) == 1 and flagged[0].startswith(f"| {label} ")
    assert main(["compare", str(folder), str(cpu_run_dir)]) == 0
    assert sum(f"A: {flag}" in line for line in capsys.readouterr().out.splitlines()) == 1
