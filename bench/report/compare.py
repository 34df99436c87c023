"""Compare runs case by case: ratios of medians with a confidence interval, and a verdict per case and overall.

Runs are joined by case identity (every Case field). CPU and GPU runs come
from different machines, so the device speedup joins on every field *except*
``device``. Each ratio has an interval from a bootstrap over the raw block samples
of both runs (samples.csv), or, where a run kept no samples, from the two medians'
own confidence intervals (wider, conservative). That interval holds the noise
*inside* each run only (``within_run``: the old reading, "B slower" as soon as it
excludes 1). The verdict (``verdict``: faster, slower or inconclusive, with a
one-line ``reason``) also knows the noise *between* runs: the machine states of the
two runs, the run-level factor every case shares, and the cases' spread around it
(``bench.analysis.noise``, docs/design.md "Between-run noise").

This module reads result tables only; it never imports the measurement code.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis import noise
from ..errors import UsageError
from . import change
from ..format import ms, table as format_table
from ..model.phases import PHASE_NAMES, Phase
from ..runs import RunKind, output_file, write_atomic
from ..analysis.stats import COMPARE_CI_LEVEL, COMPARE_RESAMPLES, ratio_of_medians_ci
from .tables import (
    COMPARABILITY_KEYS,
    FLAG_KEYS,
    describe_differences,
    fingerprint_differences,
    identity_columns,
    load_runs,
    numerics_flag,
    ok_rows,
)


CI_LEVEL = COMPARE_CI_LEVEL  # bench.analysis.stats documents the level of each reader of a ratio of medians
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
        """The within-run reading alone (``within_run``): blind to the drift between runs."""
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
        joined = _with_changed_args(joined.copy().assign(**{f"{ARGS}_a": joined[ARGS], f"{ARGS}_b": joined[ARGS]})
                                    if ARGS in joined else joined, a_ok, b_ok, keys)
        if len(joined):
            return joined, ignored
    return joined, []


ARGS = "model_args"


def _with_changed_args(joined: pd.DataFrame, a_ok: pd.DataFrame, b_ok: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``joined`` plus the user's-model rows that match on every key but the model args, one to one: the same model
    run with other arguments is the change under test (``bench.report.change``), not another case."""
    if ARGS not in keys or "model" not in a_ok or "model" not in b_ok:
        return joined
    done_a = set(joined["case_id_a"]) if len(joined) else set()
    done_b = set(joined["case_id_b"]) if len(joined) else set()
    rest_a = a_ok[~a_ok["case_id"].isin(done_a) & (a_ok["model"].astype(str) != "")]
    rest_b = b_ok[~b_ok["case_id"].isin(done_b) & (b_ok["model"].astype(str) != "")]
    if not (len(rest_a) and len(rest_b)):
        return joined
    loose = [k for k in keys if k != ARGS]
    single = lambda rows: rows[~rows.duplicated(loose, keep=False)]  # noqa: E731 - one to one, or not paired
    extra = single(rest_a).merge(single(rest_b), on=loose, suffixes=("_a", "_b"))
    return pd.concat([joined, extra], ignore_index=True) if len(extra) else joined


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
    samples_a, samples_b = _samples_by_case(run_a.samples), _samples_by_case(run_b.samples)
    order_a, order_b = measurement_order(run_a.summary), measurement_order(run_b.summary)
    rows = []
    for _, r in joined.iterrows():
        a_row = {k: r[f"{k}_a"] for k in ("median_s", "ci_low_s", "ci_high_s")}
        b_row = {k: r[f"{k}_b"] for k in ("median_s", "ci_low_s", "ci_high_s")}
        a_s, b_s = samples_a.get((r["case_id_a"], r["phase"])), samples_b.get((r["case_id_b"], r["phase"]))
        ratio = ratio_of_medians(a_row, b_row, a_s, b_s)
        both = a_s is not None and b_s is not None and len(a_s) and len(b_s) and np.min(a_s) > 0
        fastest = float(np.min(b_s) / np.min(a_s)) if both else math.nan  # the time-local checks (bench.analysis.noise)
        slowest = float(np.max(b_s) / np.max(a_s)) if both else math.nan
        work = change.work(r)
        rows.append({"case": r["label_a"], "case_id": r["case_id_a"], "case_id_b": r["case_id_b"],
                     "change": change.case_change(r), "work": work.short, "work_verdict": work.verdict,
                     "work_detail": work.sentence,
                     "phase": r["phase"], "median_a_s": r["median_s_a"], "median_b_s": r["median_s_b"], "ratio": ratio.ratio,
                     "ci_low": ratio.low, "ci_high": ratio.high, "within_run": ratio.verdict,
                     "method": ratio.method, "fastest_ratio": fastest, "slowest_ratio": slowest,
                     "order_a": order_a.get(r["case_id_a"], math.nan), "order_b": order_b.get(r["case_id_b"], math.nan),
                     "process_se": noise.process_se(*(change.number(r.get(f"{c}_{side}")) for side in "ab"
                                                      for c in ("between_process_cv", "processes")))})
    return pd.DataFrame(rows), ignored


