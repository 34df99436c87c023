"""report.html's "Runs compared" section: ``report A B [C ...] --html`` draws B (and C, ...) against A.

The same comparisons as report.md's section (``comparison.comparisons``: ``compare``'s verdicts, which know the
noise between runs), drawn interactively: per pair one figure of two panels, each case's ratio of medians with
its within-run interval, coloured by its verdict, beside B's medians against A's on log axes (the dashed line
is the run-level factor: every case moving together, the machine); hovering a point names the case, its ratio,
its interval, how far it is from the factor, and the verdict with its one-line reason. Then the verdict lines
and a sortable, filterable table of the cases. Reads result tables only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from ..analysis import noise
from ..format import ms
from .webpage import cell, escape, figure_html, table_html
from .compare import Comparison, comparison_lines
from .comparison import VERDICT_COLOURS, case_labels, comparisons, medians_range_ms

ROW_PX = 24  # per case in the ratio panel
FIGURE_ID = "fig-compare-{index}"
TABLE_ID = "compare-{index}"


def _number(value: float, text: str) -> str:
    return text if isinstance(value, (int, float)) and math.isfinite(value) else ""


def hover(r: pd.Series) -> str:
    """One case of a comparison: its label, the ratio with its interval, its place against the run-level factor
    and the verdict with its reason."""
    rel = _number(r.get("relative", math.nan), f"{r.get('relative', math.nan):.3f}× the run-level factor, "
                                               f"z {r.get('z', math.nan):+.1f}")
    return (f"<b>{escape(r['case'])}</b> ({escape(r['phase'])})<br>A {ms(r['median_a_s'])} ms, "
            f"B {ms(r['median_b_s'])} ms<br>B/A {r['ratio']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] "
            f"(95% within runs)" + (f"<br>{escape(rel)}" if rel else "")
            + f"<br><b>{escape(r['verdict'])}</b>: {escape(_wrap(r['reason']))}")


def _wrap(text: str, width: int = 90) -> str:
    words, lines, line = str(text).split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line]) if line else "\n".join(lines)


def figure(comparison: Comparison, name_a: str, name_b: str) -> dict:
    """The plotly figure of one pair: left, the ratios (y: the cases, in table order); right, B against A (ms)."""
    table = comparison.table.reset_index(drop=True)
    labels = case_labels(table)
    traces = []
    for verdict in noise.Verdict:
        rows = table[table["verdict"] == verdict.value]
        if not len(rows):
            continue
        colour, text = VERDICT_COLOURS[verdict.value], [hover(r).replace("\n", "<br>") for _, r in rows.iterrows()]
        traces.append({"type": "scatter", "mode": "markers", "name": verdict.value, "legendgroup": verdict.value,
                       "x": rows["ratio"].tolist(), "y": [labels[i] for i in rows.index],
                       "error_x": {"type": "data", "symmetric": False, "color": "#999",
                                   "array": (rows["ci_high"] - rows["ratio"]).clip(lower=0).tolist(),
                                   "arrayminus": (rows["ratio"] - rows["ci_low"]).clip(lower=0).tolist()},
                       "marker": {"color": colour, "size": 9}, "hoverinfo": "text", "hovertext": text,
                       "xaxis": "x", "yaxis": "y"})
        traces.append({"type": "scatter", "mode": "markers", "name": verdict.value, "legendgroup": verdict.value,
                       "showlegend": False, "x": (rows["median_a_s"] * 1e3).tolist(),
                       "y": (rows["median_b_s"] * 1e3).tolist(), "marker": {"color": colour, "size": 9},
                       "hoverinfo": "text", "hovertext": text, "xaxis": "x2", "yaxis": "y2"})
    factor = comparison.factors.get("step")
    lo, hi = medians_range_ms(table)
    line = {"type": "scatter", "mode": "lines", "hoverinfo": "skip", "xaxis": "x2", "yaxis": "y2"}
    traces.append({**line, "name": "B = A", "x": [lo, hi], "y": [lo, hi], "line": {"color": "black", "width": 1}})
    shapes = [{"type": "line", "xref": "x", "yref": "paper", "x0": 1, "x1": 1, "y0": 0, "y1": 1,
               "line": {"color": "black", "width": 1}}]
    if factor is not None:
        traces.append({**line, "name": f"run-level factor {factor.factor:.3f}", "x": [lo, hi],
                       "y": [lo * factor.factor, hi * factor.factor],
                       "line": {"color": "#1f77b4", "width": 1, "dash": "dash"}})
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": factor.factor, "x1": factor.factor,
                       "y0": 0, "y1": 1, "line": {"color": "#1f77b4", "width": 1, "dash": "dash"}})
    layout = {"title": {"text": f"{escape(name_b)} against {escape(name_a)}: {comparison.overall.verdict.value}"},
              "hovermode": "closest", "margin": {"l": 260, "r": 20, "t": 60, "b": 60},
              "legend": {"orientation": "h", "y": -0.12},
              "xaxis": {"domain": [0, 0.55], "type": "log", "title": {"text": "median B / median A"}},
              "yaxis": {"autorange": "reversed", "type": "category", "automargin": True},
              "xaxis2": {"domain": [0.65, 1], "type": "log", "title": {"text": f"{escape(name_a)} median (ms)"}},
              "yaxis2": {"anchor": "x2", "type": "log", "title": {"text": f"{escape(name_b)} median (ms)"}},
              "shapes": shapes}
    return {"data": traces, "layout": layout}


def height_px(comparison: Comparison) -> int:
    return max(420, 160 + ROW_PX * len(comparison.table))


def verdict_rows(comparison: Comparison) -> tuple[list[str], list[list]]:
    columns = ["case", "phase", "A ms", "B ms", "B/A", "95% CI (within runs)", "vs run factor", "z", "verdict",
               "reason"]
    rows = []
    for _, r in comparison.table.iterrows():
        rel, z = r.get("relative", math.nan), r.get("z", math.nan)
        rows.append([cell(r["case"]), cell(r["phase"]), cell(ms(r["median_a_s"]), r["median_a_s"] * 1e3),
                     cell(ms(r["median_b_s"]), r["median_b_s"] * 1e3), cell(f"{r['ratio']:.3f}", r["ratio"]),
                     cell(f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]"),
                     cell(_number(rel, f"{rel:.3f}"), rel if math.isfinite(rel) else None),
                     cell(_number(z, f"{z:+.1f}"), z if math.isfinite(z) else None),
                     cell(r["verdict"], css=f"verdict-{r['verdict']}"), cell(r["reason"])])
    return columns, rows


def section(runs: Sequence) -> tuple[list[str], list[tuple[str, str, dict]]]:
    """The section's HTML parts and its figures as (element id, title, plotly figure); nothing with one run or
    when no later run shares a case with the first."""
    found = comparisons(runs)
    if not found:
        return [], []
    parts = ['<h2 id="runs-compared">Runs compared</h2>',
             f"<p>Every later run against the first (<code>{escape(found[0][0])}</code>), case by case (the figures "
             "and table above keep the last run's rows). A verdict is faster, slower or inconclusive: it knows the "
             "noise between runs (the run-level factor every case shares, the cases' spread around it, the machine "
             "states; docs/reports.md), not only the within-run interval drawn. "
             "<code>mlpbench compare A B --confirm</code> re-measures the cases that moved, interleaved.</p>"]
    figures = []
    for index, (name_a, name_b, comparison) in enumerate(found, 1):
        fig = figure(comparison, name_a, name_b)
        fig_id, title = FIGURE_ID.format(index=index), f"{name_b} against {name_a}"
        figures.append((fig_id, title, fig))
        columns, rows = verdict_rows(comparison)
        lines = "".join(f"<li>{escape(line.replace('**', ''))}</li>" for line in comparison_lines(comparison))
        parts += [f'<h3 id="{fig_id}-title">{escape(title)}</h3>', f'<ul class="verdict">{lines}</ul>',
                  figure_html(fig_id, fig, height_px=height_px(comparison)),
                  table_html(TABLE_ID.format(index=index), columns, rows)]
    return parts, figures
