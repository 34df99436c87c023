"""Figure 5: the roofline: achieved matmul TFLOP/s against arithmetic intensity, one series (one colour) per
platform x dtype, its roof (same-run bandwidth slope, matmul ceiling) drawn in the series' own colour."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ...format import pct, sig
from ..figure import FigureInputs, plain_log_ticks, pyplot
from ..hover import hover, layout
from ..palette import REGIME_MARKERS, REGIME_SYMBOLS
from ..series import split
from ..tables import ok_rows

NAME, ORDER = "roofline", 5
TITLE = "Roofline: achieved TFLOP/s vs arithmetic intensity"
CAPTION = ("Each point is a case's training step, one colour per platform and dtype; its roofs in the same colour: "
           "the slope is the same-run memory bandwidth (copy/triad past the last-level cache), the flat part the "
           "same-run matmul ceiling; dotted in report.md: the datasheet or theoretical peak. Bytes are the least the "
           "step moves (each operand read once, each result written once), so a point sits at or right of its true "
           "intensity. Points far below both roofs are held back by per-op overhead. Marker: the regime.")


def prepare(inputs: FigureInputs) -> dict | str:
    steps = ok_rows(inputs.summary, ["step"])
    has_traffic = "traffic_bytes" in steps and steps["traffic_bytes"].notna().any()
    bytes_column = "traffic_bytes" if has_traffic else "mem_total_bytes"
    if bytes_column not in steps:
        return "no case has both a FLOP count and a byte count"
    steps = steps[(steps["tflops"] > 0) & (steps[bytes_column] > 0)]
    if not len(steps):
        return "no case has both a FLOP count and a byte count"
    regimes = inputs.regimes
    if len(regimes):
        steps = steps.merge(regimes[["platform", "case_id", "regime"]], on=["platform", "case_id"], how="left")
    else:
        steps = steps.assign(regime="")
    steps = steps.assign(intensity=steps["matmul_flops"] / steps[bytes_column])
    x_lo, x_hi = float(steps["intensity"].min()) / 4, float(steps["intensity"].max()) * 4
    series = []
    for s in split(steps, ["platform", "dtype"]):
        platform, dtype = s.values["platform"], s.values["dtype"]
        ceiling = _ceiling(inputs.ceilings, platform, dtype, s.rows)
        bandwidth = _bandwidth(inputs.bandwidths, platform, dtype)
        peak = s.rows["peak_tflops"].dropna() if "peak_tflops" in s.rows else pd.Series(dtype=float)
        series.append({"series": s, "label": f"{platform} {dtype}", "where": f"{s.rows['device'].iloc[0]} {dtype}",
                       "ceiling": ceiling, "bandwidth": bandwidth, "roof": _roof(ceiling, bandwidth, x_lo, x_hi),
                       "peak": float(peak.iloc[0]) if len(peak) else None})
    moved = "bytes moved (mlp.traffic)" if has_traffic else "bytes of state touched"
    return {"series": series, "moved": moved, "note": ""}


def _ceiling(ceilings: pd.DataFrame, platform: str, dtype: str, rows: pd.DataFrame) -> float | None:
    if ceilings is not None and len(ceilings):
        match = ceilings[(ceilings["platform"] == platform) & (ceilings["dtype"] == dtype)]
        if len(match):  # several thread counts on a CPU: draw the whole machine's roof
            return float(match["measured_tflops"].max())
    values = rows["ceiling_tflops"].dropna() if "ceiling_tflops" in rows else []
    return float(values.iloc[0]) if len(values) else None


def _bandwidth(bandwidths: pd.DataFrame, platform: str, dtype: str) -> float | None:
    if bandwidths is None or not len(bandwidths) or "dtype" not in bandwidths:
        return None
    match = bandwidths[(bandwidths["platform"] == platform) & (bandwidths["dtype"] == dtype)]
    return float(match["bytes_per_s"].max()) if len(match) else None


def _roof(ceiling: float | None, bandwidth: float | None, x_lo: float, x_hi: float) -> tuple | None:
    """The roof's (x, y) points: min(bandwidth x intensity, ceiling), or the flat ceiling alone."""
    if ceiling is None:
        return None
    if bandwidth is None:
        return [x_lo, x_hi], [ceiling, ceiling]
    ridge = ceiling * 1e12 / bandwidth
    xs = np.geomspace(min(x_lo, ridge / 4), max(x_hi, ridge * 4), 120)
    return xs.tolist(), np.minimum(bandwidth * xs / 1e12, ceiling).tolist()


