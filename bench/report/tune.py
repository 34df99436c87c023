"""What ``mlpbench tune`` found, read from its run folder: the table, the fastest case, the waterfall.

The plan (meta.json's ``tune`` key, written by ``bench.commands.tune``) names each base case's chain (eager,
then one knob added at a time) and every case measured for it. ``tune_confirm.json`` holds the finalists
re-measured against eager interleaved: where it exists, the recommendation is the finalist faster than
eager beyond noise there (the gate's verdict on a paired interval), or eager when none is; the screening
medians alone would rank cases measured minutes apart on a drifting machine. Each bar's share of the limit is the
one that bounds the eager case: the same-run matmul ceiling (MFU) for a compute-bound case, else the
speed-of-light floor (``sol_fraction``: floor / step). A whole-step CUDA graph is charged no host
dispatch in its floor; a compiled step is charged its eager op count (docs/design.md).

Each case's numerics against fp32 eager (``bench.instruments.numerics``: the summary's ``numerics`` column) stand beside its
speedup in every table and on the recommendation's own line: a knob beyond its dtype's tolerance is never
recommended without saying so there, and ``tune --exact`` (the plan's ``exact``) recommends only knobs within.
The waterfall's colours are the interleaved verdicts: green only for a gain the interleaved check confirmed,
red for a case it found slower, grey for the rest (indistinguishable, or not re-measured).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd

from ..format import pct, table, time_text
from ..runs import Run, Status
from .figure import pyplot, save
from .markdown import PLOTS_DIR
from .tables import numerics_cell, numerics_flag

FIGURE = "tune.png"
TEXT = "tune.md"
CONFIRM_FILE = "tune_confirm.json"  # written by bench.commands.tune, which takes this name from here


@dataclass(frozen=True)
class Bar:
    label: str
    case_id: str
    case_label: str
    status: str
    reason: str
    median_s: float
    share: float  # of the limit that bounds the case (see ``Result.share_name``)
    numerics: str = ""  # the flag against fp32 eager ('' within tolerance; ``tables.numerics_flag``)
    numerics_cell: str = ""  # the table cell (``tables.numerics_cell``)


@dataclass(frozen=True)
class Result:
    base_label: str
    share_name: str  # "MFU" or "SoL"
    bars: list  # the chain, eager first
    measured: list  # every case of the plan, as bars (label: the case's own)
    skipped: list  # [(knob, reason)]
    flags: dict  # case_id -> mlpbench run flags
    confirmed: list | None = None  # the finalists against eager, interleaved (None: not re-measured)
    bars_by_id: dict = field(default_factory=dict)
    exact: bool = False  # tune --exact: recommend only knobs within their numerics tolerance

    @property
    def eager(self) -> Bar:
        return self.bars[0]

    @property
    def best(self) -> Bar | None:
        """The recommendation: the confirmed finalist faster than eager beyond noise (the lowest ratio), else
        eager; without a confirmation, the least screening median."""
        ok = [b for b in self.measured if b.status == Status.OK.value and b.median_s > 0
              and not (self.exact and b.numerics and b.case_id != self.eager.case_id)]
        if self.confirmed is None or not ok:
            return min(ok, key=lambda b: b.median_s) if ok else None
        faster = [f for f in self.confirmed if f["verdict"] == "improvement"
                  and not (self.exact and self.bars_by_id[f["case_id"]].numerics)]
        if faster:
            return self.bars_by_id[min(faster, key=lambda f: f["ratio"])["case_id"]]
        return self.eager if self.eager.status == Status.OK.value else min(ok, key=lambda b: b.median_s)

    def verdict(self, case_id: str) -> str | None:
        """The interleaved verdict of a case against eager ('improvement', 'regression', 'pass'); None where the
        case was not re-measured (not a finalist, or no confirmation)."""
        return next((f["verdict"] for f in self.confirmed or [] if f["case_id"] == case_id), None)

    def command(self, bar: Bar) -> str:
        return f"mlpbench run {self.flags[bar.case_id]}"


def _steps(run: Run) -> dict[str, dict]:
    rows = run.summary[run.summary["phase"] == "step"]
    return {r["case_id"]: r for r in rows.to_dict("records")}


def _value(row: dict, key: str) -> float:
    value = row.get(key, math.nan) if row else math.nan
    return float(value) if value is not None and not pd.isna(value) and value != "" else math.nan


def _share_name(eager: dict | None) -> str:
    bound = (eager or {}).get("sol_bound")
    return "SoL" if isinstance(bound, str) and bound and bound != "compute" else "MFU"


def results(run: Run) -> list[Result]:
    """One result per base case of the run's tune plan (none for a run without one)."""
    steps = _steps(run)
    confirmations = read_confirmations(run)
    out = []
    for plan in run.meta.get("tune") or []:
        eager = steps.get(plan["chain"][0][1])
        share_name = _share_name(eager)
        column = "mfu" if share_name == "MFU" else "sol_fraction"

        def bar(label: str, case_id: str) -> Bar:
            row = steps.get(case_id, {})
            return Bar(label, case_id, str(row.get("label", case_id)), str(row.get("status", "not measured")),
                       str(row.get("reason", "") if not pd.isna(row.get("reason", "")) else ""),
                       _value(row, "median_s"), _value(row, column), numerics_flag(row), numerics_cell(row))

        chain = [bar(label, case_id) for label, case_id in plan["chain"]]
        measured = [bar(steps.get(cid, {}).get("label", cid), cid) for cid in plan["cases"]]
        confirmed = confirmations.get(plan["base"]) if confirmations is not None else None
        out.append(Result(plan["base_label"], share_name, chain, measured, [tuple(s) for s in plan["skipped"]],
                          plan["flags"], confirmed if confirmations is None else (confirmed or []),
                          {b.case_id: b for b in measured}, bool(plan.get("exact", False))))
    return out


