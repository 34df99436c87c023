"""Bad input, tried as a new user would: each is one line on stderr, the exit code it is due, and no byte of a run
folder (or of anything else in the test's folder) changes.

Every input runs in this process through ``bench.cli.main`` against copies of one real run folder, measured once
per session (``cpu_run_dir``, shared with the other report tests), so the whole table costs well under a second an
input. Inputs from issue 42 are marked ``issue``; the others were found by trying the CLI. The expected lines are
written out here by hand, never taken from the code. A kill -9 in the middle of a case needs a real process: that
part is ``e2e``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pytest

from bench import runs
from bench.cli import main
from bench.errors import EXIT_USAGE
from bench.instruments.timing import TimingConfig
from tools.gpuref.command import main as kit_main

REPO = Path(__file__).resolve().parents[3]
BASELINE = REPO / "results/baselines/cpu-gate.json"
WAIT_S = 240  # a loaded 2-core machine: torch import, the ceilings, then the case


# --------------------------------------------------------------------------- damage, applied to a copy


KIT = "gpu-reference"  # an input of `make gpu-reference` (python -m tools.gpuref), not of mlpbench


def _summary(column: str, value: str, name: str = runs.SUMMARY_CSV) -> Callable[[Path], None]:
    """The first row's ``column`` of ``name`` (summary.csv) set to ``value``, the text a user's editor would leave."""
    def damage(tmp: Path) -> None:
        path = tmp / "run" / name
        frame = pd.read_csv(path, keep_default_na=False, dtype=str)
        frame.loc[0, column] = value
        runs.write_table(path, frame)
    return damage


def _every_summary(**values: str) -> Callable[[Path], None]:
    def damage(tmp: Path) -> None:
        for name, samples in ((runs.SUMMARY_CSV, False), (runs.SAMPLES_CSV, True)):
            path = tmp / "run" / name
            frame = pd.read_csv(path, keep_default_na=False, dtype=str)
            for column, value in values.items():
                if column in frame.columns and (column == "seconds") == samples:
                    frame[column] = value
            runs.write_table(path, frame)
    return damage


def _samples(column: str, value: str) -> Callable[[Path], None]:
    return _summary(column, value, runs.SAMPLES_CSV)


def _meta(**values) -> Callable[[Path], None]:
    def damage(tmp: Path) -> None:
        path = tmp / "run" / runs.META_JSON
        path.write_text(json.dumps({**json.loads(path.read_text()), **values}))
    return damage


def _duplicate_rows(tmp: Path) -> None:
    path = tmp / "run" / runs.SUMMARY_CSV
    frame = pd.read_csv(path, keep_default_na=False, dtype=str)
    runs.write_table(path, pd.concat([frame, frame.iloc[:1]]))


def _folder_for(name: str) -> Callable[[Path], None]:
    def damage(tmp: Path) -> None:
        (tmp / "run" / name).unlink()
        (tmp / "run" / name).mkdir()
    return damage


def _empty_file(name: str) -> Callable[[Path], None]:
    def damage(tmp: Path) -> None:
        (tmp / name).write_bytes(b"")
    return damage


def _both(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def damage(tmp: Path) -> None:
        for step in steps:
            step(tmp)
    return damage


def _nothing(tmp: Path) -> None:
    pass


# --------------------------------------------------------------------------- the inputs


@dataclass(frozen=True)
class Input:
    name: str
    argv: str  # {tmp} is the test's folder: copies of the real run ({tmp}/run, {tmp}/other) and of a history
    line: str  # the whole first (and only) line on stderr, a regex; {tmp} is the folder
    code: int = EXIT_USAGE
    damage: Callable[[Path], None] = _nothing
    issue: bool = False  # an input listed in issue 42


E = "mlpbench: error: "
RECORD = r" is a file of the run folder {tmp}/(run|other), which nothing but its run writes; choose a path outside it"
INPUTS = [
    # ---- issue 42: data lost
    Input("compare --out onto a measured summary", "compare {tmp}/run {tmp}/other --out {tmp}/other/summary.csv",
          E + "--out {tmp}/other/summary.csv" + RECORD, issue=True),
    Input("history check --markdown onto a measured summary",
          "history check --db {tmp}/H.sqlite --markdown {tmp}/run/summary.csv",
          E + "--markdown {tmp}/run/summary.csv" + RECORD, issue=True),
    # ---- issue 42: exit 1 where a one-line exit 2 is due
    Input("run --out onto a file", "run --width 16 --depth 1 --batch 4 --device cpu --out {tmp}/file",
          E + "--out {tmp}/file is a file; --out takes a folder", damage=_empty_file("file"), issue=True),
    Input("report --out onto a file", "report {tmp}/run --out {tmp}/file",
          E + "--out {tmp}/file is a file; --out takes a folder", damage=_empty_file("file"), issue=True),
    Input("profile --out onto a file", "profile --network teaching --batch 4 --device cpu --out {tmp}/file",
          E + "--out {tmp}/file is a file; --out takes a folder", damage=_empty_file("file"), issue=True),
    Input("gpu-reference --out onto a file", "gpu-reference --device cpu --tiny --out {tmp}/file",
          E + "--out {tmp}/file is a file; --out takes a folder", damage=_empty_file("file"), issue=True),
    Input("compare --out onto a folder", "compare {tmp}/run {tmp}/other --out {tmp}/other",
          E + "--out {tmp}/other is a folder; --out takes a file", issue=True),
    *(Input(f"{command} with a median_s of {value}", argv,
            E + "{tmp}/run/summary.csv: line 2: median_s '" + value + "' \\(expected a number >= 0\\)",
            damage=_summary("median_s", value), issue=True)
      for value in ("nan", "abc")
      for command, argv in (("show", "show {tmp}/run"), ("compare", "compare {tmp}/other {tmp}/run"),
                            ("report", "report {tmp}/run --out {tmp}/report"))),
    Input("--resume with meta.json cases [1,2]", "run --resume {tmp}/run",
          E + "{tmp}/run/meta.json: cases\\[0\\] is int 1, expected a case's fields \\(an object\\)",
          damage=_meta(cases=[1, 2]), issue=True),
    Input("--resume with meta.json run_s 'abc'", "run --resume {tmp}/run",
          E + "{tmp}/run/meta.json: 'run_s' is str \"abc\", expected float", damage=_meta(run_s="abc"), issue=True),
    # ---- issue 42: wrong values accepted
    Input("compare with zero medians", "compare {tmp}/other {tmp}/run",
          E + "{tmp}/run/summary.csv: line 2: median_s 0 \\(a measured \\(ok\\) row needs a time > 0\\)",
          damage=_every_summary(median_s="0", ci_low_s="0", ci_high_s="0", seconds="0.001"), issue=True),
    Input("history check on a 0-byte file", "history check --db {tmp}/empty.sqlite",
          E + "{tmp}/empty.sqlite is not a history database \\(an empty file\\); "
              "add runs with `mlpbench history add RUN --db FILE`", damage=_empty_file("empty.sqlite"), issue=True),
    # ---- found by trying the CLI
    Input("--min-time-s nan", "run --width 16 --depth 1 --batch 4 --min-time-s nan --dry-run",
          E + "min_time_s must be a finite number, got nan"),
    Input("--warmup-s inf (a warm-up without end)", "run --width 16 --depth 1 --batch 4 --warmup-s inf --dry-run",
          E + "warmup_s must be a finite number, got inf"),
    Input("--resume with a case flag (ignored before)", "run --resume {tmp}/run --width 32 --dry-run",
          E + "--resume {tmp}/run measures the run's own cases; --width cannot change them "
              "\\(start a new run with --out for other cases\\)"),
    Input("--resume with --preset (ignored before)", "run --resume {tmp}/run --preset quick --dry-run",
          E + "--resume {tmp}/run measures the run's own cases; --preset cannot change them "
              "\\(start a new run with --out for other cases\\)"),
    Input("--resume with another --out (ignored before)", "run --resume {tmp}/run --out {tmp}/other --dry-run",
          E + "--resume {tmp}/run writes into that run folder; leave out --out {tmp}/other"),
    Input("report of one run twice (rows counted twice)", "report {tmp}/run {tmp}/run --out {tmp}/report",
          E + "{tmp}/run is given twice; a report merges different runs"),
    Input("an unknown status", "show {tmp}/run",
          E + "{tmp}/run/summary.csv: line 2: status 'weird' \\(valid: ok, skipped, oom, error, crashed\\)",
          damage=_summary("status", "weird")),
    Input("a width of abc (a pandas merge error before)", "compare {tmp}/other {tmp}/run",
          E + "{tmp}/run/summary.csv: line 2: width 'abc' \\(expected a whole number\\)",
          damage=_summary("width", "abc")),
    Input("a row twice", "report {tmp}/run --out {tmp}/report",
          E + "{tmp}/run/summary.csv: line \\d+: case_id '[0-9a-f]+' \\(a second row of the same case_id x phase\\)",
          damage=_duplicate_rows),
    Input("a blank case_id", "show {tmp}/run",
          E + "{tmp}/run/summary.csv: line 2: case_id blank \\(every row names its case\\)",
          damage=_summary("case_id", "")),
    Input("a median_s of inf", "compare {tmp}/other {tmp}/run",
          E + "{tmp}/run/summary.csv: line 2: median_s inf \\(expected a number >= 0\\)",
          damage=_summary("median_s", "inf")),
    Input("a negative median_s", "report {tmp}/run --out {tmp}/report",
          E + "{tmp}/run/summary.csv: line 2: median_s -0.001 \\(expected a number >= 0\\)",
          damage=_summary("median_s", "-0.001")),
    Input("an ok row without a median", "show {tmp}/run",
          E + "{tmp}/run/summary.csv: line 2: median_s blank \\(a measured \\(ok\\) row needs a time > 0\\)",
          damage=_summary("median_s", "")),
    Input("a sample of abc (a float() error before)", "compare {tmp}/other {tmp}/run",
          E + "{tmp}/run/samples.csv: line 2: seconds 'abc' \\(expected a number > 0\\)",
          damage=_samples("seconds", "abc")),
    Input("a negative sample", "compare {tmp}/other {tmp}/run",
          E + "{tmp}/run/samples.csv: line 2: seconds -1 \\(expected a number > 0\\)",
          damage=_samples("seconds", "-1")),
    Input("meta.json is a folder (read as no meta before)", "show {tmp}/run",
          E + "{tmp}/run/meta.json: not a file", damage=_folder_for(runs.META_JSON)),
    Input("samples.csv is a folder (read as no samples before)", "compare {tmp}/other {tmp}/run",
          E + "{tmp}/run/samples.csv: cannot be read \\(Is a directory\\)", damage=_folder_for(runs.SAMPLES_CSV)),
    Input("a crash count of abc", "run --resume {tmp}/run",
          E + "{tmp}/run/meta.json: crashes\\['x'\\] is str \"abc\", expected int", damage=_meta(crashes={"x": "abc"})),
    Input("n_cases of many", "show {tmp}/run",
          E + "{tmp}/run/meta.json: 'n_cases' is str \"many\", expected int", damage=_meta(n_cases="many")),
    Input("a recorded repeats of abc", "run --resume {tmp}/run",
          E + "{tmp}/run/meta.json: timing_config: repeats must be a finite number, got 'abc'",
          damage=_meta(timing_config={"repeats": "abc"})),
    Input("a recorded repeats of 0", "run --resume {tmp}/run",
          E + "{tmp}/run/meta.json: timing_config: repeats must be >= 1, got 0",
          damage=_meta(timing_config={"repeats": 0})),
    Input("a recorded case of width abc (no file named before)", "run --resume {tmp}/run",
          E + "{tmp}/run/meta.json: cases\\[0\\]: width must be an integer, got 'abc'",
          damage=_meta(cases=[{"width": "abc"}])),
    Input("history add --db onto a run's lock file (a database written into it)",
          "history add {tmp}/run --commit abc123 --db {tmp}/run/.lock",
          E + "--db {tmp}/run/.lock is a file of the run folder {tmp}/run, not a history database"),
    Input("history add --db onto a measured summary",
          "history add {tmp}/run --commit abc123 --db {tmp}/run/summary.csv",
          E + "--db {tmp}/run/summary.csv is a file of the run folder {tmp}/run, not a history database"),
    Input("history check --markdown onto the history itself",
          "history check --db {tmp}/H.sqlite --markdown {tmp}/H.sqlite",
          E + "--markdown {tmp}/H.sqlite is a SQLite database \\(a measurement history\\); choose another file",
),
    Input("history plot --out onto a measured summary", "history plot --db {tmp}/H.sqlite --out {tmp}/run/summary.csv",
          E + "--out {tmp}/run/summary.csv is a file; --out takes a folder"),
    Input("gpu-reference --archive onto meta.json",
          "gpu-reference --device cpu --tiny --out {tmp}/kit --archive {tmp}/run/meta.json",
          E + "--archive {tmp}/run/meta.json" + RECORD),
    Input("check --markdown onto its own baseline",
          "check --baseline {tmp}/base.json --layers counters --markdown {tmp}/base.json",
          E + "--markdown {tmp}/base.json is also this command's input; choose another file",
          damage=lambda tmp: shutil.copy(BASELINE, tmp / "base.json")),
    Input("check --write-baseline onto meta.json", "check --write-baseline {tmp}/run/meta.json",
          E + "--write-baseline {tmp}/run/meta.json" + RECORD),
    Input("compare --out below a file", "compare {tmp}/run {tmp}/other --out {tmp}/file/compare.md",
          E + "--out {tmp}/file/compare.md: {tmp}/file is a file, not a folder", damage=_empty_file("file")),
    Input("compare --out onto a run's samples.csv", "compare {tmp}/run {tmp}/other --out {tmp}/run/samples.csv",
          E + "--out {tmp}/run/samples.csv" + RECORD),
]
ISSUE_INPUTS = sum(i.issue for i in INPUTS)
OWN_INPUTS = len(INPUTS) - ISSUE_INPUTS


@pytest.fixture(scope="module")
def history_db(cpu_run_dir, tmp_path_factory) -> Path:
    """A real history database holding the run (``mlpbench history add``)."""
    path = tmp_path_factory.mktemp("history") / "H.sqlite"
    assert main(["history", "add", str(cpu_run_dir), "--commit", "abc123", "--db", str(path)]) == 0
    return path


def _tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def _copies(tmp: Path, run: Path, history: Path) -> None:
    for name in ("run", "other"):
        shutil.copytree(run, tmp / name, ignore=shutil.ignore_patterns("report.md", "plots"))
    shutil.copy(history, tmp / "H.sqlite")


@pytest.mark.parametrize("case", INPUTS, ids=[i.name for i in INPUTS])
def test_bad_input_is_one_line_and_changes_no_byte(case: Input, tmp_path, cpu_run_dir, history_db, capsys):
    _copies(tmp_path, cpu_run_dir, history_db)
    case.damage(tmp_path)
    before, pristine = _tree(tmp_path), _tree(cpu_run_dir)
    argv = case.argv.format(tmp=tmp_path).split()
    code = kit_main(argv[1:]) if argv[0] == KIT else main(argv)  # the GPU kit is `python -m tools.gpuref`
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == case.code, err
    assert len(err) == 1 and re.fullmatch(case.line.format(tmp=re.escape(str(tmp_path))), err[0]), err
    assert _tree(tmp_path) == before  # nothing written, nothing changed: not one byte
    assert _tree(cpu_run_dir) == pristine


def test_the_inputs_cover_the_issue_and_twenty_more():
    assert ISSUE_INPUTS >= 17 and OWN_INPUTS >= 20, (ISSUE_INPUTS, OWN_INPUTS)


# --------------------------------------------------------------------------- inputs that need more than one line


def test_a_dry_run_says_which_case_the_memory_check_would_skip(capsys):
    """The real run skips a case bigger than memory before building it; its dry run now says so too."""
    code = main("run --width 100000000 --batch 100000000 --device cpu --dry-run".split())
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert re.fullmatch(r"[0-9a-f]{12}  w100000000 d2 relu b100000000 cpu fp32 eager  \(would be skipped: needs "
                        r"\d+\.\d GiB, \d+\.\d GiB available \(CPU MemAvailable\); not built\)", out[0]), out
    assert out[-1] == "1 cases (dry run: nothing measured; 1 over the memory available)"


def test_make_gpu_reference_with_a_python_without_pandas_is_one_line_naming_it_and_the_py_to_use(tmp_path):
    """The issue's command, ``make gpu-reference`` with a ``PY=`` that cannot import pandas (a wrapper that blocks it)."""
    python = tmp_path / "python-without-pandas"
    python.write_text(f"""#!/bin/sh
shift 2  # make runs: $(PY) -m tools.gpuref ARGS
exec {sys.executable} -c 'import runpy, sys; sys.modules["pandas"] = None; sys.argv[0] = "tools.gpuref"; \\
runpy.run_module("tools.gpuref", run_name="__main__")' "$@"
""")
    python.chmod(0o755)
    proc = subprocess.run(["make", "-s", "gpu-reference", f"PY={python}", f"OUT={tmp_path / 'kit'}",
                           "ARGS=--device cpu --tiny"], capture_output=True, text=True, cwd=REPO, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert re.fullmatch(rf"mlpbench: error: {re.escape(sys.executable)} lacks the package 'pandas'; run with a python "
                        r"that has the project's packages \(make targets: PY=\S+\) or install them there "
                        r"\(pip install -c constraints.txt -e .\)", err[0]), proc.stderr
    assert len(err) == 2 and re.fullmatch(r"make(\[\d+\])?: \*\*\* \[.*gpu-reference\] Error 2", err[1]), err  # exit code 2
    assert not (tmp_path / "kit").exists()


def _killed_mid_case(tmp: Path, run: Path, config: TimingConfig) -> tuple[Path, str]:
    """A copy of ``run`` as ``kill -9`` leaves it mid-case: one case without rows, marked in flight by a dead pid."""
    folder = tmp / "killed"
    shutil.copytree(run, folder, ignore=shutil.ignore_patterns("report.md", "plots"))
    case_id = runs.load_run(folder).summary["case_id"].iloc[0]
    for name in (runs.SUMMARY_CSV, runs.SAMPLES_CSV):
        frame = pd.read_csv(folder / name, keep_default_na=False, dtype=str)
        runs.write_table(folder / name, frame[frame["case_id"] != case_id])
    meta = runs.read_meta(folder / runs.META_JSON)
    meta.timing_config, meta.in_flight = asdict(config), {"case_id": case_id, "label": "", "pid": 2**22 + 1}
    runs.write_meta(folder / runs.META_JSON, meta)
    return folder, case_id


def test_resume_keeps_the_runs_own_timing_and_says_so(tmp_path, cpu_run_dir, capsys, monkeypatch):
    """The issue's run (``--max-case-s inf --repeats 200``, killed) resumed with no flag: before, meta.json was
    rewritten with repeats 12 and max_case_s 60 (the preset's defaults). Small numbers here, the same check."""
    from bench.engine import runner

    monkeypatch.setattr(runner, "measure_case_shapes", lambda ceiling, *args: ceiling)  # not what is tested here
    recorded = TimingConfig(repeats=5, warmup_s=0.0, min_warmup_iters=1, min_block_s=0.002, max_case_s=None)
    folder, case_id = _killed_mid_case(tmp_path, cpu_run_dir, recorded)
    code = main(["run", "--resume", str(folder), "--no-progress", "--no-show"])
    err = capsys.readouterr().err.splitlines()
    assert code == 0, err
    assert err[0] == (f"mlpbench: resuming {folder} with its own timing: --repeats 5, --min-time-s 0, --warmup-s 0, "
                      "--max-case-s inf")
    run = runs.load_run(folder)
    assert run.meta.timing_config == asdict(recorded)
    assert run.meta.crashes == {case_id: 1}  # the death is counted: the next one makes it `crashed`
    step = run.samples[(run.samples["case_id"] == case_id) & (run.samples["phase"] == "step")]
    assert len(step) == recorded.repeats
    assert (run.summary[run.summary["case_id"] == case_id]["status"] == "ok").all()


def test_a_timing_flag_given_with_resume_overrides_the_record_and_the_line_says_so(tmp_path, cpu_run_dir, capsys):
    recorded = TimingConfig(repeats=200, max_case_s=None)
    folder, _ = _killed_mid_case(tmp_path, cpu_run_dir, recorded)
    before = _tree(folder)
    assert main(["run", "--resume", str(folder), "--repeats", "3", "--dry-run"]) == 0
    assert capsys.readouterr().err.splitlines()[0] == (
        f"mlpbench: resuming {folder} with its own timing: --min-time-s 0, --warmup-s 0.25, --max-case-s inf; "
        "changed by flags: --repeats 3")
    assert _tree(folder) == before


# --------------------------------------------------------------------------- a real kill -9


def _mlpbench(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=REPO, env=env, stdout=log.open("a"),
                            stderr=subprocess.STDOUT)


def _wait_in_flight(folder: Path, proc: subprocess.Popen, log: Path) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited {proc.returncode} before its case was in flight: {log.read_text()[-2000:]}"
        meta = json.loads((folder / runs.META_JSON).read_text()) if (folder / runs.META_JSON).is_file() else {}
        if (meta.get("in_flight") or {}).get("pid") == proc.pid:
            return meta
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no case in flight after {WAIT_S} s: {log.read_text()[-2000:]}")


def _kill_9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=WAIT_S) == -signal.SIGKILL


