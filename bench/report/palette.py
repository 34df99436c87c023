"""The report's colours and markers, defined once for report.md's PNGs and report.html's plotly figures.

A figure's series (one line or one group of points: a configuration, a platform x dtype) each get a colour of
their own from ``series_colors``: the same series list gives the same colours in both media, and no two series of
a figure share one. Phases, verdicts and the dtype/regime markers are fixed here too.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

from ..model.phases import TRAINING_PHASE_NAMES

PHASE_COLORS = dict(zip(TRAINING_PHASE_NAMES, ("#4C72B0", "#DD8452", "#55A868")))
INFERENCE_COLOR = "#8172B3"
FASTER, SLOWER, WITHIN_NOISE = "#55A868", "#C44E52", "#9A9A9A"  # a ratio's verdict: its interval above, below, across 1
BAR_COLOR = "#4C72B0"  # a one-series bar chart
FLAG_COLOR = "#C00000"  # a flagged point (its 95% CI far from its median)

# Series colours, most distinct first: matplotlib's tab10 (grey left out: it reads as "within noise"), then
# tab20's light and tab20b's dark partners and a few of Kelly's contrast colours.
SERIES_PALETTE = (
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
    "#393b79", "#aec7e8", "#98df8a", "#ffbb78", "#c5b0d5", "#f7b6d2", "#9edae5", "#dbdb8d", "#843c39",
    "#637939", "#e7ba52", "#7b4173", "#3182bd", "#636363", "#f3c300", "#875692", "#008856", "#be0032",
)

DTYPE_MARKERS = {"fp32": "o", "tf32": "D", "bf16": "s", "fp16": "^"}  # matplotlib
DTYPE_SYMBOLS = {"fp32": "circle", "tf32": "diamond", "bf16": "square", "fp16": "triangle-up"}  # plotly
REGIME_MARKERS = {"overhead-bound": "o", "memory-bound": "s", "compute-bound": "^"}
REGIME_SYMBOLS = {"overhead-bound": "circle", "memory-bound": "square", "compute-bound": "triangle-up"}


def series_colors(keys: Sequence) -> dict:
    """One colour per key, in the order given, none repeated: the palette, then generated hues past its end."""
    colors = list(SERIES_PALETTE[:len(keys)])
    i = 0
    while len(colors) < len(keys):  # golden-ratio hues at two lightnesses: far apart and never a palette colour
        r, g, b = colorsys.hls_to_rgb((i * 0.618034) % 1.0, 0.35 + 0.25 * (i % 2), 0.75)
        color = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
        if color not in colors:
            colors.append(color)
        i += 1
    return dict(zip(keys, colors))
