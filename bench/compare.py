"""Compare runs case by case: ratios of medians with a confidence interval, and CPU -> GPU speedups.

Runs are joined by case identity (every Case field). CPU and GPU runs come
from different machines, so the device speedup joins on every field *except*
``device``. A ratio is "within noise" when its confidence interval contains 1:
the interval comes from a bootstrap over the raw block samples of both runs
(samples.csv), or, where a run kept no samples, from the two medians' own
confidence intervals (wider, conservative).

This module reads result tables only; it never imports the measurement code.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

# The fields of bench.cases.Case, in order. Kept here so reporting needs no torch import;
# tests/test_compare.py checks that it matches the dataclass.
CASE_FIELDS = ("network", "width", "depth", "in_features", "out_features", "batch", "activation", "device",
               "dtype", "compile", "optimizer", "loss", "threads", "world_size", "backend", "scaling",
               "bucket_cap_mb")
# Values of the data-parallel fields in runs written before they existed (bench.cases.PARALLEL_DEFAULTS).
PARALLEL_DEFAULTS = {"world_size": 1, "backend": "none", "scaling": "none", "bucket_cap_mb": 0.0}
# Which environment fields make runs incomparable (mirrors bench.env.COMPARABILITY_KEYS; checked by a test).
COMPARABILITY_KEYS = ("torch", "cuda", "device_name", "cpu_model", "torch_threads", "hostname")
FLAG_KEYS = ("tf32_matmul_default", "float32_matmul_precision_default", "cpu_capability")  # precision flags

CI_LEVEL = 0.95
BOOTSTRAP_RESAMPLES = 4000  # percentile endpoints move < 1% of the ratio between seeds at 12 samples a side
BOOTSTRAP_SEED = 0  # the same two runs always give the same intervals
MIN_SAMPLES = 2  # fewer raw samples than this: no bootstrap, fall back to the summary intervals


# --------------------------------------------------------------------------- ratios


@dataclass(frozen=True)
class Ratio:
    """``ratio`` = median(B) / median(A) of seconds per iteration: above 1 means B is slower."""

    ratio: float
    low: float
    high: float
    method: str

    @property
    def within_noise(self) -> bool:
        return not (self.low > 1.0 or self.high < 1.0)  # a NaN interval is never called significant

    @property
    def verdict(self) -> str:
        if math.isnan(self.ratio):
            return "n/a"
        if self.within_noise:
            return "within noise"
        return "B slower" if self.ratio > 1 else "B faster"


def bootstrap_ratio(a_s: Sequence[float], b_s: Sequence[float], *, level: float = CI_LEVEL,
                    resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED) -> Ratio:
    """Ratio of medians B/A with a percentile-bootstrap interval, resampling each run's samples independently."""
    a, b = np.asarray(a_s, dtype=float), np.asarray(b_s, dtype=float)
    rng = np.random.default_rng(seed)
    medians_a = np.median(rng.choice(a, size=(resamples, a.size)), axis=1)
    medians_b = np.median(rng.choice(b, size=(resamples, b.size)), axis=1)
    tail = (1.0 - level) / 2
    low, high = np.quantile(medians_b / medians_a, [tail, 1.0 - tail])
    return Ratio(float(np.median(b) / np.median(a)), float(low), float(high), "bootstrap")


def interval_ratio(a: Mapping, b: Mapping) -> Ratio:
    """Ratio of medians from two summary rows; the interval combines the medians' own CIs (conservative)."""
    ratio = b["median_s"] / a["median_s"]
    return Ratio(float(ratio), float(b["ci_low_s"] / a["ci_high_s"]), float(b["ci_high_s"] / a["ci_low_s"]),
                 "summary CIs")


def ratio_of_medians(a_row: Mapping, b_row: Mapping, a_samples: Sequence[float] | None,
                     b_samples: Sequence[float] | None) -> Ratio:
    if a_samples is not None and b_samples is not None and min(len(a_samples), len(b_samples)) >= MIN_SAMPLES:
        return bootstrap_ratio(a_samples, b_samples)
    return interval_ratio(a_row, b_row)


