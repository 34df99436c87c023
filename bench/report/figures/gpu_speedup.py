"""Figure 3: CPU → GPU speedup (CPU step time / GPU step time) per configuration and batch, where CPU and CUDA runs
are merged; report.md: a heat map per dtype x compile mode, report.html: a line per configuration."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ...format import missing, sig, time_text
from ..webpage import escape
from ..figure import MAX_PANELS_PER_ROW, FigureInputs, grid, most_common, pyplot
from ..hover import layout
from ..series import compile_label, split
from ..tables import crossover_batches, device_speedup, identity_columns, ok_rows

NAME, ORDER = "gpu_speedup", 3
TITLE = "CPU → GPU speedup"
CAPTION = ("The CPU's whole-step time over the GPU's for each configuration measured on both (above 1: the GPU is "
           "faster). report.md: one heat map per dtype and compile mode (blue: the GPU is faster, red: the CPU is; "
           "the black tick marks the crossover batch); report.html: one line per configuration against batch, "
           "crosses at the crossover. The crossover is the batch from which the GPU wins at every larger measured "
           "batch, log-interpolated between the two measured batches around it.")


def prepare(inputs: FigureInputs) -> dict | str:
    summary = inputs.summary
    devices = set(ok_rows(summary, ["step"])["device"]) if len(summary) else set()
    if devices != {"cpu", "cuda"}:
        return (f"needs CPU and CUDA measurements of the same cases (this report has: "
                f"{', '.join(sorted(devices)) or 'none'}); run the sweep on a GPU machine and pass both runs to "
                "`mlpbench report`")
    speed = device_speedup(summary)
    if not len(speed):
        return "no case was measured on both CPU and CUDA"
    keys = identity_columns(["device", "batch", "threads"])
    return {"speed": speed, "series": split(speed, keys), "keys": keys, "crossings": crossover_batches(speed),
            "note": ""}


def draw_png(data: dict):
    speed = data["speed"]
    speed = speed[speed["network"] == "uniform"]
    if not len(speed):  # the heat map's rows are widths: named networks go to report.html's lines only
        speed = data["speed"].assign(width=data["speed"]["size"])
    speed = most_common(speed, ["depth", "activation", "optimizer", "loss", "threads"])
    panels = list(speed.groupby(["dtype", "compile"], sort=True))
    panels = [(k, p) for k, p in panels if p["width"].nunique() * p["batch"].nunique() >= 2] or panels
    plt = pyplot()
    from matplotlib.colors import TwoSlopeNorm

    fig, axes = grid(plt, len(panels), panel_h=0.9 + 0.5 * speed["width"].nunique(), sharey=False,
                     extra_w=1.6, layout="constrained")
    log2 = np.log2(speed["speedup"].to_numpy(float))
    bound = max(1.0, float(np.nanmax(np.abs(log2))))
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    image = None
    crossings = data["crossings"]
    for ax, ((dtype, mode), rows) in zip(axes, panels):
        table = rows.pivot_table(index="width", columns="batch", values="speedup", aggfunc="first")
        image = ax.imshow(np.log2(table.to_numpy(float)), cmap="RdBu", norm=norm, aspect="auto", origin="lower")
        for (i, j), value in np.ndenumerate(table.to_numpy(float)):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.3g}×", ha="center", va="center", fontsize=7,
                        color="white" if abs(np.log2(value)) > 0.6 * bound else "black")
        _mark_crossovers(ax, table, crossings[(crossings["dtype"] == dtype) & (crossings["compile"] == mode)])
        ax.set_xticks(range(table.shape[1]), [str(b) for b in table.columns])
        ax.set_yticks(range(table.shape[0]), [str(w) for w in table.index])
        ax.set_xlabel("batch size")
        ax.grid(False)
        ax.set_title(f"{dtype} {compile_label(mode)}")
    for ax in axes[::MAX_PANELS_PER_ROW]:
        ax.set_ylabel("width")
    cbar = fig.colorbar(image, ax=axes, shrink=0.9, pad=0.02)
    cbar.set_label("CPU time / GPU time (>1: GPU faster)")
    ticks = list(range(-int(bound), int(bound) + 1))
    cbar.set_ticks(ticks, labels=[f"{2.0 ** t:g}×" for t in ticks])
    cpu, gpu = speed["platform_cpu"].iloc[0], speed["platform_gpu"].iloc[0]
    fig.suptitle(f"{TITLE}, whole training step: {cpu} vs {gpu}\n"
                 "black bar: crossover batch (GPU faster from there on)", fontsize=10)
    return fig


def _mark_crossovers(ax, table: pd.DataFrame, crossings: pd.DataFrame) -> None:
    batches = np.log(np.asarray(table.columns, dtype=float))
    for _, c in crossings.iterrows():
        if c["width"] not in table.index or pd.isna(c["crossover_batch"]):
            continue
        row = list(table.index).index(c["width"])
        x = float(np.interp(math.log(c["crossover_batch"]), batches, np.arange(len(batches))))
        x = x - 0.5 if c["crossover_batch"] <= table.columns[0] else x
        ax.plot([x, x], [row - 0.45, row + 0.45], color="black", linewidth=2.5)


def draw_plotly(data: dict) -> dict:
    keys, cross = data["keys"], data["crossings"]
    traces, marks = [], []
    for s in data["series"]:
        line = s.rows.sort_values("batch")
        traces.append({"type": "scatter", "mode": "lines+markers", "name": s.name, "x": line["batch"].tolist(),
                       "y": line["speedup"].tolist(), "hoverinfo": "text", "line": {"color": s.color},
                       "marker": {"color": s.color},
                       "hovertext": [f"<b>{escape(r['label_cpu'])}</b> vs <b>{escape(r['label_gpu'])}</b><br>"
                                     f"{escape(r['platform_cpu'])} vs {escape(r['platform_gpu'])}<br>"
                                     f"CPU {time_text(r['cpu_s'])}, GPU {time_text(r['gpu_s'])}: "
                                     f"{r['speedup']:.3g}× (>1: GPU faster)" for _, r in line.iterrows()]})
        match = np.logical_and.reduce([cross[k] == s.values[k] for k in keys]) if len(cross) else []
        for _, c in cross[match].iterrows() if len(cross) else []:
            if not missing(c["crossover_batch"]) and c["batches"] >= 2:
                marks.append((s.name, float(c["crossover_batch"])))
    if marks:
        traces.append({"type": "scatter", "mode": "markers", "name": "crossover (interpolated)",
                       "x": [b for _, b in marks], "y": [1.0] * len(marks), "hoverinfo": "text",
                       "marker": {"symbol": "x", "size": 12, "color": "black"},
                       "hovertext": [f"{escape(s)}: the GPU wins from batch {sig(b)}" for s, b in marks]})
    return {"data": traces, "layout": layout(
        TITLE + ": where the GPU wins", "batch size", "CPU time / GPU time (whole step)", xlog=True, ylog=True,
        shapes=[{"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": 1, "y1": 1,
                 "line": {"width": 1, "dash": "dot"}}])}
