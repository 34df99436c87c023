"""Figure 1: training throughput (samples/s) against batch size, one series per configuration (every case field
but the batch, and the platform), every ok case a marker; report.md draws one panel per network size."""

from __future__ import annotations

import math

import numpy as np

from ..figure import FigureInputs, MAX_PANELS_PER_ROW, batch_axis, figure_legend, grid, pyplot
from ..hover import flag_annotations, hover, layout
from ..palette import DTYPE_MARKERS, DTYPE_SYMBOLS, FLAG_COLOR
from ..series import split
from ..spread import row_is_wide, wide_note, wide_text
from ..tables import identity_columns, ok_rows

NAME, ORDER = "throughput", 1
TITLE = "Training throughput vs batch size"
CAPTION = ("One marker per case measured ok (the whole training step; bars: the 95% CI of the median); a line joins "
           "the batch sizes of one configuration (dashed: compiled; marker: dtype), one colour per line. A line that "
           "keeps rising has not yet amortised the per-step costs; a flat one is saturated. ⚠: a 95% CI far from its "
           "median.")


def prepare(inputs: FigureInputs) -> dict | str:
    steps = ok_rows(inputs.summary, ["step"])
    series = split(steps, ["platform"] + identity_columns(["batch"])) if len(steps) else []
    if not any(s.rows["batch"].nunique() >= 2 for s in series):
        return "no configuration was measured at two or more batch sizes"
    return {"series": series, "note": wide_note(steps, "⚠")}


def _points(rows):
    rows = rows.sort_values("batch")
    y = rows["batch"] / rows["median_s"]
    low, high = y - rows["batch"] / rows["ci_high_s"], rows["batch"] / rows["ci_low_s"] - y
    return rows, y, low, high


def draw_png(data: dict):
    plt = pyplot()
    sizes = list(dict.fromkeys(s.rows["size"].iloc[0] for s in data["series"]))
    fig, axes = grid(plt, len(sizes))
    for ax, size in zip(axes, sizes):
        for s in data["series"]:
            if s.rows["size"].iloc[0] != size:
                continue
            rows, y, low, high = _points(s.rows)
            ax.errorbar(rows["batch"], y, yerr=np.vstack([low, high]), label=s.name, color=s.color,
                        linestyle="-" if s.values["compile"] == "none" else "--",
                        marker=DTYPE_MARKERS.get(s.values["dtype"], "o"), markersize=4, capsize=2, linewidth=1.4)
            for (_, r), yi in zip(rows.iterrows(), y):
                if row_is_wide(r):
                    ax.annotate("⚠", (r["batch"], yi), textcoords="offset points", xytext=(0, 6), ha="center",
                                color=FLAG_COLOR, fontsize=9)
        ax.set_yscale("log")
        batch_axis(ax, [b for s in data["series"] if s.rows["size"].iloc[0] == size for b in s.rows["batch"]])
        ax.set_title(str(size))
        ax.set_xlabel("batch size")
    for ax in axes[::MAX_PANELS_PER_ROW]:
        ax.set_ylabel("samples / s (log)")
    fig.suptitle(f"{TITLE} (whole step; median, bars: 95% CI of the median)", fontsize=11)
    figure_legend(fig, axes, ncol=3)
    return fig


def draw_plotly(data: dict) -> dict:
    traces, flagged = [], []
    for s in data["series"]:
        rows, y, low, high = _points(s.rows)
        traces.append({"type": "scatter", "mode": "lines+markers", "name": s.name,
                       "x": rows["batch"].tolist(), "y": y.tolist(),
                       "error_y": {"type": "data", "symmetric": False, "array": high.tolist(),
                                   "arrayminus": low.tolist(), "thickness": 1, "color": s.color},
                       "line": {"dash": "solid" if s.values["compile"] == "none" else "dash", "color": s.color},
                       "marker": {"color": s.color, "symbol": DTYPE_SYMBOLS.get(s.values["dtype"], "circle")},
                       "hovertext": [hover(r, f"{r['samples_per_s']:,.4g} samples/s") for _, r in rows.iterrows()],
                       "hoverinfo": "text"})
        flagged += [(math.log10(r["batch"]), math.log10(yi), f"{r['label']}: {wide_text(r)}")
                    for (_, r), yi in zip(rows.iterrows(), y) if row_is_wide(r)]
    return {"data": traces, "layout": layout(TITLE, "batch size", "samples / s", xlog=True, ylog=True,
                                             annotations=flag_annotations(flagged))}
