"""``mlpbench compare``'s printed answer (bench.report.compare.command), in-process, on run folders written by hand.

test_compare.py drives the command through a real tiny sweep (10-20 s a test); these write each run folder from a
few hand-chosen medians (summary.csv and meta.json, no samples: the ratio is then the two medians' quotient, its
interval B's CI over A's), so every printed line is known in advance: which cases pair, the ratio, the verdict
words, the lines that say what changed and what decides an inconclusive verdict, --out's file, and the one-line
refusals. A run of the command here takes milliseconds, so mutmut can run it for each of ``command``'s mutants.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import pandas as pd
import pytest
from scipy import stats as sps

from bench.errors import UsageError
from bench.model.case_fields import FIELD_DEFAULTS
from bench.report import compare
from bench.report.change import CPU_CLOCK_ADVICE
from bench.report.tables import load_runs
from bench.runs.meta import COMPARABILITY_KEYS, FLAG_KEYS

# Seven cases: six unchanged within +-2% and the last 1.5x slower: the run-level factor (a median) stays 1.000 and
# only the last case is slower (a move of 50% against a case-to-case noise of about 2%).
MOVED = [1.0, 1.01, 0.99, 1.0, 1.02, 0.98, 1.5]
SAME = [1.0] * 7
LABELS = [f"w{8 * (i + 1)}" for i in range(7)]


def write_run(folder: Path, medians, *, phases=("step",), device="cpu", meta=None, extra=None) -> Path:
    """A run folder as the writer leaves it: one ok row per case and phase (a case's phases share its median's
    ratio, a forward row is a third of the step), case ``i`` of width 8(i+1); ``extra``: column -> value per case."""
    folder.mkdir(parents=True)
    rows = []
    for i, median in enumerate(medians):
        for phase in phases:
            m = median if phase == "step" else median / 3
            rows.append({**FIELD_DEFAULTS, "width": 8 * (i + 1), "device": device, "case_id": f"{folder.name}{i}",
                         "label": LABELS[i], "phase": phase, "status": "ok", "reason": "", "median_s": m,
                         "ci_low_s": m * 0.99, "ci_high_s": m * 1.01,
                         **{column: values[i] for column, values in (extra or {}).items()}})
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
    (folder / "meta.json").write_text(json.dumps({"kind": "sweep", **(meta or {})}))
    return folder


def run(a: Path, b: Path, capsys, *, measure=None, **flags) -> list[str]:
    """The command's printed lines, ``measure`` handed in as --confirm's measuring step; the namespace has what
    `mlpbench compare` parses, and ``--confirm`` only where given."""
    args = argparse.Namespace(**{"run_a": str(a), "run_b": str(b), "out": None, "all_phases": False, **flags})
    assert compare.command(args, confirm=measure) == 0
    return capsys.readouterr().out.splitlines()


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def table_rows(lines: list[str]) -> dict[tuple[str, str], dict[str, str]]:
    """(case, phase) -> its printed cells, by the header's names."""
    header = next(i for i, line in enumerate(lines) if line.startswith("| case"))
    names = cells(lines[header])
    rows = {}
    for line in lines[header + 2:]:
        if not line.startswith("|"):
            break
        row = dict(zip(names, cells(line)))
        rows[row["case"], row["phase"]] = row
    return rows


def test_a_slower_case_is_told_line_by_line(tmp_path, capsys):
    a, b = write_run(tmp_path / "a", SAME), write_run(tmp_path / "b", MOVED)
    lines = run(a, b, capsys)
    assert lines[:5] == [f"A = {a}", f"B = {b}", "Fingerprints agree on " + ", ".join(COMPARABILITY_KEYS + FLAG_KEYS)
                         + ".", "Both runs timed on the wall clock.", ""]
    assert lines[5].startswith("Verdict: **slower**: 1 of 7 cases slower beyond the run-level factor 1.000")
    assert lines[6].startswith("Run-level factor (step): 1.000 over 7 cases")
    assert lines[8] == "Work per step: not counted in both runs (no exact counters to compare)."
    assert lines[9] == "" and lines[10].startswith("| case")
    rows = table_rows(lines)
    assert list(rows) == [(label, "step") for label in LABELS]
    for label, median in zip(LABELS, MOVED):  # A's median 1 s: B/A is B's median; the interval B's CI over A's
        row = rows[label, "step"]
        assert (row["A ms"], row["B ms"], row["B/A"]) == ("1000.000", f"{median * 1e3:.3f}", f"{median:.3f}")
        assert row["95% CI (within runs)"] == f"[{median * 0.99 / 1.01:.3f}, {median * 1.01 / 0.99:.3f}]"
    assert [rows[label, "step"]["verdict"] for label in LABELS] == ["inconclusive"] * 6 + ["slower"]
    # the within-run intervals that exclude 1: w56's [1.470, 1.530] and w48's, whose top 0.98 x 1.01 / 0.99 < 1
    end = lines.index("Reasons:")
    assert lines[end - 3:end] == ["", f"7 case-phases: 1 slower, 6 inconclusive; geometric mean B/A = "
                                      f"{sps.gmean(MOVED):.3f}. The within-run intervals alone would flag 2 (they do "
                                      "not hold the drift between runs).", ""]
    assert [line.split(": ")[0:2] for line in lines[end + 1:]] == (
        [[f"- {label} (step)", "inconclusive"] for label in LABELS[:6]] + [["- w56 (step)", "slower"]])
    # a verdict was reached: nothing to advise
    assert not any(line.startswith("Decide the timing") for line in lines) and CPU_CLOCK_ADVICE not in lines