def read_confirmations(run: Run) -> dict | None:
    """base case id -> its finalists re-measured interleaved (``tune_confirm.json``); None without the file."""
    path = Path(run.path) / CONFIRM_FILE
    if not path.is_file():
        return None
    return {entry["base"]: entry["finalists"] for entry in json.loads(path.read_text())}


def _share_text(bar: Bar, name: str) -> str:
    name = "MFU" if name == "MFU" else "of SoL"
    return f"{pct(bar.share)} {name}" if math.isfinite(bar.share) else f"{name} n/a"


def result_lines(result: Result) -> list[str]:
    """The markdown of one base case: its waterfall table, what was skipped, the fastest and its command."""
    eager_s = result.eager.median_s
    rows = []
    for bar in result.measured:
        speedup = eager_s / bar.median_s if bar.median_s > 0 and math.isfinite(eager_s) else math.nan
        why = bar.reason.split(":")[0][:40]  # the row's reason in full is in summary.csv
        rows.append({"case": bar.case_label, "status": f"{bar.status}: {why}" if why else bar.status,
                     "step": time_text(bar.median_s) if math.isfinite(bar.median_s) else "",
                     "vs eager": f"{speedup:.2f}x" if math.isfinite(speedup) else "",
                     result.share_name: pct(bar.share) if math.isfinite(bar.share) else "",
                     "numerics vs fp32 eager": bar.numerics_cell})
    lines = [f"### {result.base_label}", "", "Screening pass (each case measured in turn, to rank them):", "",
             table(rows), ""]
    lines += [f"- skipped, {knob}: {reason}" for knob, reason in result.skipped]
    lines += confirmation_lines(result)
    best = result.best
    if best is None:
        lines.append("- no case was measured: nothing to recommend")
        return lines + [""]
    chosen = next((f for f in result.confirmed or [] if f["case_id"] == best.case_id), None)
    within = " within its numerics tolerance" if result.exact else ""
    if chosen is not None:
        lines.append(f"- fastest{within}: {best.case_label}, {1 / chosen['ratio']:.2f}x eager "
                     f"[{1 / chosen['ci_high']:.2f}, {1 / chosen['ci_low']:.2f}] interleaved "
                     f"({time_text(chosen['median_s'])} against {time_text(chosen['eager_s'])} per step), "
                     f"{_share_text(best, result.share_name)} in the screening pass" + _numerics_words(best))
    elif result.confirmed is not None and best.case_id == result.eager.case_id:
        lines.append(f"- fastest{within}: eager ({best.case_label}): no knob{within} was faster than eager beyond "
                     "noise when re-measured interleaved" + _numerics_words(best))
    else:
        speedup = eager_s / best.median_s if math.isfinite(eager_s) else math.nan
        lines.append(f"- fastest{within}: {best.case_label}, {time_text(best.median_s)} per step"
                     + (f", {speedup:.2f}x eager" if math.isfinite(speedup) else "")
                     + f", {_share_text(best, result.share_name)} (screening pass only: not re-measured)"
                     + _numerics_words(best))
    lines.append(f"- reproduce it: `{result.command(best)}`")
    if not result.exact and any(b.numerics for b in result.measured):
        lines.append("- `mlpbench tune --exact` recommends only knobs within their numerics tolerance")
    return lines + [""]


