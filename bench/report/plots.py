"""report.md's figures: every definition of ``bench.report.figures`` drawn as a PNG (matplotlib, Agg backend,
imported lazily), from result tables only; a figure with nothing to draw carries its reason instead of a path."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .figure import Figure, FigureInputs, save
from .figures import caption, definitions


def render_all(summary: pd.DataFrame, out_dir: Path, regimes: pd.DataFrame | None = None,
               ceilings: pd.DataFrame | None = None, bandwidths: pd.DataFrame | None = None) -> list[Figure]:
    """Every figure in report order (``figures.definitions``); omitted ones carry their reason instead of a path."""
    inputs = FigureInputs(summary, *(pd.DataFrame() if f is None else f for f in (regimes, ceilings, bandwidths)))
    return [render(module, inputs, Path(out_dir)) for module in definitions()]


def render(module, inputs: FigureInputs, out_dir: Path) -> Figure:
    """One figure definition drawn into ``out_dir/NAME.png``."""
    data = module.prepare(inputs)
    if isinstance(data, str):
        return Figure(module.NAME, module.TITLE, None, data)
    path = save(module.draw_png(data), out_dir / f"{module.NAME}.png")
    return Figure(module.NAME, module.TITLE, path, caption=caption(module, data))