def test_a_faster_case_is_called_faster_overall_too(tmp_path, capsys):
    faster = MOVED[:6] + [1 / 1.5]  # the last case now 1.5x faster: the factor stays 1.000
    lines = run(write_run(tmp_path / "a", SAME), write_run(tmp_path / "b", faster), capsys)
    assert lines[5].startswith("Verdict: **faster**: 1 of 7 cases faster beyond the run-level factor 1.000")
    rows = table_rows(lines)
    assert (rows["w56", "step"]["B/A"], rows["w56", "step"]["verdict"]) == ("0.667", "faster")
    assert [rows[label, "step"]["verdict"] for label in LABELS[:6]] == ["inconclusive"] * 6
    assert f"7 case-phases: 1 faster, 6 inconclusive; geometric mean B/A = {sps.gmean(faster):.3f}." in " ".join(lines)


def test_an_inconclusive_comparison_says_what_decides_it_and_where_the_sweep_file_is(tmp_path, capsys):
    a = write_run(tmp_path / "run a", SAME)  # a space: the pasted command quotes it
    b = write_run(tmp_path / "b", SAME, meta={"sweep_file": "my sweep.toml"})
    lines = run(a, b, capsys)
    assert lines[5].startswith("Verdict: **inconclusive**")
    verdict_rows = [r["verdict"] for r in table_rows(lines).values()]
    assert verdict_rows == ["inconclusive"] * 7
    decide = lines.index(f"Decide the timing: `mlpbench compare {shlex.quote(str(a))} {b} --confirm` re-measures "
                         "A's and B's models as each run recorded them, interleaved in one run")
    assert "'" in shlex.quote(str(a))
    assert lines[decide + 1] == ("or, with your model under git: `mlpbench check --suite 'my sweep.toml' --against "
                                 "HEAD` (A: your last commit, B: your working tree; exact counters and interleaved "
                                 "timing)")
    assert lines[decide + 2] == CPU_CLOCK_ADVICE and lines[decide + 3] == "" and lines[decide + 4].startswith("| case")
    # B without a sweep file: the --confirm line alone
    plain = run(a, write_run(tmp_path / "c", SAME), capsys)
    decide = next(i for i, line in enumerate(plain) if line.startswith("Decide the timing"))
    assert plain[decide + 1] == CPU_CLOCK_ADVICE


def test_on_the_cpu_clock_the_line_says_so_and_no_clock_advice_is_given(tmp_path, capsys):
    cpu = {"timing_config": {"clock": "cpu"}}
    a, b = write_run(tmp_path / "a", SAME, meta=cpu), write_run(tmp_path / "b", SAME, meta=cpu)
    lines = run(a, b, capsys)
    assert lines[3] == "Both runs timed on the cpu clock (a CPU case's CPU time, not wall time)."
    assert any(line.startswith("Decide the timing") for line in lines) and CPU_CLOCK_ADVICE not in lines


def test_runs_on_different_clocks_are_refused_in_one_line(tmp_path):
    a = write_run(tmp_path / "a", SAME, meta={"timing_config": {"clock": "cpu"}})
    b = write_run(tmp_path / "b", SAME)  # a run made before --clock: the wall clock
    assert compare.run_clock(load_runs([str(b)])[0]) == "wall"
    args = argparse.Namespace(run_a=str(a), run_b=str(b), out=None, all_phases=False)
    with pytest.raises(UsageError) as err:
        compare.command(args)
    assert str(err.value) == (f"{a} was timed on the cpu clock and {b} on the wall clock: their seconds are not "
                              "comparable; measure both with the same `mlpbench run --clock`")