def _numerics_words(bar: Bar) -> str:
    """The recommendation's numerics, on its own line: within the dtype's tolerance of fp32 eager, or how far not."""
    if bar.numerics:
        return (f"; NUMERICS {bar.numerics} against fp32 eager (docs/design.md \"Numerics beside speed\"): it "
                "trains differently")
    if bar.numerics_cell.startswith("ok"):
        return f"; numerics within tolerance of fp32 eager ({bar.numerics_cell.removeprefix('ok ').strip('()')})"
    return ""


def confirmation_lines(result: Result) -> list[str]:
    """The finalists against eager, interleaved: the ratio eager/finalist (a speedup) and what it says."""
    if result.confirmed is None:
        return []
    if not result.confirmed:
        return ["", "Interleaved re-measurement: no knob case was measured, nothing to confirm.", ""]
    rows = []
    for f in result.confirmed:
        word = {"improvement": "faster", "regression": "slower"}.get(f["verdict"],
                                                                       "indistinguishable from eager within noise")
        rows.append({"case": result.bars_by_id[f["case_id"]].case_label,
                     "eager": time_text(f["eager_s"]), "this": time_text(f["median_s"]),
                     "speedup": f"{1 / f['ratio']:.3f}x", "interval": f"[{1 / f['ci_high']:.3f}, {1 / f['ci_low']:.3f}]",
                     "verdict": word, "numerics vs fp32 eager": result.bars_by_id[f["case_id"]].numerics_cell})
    level = result.confirmed[0].get("confidence", 0.99)
    return ["", f"Finalists against eager, interleaved ({result.confirmed[0].get('rounds', '')} "
            f"blocks a side, paired {level:.0%} interval of the speedup):", "", table(rows), "",
            *two_passes_lines(result), ""]


def two_passes_lines(result: Result) -> list[str]:
    """Why the screening pass and the interleaved check read different times, and which figure to trust."""
    screening = result.eager.median_s
    interleaved = [f["eager_s"] for f in result.confirmed or [] if f.get("eager_s", 0) > 0]
    if not interleaved or not math.isfinite(screening) or screening <= 0:
        return []
    low, high = min(interleaved), max(interleaved)
    read = time_text(low) if high <= low * 1.0001 else f"{time_text(low)} to {time_text(high)}"
    return [f"- The two passes measure differently: eager read {time_text(screening)} in the screening pass and "
            f"{read} in the interleaved check ({low / screening:.2f}x). The screening pass measures each case once, "
            "in turn, in this process, on the CPUs the scheduler picks, its step built once; the interleaved check "
            "runs eager and a finalist in two worker processes pinned to the same CPU(s), rebuilds each block's "
            "step in fresh memory, and alternates them, so the machine's load and memory placement land on both "
            "alike, but on other absolute times. Trust the interleaved speedups and their intervals (each "
            "finalist against its own eager, measured together); read the screening times only as a ranking, and "
            "no absolute time as what a re-run will read."]