@pytest.mark.e2e
def test_kill_9_then_resume_without_flags_keeps_repeats_200_and_no_case_budget_until_crashed(tmp_path):
    """The issue's commands: a case that predicts minutes under ``--repeats 200``. Before, the resume fell back to
    the 60 s default, skipped the case, and its death never reached the ``crashed`` record."""
    out, log = tmp_path / "X", tmp_path / "log.txt"
    first = _mlpbench("run", "--width", "1024", "--depth", "8", "--batch", "2048", "--device", "cpu",
                      "--max-case-s", "inf", "--repeats", "200", "--no-progress", "--no-show", "--out", str(out),
                      log=log)
    _wait_in_flight(out, first, log)
    _kill_9(first)
    second = _mlpbench("run", "--resume", str(out), "--no-progress", "--no-show", log=log)
    meta = _wait_in_flight(out, second, log)  # measured again, not skipped under a budget it never had
    assert meta["timing_config"]["repeats"] == 200 and meta["timing_config"]["max_case_s"] is None
    assert meta["crashes"] == {meta["in_flight"]["case_id"]: 1}
    _kill_9(second)
    last = _mlpbench("run", "--resume", str(out), "--no-progress", "--no-show", log=log)
    assert last.wait(timeout=WAIT_S) == 0, log.read_text()[-2000:]
    run = runs.load_run(out)
    assert (run.summary["status"] == "crashed").all()
    assert run.meta.timing_config["repeats"] == 200 and run.meta.timing_config["max_case_s"] is None
    assert "mlpbench: resuming" in log.read_text() and "--repeats 200" in log.read_text()