def measurement_order(summary: pd.DataFrame) -> dict[str, int]:
    """Each case's position in the run's measurement order: the runner measures the cases one after the other
    and writes each case's rows as it finishes it, so summary.csv's order is time order (a resumed run too)."""
    if summary is None or "case_id" not in summary:
        return {}
    return {case_id: i for i, case_id in enumerate(dict.fromkeys(summary["case_id"]))}


# --------------------------------------------------------------------------- verdicts (bench.analysis.noise)


@dataclass(frozen=True)
class Comparison:
    """Run A against run B: the per-case table (with ``verdict``, ``reason``, ``relative``, ``z``), the machine
    states' differences, the run-level factor per phase and the overall verdict."""

    table: pd.DataFrame
    ignored: list[str]
    differences: list[noise.StateDifference]
    factors: dict[str, noise.CommonFactor]
    overall: noise.OverallVerdict

    @property
    def blocking(self) -> list[noise.StateDifference]:
        return [d for d in self.differences if d.decisive]


def judge(table: pd.DataFrame, differences: Sequence[noise.StateDifference]) -> tuple[
        pd.DataFrame, dict[str, noise.CommonFactor], noise.OverallVerdict]:
    """Verdicts for a ratio table (``compare_runs``), phase by phase against that phase's run-level factor."""
    blocking = [d for d in differences if d.decisive]
    table = table.copy()
    factors, verdicts = {}, {}
    for phase, rows in table.groupby("phase", sort=False):
        controls = _controls(rows)["ratio"]
        factor = noise.common_factor(np.log(controls.where(controls > 0)).tolist())
        factors[phase] = factor
        first = [noise.case_verdict(r["ratio"], r["ci_low"], r["ci_high"], factor, blocking,
                                    between_processes=r.get("process_se", 0.0))
                 for _, r in rows.iterrows()]
        column = lambda name: rows[name].astype(float).tolist() if name in rows else [math.nan] * len(rows)  # noqa: E731
        orders_a, orders_b = column("order_a"), column("order_b")
        fastest = [math.log(x) if x > 0 else math.nan for x in column("fastest_ratio")]
        slowest = [math.log(x) if x > 0 else math.nan for x in column("slowest_ratio")]
        for index, v in zip(rows.index, noise.time_local(first, orders_a, orders_b, fastest, slowest)):
            verdicts[index] = v
    table["verdict"] = [verdicts[i].verdict.value for i in table.index]
    table["reason"] = [verdicts[i].reason for i in table.index]
    table["relative"] = [verdicts[i].relative for i in table.index]
    table["z"] = [verdicts[i].z for i in table.index]
    step = factors.get(Phase.STEP.value) or next(iter(factors.values()), noise.common_factor([]))
    return table, factors, noise.overall_verdict(list(verdicts.values()), step, blocking)


def changed(rows: pd.DataFrame) -> pd.Series:
    """The rows under test: a change named (model source, model args) or work that moved (an exact counter)."""
    if "change" not in rows:
        return pd.Series(False, index=rows.index)
    return (rows["change"] != "") | ~rows["work_verdict"].isin([change.Work.SAME, change.Work.UNCOUNTED])


