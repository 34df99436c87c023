"""A report figure: its record (``Figure``), matplotlib set up once (Agg backend, imported lazily), saving a PNG."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DPI = 120  # ~1000 px wide at the default widths: sharp on GitHub, files stay ~50-150 kB


@dataclass(frozen=True)
class Figure:
    name: str  # file stem, e.g. "throughput"
    title: str
    path: Path | None  # None: omitted
    reason: str = ""  # why it was omitted
    caption: str = ""  # one or two sentences: what to read off it


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
