"""Figure 2: where the training step goes: forward / loss+backward / optimiser per case (report.md: % of the phase
sum; report.html: ms), the uninstrumented whole-step median beside it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...format import pct, time_text
from ..figure import BAR_IN, BAR_PX, FIGURE_HEIGHT_PX, FigureInputs, pyplot
from ..hover import flag_annotations, hover, layout
from ..palette import FLAG_COLOR, PHASE_COLORS
from ..spread import row_is_wide, wide_note, wide_text
from ..tables import ok_rows

NAME, ORDER = "phases", 2
TITLE = "Where the training step goes"
CAPTION = ("Each bar splits one case's training step into its phases (timed in separate instrumented blocks: "
           "forward, loss+backward, optimiser step + zero_grad); beside it the uninstrumented whole-step median (in "
           "report.html a black tick with its 95% CI; in report.md the number on the right, with how far the phase "
           "sum is from it in brackets). ⚠: a 95% CI far from its median.")
ORDER_BY = ["network", "width", "depth", "dtype", "compile", "activation", "optimizer", "batch"]


def prepare(inputs: FigureInputs) -> dict | str:
    ok = ok_rows(inputs.summary, list(PHASE_COLORS) + ["step"])
    table = ok.pivot_table(index=["platform", "case_id"], columns="phase", values="median_s", aggfunc="first")
    needed = list(PHASE_COLORS) + ["step"]
    if not len(table) or not set(needed) <= set(table.columns) or not len(table.dropna(subset=needed)):
        return "no case has forward, backward and optimiser timings"
    table = table[needed].dropna().add_suffix("_s")  # forward_s, ...: no clash with the case's `optimizer` column
    steps = ok_rows(inputs.summary, ["step"]).set_index(["platform", "case_id"])
    table = table.join(steps).sort_values(["platform"] + ORDER_BY)
    platforms = table.index.get_level_values("platform")
    many = len(set(platforms)) > 1
    table["case"] = [f"{label} [{p}]" if many else label for label, p in zip(table["label"], platforms)]
    phase_sum = table[[f"{p}_s" for p in PHASE_COLORS]].sum(axis=1)
    for phase in PHASE_COLORS:
        table[f"{phase}_share"] = table[f"{phase}_s"] / phase_sum
    return {"table": table, "note": wide_note(table.reset_index(), "⚠")}


def draw_png(data: dict):
    table = data["table"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 1.3 + BAR_IN * len(table)))
    y = np.arange(len(table))
    left = np.zeros(len(table))
    for phase, color in PHASE_COLORS.items():
        share = (table[f"{phase}_share"] * 100).to_numpy()
        ax.barh(y, share, left=left, color=color, label=phase, height=0.75)
        for yi, l, s in zip(y, left, share):
            if s >= 12:
                ax.text(l + s / 2, yi, f"{s:.0f}%", ha="center", va="center", fontsize=7, color="white")
        left += share
    for yi, (_, r) in zip(y, table.iterrows()):
        gap = r["phase_sum_gap"]
        text = f"{time_text(r['median_s'])}  ({gap:+.0%})" if not pd.isna(gap) else time_text(r["median_s"])
        wide = row_is_wide(r)
        ax.text(101, yi, text + ("  ⚠ " + wide_text(r) if wide else ""), va="center", fontsize=7,
                color=FLAG_COLOR if wide else "black")
    ax.set_yticks(y)
    ax.set_yticklabels(table["case"])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the phase sum (%)")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax.set_title(f"{TITLE}: forward / loss+backward / optimiser (+zero_grad), % of the phase sum\n"
                 "right: whole-step median (phase sum vs step)", pad=22)
    return fig


def draw_plotly(data: dict) -> dict:
    table = data["table"]
    labels = table["case"].tolist()
    rows = [r for _, r in table.iterrows()]
    traces = []
    for phase, color in PHASE_COLORS.items():
        traces.append({"type": "bar", "orientation": "h", "name": phase, "marker": {"color": color},
                       "y": labels, "x": (table[f"{phase}_s"] * 1e3).tolist(), "hoverinfo": "text",
                       "hovertext": [hover(r, f"{phase}: {time_text(r[f'{phase}_s'])} "
                                              f"({pct(r[f'{phase}_share'], 0)} of the phase sum)") for r in rows]})
    traces.append({"type": "scatter", "mode": "markers", "name": "whole step (median, 95% CI)", "y": labels,
                   "x": (table["median_s"] * 1e3).tolist(), "marker": {"color": "black", "symbol": "line-ns-open",
                                                                     "size": 14, "line": {"width": 2}},
                   "error_x": {"type": "data", "symmetric": False,
                               "array": ((table["ci_high_s"] - table["median_s"]) * 1e3).tolist(),
                               "arrayminus": ((table["median_s"] - table["ci_low_s"]) * 1e3).tolist()},
                   "hovertext": [hover(r, f"phase sum gap {pct(r.get('phase_sum_gap'), 0)}") for r in rows],
                   "hoverinfo": "text"})
    flagged = [(r["ci_high_s"] * 1e3, r["case"], f"{r['label']}: {wide_text(r)}") for r in rows if row_is_wide(r)]
    out = layout(TITLE + ": forward / loss+backward / optimiser (+zero_grad)", "ms per step", "", barmode="stack",
                 yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
                 annotations=[{**a, "ax": 14, "ay": 0, "xanchor": "left"} for a in flag_annotations(flagged)],
                 height=max(FIGURE_HEIGHT_PX, 120 + BAR_PX * len(labels)))
    return {"data": traces, "layout": out}