def waterfall(result: Result, path: Path) -> Path:
    """Bars: eager, each knob added, and the fastest; each with its step time and its share of the limit."""
    plt = pyplot()
    bars = list(result.bars)
    best = result.best
    if best is not None and best.case_id != bars[-1].case_id:
        bars.append(Bar("best", best.case_id, best.case_label, best.status, best.reason, best.median_s, best.share))
    elif best is not None:
        bars[-1] = replace(bars[-1], label=bars[-1].label + " (best)")
    fig, ax = plt.subplots(figsize=(max(4.5, 1.25 * len(bars)), 3.6))
    times = [b.median_s * 1e3 if b.status == Status.OK.value else math.nan for b in bars]
    top = max([t for t in times if math.isfinite(t)] or [1.0])
    for i, (b, t) in enumerate(zip(bars, times)):
        if not math.isfinite(t):
            ax.bar(i, top * 0.05, color="none", edgecolor="grey", hatch="//")
            ax.text(i, top * 0.07, b.status, ha="center", va="bottom", fontsize=7, color="grey")
            continue
        ax.bar(i, t, color=bar_colour(result, b, i == 0))
        ax.text(i, t, f"{time_text(b.median_s)}\n{_share_text(b, result.share_name)}"
                + ("\nbeyond tol." if b.numerics else ""), ha="center", va="bottom", fontsize=7,
                color="#C44E52" if b.numerics else "black")
    ax.set_xticks(range(len(bars)))
    ax.set_xticklabels([b.label for b in bars], rotation=20, ha="right")
    ax.set_ylabel("step time (ms)")
    ax.set_ylim(0, top * 1.3)
    ax.set_title(f"{result.base_label}, each knob added, and the fastest\n(green: faster than eager interleaved; "
                 "red: slower; grey: indistinguishable or not re-measured)", fontsize=8)
    return save(fig, path)


EAGER_COLOUR, FASTER_COLOUR, SLOWER_COLOUR, UNCONFIRMED_COLOUR = "#4C72B0", "#2E8B57", "#C44E52", "#A0A0A0"


def bar_colour(result: Result, bar: Bar, first: bool) -> str:
    """Eager blue; a knob case green only where the interleaved check found it faster than eager beyond noise,
    red where it found it slower, grey otherwise (indistinguishable, or never re-measured interleaved: a
    screening median alone confirms nothing)."""
    if first or bar.case_id == result.eager.case_id:  # the "best" bar too, where eager is the best
        return EAGER_COLOUR
    return {"improvement": FASTER_COLOUR, "regression": SLOWER_COLOUR}.get(result.verdict(bar.case_id) or "",
                                                                       UNCONFIRMED_COLOUR)


def tune_report(run: Run, out_dir: Path) -> str:
    """Write ``tune.md`` and ``plots/tune.png`` (one figure per base case after the first) and return the text."""
    out_dir = Path(out_dir)
    lines = ["## mlpbench tune", ""]
    for i, result in enumerate(results(run)):
        path = out_dir / PLOTS_DIR / (FIGURE if i == 0 else f"tune-{i + 1}.png")
        lines += result_lines(result)
        if any(b.status == Status.OK.value for b in result.bars):
            lines += [f"![waterfall]({waterfall(result, path).relative_to(out_dir).as_posix()})", ""]
    text = "\n".join(lines)
    (out_dir / TEXT).write_text(text + "\n")
    return text
