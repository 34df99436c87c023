"""What ``history add`` appends: a run folder (or a gate's ``--json`` with instruction counts) read as points.

This is the only module of ``bench.history`` that reads a run folder, and it does so through
``bench.runs.load_run`` in ``_read_run`` alone, so that the run-record reader can be swapped
in one place.

From a run folder: for each case measured ``ok`` and each phase, the median seconds with its
95% CI and sample count (metric ``median_s``), and the exact counters the summary holds
(``PHASE_COUNTERS``, ``CASE_COUNTERS``; no CI). From ``mlpbench check --layers instructions --json FILE``: the
instructions per step that side B (this tree) counted, per case and phase
(metric ``instructions_per_step``; the CI is the min-max over repeats).
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..analysis.noise import finite_or_none as _number
from .series import MachineClass, machine_class

TIME_METRIC = "median_s"
INSTRUCTION_METRIC = "instructions_per_step"
# Exact counters of the summary (no noise, no CI): per phase (analytic FLOPs), and per case (analytic
# memory, compile checks: the same on every phase's row, so taken from the whole step's row alone).
PHASE_COUNTERS = ("matmul_flops", "elementwise_flops")
CASE_COUNTERS = ("mem_total_bytes", "compile_graphs", "graph_breaks", "recompiles")
CASE_PHASE = "step"
OK_STATUS = "ok"
UNKNOWN_COMMITS = ("", "unknown", "None")


@dataclass(frozen=True)
class Point:
    case_id: str
    label: str
    machine: MachineClass
    phase: str
    metric: str
    value: float
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None


@dataclass(frozen=True)
class IngestedRun:
    commit: str
    commit_time: str | None
    run_path: str
    run_digest: str  # sha1 of the summary (or gate JSON) bytes: the same run is never added twice
    run_date: str | None
    env_json: str
    points: tuple[Point, ...]


def read_run(path: Path, commit: str | None = None) -> IngestedRun:
    """A run folder or a gate JSON file as points; bad input raises UsageError (one line)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".json":
        return _read_gate_json(path, commit)
    summary, meta, digest = _read_run(path)
    env = meta.get("env") or {}
    commit = _commit(commit or str(env.get("git_commit") or ""), path)
    points = tuple(p for row in summary.to_dict("records") if row.get("status") == OK_STATUS
                   for p in _row_points(row, env))
    if not points:
        raise UsageError(f"{path}: no case was measured ok; nothing to add")
    return IngestedRun(commit, commit_time(commit), str(path), digest, env.get("date"),
                       json.dumps(env, sort_keys=True, default=str), points)


def _read_run(path: Path):
    from ..runs import SUMMARY_CSV, load_run  # the one place history reads the run record

    try:
        run = load_run(path)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable run ({exc})") from None
    if TIME_METRIC not in run.summary.columns:  # load_run has checked the record's own columns (ids, status, device)
        raise UsageError(f"{path}: not a run summary (missing columns: {TIME_METRIC})")
    return run.summary, run.meta, hashlib.sha1((Path(path) / SUMMARY_CSV).read_bytes()).hexdigest()


SOURCE_SHA = "model_source_sha"  # bench.case.plugin: the hash of the code that defines a user's model
SOURCE_CHARS = 8


def _row_points(row: Mapping[str, object], env: Mapping[str, object]) -> list[Point]:
    machine = machine_class(env, str(row["device"]))
    base = dict(case_id=str(row["case_id"]), label=str(row["label"]), machine=machine, phase=str(row["phase"]))
    source = row.get(SOURCE_SHA)
    if isinstance(source, str) and source:  # a user's model: each version of its source is a series of its own
        base.update(case_id=f"{base['case_id']}@{source[:SOURCE_CHARS]}",
                    label=f"{base['label']} src:{source[:SOURCE_CHARS]}")
    points = []
    median = _number(row.get(TIME_METRIC))
    if median is not None:
        points.append(Point(**base, metric=TIME_METRIC, value=median, ci_low=_number(row.get("ci_low_s")),
                            ci_high=_number(row.get("ci_high_s")), n=_count(row.get("n"))))
    for column in PHASE_COUNTERS + (CASE_COUNTERS if base["phase"] == CASE_PHASE else ()):
        value = _number(row.get(column))
        if value is not None:
            points.append(Point(**base, metric=column, value=value))
    return points


def _read_gate_json(path: Path, commit: str | None) -> IngestedRun:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable JSON ({exc})") from None
    layer = data.get("instructions") if isinstance(data, dict) else None
    if not layer or not layer.get("rows"):
        raise UsageError(f"{path}: no instruction counts (write one with "
                         "`mlpbench check --layers instructions --against REF --json FILE`)")
    if not commit:
        raise UsageError(f"{path}: a gate JSON does not name its commit; give --commit SHA")
    env = {"cpu_model": layer.get("cpu_model"), "torch": layer.get("torch")}
    machine = machine_class(env, "cpu")
    points = tuple(Point(r["case_id"], r["label"], machine, r["phase"], INSTRUCTION_METRIC,
                         float(statistics.median(r["b_per_step"])), float(min(r["b_per_step"])), float(max(r["b_per_step"])),
                         len(r["b_per_step"]))
                   for r in layer["rows"] if r.get("variant", "none") == "none" and r.get("b_per_step"))
    return IngestedRun(_commit(commit, path), commit_time(commit), str(path), hashlib.sha1(path.read_bytes()).hexdigest(),
                       None, json.dumps(env, sort_keys=True), points)


def _commit(commit: str, path: Path) -> str:
    if commit in UNKNOWN_COMMITS:
        raise UsageError(f"{path}: the run does not record its git commit; give --commit SHA")
    return commit.strip()


def commit_time(commit: str) -> str | None:
    """The commit's date (ISO 8601) from the git repository here, or None when git does not know it."""
    try:
        out = subprocess.run(["git", "show", "-s", "--format=%cI", commit.removesuffix("-dirty"), "--"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _count(value) -> int | None:
    x = _number(value)
    return None if x is None else int(x)

