"""bench.runs, the run record: the committed reference runs read back, the enums are the CSV's words,
columns come from the case's fields, meta.json round-trips, damaged files are one line and exit 2."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import mlp
from bench import runs
from bench.model.case_fields import CaseFields
from bench.case.cases import Case
from bench.cli import main as cli_main
from bench.commands.case_flags import CASE_FLAGS

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "results" / "reference"
REFERENCE_RUNS = sorted(p.parent for p in REFERENCE.rglob(runs.SUMMARY_CSV))


# --------------------------------------------------------------------------- old runs stay readable


def test_there_are_committed_runs_of_both_kinds():
    kinds = {json.loads((p / runs.META_JSON).read_text()).get("kind", "sweep") for p in REFERENCE_RUNS}
    assert len(REFERENCE_RUNS) >= 4 and kinds == {"sweep", "ddp"}


@pytest.mark.parametrize("path", REFERENCE_RUNS, ids=lambda p: p.name)
def test_every_committed_reference_run_reads_back(path):
    run = runs.load_run(path)
    raw_meta = json.loads((path / runs.META_JSON).read_text())
    raw_rows = list(csv.DictReader(io.StringIO((path / runs.SUMMARY_CSV).read_text())))
    assert len(run.summary) == len(raw_rows) and len(run.samples) > 0
    assert run.kind.value == raw_meta.get("kind", "sweep")
    # every key of the old meta.json is kept, with its value, when written back
    written = json.loads(run.meta.to_json())
    assert {k: written[k] for k in raw_meta} == json.loads(json.dumps(raw_meta, default=str))
    # the columns older runs lack are filled with the values those runs meant: each row's case_id (computed
    # when it was measured, from the fields it had then) is the id of the Case rebuilt from the row read back
    for column in set(runs.CASE_COLUMNS) - set(raw_rows[0]):  # older runs: a plain one-process case
        assert set(run.summary[column]) == {getattr(Case(), column)}, column
    for row, raw in zip(run.summary.to_dict("records"), raw_rows):
        assert Case.from_row(row).case_id == raw["case_id"]
        assert row["status"] == raw["status"] and row["status"] in {s.value for s in runs.Status}


def test_status_and_kind_are_the_words_in_the_files():
    assert [s.value for s in runs.Status] == ["ok", "skipped", "oom", "error", "crashed"]
    assert runs.Status.OK == "ok" and str(runs.Status.OOM) == "oom" and f"{runs.Status.CRASHED}" == "crashed"
    text = pd.DataFrame([{"status": runs.Status.SKIPPED}]).to_csv(index=False)
    assert list(csv.reader(io.StringIO(text))) == [["status"], ["skipped"]]
    assert json.loads(json.dumps({"kind": runs.RunKind.DDP})) == {"kind": "ddp"}
    assert set(runs.DONE_STATUSES) == {"ok", "oom", "error", "crashed"}  # --resume measures skipped cases again


def test_columns_and_flags_come_from_the_case_dataclass():
    names = tuple(f.name for f in dataclasses.fields(Case))
    assert runs.CASE_COLUMNS == names == tuple(f.name for f in dataclasses.fields(CaseFields))
    assert runs.LEADING_COLUMNS[:len(names)] == names
    assert {field for field, _ in CASE_FLAGS.values()} == set(names) - set(runs.PARALLEL_DEFAULTS)
    defaults = {f.name: f.default for f in dataclasses.fields(Case)}
    assert runs.PARALLEL_DEFAULTS == {k: defaults[k] for k in runs.PARALLEL_DEFAULTS}
    # CaseFields spells mlp's enum values as plain strings (no torch): they must be the same words
    assert (defaults["dtype"], defaults["optimizer"], defaults["loss"], defaults["param_dtype"],
            defaults["epilogue"]) == (mlp.Precision.FP32.value, mlp.Optimizer.SGD.value, mlp.Loss.MSE.value,
                                      mlp.ParamDtype.FP32.value, mlp.Epilogue.NONE.value)
    assert Case() == Case(**{k: str(v) for k, v in defaults.items()})  # and parse to the same case


def test_the_writer_puts_the_leading_columns_first_whatever_the_row_order():
    row = {"median_s": 0.1, "status": "ok", "reason": "", **Case(width=8, depth=1).to_row(), "phase": "step",
           "case_id": "x", "label": "y", "new_column_s": 1.0}
    frame = runs.summary_frame([row])
    assert list(frame.columns) == [*runs.CASE_COLUMNS, "case_id", "label", "phase", "status", "reason",
                                   "median_s", "new_column_s"]
    assert list(runs.summary_frame([]).columns)  # an empty table still has its header


# --------------------------------------------------------------------------- meta.json


def test_meta_keeps_keys_it_does_not_know_and_old_files_take_defaults(tmp_path):
    path = tmp_path / runs.META_JSON
    path.write_text(json.dumps({"preset": "quick", "from_the_future": {"a": 1}, "ceilings": {}}))
    meta = runs.read_meta(path)
    assert meta.kind is runs.RunKind.SWEEP and meta.preset == "quick" and meta.cases == [] and not meta.interrupted
    assert meta.get("from_the_future") == {"a": 1} and meta["preset"] == "quick"
    runs.write_meta(path, meta)
    assert json.loads(path.read_text())["from_the_future"] == {"a": 1}


@pytest.mark.parametrize("text, fault", [
    ("{\"preset\": ", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ("{\"kind\": \"telepathy\"}", "unknown kind 'telepathy'"),
    ("{\"cases\": {\"a\": 1}}", "'cases' is dict, expected list"),
])
def test_a_meta_json_that_is_not_a_run_record_is_damage(tmp_path, text, fault):
    (tmp_path / runs.META_JSON).write_text(text)
    with pytest.raises(runs.DamagedRun, match=fault) as info:
        runs.read_meta(tmp_path / runs.META_JSON)
    assert str(tmp_path / runs.META_JSON) in str(info.value)


# --------------------------------------------------------------------------- damaged run folders


def _cut_summary(folder: Path) -> str:
    data = (folder / runs.SUMMARY_CSV).read_bytes()
    (folder / runs.SUMMARY_CSV).write_bytes(data[:len(data) - 25])  # mid-line: the last row loses its end
    return "cut short"


def _bad_meta(folder: Path) -> str:
    (folder / runs.META_JSON).write_text('{"preset": "quick", "env": {')
    return "not JSON"


def _missing_column(folder: Path) -> str:
    frame = pd.read_csv(folder / runs.SUMMARY_CSV)
    (folder / runs.SUMMARY_CSV).write_text(frame.drop(columns=["status"]).to_csv(index=False))
    return "missing column status"


DAMAGE = {"summary cut mid-line": (_cut_summary, runs.SUMMARY_CSV), "meta not JSON": (_bad_meta, runs.META_JSON),
          "a missing column": (_missing_column, runs.SUMMARY_CSV)}
COMMANDS = {"report": lambda d, ref: ["report", str(d)], "compare": lambda d, ref: ["compare", str(ref), str(d)],
            "show": lambda d, ref: ["show", str(d)], "resume": lambda d, ref: ["run", "--resume", str(d)]}


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory) -> Path:
    """The classic reference run, cut to its first two cases (fast to read, still a real run)."""
    source = runs.load_run(REFERENCE / "cpu-2core" / "classic")
    keep = list(dict.fromkeys(source.summary["case_id"]))[:2]
    out = tmp_path_factory.mktemp("small") / "classic-2"
    runs.write_table(out / runs.SUMMARY_CSV, source.summary[source.summary["case_id"].isin(keep)])
    runs.write_table(out / runs.SAMPLES_CSV, source.samples[source.samples["case_id"].isin(keep)])
    runs.write_meta(out / runs.META_JSON, source.meta)
    return out


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_run_is_one_line_exit_2_and_nothing_is_overwritten(small_run, tmp_path, capsys, damage,
                                                                     command):
    folder = tmp_path / "damaged"
    shutil.copytree(small_run, folder)
    spoil, damaged_file = DAMAGE[damage]
    fault = spoil(folder)
    before = _fingerprint(folder)
    code = cli_main(COMMANDS[command](folder, small_run))
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("mlpbench: error:") and "Traceback" not in err, err
    assert str(folder / damaged_file) in err and fault in err, err
    assert _fingerprint(folder) == before  # nothing written, nothing overwritten (no report.md, no lock file)


def test_the_undamaged_copy_is_readable_by_every_command(small_run, tmp_path, capsys):
    """The control for the test above: the same commands succeed on the folder before it is damaged."""
    folder = tmp_path / "intact"
    shutil.copytree(small_run, folder)
    for command in ("show", "compare", "report"):
        assert cli_main(COMMANDS[command](folder, small_run)) == 0, command
    capsys.readouterr()


# --------------------------------------------------------------------------- the lock


def test_a_second_writer_is_refused_in_one_line(small_run, tmp_path, capsys):
    folder = tmp_path / "busy"
    shutil.copytree(small_run, folder)
    with runs.FolderLock(folder):
        code = cli_main(["run", "--resume", str(folder), "--no-progress", "--no-show"])
        err = capsys.readouterr().err
        errors = [line for line in err.splitlines() if line.startswith("mlpbench: error:")]
        assert code == 2 and len(errors) == 1 and "being written by another process" in errors[0], err
        assert "Traceback" not in err
        with pytest.raises(runs.FolderBusy):
            runs.RunWriter(folder, runs.RunMeta())
    runs.RunWriter(folder, runs.RunMeta()).close()  # released: a writer may take it again


def test_a_written_file_has_the_mode_open_gives_not_mkstemps_private_0600(tmp_path):
    """Reference: a file made by plain ``open`` in the same folder under the same umask."""
    runs.write_atomic(tmp_path / "summary.csv", "a\n")
    (tmp_path / "reference").write_text("a\n")
    assert (tmp_path / "summary.csv").stat().st_mode == (tmp_path / "reference").stat().st_mode
    (tmp_path / "summary.csv").chmod(0o640)  # a mode the user chose is kept when the file is rewritten
    runs.write_atomic(tmp_path / "summary.csv", "b\n")
    assert (tmp_path / "summary.csv").stat().st_mode & 0o777 == 0o640