# --------------------------------------------------------------------------- joining runs


def identity_columns(ignore: Sequence[str] = ()) -> list[str]:
    """The case fields that join one-process rows; data-parallel runs are reported apart (report_scaling)."""
    return [f for f in CASE_FIELDS if f not in ignore and f not in PARALLEL_DEFAULTS]


def ok_rows(summary: pd.DataFrame, phases: Sequence[str] | None = None) -> pd.DataFrame:
    rows = summary[summary["status"] == "ok"]
    return rows if phases is None else rows[rows["phase"].isin(list(phases))]


def match_cases(a: pd.DataFrame, b: pd.DataFrame, phases: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Join two summaries' ok rows by case identity; ignore the device column when nothing matches with it.

    Returns the joined rows (columns suffixed ``_a``/``_b``) and the identity columns that were ignored.
    """
    a_ok, b_ok = ok_rows(a, phases), ok_rows(b, phases)
    for ignored in ([], ["device"]):
        keys = identity_columns(ignored) + ["phase"]
        joined = a_ok.merge(b_ok, on=keys, suffixes=("_a", "_b"))
        if len(joined):
            return joined, ignored
    return joined, []


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


def merged_summary(runs: Sequence) -> tuple[pd.DataFrame, int]:
    """All runs' summary rows with ``run``, ``platform`` and ``size`` columns, one row per platform x case x phase.

    A case measured on the same platform in several runs keeps the row of the last run given;
    the second value is how many such case rows were dropped.
    """
    frames = []
    for run, name in zip(runs, run_names(runs)):
        env = run.meta.get("env", {})
        frame = run.summary.copy()
        for column, default in PARALLEL_DEFAULTS.items():
            if column not in frame:
                frame[column] = default
        frame["run"] = name
        frame["platform"] = [platform_name(d, env) for d in frame["device"]]
        frames.append(frame)
    merged = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if not len(merged):
        return merged, 0
    merged["size"] = [size_label(n, w, d) for n, w, d in zip(merged["network"], merged["width"], merged["depth"])]
    duplicate = merged.duplicated(["platform", "case_id", "phase"], keep="last")
    dropped = int((duplicate & (merged["phase"] == "step")).sum())
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
               "datasheet_tflops", "datasheet_source", "run"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame.drop_duplicates(["platform", "dtype", "threads"], keep="last").reset_index(drop=True)


# --------------------------------------------------------------------------- run A vs run B


def _samples_by_case(samples: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    if samples is None or not len(samples):
        return {}
    return {key: group["seconds"].to_numpy() for key, group in samples.groupby(["case_id", "phase"])}


def compare_runs(run_a, run_b, phases: Sequence[str] = ("step",)) -> tuple[pd.DataFrame, list[str]]:
    """Per case and phase: medians of A and B, ratio B/A with its interval and a verdict.

    ``run_a``/``run_b`` are store.Run objects. Returns the table and the ignored identity columns.
    """
    joined, ignored = match_cases(run_a.summary, run_b.summary, phases)
    samples_a, samples_b = _samples_by_case(run_a.samples), _samples_by_case(run_b.samples)
    rows = []
    for _, r in joined.iterrows():
        a_row = {k: r[f"{k}_a"] for k in ("median_s", "ci_low_s", "ci_high_s")}
        b_row = {k: r[f"{k}_b"] for k in ("median_s", "ci_low_s", "ci_high_s")}
        ratio = ratio_of_medians(a_row, b_row, samples_a.get((r["case_id_a"], r["phase"])),
                                 samples_b.get((r["case_id_b"], r["phase"])))
        rows.append({"case": r["label_a"], "phase": r["phase"], "median_a_s": r["median_s_a"],
                     "median_b_s": r["median_s_b"], "ratio": ratio.ratio, "ci_low": ratio.low,
                     "ci_high": ratio.high, "verdict": ratio.verdict, "method": ratio.method})
    return pd.DataFrame(rows), ignored


def format_comparison(table: pd.DataFrame, tablefmt: str = "github") -> str:
    from tabulate import tabulate

    rows = [{"case": r["case"], "phase": r["phase"], "A ms": f"{r['median_a_s'] * 1e3:.4g}",
             "B ms": f"{r['median_b_s'] * 1e3:.4g}", "B/A": f"{r['ratio']:.3f}",
             f"{CI_LEVEL:.0%} CI": f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]", "verdict": r["verdict"]}
            for _, r in table.iterrows()]
    return tabulate(rows, headers="keys", tablefmt=tablefmt, disable_numparse=True)


def comparison_summary(table: pd.DataFrame) -> str:
    counts = table["verdict"].value_counts()
    parts = [f"{counts.get(v, 0)} {v}" for v in ("within noise", "B faster", "B slower") if counts.get(v, 0)]
    geo = float(np.exp(np.log(table["ratio"]).mean())) if len(table) else math.nan
    return (f"{len(table)} case-phases: " + ", ".join(parts) + f"; geometric mean B/A = {geo:.3f}. "
            f"At {CI_LEVEL:.0%} about 1 in {round(1 / (1 - CI_LEVEL))} identical cases is flagged by chance.")


# --------------------------------------------------------------------------- CPU -> GPU


def device_speedup(summary: pd.DataFrame, phase: str = "step") -> pd.DataFrame:
    """CPU median / CUDA median for every case measured on both (joined on every field but device).

    Where several CPU (or GPU) platforms are in the table, the first one in ``platform`` order is used.
    """
    rows = ok_rows(summary, [phase])
    keys = identity_columns(["device"])
    cpu, gpu = rows[rows["device"] == "cpu"], rows[rows["device"] == "cuda"]
    if not len(cpu) or not len(gpu):
        return pd.DataFrame(columns=keys + ["cpu_s", "gpu_s", "speedup"])
    cpu = _first_platform(cpu)
    gpu = _first_platform(gpu)
    cols = keys + ["median_s", "label", "platform"]
    joined = cpu[cols].merge(gpu[cols], on=keys, suffixes=("_cpu", "_gpu"))
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


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", help="baseline run folder (or 'latest')")
    parser.add_argument("run_b", help="run folder to compare with it (or 'latest')")
    parser.add_argument("--all-phases", action="store_true",
                        help="compare forward/backward/optimizer/inference too, not only the whole step")
    parser.add_argument("--out", type=Path, help="also write the comparison as Markdown to this file")


def resolve_run_path(text: str) -> Path:
    from .cli import UsageError
    from .store import latest_run

    try:
        return latest_run() if text == "latest" else Path(text)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def load_runs(texts: Sequence[str]) -> list:
    from .cli import UsageError
    from .store import load_run

    try:
        return [load_run(resolve_run_path(t)) for t in texts]
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None


def command(args: argparse.Namespace) -> int:
    from .cli import UsageError

    run_a, run_b = load_runs([args.run_a, args.run_b])
    if any(run.meta.get("kind") == "ddp" for run in (run_a, run_b)):
        raise UsageError("compare joins one-process runs; for data-parallel runs use `mlpbench report RUN_A RUN_B "
                         "--out DIR` (one scaling figure and a table per run)")
    phases = ("step", "forward", "backward", "optimizer", "inference") if args.all_phases else ("step",)
    table, ignored = compare_runs(run_a, run_b, phases)
    if not len(table):
        raise UsageError(f"{run_a.path} and {run_b.path} have no measured case in common")
    lines = [f"A = {run_a.path}", f"B = {run_b.path}"]
    diffs = describe_differences(fingerprint_differences({"A": run_a.meta.get("env", {}),
                                                          "B": run_b.meta.get("env", {})}))
    lines += ([f"WARNING: the fingerprints differ, so differences may come from the machine: {d}" for d in diffs]
              or ["Fingerprints agree on " + ", ".join(COMPARABILITY_KEYS + FLAG_KEYS) + "."])
    if ignored:
        lines.append(f"Cases matched ignoring {', '.join(ignored)} (no case matched on every field).")
    lines += ["", format_comparison(table), "", comparison_summary(table)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        from .store import write_atomic

        write_atomic(args.out, text + "\n")
    return 0
