"""compare on a user's model edited between two real runs (issue 47): paired, the edit named as the change under
test, the exact work counters' change stated beside the timing verdict, and the instrument that decides an
inconclusive timing given as a command. References: the file's bytes hashed with hashlib, FlopCounterMode on the
network written with torch alone, and the hidden widths' ratio by hand."""

from __future__ import annotations

import hashlib
import shlex
from pathlib import Path

import pytest
from edited_model import MODEL, measure_run, torch_step_flops, write_model  # tests/bench/ is on sys.path

from bench import runs as run_record
from bench.cli import main
from bench.report import change, compare

IN, OUT, BATCH = 16, 8, 4


def _sha8(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


@pytest.fixture(scope="module")
def edited_pair(tmp_path_factory) -> tuple[Path, Path, str, str]:
    """Runs A (hidden 250) and B (hidden 300, the file edited) of models/edited.py, and each source's sha8."""
    monkeypatch = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("edited")
    project = root / "project"
    try:
        sha_a = _sha8(write_model(project, 250))
        a = measure_run(project, root / "A", monkeypatch, BATCH, IN, OUT)
        sha_b = _sha8(write_model(project, 300))
        b = measure_run(project, root / "B", monkeypatch, BATCH, IN, OUT)
    finally:
        monkeypatch.undo()
    return a, b, sha_a, sha_b


def test_an_edited_model_file_is_paired_and_its_edit_named(edited_pair):
    a, b, sha_a, sha_b = edited_pair
    result = compare.compare(run_record.load_run(a), run_record.load_run(b))
    table = result.table
    assert len(table) == 1 and table["case"].iloc[0].startswith(MODEL)
    assert table["change"].iloc[0] == f"model source {sha_a}.. -> {sha_b}.."


def test_the_work_counters_state_the_edits_plus_20_percent_exactly(edited_pair):
    a, b, *_ = edited_pair
    flops_a, flops_b = torch_step_flops(IN, 250, OUT, BATCH), torch_step_flops(IN, 300, OUT, BATCH)
    assert flops_b * 5 == flops_a * 6  # the reference itself: +20% exactly (hidden 300 / 250)
    row = compare.compare(run_record.load_run(a), run_record.load_run(b)).table.iloc[0]
    assert row["work_verdict"] == change.Work.MORE
    assert row["work"] == "+20.0% matmul FLOPs (exact)"
    assert row["work_detail"].startswith(f"work per step +20.0%, exact: matmul FLOPs +20.0% ({flops_a:,} -> "
                                         f"{flops_b:,})")
    params = lambda h: IN * h + h + h * OUT + OUT  # noqa: E731 - two Linears with biases, by hand
    assert f"parameters {params(300) / params(250) - 1:+.1%} ({params(250):,} -> {params(300):,})" in row["work_detail"]


def test_compare_says_the_change_the_work_and_the_command_that_decides(edited_pair, capsys):
    a, b, sha_a, sha_b = edited_pair
    assert main(["compare", str(a), str(b)]) == 0
    captured = capsys.readouterr()
    assert "not paired" not in captured.err
    out = captured.out
    assert f"Change under test: model source {sha_a}.. -> {sha_b}.. (1 case(s)" in out
    assert "work per step +20.0%, exact" in out and "| work (exact)" in out
    assert "Every case compared is the change under test" in out  # the run-level factor cannot time it
    assert "**inconclusive**" in out
    assert f"`mlpbench compare {shlex.quote(str(a))} {shlex.quote(str(b))} --confirm`" in out


def test_an_aa_pair_of_the_same_file_names_no_change_and_the_same_work(tmp_path, monkeypatch):
    project = tmp_path / "project"
    write_model(project, 250)
    a = measure_run(project, tmp_path / "A", monkeypatch, BATCH, IN, OUT)
    b = measure_run(project, tmp_path / "B", monkeypatch, BATCH, IN, OUT)
    row = compare.compare(run_record.load_run(a), run_record.load_run(b)).table.iloc[0]
    assert row["change"] == "" and row["work_verdict"] == change.Work.SAME and row["work"] == "same (exact)"
    assert "matmul FLOPs" in row["work_detail"] and "parameters" in row["work_detail"]


def test_other_model_args_are_paired_as_the_change_under_test(tmp_path, monkeypatch):
    project = tmp_path / "project"
    write_model(project, 250)
    a = measure_run(project, tmp_path / "A", monkeypatch, BATCH, IN, OUT, model_args={"hidden": 250})
    b = measure_run(project, tmp_path / "B", monkeypatch, BATCH, IN, OUT, model_args={"hidden": 300})
    table = compare.compare(run_record.load_run(a), run_record.load_run(b)).table
    assert len(table) == 1
    assert table["change"].iloc[0] == "model args hidden=250 -> hidden=300"
    assert table["work"].iloc[0] == "+20.0% matmul FLOPs (exact)"


def test_a_counter_only_one_run_recorded_is_not_compared_and_a_fall_is_less_work():
    row = {"matmul_flops_a": 100.0, "matmul_flops_b": 80.0, "aten_ops_a": 10, "aten_ops_b": float("nan"),
           "parameters_a": 5, "parameters_b": 5}
    verdict = change.work(row)
    assert verdict.verdict == change.Work.LESS and verdict.compared == ("matmul FLOPs", "parameters")
    assert verdict.short == "-20.0% matmul FLOPs (exact)"
    assert change.work({"matmul_flops_a": 1.0, "matmul_flops_b": 2.0, "parameters_a": 5,
                        "parameters_b": 4}).verdict == change.Work.MIXED
    assert change.work({}).verdict == change.Work.UNCOUNTED and change.work({}).short == ""


def test_the_mlpbench_commit_is_named_when_it_differs():
    assert change.run_change({"git_commit": "a" * 40}, {"git_commit": "b" * 40 + "-dirty"}) == \
        "mlpbench commit aaaaaaaa.. -> bbbbbbbb..-dirty"
    assert change.run_change({"git_commit": "a" * 40}, {"git_commit": "a" * 40}) == ""


def test_the_run_level_factor_is_the_unchanged_cases_own():
    """Three control cases at 1.10 (the machine) and six edited ones at 1.60: the factor is the controls' 1.10, by
    hand, not the median over all nine (1.60, which would call the edit no change at all)."""
    import pandas as pd

    ratios = [1.10] * 3 + [1.60] * 6
    table = pd.DataFrame({"phase": "step", "ratio": ratios, "ci_low": [r * 0.99 for r in ratios],
                          "ci_high": [r * 1.01 for r in ratios],
                          "change": [""] * 3 + ["model source a.. -> b.."] * 6,
                          "work_verdict": [change.Work.SAME] * 3 + [change.Work.MORE] * 6})
    judged, factors, _ = compare.judge(table, [])
    assert factors["step"].factor == pytest.approx(1.10) and factors["step"].n_cases == 3
    assert judged.loc[3:, "relative"].to_numpy() == pytest.approx(1.60 / 1.10)
    every = table.assign(change="model source a.. -> b..")  # no control: every case (compare says so)
    assert compare.judge(every, [])[1]["step"].factor == pytest.approx(1.60)


def test_a_run_from_a_sweep_file_is_also_offered_the_gate_against_head():
    lines = change.decide_lines("runs/a b", "runs/B", "sweeps/ci.toml")
    assert lines[0].startswith("Decide the timing: `mlpbench compare 'runs/a b' runs/B --confirm`")
    assert "`mlpbench check --suite sweeps/ci.toml --against HEAD`" in lines[1]
    assert len(change.decide_lines("a", "b")) == 1