def test_confirm_appends_what_its_measuring_step_returns_and_replaces_the_advice_to_run_it(tmp_path, capsys):
    a, b = write_run(tmp_path / "a", SAME), write_run(tmp_path / "b", MOVED)
    seen = []

    def confirm(run_a, run_b, table):
        seen.append((run_a.path, run_b.path, table["case"].tolist(), table["verdict"].tolist()))
        return ["confirmed: line 1", "confirmed: line 2"]
    lines = run(a, b, capsys, measure=confirm, confirm_cases=6)
    assert seen == [] and "confirmed: line 1" not in lines  # the namespace has no --confirm: not asked for
    lines = run(a, b, capsys, measure=confirm, confirm=True)
    assert seen == [(a, b, LABELS, ["inconclusive"] * 6 + ["slower"])]
    assert lines[-3:] == ["", "confirmed: line 1", "confirmed: line 2"]
    same = write_run(tmp_path / "same", SAME)
    asked = run(a, same, capsys, measure=lambda *_: ["measured"], confirm=True)
    assert asked[-2:] == ["", "measured"] and not any(line.startswith("Decide the timing") for line in asked)
    assert CPU_CLOCK_ADVICE in asked  # the clock advice stands: --confirm times on the runs' own clock
    with pytest.raises(UsageError, match=r"^--confirm measures: run it through `mlpbench compare` "
                                         r"\(bench.commands.compare\)$"):
        compare.command(argparse.Namespace(run_a=str(a), run_b=str(b), out=None, all_phases=False, confirm=True))


def test_out_writes_the_printed_text_and_is_checked_before_the_runs_are_read(tmp_path, capsys):
    a, b = write_run(tmp_path / "a", SAME), write_run(tmp_path / "b", MOVED)
    out = tmp_path / "compare.md"
    args = argparse.Namespace(run_a=str(a), run_b=str(b), out=out, all_phases=False)
    assert compare.command(args) == 0
    printed = capsys.readouterr().out
    assert out.read_text() == printed and printed.startswith(f"A = {a}\n")
    folder = tmp_path / "a folder"
    folder.mkdir()
    for run_a in (str(a), str(tmp_path / "no such run")):  # --out is refused first, whatever the runs
        with pytest.raises(UsageError) as err:
            compare.command(argparse.Namespace(run_a=run_a, run_b=str(b), out=folder, all_phases=False))
        assert str(err.value) == f"--out {folder} is a folder; --out takes a file"
    record = (a / "summary.csv").read_text()  # a run's own file: only its run writes there
    with pytest.raises(UsageError, match=r"^--out .*summary\.csv is a file of the run folder"):
        compare.command(argparse.Namespace(run_a=str(a), run_b=str(b), out=a / "summary.csv", all_phases=False))
    assert (a / "summary.csv").read_text() == record


def test_a_data_parallel_run_on_either_side_is_refused(tmp_path):
    a, b = write_run(tmp_path / "a", SAME), write_run(tmp_path / "b", SAME)
    ddp = write_run(tmp_path / "ddp", SAME, meta={"kind": "ddp"})
    for pair in ((ddp, b), (a, ddp)):
        with pytest.raises(UsageError) as err:
            compare.command(argparse.Namespace(run_a=str(pair[0]), run_b=str(pair[1]), out=None, all_phases=False))
        assert str(err.value) == ("compare joins one-process runs; for data-parallel runs use `mlpbench report RUN_A "
                                  "RUN_B --out DIR` (one scaling figure and a table per run)")


def test_runs_without_a_case_in_common_are_refused(tmp_path):
    a = write_run(tmp_path / "a", SAME)
    b = write_run(tmp_path / "b", SAME, extra={"batch": [7] * 7})  # every case at another batch
    with pytest.raises(UsageError) as err:
        compare.command(argparse.Namespace(run_a=str(a), run_b=str(b), out=None, all_phases=False))
    assert str(err.value) == f"{a} and {b} have no measured case in common"


def test_all_phases_adds_every_measured_phase_to_the_step(tmp_path, capsys):
    a = write_run(tmp_path / "a", SAME, phases=("step", "forward", "backward"))
    b = write_run(tmp_path / "b", MOVED, phases=("step", "forward", "backward"))
    assert {phase for _, phase in table_rows(run(a, b, capsys))} == {"step"}
    lines = run(a, b, capsys, all_phases=True)  # overrides the namespace's False
    rows = table_rows(lines)
    assert len(rows) == 21 and {phase for _, phase in rows} == {"step", "forward", "backward"}
    assert rows["w56", "forward"]["B/A"] == "1.500" and rows["w56", "backward"]["verdict"] == "slower"
    assert sorted(line.split(")")[0] for line in lines if line.startswith("Run-level factor (")) == [
        "Run-level factor (backward", "Run-level factor (forward", "Run-level factor (step"]