def draw_png(data: dict):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    regimes = set()
    for entry in data["series"]:
        s, color, where = entry["series"], entry["series"].color, entry["where"]
        for regime, sub in s.rows.groupby("regime", sort=False, dropna=False):
            regimes.add(regime)
            ax.scatter(sub["intensity"], sub["tflops"], color=color, marker=REGIME_MARKERS.get(regime, "o"),
                       s=28, alpha=0.85, edgecolors="white", linewidths=0.4)
        ceiling, bandwidth = entry["ceiling"], entry["bandwidth"]
        if entry["roof"] is not None:
            ax.plot(*entry["roof"], color=color, linewidth=1.3, alpha=0.85, label=f"roof: {entry['label']}")
            text = (f"{where}: matmul {ceiling:.3g} TFLOP/s, {bandwidth / 1e9:.3g} GB/s  " if bandwidth is not None
                    else f"{where} measured matmul ceiling {ceiling:.3g}  ")
            ax.text(1.0, ceiling, text, color=color, fontsize=7, ha="right",
                    va="top" if bandwidth is not None else "bottom", transform=ax.get_yaxis_transform())
        if entry["peak"] is not None:
            ax.axhline(entry["peak"], color=color, linestyle=":", linewidth=1.0)
            ax.text(1.0, entry["peak"], f"{where} peak {entry['peak']:.3g}  ", color=color, fontsize=7,
                    ha="right", va="bottom", transform=ax.get_yaxis_transform())
        ax.plot([], [], color=color, marker="o", linestyle="-", label=entry["label"])
    for regime, marker in REGIME_MARKERS.items():
        if regime in regimes:
            ax.scatter([], [], marker=marker, color="grey", label=regime)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax.xaxis)
    ax.set_xlabel(f"arithmetic intensity: matmul FLOPs per step / {data['moved']} (FLOP/byte, log)")
    ax.set_ylabel("achieved matmul TFLOP/s (log)")
    ax.set_title(f"{TITLE} (whole training step; roofs: same-run bandwidth and matmul ceilings)")
    handles, labels = ax.get_legend_handles_labels()
    keep = [i for i, label in enumerate(labels) if not label.startswith("roof: ")]
    ax.legend([handles[i] for i in keep], [labels[i] for i in keep], loc="upper left", bbox_to_anchor=(1.01, 1.0),
              frameon=False)
    return fig


def draw_plotly(data: dict) -> dict:
    traces = []
    for entry in data["series"]:
        s, label = entry["series"], entry["label"]
        rows = s.rows
        traces.append({"type": "scatter", "mode": "markers", "name": label, "x": rows["intensity"].tolist(),
                       "y": rows["tflops"].tolist(), "hoverinfo": "text", "legendgroup": label,
                       "marker": {"size": 9, "color": s.color, "line": {"width": 0.5, "color": "white"},
                                  "symbol": [REGIME_SYMBOLS.get(r, "circle") if isinstance(r, str) else "circle"
                                             for r in rows["regime"]]},
                       "hovertext": [hover(r, f"{sig(r['tflops'])} TFLOP/s at {sig(r['intensity'])} FLOP/byte",
                                           f"its ceiling {sig(r.get('ceiling_tflops'))} TFLOP/s (MFU {pct(r.get('mfu'))})",
                                           f"regime {r['regime']}" if isinstance(r["regime"], str) else "")
                                     for _, r in rows.iterrows()]})
        if entry["roof"] is not None:
            x, y = entry["roof"]
            traces.append({"type": "scatter", "mode": "lines", "name": f"roof: {label}", "x": x, "y": y,
                           "line": {"width": 1.5, "dash": "dot", "color": s.color}, "legendgroup": label,
                           "hoverinfo": "name"})
    return {"data": traces, "layout": layout(TITLE, f"matmul FLOPs per step / {data['moved']} (FLOP/byte)",
                                             "achieved matmul TFLOP/s", xlog=True, ylog=True)}
