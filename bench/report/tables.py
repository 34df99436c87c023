"""Run tables for reports: read runs, join them by case identity, merge platforms, derive tables.

Used by the Markdown report, the figures, the regime rule and ``mlpbench compare``.
Reads result tables only (run folders, through ``bench.runs``) and imports no torch: the case
columns come from ``bench.runs.CASE_COLUMNS``, the comparability keys from ``bench.runs.meta``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..model.case_fields import BUILT_IN_FIELDS, FIELD_TYPES
from ..runs.meta import COMPARABILITY_KEYS, FLAG_KEYS
from ..errors import UsageError
from ..model.phases import Phase
from ..runs import CASE_COLUMNS, PARALLEL_DEFAULTS, Status, latest_run, load_run, user_model_rows


def resolve_run_path(text: str) -> Path:
    try:
        return latest_run() if text == "latest" else Path(text)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def load_runs(texts: Sequence[str]) -> list:
    """The runs named on a command line (``latest`` = the newest); a damaged one raises ``DamagedRun``."""
    try:
        return [load_run(resolve_run_path(t)) for t in texts]
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def identity_columns(ignore: Sequence[str] = ()) -> list[str]:
    """The case fields that join one-process rows; data-parallel runs are reported apart (report.scaling)."""
    return [f for f in CASE_COLUMNS if f not in ignore and f not in PARALLEL_DEFAULTS]


def ok_rows(summary: pd.DataFrame, phases: Sequence[str] | None = None) -> pd.DataFrame:
    rows = summary[summary["status"] == Status.OK]
    return rows if phases is None else rows[rows["phase"].isin(list(phases))]


def fingerprint_differences(envs: Mapping[str, Mapping]) -> dict[str, dict[str, object]]:
    """{key: {run: value}} for every comparability key or precision flag on which the runs disagree."""
    out = {}
    for key in COMPARABILITY_KEYS + FLAG_KEYS:
        values = {run: env.get(key) for run, env in envs.items()}
        if len({str(v) for v in values.values()}) > 1:
            out[key] = values
    return out


def describe_differences(diffs: Mapping[str, Mapping[str, object]]) -> list[str]:
    return [f"{key}: " + " vs ".join(f"{value} ({run})" for run, value in values.items())
            for key, values in diffs.items()]


def run_names(runs: Sequence) -> list[str]:
    """Folder names, made unique with a suffix where two runs share one."""
    names, seen = [], {}
    for run in runs:
        name = Path(run.path).name or str(run.path)
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return names


def platform_name(device: str, env: Mapping) -> str:
    """What a row ran on, for legends: the GPU's name, or the CPU model and its core count.

    Threads are not part of it: they are a case field (``threads``, in the label) and a case may
    override torch's default.
    """
    if device == "cuda":
        return str(env.get("device_name") or "CUDA GPU")
    model = str(env.get("cpu_model") or "CPU")
    for noise in ("(R)", "(TM)", "(tm)", "Intel ", "AMD ", " Processor", " CPU"):
        model = model.replace(noise, "")
    cores = env.get("cpu_count")
    return f"CPU {' '.join(model.split())}" + (f", {cores} cores" if cores else "")


def size_label(network: str, width: int, depth: int) -> str:
    return f"w{int(width)} d{int(depth)}" if network == "uniform" else str(network)


def user_models_as_networks(frame: pd.DataFrame) -> pd.DataFrame:
    """A user's model's rows as the report groups them: its model is its network (its size), and the built-in nets'
    numeric fields it leaves empty read 0, as a named network stores them (grouping drops an empty key)."""
    user = user_model_rows(frame)
    if not np.any(user):
        return frame
    frame = frame.copy()
    frame.loc[user, "network"] = frame.loc[user, "model"]
    numeric = [c for c in BUILT_IN_FIELDS if c in frame.columns and FIELD_TYPES[c] is not str]
    frame[numeric] = frame[numeric].fillna(0)
    return frame


def merged_summary(runs: Sequence) -> tuple[pd.DataFrame, int]:
    """All runs' summary rows with ``run``, ``platform`` and ``size`` columns, one row per platform x case x phase.

    A case measured on the same platform in several runs keeps the row of the last run given;
    the second value is how many such case rows were dropped.
    """
    frames = []
    for run, name in zip(runs, run_names(runs)):
        env = run.meta.get("env", {})
        frame = run.summary.copy()  # older runs' missing case fields are filled by the reader
        frame["run"] = name
        frame["platform"] = [platform_name(d, env) for d in frame["device"]]
        frames.append(frame)
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not len(merged):
        return merged, 0
    merged = user_models_as_networks(merged)
    merged["size"] = [size_label(n, w, d) for n, w, d in zip(merged["network"], merged["width"], merged["depth"])]
    duplicate = merged.duplicated(["platform", "case_id", "phase"], keep="last")
    dropped = int((duplicate & (merged["phase"] == Phase.STEP.value)).sum())
    return merged[~duplicate].reset_index(drop=True), dropped


def merged_ceilings(runs: Sequence) -> pd.DataFrame:
    """One row per platform x dtype x threads: the same-run matmul ceiling (the last run given wins)."""
    rows = []
    for run, name in zip(runs, run_names(runs)):
        env = run.meta.get("env", {})
        for ceiling in run.meta.get("ceilings", {}).values():
            threads = ceiling.get("threads") or env.get("torch_threads")  # runs before 'threads' was recorded
            rows.append({**ceiling, "threads": threads, "run": name,
                         "platform": platform_name(ceiling.get("device", "cpu"), env)})
    columns = ["platform", "device", "dtype", "threads", "device_name", "measured_tflops", "matmul_size",
               "sizes_tried", "budget_s", "spent_s", "datasheet_tflops", "datasheet_source", "best_product",
               "spread_rel", "case_shapes", "case_shapes_measured", "pass_tflops", "shapes_spent_s", "run"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.drop_duplicates(["platform", "dtype", "threads"], keep="last").reset_index(drop=True)


def merged_limits(runs: Sequence, table: str) -> pd.DataFrame:
    """One row per platform x key of meta.json's ``bandwidth`` or ``dispatch`` table (the last run given wins)."""
    rows = []
    for run, name in zip(runs, run_names(runs)):
        env = run.meta.get("env", {})
        for key, limit in run.meta.get(table, {}).items():
            rows.append({**limit, "key": key, "run": name, "platform": platform_name(limit.get("device", "cpu"), env)})
    frame = pd.DataFrame(rows)
    if not len(frame):
        return frame
    return frame.drop_duplicates(["platform", "key"], keep="last").reset_index(drop=True)


