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
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..format import ms, table as format_table
from ..phases import PHASE_NAMES, Phase
from ..runs import RunKind, output_file, write_atomic
from ..stats import COMPARE_CI_LEVEL, COMPARE_RESAMPLES, ratio_of_medians_ci
from .tables import (
    COMPARABILITY_KEYS,
    FLAG_KEYS,
    describe_differences,
    fingerprint_differences,
    identity_columns,
    load_runs,
    ok_rows,
)


CI_LEVEL = COMPARE_CI_LEVEL  # bench.stats documents the level of each reader of a ratio of medians
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


def bootstrap_ratio(a_s: Sequence[float], b_s: Sequence[float]) -> Ratio:
    """Ratio of medians B/A with a percentile-bootstrap interval, resampling each run's samples independently."""
    low, high = ratio_of_medians_ci(a_s, b_s, level=CI_LEVEL, resamples=COMPARE_RESAMPLES, paired=False)
    return Ratio(float(np.median(b_s) / np.median(a_s)), low, high, "bootstrap")


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


# --------------------------------------------------------------------------- run A vs run B


def _samples_by_case(samples: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
    if samples is None or not len(samples):
        return {}
    return {key: group["seconds"].to_numpy() for key, group in samples.groupby(["case_id", "phase"])}


def compare_runs(run_a, run_b, phases: Sequence[str] = ("step",)) -> tuple[pd.DataFrame, list[str]]:
    """Per case and phase: medians of A and B, ratio B/A with its interval and a verdict.

    ``run_a``/``run_b`` are ``bench.runs.Run`` objects. Returns the table and the ignored identity columns.
    """
    joined, ignored = match_cases(run_a.summary, run_b.summary, phases)
    joined = joined[~_source_differs(joined)]
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


SOURCE_SHA = "model_source_sha"  # a user's model: the hash of the code that defines it (bench.plugin)


def _source_differs(joined: pd.DataFrame) -> pd.Series:
    """Rows whose two sides measured a user's model from different source code (never paired)."""
    a, b = f"{SOURCE_SHA}_a", f"{SOURCE_SHA}_b"
    if a not in joined.columns or b not in joined.columns:
        return pd.Series(False, index=joined.index)
    return joined[a].notna() & joined[b].notna() & (joined[a].astype(str) != joined[b].astype(str))


def source_mismatches(run_a, run_b, phases: Sequence[str] = ("step",)) -> list[str]:
    """The labels of the cases ``compare_runs`` refuses to pair: the same case, its model's source changed."""
    joined, _ = match_cases(run_a.summary, run_b.summary, phases)
    differs = joined[_source_differs(joined)]
    return list(dict.fromkeys(differs["label_a"])) if len(differs) else []


def format_comparison(table: pd.DataFrame, tablefmt: str = "github") -> str:
    rows = [{"case": r["case"], "phase": r["phase"], "A ms": ms(r["median_a_s"]),
             "B ms": ms(r["median_b_s"]), "B/A": f"{r['ratio']:.3f}",
             f"{CI_LEVEL:.0%} CI": f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]", "verdict": r["verdict"]}
            for _, r in table.iterrows()]
    return format_table(rows, tablefmt, empty="")


def comparison_summary(table: pd.DataFrame) -> str:
    counts = table["verdict"].value_counts()
    parts = [f"{counts.get(v, 0)} {v}" for v in ("within noise", "B faster", "B slower") if counts.get(v, 0)]
    geo = float(np.exp(np.log(table["ratio"]).mean())) if len(table) else math.nan
    return (f"{len(table)} case-phases: " + ", ".join(parts) + f"; geometric mean B/A = {geo:.3f}. "
            f"At {CI_LEVEL:.0%} about 1 in {round(1 / (1 - CI_LEVEL))} identical cases is flagged by chance.")


# --------------------------------------------------------------------------- CPU -> GPU


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", help="baseline run folder (or 'latest')")
    parser.add_argument("run_b", help="run folder to compare with it (or 'latest')")
    parser.add_argument("--all-phases", action="store_true",
                        help="compare forward/backward/optimizer/inference too, not only the whole step")
    parser.add_argument("--out", type=Path, help="also write the comparison as Markdown to this file")


def command(args: argparse.Namespace) -> int:
    if args.out:
        output_file(args.out, "--out")
    run_a, run_b = load_runs([args.run_a, args.run_b])
    if any(run.kind is RunKind.DDP for run in (run_a, run_b)):
        raise UsageError("compare joins one-process runs; for data-parallel runs use `mlpbench report RUN_A RUN_B "
                         "--out DIR` (one scaling figure and a table per run)")
    phases = PHASE_NAMES if args.all_phases else (Phase.STEP.value,)
    table, ignored = compare_runs(run_a, run_b, phases)
    refused = source_mismatches(run_a, run_b, phases)
    if refused:
        print(f"mlpbench: not paired: {len(refused)} case(s) whose model source differs between A and B "
              f"({SOURCE_SHA}): {'; '.join(refused)}", file=sys.stderr)
    if not len(table):
        raise UsageError(f"{run_a.path} and {run_b.path} have no measured case in common")
    lines = [f"A = {run_a.path}", f"B = {run_b.path}"]
    diffs = describe_differences(fingerprint_differences({"A": run_a.meta.env, "B": run_b.meta.env}))
    lines += ([f"WARNING: the fingerprints differ, so differences may come from the machine: {d}" for d in diffs]
              or ["Fingerprints agree on " + ", ".join(COMPARABILITY_KEYS + FLAG_KEYS) + "."])
    if ignored:
        lines.append(f"Cases matched ignoring {', '.join(ignored)} (no case matched on every field).")
    lines += ["", format_comparison(table), "", comparison_summary(table)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_atomic(args.out, text + "\n")
    return 0
