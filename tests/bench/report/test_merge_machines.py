"""Merging runs from several machines of the same kind (bench.report.tables), against pandas on the raw CSVs.

Three copies of the shared tiny CPU run, each claiming another CPU model (three machines, one device kind), and
two synthetic CUDA runs on two GPU models: every machine's rows must survive the merge, each under its own platform,
with the values of its own summary.csv; the same machine given twice keeps the last run's values; the report's case
table then names every platform and says nothing about cases measured twice.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench import runs as run_record
from bench.report.markdown import render_markdown
from bench.report.regime import classify
from bench.report.tables import merged_ceilings, merged_limits, merged_summary

CPU_MODELS = ("AMD EPYC 9B45", "Intel(R) Xeon(R) Platinum 8480+", "AMD EPYC 7763 64-Core Processor")
GPU_NAMES = ("NVIDIA H100 80GB HBM3", "NVIDIA H200")
KEY = ["case_id", "phase"]
TIME_COLUMNS = ("median_s", "iqr_s", "min_s", "max_s", "mean_s", "ci_low_s", "ci_high_s")


def _machine_copy(source: Path, out: Path, env: dict, scale: float = 1.0) -> Path:
    """``source`` as measured on another machine: its env changed, its times scaled (to tell the copies apart)."""
    run = run_record.load_run(source)
    summary, samples = run.summary.copy(), run.samples.copy()
    for column in TIME_COLUMNS:
        summary[column] = summary[column] * scale
    summary["samples_per_s"] = summary["samples_per_s"] / scale
    samples["seconds"] = samples["seconds"] * scale
    meta = run.meta.to_dict()
    meta["env"] = {**meta["env"], **env}
    run_record.write_table(out / run_record.SUMMARY_CSV, summary)
    run_record.write_table(out / run_record.SAMPLES_CSV, samples)
    run_record.write_meta(out / run_record.META_JSON, meta)
    return out


@pytest.fixture(scope="module")
def cpu_machines(cpu_run_dir, tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("machines")
    return [_machine_copy(cpu_run_dir, root / f"cpu-{i}", {"cpu_model": model, "hostname": f"host{i}"}, 1.0 + i)
            for i, model in enumerate(CPU_MODELS)]


def _raw(path: Path) -> pd.DataFrame:
    """The run's own rows, read with pandas alone."""
    return pd.read_csv(path / run_record.SUMMARY_CSV)


def _check_every_machine_kept(merged: pd.DataFrame, dirs: list[Path]) -> None:
    assert len(merged) == sum(len(_raw(d)) for d in dirs)
    assert merged["platform"].nunique() == len(dirs)
    for d in dirs:
        raw = _raw(d).set_index(KEY)["median_s"].sort_index()
        rows = merged[merged["run"] == d.name]
        assert rows["platform"].nunique() == 1, d.name
        got = rows.set_index(KEY)["median_s"].sort_index()
        pd.testing.assert_series_equal(got, raw, check_names=False, rtol=1e-12)


def test_three_cpu_machines_keep_every_row_under_three_platforms(cpu_machines):
    runs = [run_record.load_run(d) for d in cpu_machines]
    merged, dropped = merged_summary(runs)
    assert dropped == 0
    _check_every_machine_kept(merged, cpu_machines)
    platforms = set(merged["platform"])
    assert any("EPYC 9B45" in p for p in platforms) and any("Xeon" in p for p in platforms)


def test_two_gpu_machines_keep_every_row_under_two_platforms(gpu_run_dir, tmp_path):
    dirs = [_machine_copy(gpu_run_dir, tmp_path / f"gpu-{i}", {"device_name": name}, 1.0 + i)
            for i, name in enumerate(GPU_NAMES)]
    merged, dropped = merged_summary([run_record.load_run(d) for d in dirs])
    assert dropped == 0
    _check_every_machine_kept(merged, dirs)
    assert set(merged["platform"]) == set(GPU_NAMES)


def test_the_same_machine_twice_keeps_the_last_runs_rows_and_counts_the_rest(cpu_machines, tmp_path):
    first = cpu_machines[0]
    again = _machine_copy(first, tmp_path / "cpu-0-again", {}, 10.0)  # same machine, 10x the first's times
    merged, dropped = merged_summary([run_record.load_run(first), run_record.load_run(again)])
    raw_first, raw_again = _raw(first), _raw(again)
    assert dropped == (raw_first["phase"] == "step").sum()
    assert len(merged) == len(raw_again) and set(merged["run"]) == {again.name}
    pd.testing.assert_series_equal(merged.set_index(KEY)["median_s"].sort_index(),
                                   raw_again.set_index(KEY)["median_s"].sort_index(), check_names=False)


def test_the_limits_of_every_machine_are_kept(cpu_machines):
    runs = [run_record.load_run(d) for d in cpu_machines]
    per_machine = [len(r.meta.get("ceilings", {})) for r in runs]
    assert len(merged_ceilings(runs)) == sum(per_machine) and per_machine[0] > 0
    for table in ("bandwidth", "dispatch"):
        expected = sum(len(r.meta.get(table, {})) for r in runs)
        assert len(merged_limits(runs, table)) == expected, table


def test_the_report_names_every_machine_and_claims_no_repeated_case(cpu_machines, tmp_path):
    """Two machines; the Markdown alone (no figures: they take seconds and say nothing about the merge)."""
    runs = [run_record.load_run(d) for d in cpu_machines[:2]]
    merged, duplicates = merged_summary(runs)
    text = render_markdown(runs, merged, classify(merged), merged_ceilings(runs), [], duplicates, tmp_path)
    cases = text.split("## Cases", 1)[1].split("\n## ", 1)[0]
    for platform in set(merged["platform"]):
        assert platform in cases, platform
    assert "measured on the same platform in several runs" not in text
    steps = sum((_raw(d)["phase"] == "step").sum() for d in cpu_machines[:2])
    assert text.splitlines()[2].startswith(f"{steps} cases")
