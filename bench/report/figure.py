"""A report figure: its inputs (``FigureInputs``), its records (``Figure``: a PNG of report.md; ``HtmlFigure``: a
plotly figure of report.html), matplotlib set up once (Agg backend, imported lazily) and the axes helpers the
figure definitions (``bench.report.figures``) share, saving a PNG."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

DPI = 120  # ~1000 px wide at the default widths: sharp on GitHub, files stay ~50-150 kB
PANEL_IN = 3.6  # width of one small-multiple panel in inches
MAX_PANELS_PER_ROW = 3
BAR_IN = 0.28  # height per horizontal bar; keeps case labels legible at any case count
FIGURE_HEIGHT_PX = 460  # a plotly figure's height in report.html
BAR_PX = 22  # per case in report.html's horizontal bar figures


@dataclass(frozen=True)
class FigureInputs:
    """What every figure is drawn from: the merged summary (``tables.merged_summary``), the regimes
    (``regime.classify``), the merged matmul ceilings and bandwidths (empty frames where a run has none)."""

    summary: pd.DataFrame
    regimes: pd.DataFrame = field(default_factory=pd.DataFrame)
    ceilings: pd.DataFrame = field(default_factory=pd.DataFrame)
    bandwidths: pd.DataFrame = field(default_factory=pd.DataFrame)


@dataclass(frozen=True)
class Figure:
    name: str  # file stem, e.g. "throughput"
    title: str
    path: Path | None  # None: omitted
    reason: str = ""  # why it was omitted
    caption: str = ""  # one or two sentences: what to read off it


@dataclass(frozen=True)
class HtmlFigure:
    name: str  # element id, e.g. "fig-throughput"
    title: str
    figure: dict | None  # a plotly figure (data, layout); None: omitted
    reason: str = ""  # why it was omitted
    caption: str = ""
    height_px: int = FIGURE_HEIGHT_PX


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"figure.dpi": DPI, "axes.grid": True, "grid.alpha": 0.3, "axes.titlesize": 10,
                         "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8, "legend.fontsize": 8,
                         "axes.spines.top": False, "axes.spines.right": False})
    return plt


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    pyplot().close(fig)
    return path


def markdown_lines(figure: Figure, out_dir: Path, number: str = "") -> list[str]:
    """A drawn figure in a report: bold title (after ``number``, e.g. ``"1. "``), caption, and the image linked
    relative to ``out_dir`` (the report's folder) where it lies inside it."""
    path = Path(figure.path)
    rel = path.relative_to(out_dir) if path.is_relative_to(out_dir) else path
    return [f"**{number}{figure.title}.** {figure.caption}", "", f"![{figure.title}]({rel.as_posix()})", ""]


# --------------------------------------------------------------------------- matplotlib axes helpers


def batch_axis(ax, batches) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted(set(int(b) for b in batches))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()


def grid(plt, n_panels: int, panel_h: float = 3.0, sharey: bool = True, extra_w: float = 0.6, **kwargs):
    cols = min(n_panels, MAX_PANELS_PER_ROW)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_IN * cols + extra_w, panel_h * rows + 0.9),
                             sharey=sharey, squeeze=False, **kwargs)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


def figure_legend(fig, axes, ncol: int = 4) -> None:
    """One legend under all panels, each label once."""
    handles, labels = {}, []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in handles:
                handles[l] = h
                labels.append(l)
    fig.legend([handles[l] for l in labels], labels, loc="lower center", ncol=min(len(labels), ncol),
               frameon=False, bbox_to_anchor=(0.5, -0.02 - 0.035 * math.ceil(len(labels) / ncol)))
    fig.tight_layout()


def plain_log_ticks(axis) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def most_common(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows whose values in ``columns`` equal the most frequent combination (fixes the other dimensions)."""
    if not len(frame):
        return frame
    top = frame.groupby(columns, sort=False).size().idxmax()
    top = top if isinstance(top, tuple) else (top,)
    mask = np.logical_and.reduce([frame[c] == v for c, v in zip(columns, top)])
    return frame[mask]