def compile_pairs(summary: pd.DataFrame) -> pd.DataFrame:
    """Compiled cases next to the same case in eager mode: speedup and break-even step count. A case compiled at
    either scope (the model, or the whole step: ``compile_scope``) pairs with the one eager case: an eager case
    records the default scope, which means nothing without a compile mode."""
    steps = ok_rows(summary, [Phase.STEP.value])
    keys = ["platform"] + identity_columns(["compile", "compile_scope"])
    pairs = steps[steps["compile"] != "none"].merge(steps[steps["compile"] == "none"], on=keys,
                                                     suffixes=("", "_eager"))
    pairs["speedup"] = pairs["median_s_eager"] / pairs["median_s"]
    saving = pairs["median_s_eager"] - pairs["median_s"]
    pairs["break_even_steps"] = (pairs["compile_s"] / saving).where(saving > 0)
    return pairs


def device_speedup(summary: pd.DataFrame, phase: str = Phase.STEP.value) -> pd.DataFrame:
    """CPU median / CUDA median for every case measured on both (joined on every field but device and threads).

    ``threads`` is a CPU knob: a CUDA case records torch's default (0) whatever CPU run it is set beside,
    so the join ignores it and the result's ``threads`` is the CPU side's (one row per CPU thread count).
    Where several CPU (or GPU) platforms are in the table, the first one in ``platform`` order is used.
    """
    rows = ok_rows(summary, [phase])
    keys = identity_columns(["device", "threads"])
    cpu, gpu = rows[rows["device"] == "cpu"], rows[rows["device"] == "cuda"]
    if not len(cpu) or not len(gpu):
        return pd.DataFrame(columns=keys + ["threads", "cpu_s", "gpu_s", "speedup"])
    cpu = _first_platform(cpu)
    gpu = _first_platform(gpu)
    cols = keys + ["median_s", "label", "platform"]
    joined = cpu[cols + ["threads"]].merge(gpu[cols], on=keys, suffixes=("_cpu", "_gpu"))
    joined = joined.rename(columns={"median_s_cpu": "cpu_s", "median_s_gpu": "gpu_s"})
    joined["speedup"] = joined["cpu_s"] / joined["gpu_s"]
    return joined