def _controls(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows whose code did not change: where any are, the run-level factor (the machine) is theirs alone, so
    that the cases under test do not move it; else every row."""
    same = ~changed(rows)
    return rows[same] if same.any() else rows


def compare(run_a, run_b, phases: Sequence[str] = ("step",)) -> Comparison:
    """``compare_runs`` with the verdicts of ``bench.analysis.noise``: what ``mlpbench compare`` and ``report A B`` print."""
    table, ignored = compare_runs(run_a, run_b, phases)
    differences = noise.state_differences(noise.machine_state(run_a.meta), noise.machine_state(run_b.meta))
    if not len(table):
        return Comparison(table, ignored, differences, {}, noise.overall_verdict([], noise.common_factor([])))
    table, factors, overall = judge(table, differences)
    return Comparison(table, ignored, differences, factors, overall)


# Findings shown beside the timing verdict, each its own column (header -> the table's column), when the table
# has it: a new finding (numerics, say) is one entry here and one column in compare_runs.
BESIDE_VERDICT = {"work (exact)": "work", "numerics vs fp32 eager": "numerics"}  # numerics: with_numerics


def format_comparison(table: pd.DataFrame, tablefmt: str = "github") -> str:
    beside = {header: column for header, column in BESIDE_VERDICT.items()
              if column in table and table[column].astype(str).str.len().any()}
    rows = [{"case": r["case"], "phase": r["phase"], "A ms": ms(r["median_a_s"]),
             "B ms": ms(r["median_b_s"]), "B/A": f"{r['ratio']:.3f}",
             f"{CI_LEVEL:.0%} CI (within runs)": f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
             "vs run factor": "" if not math.isfinite(r.get("relative", math.nan)) else f"{r['relative']:.3f}",
             "z": "" if not math.isfinite(r.get("z", math.nan)) else f"{r['z']:+.1f}",
             "verdict": r.get("verdict", r["within_run"]),
             **{header: r[column] for header, column in beside.items()}}
            for _, r in table.iterrows()]
    return format_table(rows, tablefmt, empty="")


def comparison_summary(table: pd.DataFrame) -> str:
    counts = table["verdict"].value_counts() if "verdict" in table else pd.Series(dtype=int)
    parts = [f"{counts.get(v.value, 0)} {v.value}" for v in noise.Verdict if counts.get(v.value, 0)]
    geo = float(np.exp(np.log(table["ratio"]).mean())) if len(table) else math.nan
    flagged = int((table["within_run"] != "within noise").sum()) if len(table) else 0
    return (f"{len(table)} case-phases: " + ", ".join(parts) + f"; geometric mean B/A = {geo:.3f}. "
            f"The within-run intervals alone would flag {flagged} (they do not hold the drift between runs).")


def comparison_lines(comparison: Comparison) -> list[str]:
    """The machine states, the run-level factor and the overall verdict, one line each (compare and report)."""
    lines = [f"Verdict: **{comparison.overall.verdict.value}**: {comparison.overall.reason}."]
    for d in comparison.differences:
        lines.append(f"Machine state: {d.text}" + (" (beyond tolerance: verdicts inconclusive)" if d.decisive
                                                   else ""))
    for phase, f in comparison.factors.items():
        lines.append(f"Run-level factor ({phase}): {f.factor:.3f} over {f.n_cases} cases, case-to-case "
                     f"between-run noise {math.expm1(f.spread):.1%}" + ("" if f.estimated else " (prior)"))
        lines.append(f"Smallest change these two runs can call ({phase}): {f.smallest_verdict:.0%} in a case, against "
                     "the factor; smaller ones: `compare --confirm --confirm-cases 0` re-measures every case "
                     "interleaved")
    return lines


def run_clock(run) -> str:
    """The clock a run's blocks were timed on (meta.json's timing_config.clock); runs made before ``--clock``: wall."""
    return str((run.meta.timing_config or {}).get("clock", "wall"))


def same_clock(run_a, run_b) -> str:
    """The clock both runs were timed on; two clocks' seconds are not one quantity: a one-line refusal."""
    a, b = run_clock(run_a), run_clock(run_b)
    if a != b:
        raise UsageError(f"{run_a.path} was timed on the {a} clock and {run_b.path} on the {b} clock: their seconds "
                         f"are not comparable; measure both with the same `mlpbench run --clock`")
    return a


def undecided(comparison: Comparison) -> bool:
    """An inconclusive timing verdict that another instrument could decide: overall, or a changed case's own."""
    table = comparison.table
    return (comparison.overall.verdict is noise.Verdict.INCONCLUSIVE
            or (table.loc[changed(table), "verdict"] == noise.Verdict.INCONCLUSIVE.value).any())