def test_cpu_and_gpu_runs_pair_ignoring_the_device_and_say_the_fingerprints_differ(tmp_path, capsys):
    a = write_run(tmp_path / "a", SAME, meta={"env": {"torch": "2.5.1", "device_name": "cpu"}})
    b = write_run(tmp_path / "b", MOVED, device="cuda", meta={"env": {"torch": "2.5.1", "device_name": "H100"}})
    lines = run(a, b, capsys)
    assert lines[2] == ("WARNING: the fingerprints differ, so differences may come from the machine: device_name: "
                        "cpu (A) vs H100 (B)")
    assert lines[4] == "Cases matched ignoring device (no case matched on every field)."
    assert len(table_rows(lines)) == 7


def test_a_user_models_changed_arguments_are_the_change_under_test(tmp_path, capsys):
    model = {"model": ["m.py:Net"] * 7}
    a = write_run(tmp_path / "a", SAME, extra={**model, "model_args": ["k=1"] * 7},
                  meta={"env": {"git_commit": "1111111111aa"}})
    b = write_run(tmp_path / "b", MOVED, extra={**model, "model_args": ["k=2"] * 7},
                  meta={"env": {"git_commit": "2222222222bb"}})
    lines = run(a, b, capsys)
    change = [line for line in lines if line.startswith("Change under test")]
    assert change[0] == f"Change under test: model args k=1 -> k=2 (7 case(s): {', '.join(LABELS)})"
    assert change[1].endswith(" (every case)") and "1111111" in change[1] and "2222222" in change[1]
    every = lines.index(change[1]) + 1
    assert lines[every] == ("Every case compared is the change under test: the run-level factor holds the change as "
                            "well as the machine, so two stored runs cannot time it; the exact counters below (no "
                            "noise) and `--confirm` (A and B interleaved in one run) can.")
    assert lines[every + 1] == "" and lines[every + 2].startswith("Verdict: ")
    # one case changed of seven: no such line
    half = write_run(tmp_path / "c", MOVED, extra={**model, "model_args": ["k=1"] * 6 + ["k=2"]})
    lines = run(a, half, capsys)
    assert "Change under test: model args k=1 -> k=2 (1 case(s): w56)" in lines
    assert not any(line.startswith("Every case compared") for line in lines)


def test_exact_work_that_moved_is_listed_below_the_verdict(tmp_path, capsys):
    a = write_run(tmp_path / "a", SAME, extra={"matmul_flops": [100] * 7})
    b = write_run(tmp_path / "b", MOVED, extra={"matmul_flops": [100] * 6 + [150]})
    lines = run(a, b, capsys)
    head = lines.index("Work per step (exact counters, no noise, beside the timing verdict): 1 of 7 case(s) changed:")
    assert lines[head + 1] == "- w56: more work: work per step +50.0%, exact: matmul FLOPs +50.0% (100 -> 150)"
    assert table_rows(lines)["w56", "step"]["work (exact)"] == "+50.0% matmul FLOPs (exact)"


def test_a_flagged_numerics_check_gets_its_column(tmp_path, capsys):
    a = write_run(tmp_path / "a", SAME, extra={"numerics": ["reference"] * 7})
    b = write_run(tmp_path / "b", MOVED, extra={"numerics": ["reference"] * 6 + ["beyond tolerance: grads 1"]})
    rows = table_rows(run(a, b, capsys))
    assert rows["w56", "step"]["numerics vs fp32 eager"] == "B: beyond tolerance: grads 1"
    assert rows["w8", "step"]["numerics vs fp32 eager"] == ""


def test_machine_states_that_differ_leave_no_reasons_to_list(tmp_path, capsys):
    a = write_run(tmp_path / "a", MOVED, meta={"load_average_1m_start": 0.5, "env": {"cpu_count": 2}})
    b = write_run(tmp_path / "b", SAME, meta={"load_average_1m_start": 3.0, "env": {"cpu_count": 2}})
    lines = run(a, b, capsys)
    assert lines[5].startswith("Verdict: **inconclusive**: machine states differ: load")
    assert lines[6] == "Machine state: load 0.5 vs 3.0 (+2.5; tolerance 1.0) (beyond tolerance: verdicts inconclusive)"
    assert "Reasons:" not in lines and lines[-1].startswith("7 case-phases: 7 inconclusive;")
