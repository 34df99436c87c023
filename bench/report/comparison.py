"""``report A B [C ...]``: the runs compared, not merged away: B (and C, ...) against A, with verdicts and a figure.

When several runs measured the same cases on the same platform, the report's tables keep the last
run's rows; this section says how the others compare with the first: per-case ratios with their
within-run intervals, the run-level factor, the verdicts of ``compare`` (``bench.analysis.noise``), and one
figure per pair (``compare-<B>.png``): the ratios as dots with their intervals, coloured by verdict,
beside B's medians against A's on log axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..format import table as format_table
from .change import change_lines, work_lines
from .compare import BESIDE_VERDICT, Comparison, compare, comparison_lines
from .figure import Figure, markdown_lines, pyplot, save
from .tables import run_names

VERDICT_COLOURS = {"slower": "#d62728", "faster": "#2ca02c", "inconclusive": "#7f7f7f"}  # tab10 red, green, grey


def comparisons(runs: Sequence) -> list[tuple[str, str, Comparison]]:
    """(name A, name B, comparison) for every run after the first that shares measured cases with it."""
    if len(runs) < 2:
        return []
    names = run_names(runs)
    out = []
    for run, name in zip(runs[1:], names[1:]):
        result = compare(runs[0], run)
        if len(result.table):
            out.append((names[0], name, result))
    return out


def case_labels(table) -> list[str]:
    """Each row's case, with its phase where it is not the whole step."""
    return [c if p == "step" else f"{c} ({p})" for c, p in zip(table["case"], table["phase"])]


def medians_range_ms(table) -> tuple[float, float]:
    """The B-against-A panel's span (ms): both runs' medians, with a margin either side on log axes."""
    lo = float(min(table["median_a_s"].min(), table["median_b_s"].min()) * 1e3 * 0.8)
    hi = float(max(table["median_a_s"].max(), table["median_b_s"].max()) * 1e3 * 1.25)
    return lo, hi


def draw(comparison: Comparison, name_a: str, name_b: str, path: Path) -> Figure:
    table = comparison.table
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.32 * len(table) + 2.2),
                                      gridspec_kw={"width_ratios": [3, 2]})
    y = np.arange(len(table))
    colours = [VERDICT_COLOURS.get(v, "black") for v in table["verdict"]]
    lower = np.clip(table["ratio"] - table["ci_low"], 0, None)
    upper = np.clip(table["ci_high"] - table["ratio"], 0, None)
    left.errorbar(table["ratio"], y, xerr=[lower, upper], fmt="none", ecolor="0.6", elinewidth=1)
    left.scatter(table["ratio"], y, c=colours, zorder=3, s=22)
    left.axvline(1.0, color="black", lw=0.8)
    factor = comparison.factors.get("step")
    if factor is not None:
        left.axvline(factor.factor, color="tab:blue", ls="--", lw=0.9, label=f"run-level factor {factor.factor:.3f}")
        left.legend(loc="best")
    left.set_yticks(y, case_labels(table))
    left.invert_yaxis()
    left.set_xscale("log")
    left.set_xlabel(f"median {name_b} / median {name_a} (95% within-run interval)")
    right.scatter(table["median_a_s"] * 1e3, table["median_b_s"] * 1e3, c=colours, s=22, zorder=3)
    lo, hi = medians_range_ms(table)
    right.plot([lo, hi], [lo, hi], color="black", lw=0.8, label="B = A")
    if factor is not None:
        right.plot([lo, hi], [lo * factor.factor, hi * factor.factor], color="tab:blue", ls="--", lw=0.9,
                   label="B = factor x A")
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel(f"{name_a} median (ms)")
    right.set_ylabel(f"{name_b} median (ms)")
    right.legend(loc="upper left")
    fig.suptitle(f"{name_b} against {name_a}: {comparison.overall.verdict.value} (red slower, green faster, "
                 "grey inconclusive)", fontsize=10)
    save(fig, path)
    return Figure(f"compare-{name_b}", f"{name_b} against {name_a}", path,
                  caption="Each case's ratio of medians with its within-run interval, coloured by its verdict; the "
                          "dashed line is the run-level factor (every case moving together: the machine). Right: "
                          "B's medians against A's.")


def section(runs: Sequence, out_dir: Path, plot_dir: Path) -> list[str]:
    """The report's comparison section (empty with one run, or when no later run shares a case with the first)."""
    found = comparisons(runs)
    if not found:
        return []
    parts = ["## Runs compared", "",
             f"Every later run against the first ({found[0][0]}), case by case (the tables above keep the last run's "
             "rows). A verdict is faster, slower or inconclusive: it knows the noise between runs (the run-level "
             "factor every case shares, the cases' spread around it, the machine states; docs/reports.md), not "
             "only the within-run interval shown.", ""]
    for name_a, name_b, result in found:
        figure = draw(result, name_a, name_b, plot_dir / f"compare-{name_b}.png")
        beside = {h: c for h, c in BESIDE_VERDICT.items()
                  if c in result.table and result.table[c].astype(str).str.len().any()}
        rows = [{"case": r["case"], "phase": r["phase"], "B/A": f"{r['ratio']:.3f}",
                 "95% CI (within runs)": f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
                 "verdict": r["verdict"], **{h: r[c] for h, c in beside.items()}, "reason": r["reason"]}
                for _, r in result.table.iterrows()]
        parts += [f"### {name_b} against {name_a}", "", *change_lines(result.table, {}, {}),
                  *comparison_lines(result), *work_lines(result.table), "",
                  *markdown_lines(figure, out_dir), format_table(rows, "github", empty=""), ""]
    return parts
