"""``mlpbench history`` end to end through the CLI, on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from conftest import reference_rows, write_run

from bench.cli import main

FLAT, STEPPED = 12, 5  # commits before the step, and after it (within --last 10)


def _history(tmp_path, db, step: float) -> list[str]:
    """FLAT + STEPPED commits of two cases, 1% noise; the last STEPPED commits ``step`` slower."""
    rng = np.random.default_rng(0)
    rows, commits = reference_rows(2), []
    for i in range(FLAT + STEPPED):
        scale = (1.0 + 0.01 * rng.standard_normal()) * (1.0 + (step if i >= FLAT else 0.0))
        commits.append(f"{i:02d}" + "a" * 38)
        run = write_run(tmp_path / f"run{i}", rows, scale=scale)
        assert main(["history", "add", str(run), "--commit", commits[-1], "--db", db]) == 0
    return commits


def test_a_flat_history_passes(tmp_path, db_url, capsys):
    _history(tmp_path, db_url, step=0.0)
    assert main(["history", "check", "--db", db_url]) == 0
    assert "no change in the last 10 commits: PASS" in capsys.readouterr().out


def test_a_recent_slowdown_fails_and_names_the_commit_the_cases_and_the_step(tmp_path, db_url, capsys):
    commits = _history(tmp_path, db_url, step=0.25)
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    assert main(["history", "check", "--db", db_url, "--metric", "median_s", "--markdown", str(summary)]) == 1
    out = capsys.readouterr().out
    labels = {r["label"] for r in reference_rows(2)}
    assert f"`{commits[FLAT][:8]}`: 2 case(s): {', '.join(sorted(labels))}" in out
    steps = [float(m) for m in re.findall(r"\| \+(\d+\.\d+)% \(", out)]
    assert len(steps) == 10 and all(22 < s < 28 for s in steps), steps  # 2 cases x 5 phases; injected +25%
    text = summary.read_text()
    assert text.startswith("earlier step\n## mlpbench history:")  # appended, as $GITHUB_STEP_SUMMARY wants
    # the step is 5 commits old: outside the last 3
    assert main(["history", "check", "--db", db_url, "--last", "3"]) == 0


def test_plot_writes_one_figure_per_case_and_a_summary(tmp_path, capsys):
    db = str(tmp_path / "h.sqlite")
    _history(tmp_path, db, step=0.25)
    out = tmp_path / "plots"
    assert main(["history", "plot", "--db", db, "--out", str(out)]) == 0
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 2 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    summary = (out / "summary.md").read_text()
    assert all(f"]({p.name})" in summary for p in pngs) and "FAIL" in summary


def test_instruction_counts_from_a_gate_json_are_a_series_of_their_own(tmp_path, capsys):
    db = str(tmp_path / "h.sqlite")
    for i, count in enumerate([1_000_000] * 8 + [1_010_000] * 5):  # 5 a side: MIN_POINTS_EACH_SIDE
        rows = [{"label": "teaching b64", "case_id": "abc", "variant": "none", "phase": "step",
                 "a_per_step": [1.0], "b_per_step": [count + d for d in (-50, 0, 50)]}]
        gate = tmp_path / f"gate{i}.json"
        gate.write_text(json.dumps({"wall_s": 60.0 + i,  # each real gate run differs at least in its time
                                    "instructions": {"cpu_model": "AMD EPYC", "torch": "2.14.1", "rows": rows}}))
        assert main(["history", "add", str(gate), "--commit", f"c{i:02d}", "--db", db]) == 0
    assert main(["history", "check", "--db", db, "--metric", "instructions_per_step"]) == 1
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| `c08`"))
    assert row.startswith("| `c08` | teaching b64 | step | instructions_per_step | 1,000,000 → 1,010,000 | +1.00%")
    assert "exact" not in row  # a measured count that repeats is still measured (issue 47): its interval is shown


@pytest.mark.parametrize("argv, message", [
    (["history"], "history needs a verb"),
    (["history", "check", "--last", "0"], "--last '0'"),
    (["history", "check", "--db", "{tmp}/missing.sqlite"], "no history database at"),
    (["history", "add", "{tmp}/nothing-here"], "no run folder at"),
    (["history", "add", "{tmp}/run"], "does not record its git commit; give --commit SHA"),
    (["history", "add", "{tmp}/gate.json", "--db", "{tmp}/h.sqlite"], "no instruction counts"),
    (["history", "check", "--db", "{tmp}/h.sqlite", "--metric", "nope"], "--metric: no series of nope"),
    (["history", "check", "--db", "{tmp}/h.sqlite", "--penalty", "-1"], "--penalty '-1'"),
    (["history", "check", "--db", "postgresql://nobody@127.0.0.1:1/none"], "cannot open the history database"),
    (["history", "evaluate", "--series", "x"], "--series 'x'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    write_run(tmp_path / "run", reference_rows(1))  # meta.json says git_commit "unknown"
    (tmp_path / "gate.json").write_text(json.dumps({"instructions": None}))
    assert main(["history", "add", str(write_run(tmp_path / "ok", reference_rows(1))), "--commit", "c1",
                 "--db", str(tmp_path / "h.sqlite")]) == 0
    capsys.readouterr()
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mlpbench: error: ") and message in err and err.count("\n") == 1, err


def test_a_bad_run_among_several_adds_nothing(tmp_path, capsys):
    db = tmp_path / "h.sqlite"
    good = write_run(tmp_path / "good", reference_rows(1))
    assert main(["history", "add", str(good), str(tmp_path / "missing"), "--commit", "c1", "--db", str(db)]) == 2
    assert not db.exists()


def test_two_identical_runs_as_two_commits_are_not_enough_history(tmp_path, capsys):
    """Issue 41: two identical runs added as two commits failed the build (+55%, exit 1). A short history
    is refused as a judge: "not enough history", exit 0, whatever its two points say."""
    db = str(tmp_path / "h.sqlite")  # a real SQLite database, through the CLI
    rows = reference_rows(2)
    for i, scale in enumerate((1.0, 1.55)):
        run = write_run(tmp_path / f"run{i}", rows, scale=scale)
        assert main(["history", "add", str(run), "--commit", f"{i:02d}" + "b" * 38, "--db", db]) == 0
    capsys.readouterr()
    assert main(["history", "check", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "## mlpbench history: not enough history" in out and "a change needs 5 on each side" in out


def test_a_step_fails_only_once_five_commits_a_side_hold_it(tmp_path, capsys):
    db = str(tmp_path / "h.sqlite")
    rows, rng = reference_rows(1), np.random.default_rng(3)
    codes = []
    for i in range(9):  # 5 before, then 4 after a +30% step: too short to judge
        scale = (1.0 + 0.01 * rng.standard_normal()) * (1.3 if i >= 5 else 1.0)
        run = write_run(tmp_path / f"run{i}", rows, scale=scale)
        assert main(["history", "add", str(run), "--commit", f"{i:02d}" + "c" * 38, "--db", db]) == 0
        if i >= 7:
            codes.append(main(["history", "check", "--db", db, "--metric", "median_s"]))
    assert codes == [0, 0]
    assert "not enough history" in capsys.readouterr().out
    run = write_run(tmp_path / "run9", rows, scale=1.3)  # the fifth commit after the step
    assert main(["history", "add", str(run), "--commit", "09" + "c" * 38, "--db", db]) == 0
    assert main(["history", "check", "--db", db, "--metric", "median_s"]) == 1
