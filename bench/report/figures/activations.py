"""Figure 6: activation functions compared at one fixed configuration (the one measured with the most activations):
forward / loss+backward / optimiser stacked per activation, the whole step with its 95% CI, inference beside."""

from __future__ import annotations

import numpy as np

from ...format import time_text
from ..figure import FigureInputs, pyplot
from ..hover import flag_annotations, hover, layout
from ..palette import FLAG_COLOR, INFERENCE_COLOR, PHASE_COLORS
from ..series import compile_label
from ..spread import row_is_wide, wide_note, wide_text
from ..tables import identity_columns, ok_rows

NAME, ORDER = "activations", 6
TITLE = "Activation functions compared"
CAPTION = ("Stacked bars: forward, loss+backward and optimiser medians per activation at one fixed configuration, "
           "sorted by step time; black tick: the whole step with its 95% CI; diamond: inference (forward under "
           "inference_mode). ⚠: a 95% CI far from its median.")


def prepare(inputs: FigureInputs) -> dict | str:
    summary = inputs.summary
    steps = ok_rows(summary, ["step"])
    keys = ["platform"] + identity_columns(["activation"])
    counts = steps.groupby(keys, sort=False)["activation"].nunique() if len(steps) else []
    if not len(counts) or counts.max() < 2:
        return "no configuration was measured with two or more activations"
    best = counts.idxmax()
    chosen = steps[np.logical_and.reduce([steps[k] == v for k, v in zip(keys, best)])]
    phases = ok_rows(summary, list(PHASE_COLORS) + ["inference"])
    phases = phases[phases["platform"].eq(best[0]) & phases["case_id"].isin(chosen["case_id"])]
    table = phases.pivot_table(index="case_id", columns="phase", values="median_s", aggfunc="first")
    table = table.add_suffix("_s").join(chosen.set_index("case_id")).sort_values("median_s")
    row = chosen.iloc[0]
    threads = f", {int(row['threads'])} thread(s)" if int(row["threads"]) else ""
    where = (f"{row['size']}, batch {row['batch']}, {row['dtype']} {compile_label(row['compile'])}{threads} "
             f"on {row['platform']}")
    return {"table": table, "where": where, "note": wide_note(table, "⚠")}


def _phase_ms(table, phase: str) -> np.ndarray:
    column = f"{phase}_s"
    return table[column].to_numpy(float) * 1e3 if column in table else np.zeros(len(table))


def draw_png(data: dict):
    table = data["table"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(table) + 2), 4.4))
    x = np.arange(len(table))
    bottom = np.zeros(len(table))
    for phase, color in PHASE_COLORS.items():
        values = _phase_ms(table, phase)
        ax.bar(x, values, bottom=bottom, color=color, width=0.6, label=phase)
        bottom += np.nan_to_num(values)
    step_ms = table["median_s"].to_numpy() * 1e3
    err = np.vstack([step_ms - table["ci_low_s"] * 1e3, table["ci_high_s"] * 1e3 - step_ms])
    ax.errorbar(x, step_ms, yerr=err, fmt="_", color="black", markersize=22, capsize=3, label="whole step (95% CI)")
    if "inference_s" in table:
        ax.scatter(x, table["inference_s"] * 1e3, marker="D", color=INFERENCE_COLOR, s=18, zorder=3,
                   label="inference")
    for xi, (_, r) in zip(x, table.iterrows()):
        if row_is_wide(r):
            ax.annotate("⚠", (xi, r["ci_high_s"] * 1e3), textcoords="offset points", xytext=(0, 4), ha="center",
                        color=FLAG_COLOR, fontsize=9)
    ax.set_xticks(x, table["activation"])
    ax.set_ylabel("time per step (ms)")
    ax.set_ylim(0, max(np.nanmax(bottom), np.nanmax(step_ms + err[1])) * 1.15)
    ax.grid(axis="x", visible=False)
    ax.set_title(f"{TITLE} at {data['where'].replace(' on ', chr(10) + 'on ', 1)}")
    ax.legend(loc="upper left", ncol=3, frameon=False, fontsize=7)
    return fig


def draw_plotly(data: dict) -> dict:
    table = data["table"]
    names = table["activation"].tolist()
    rows = [r for _, r in table.iterrows()]
    traces = [{"type": "bar", "name": phase, "x": names, "y": _phase_ms(table, phase).tolist(),
               "marker": {"color": color}, "hoverinfo": "text",
               "hovertext": [hover(r, f"{phase}: {time_text(r.get(f'{phase}_s'))}") for r in rows]}
              for phase, color in PHASE_COLORS.items()]
    step_ms = table["median_s"] * 1e3
    traces.append({"type": "scatter", "mode": "markers", "name": "whole step (median, 95% CI)", "x": names,
                   "y": step_ms.tolist(), "marker": {"color": "black", "symbol": "line-ew-open", "size": 24,
                                                     "line": {"width": 2}},
                   "error_y": {"type": "data", "symmetric": False,
                               "array": (table["ci_high_s"] * 1e3 - step_ms).tolist(),
                               "arrayminus": (step_ms - table["ci_low_s"] * 1e3).tolist()},
                   "hoverinfo": "text", "hovertext": [hover(r) for r in rows]})
    if "inference_s" in table:
        traces.append({"type": "scatter", "mode": "markers", "name": "inference", "x": names,
                       "y": (table["inference_s"] * 1e3).tolist(), "hoverinfo": "text",
                       "marker": {"color": INFERENCE_COLOR, "symbol": "diamond", "size": 8},
                       "hovertext": [hover(r, f"inference: {time_text(r['inference_s'])}") for r in rows]})
    flagged = [(r["activation"], r["ci_high_s"] * 1e3, f"{r['label']}: {wide_text(r)}") for r in rows
               if row_is_wide(r)]
    return {"data": traces, "layout": layout(f"{TITLE} at {data['where']}", "activation", "time per step (ms)",
                                             barmode="stack", annotations=flag_annotations(flagged),
                                             xaxis={"type": "category", "title": {"text": "activation"}})}