def _first_platform(rows: pd.DataFrame) -> pd.DataFrame:
    if "platform" not in rows:
        return rows.assign(platform=rows["device"])
    first = rows["platform"].iloc[0]
    return rows[rows["platform"] == first]


def crossover_batches(speedup: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (everything but batch): the batch size from which the GPU wins at every larger batch.

    ``crossover_batch`` interpolates log(speedup) linearly in log(batch) between the last measured
    batch where the CPU wins and the first where the GPU wins; it is the smallest batch when the GPU wins
    everywhere and NaN when it never wins. ``wins_from`` is the first measured batch where it wins.
    """
    keys = identity_columns(["device", "batch"])
    rows = []
    for values, group in speedup.groupby(keys, sort=False):
        group = group.sort_values("batch")
        batches, ratios = group["batch"].to_numpy(float), group["speedup"].to_numpy(float)
        wins_from, crossover = _crossover(batches, ratios)
        rows.append({**dict(zip(keys, values)), "batches": len(batches), "wins_from": wins_from,
                     "crossover_batch": crossover})
    return pd.DataFrame(rows, columns=keys + ["batches", "wins_from", "crossover_batch"])


def _crossover(batches: np.ndarray, ratios: np.ndarray) -> tuple[float, float]:
    losing = np.flatnonzero(ratios < 1.0)
    if not len(losing):
        return batches[0], batches[0]
    last_loss = losing[-1]
    if last_loss == len(ratios) - 1:
        return math.nan, math.nan
    b0, b1 = np.log(batches[last_loss]), np.log(batches[last_loss + 1])
    r0, r1 = np.log(ratios[last_loss]), np.log(ratios[last_loss + 1])
    return batches[last_loss + 1], float(np.exp(b0 + (0.0 - r0) * (b1 - b0) / (r1 - r0)))


def numerics_flag(row: Mapping) -> str:
    """The case's numerics flag against fp32 eager (``bench.instruments.numerics``): its ``numerics`` text when beyond tolerance
    or not measured; '' within tolerance, for the fp32 eager reference itself, and in a run older than the column."""
    text = row.get("numerics")
    return text if isinstance(text, str) and text not in ("", "reference") else ""


def numerics_cell(row: Mapping) -> str:
    """A table cell beside a speedup: 'ok' within tolerance (with the gradients' error), 'reference' for fp32 eager,
    the flag (marked) otherwise; '' where the run has no numerics columns."""
    text = row.get("numerics")
    tol = row.get("numerics_tol")
    if not isinstance(text, str):  # a CSV reads the blank of a case within tolerance back as NaN
        text = "" if isinstance(tol, (int, float)) and math.isfinite(tol) else None
    if text is None:
        return ""
    if text == "reference" or not text:
        grads = row.get("grad_rel_err")
        return text or (f"ok (grads {grads:.1g})" if isinstance(grads, float) and math.isfinite(grads) else "ok")
    return f"NUMERICS {text}"