def verdict_reasons(table: pd.DataFrame) -> list[str]:
    return [f"- {r['case']} ({r['phase']}): {r['verdict']}: {r['reason']}" for _, r in table.iterrows()
            if r["verdict"] != noise.Verdict.INCONCLUSIVE.value or "machine" not in r["reason"]]


def with_numerics(table: pd.DataFrame, run_a, run_b) -> pd.DataFrame:
    """``table`` with a ``numerics`` column beside the ratio where either run flags a case's numerics against fp32
    eager (``bench.instruments.numerics``: beyond tolerance, or not measured): which side, and B's errors (else A's). A speed
    change is only the same computation made faster where this is blank. Unchanged without any flag."""
    flags = {}
    for side, run in (("A", run_a), ("B", run_b)):
        rows = run.summary[run.summary["phase"] == Phase.STEP.value] if "numerics" in run.summary else []
        flags[side] = {r["case_id"]: numerics_flag(r) for _, r in (rows.iterrows() if len(rows) else [])}

    def flag(r) -> str:
        a, b = flags["A"].get(r["case_id"], ""), flags["B"].get(r["case_id_b"], "")
        sides = "A and B" if a and b else "A" if a else "B" if b else ""
        return f"{sides}: {b or a}" if sides else ""

    column = table.apply(flag, axis=1) if len(table) else pd.Series(dtype=str)
    return table.assign(numerics=column) if len(table) and column.astype(bool).any() else table


# --------------------------------------------------------------------------- CPU -> GPU


# --------------------------------------------------------------------------- CLI


def command(args: argparse.Namespace, confirm=None) -> int:
    """``mlpbench compare``; ``confirm(run_a, run_b, table) -> lines`` is ``--confirm``'s measuring step, handed in
    by ``bench.commands.compare`` (the command's entry point), because reporting never imports measuring code."""
    if args.out:
        output_file(args.out, "--out")
    run_a, run_b = load_runs([args.run_a, args.run_b])
    if any(run.kind is RunKind.DDP for run in (run_a, run_b)):
        raise UsageError("compare joins one-process runs; for data-parallel runs use `mlpbench report RUN_A RUN_B "
                         "--out DIR` (one scaling figure and a table per run)")
    clock = same_clock(run_a, run_b)
    phases = PHASE_NAMES if args.all_phases else (Phase.STEP.value,)
    comparison = compare(run_a, run_b, phases)
    table, ignored = comparison.table, comparison.ignored
    if not len(table):
        raise UsageError(f"{run_a.path} and {run_b.path} have no measured case in common")
    table = with_numerics(table, run_a, run_b)
    lines = [f"A = {run_a.path}", f"B = {run_b.path}"]
    diffs = describe_differences(fingerprint_differences({"A": run_a.meta.env, "B": run_b.meta.env}))
    lines += ([f"WARNING: the fingerprints differ, so differences may come from the machine: {d}" for d in diffs]
              or ["Fingerprints agree on " + ", ".join(COMPARABILITY_KEYS + FLAG_KEYS) + "."])
    lines.append(f"Both runs timed on the {clock} clock" + (" (a CPU case's CPU time, not wall time)." if clock == "cpu"
                                                            else "."))
    if ignored:
        lines.append(f"Cases matched ignoring {', '.join(ignored)} (no case matched on every field).")
    lines += change.change_lines(table, run_a.meta.env, run_b.meta.env)
    if changed(table).all():
        lines.append("Every case compared is the change under test: the run-level factor holds the change as well "
                     "as the machine, so two stored runs cannot time it; the exact counters below (no noise) and "
                     "`--confirm` (A and B interleaved in one run) can.")
    lines += ["", *comparison_lines(comparison), *change.work_lines(table)]
    if undecided(comparison) and not getattr(args, "confirm", False):
        lines += change.decide_lines(args.run_a, args.run_b, run_b.meta.get("sweep_file"))
    if undecided(comparison) and clock == "wall":
        lines.append(change.CPU_CLOCK_ADVICE)
    lines += ["", format_comparison(table), "", comparison_summary(table)]
    reasons = verdict_reasons(table)
    lines += ["", "Reasons:", *reasons] if reasons else []
    if getattr(args, "confirm", False):
        if confirm is None:
            raise UsageError("--confirm measures: run it through `mlpbench compare` (bench.commands.compare)")
        lines += ["", *confirm(run_a, run_b, table)]
    text = "\n".join(lines)
    print(text)
    if args.out:
        write_atomic(args.out, text + "\n")
    return 0

