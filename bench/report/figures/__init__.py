"""The report's figures, each defined once: one module per figure in this folder, found by listing it.

A figure module holds everything about its figure, for report.md (a PNG, matplotlib) and report.html (plotly):

- ``NAME`` (the PNG's stem and, as ``fig-NAME``, the page's element id), ``TITLE``, ``CAPTION``, ``ORDER`` (its place
  in both reports);
- ``prepare(inputs: FigureInputs) -> dict | str``: the data both drawings use (its series with their colours from
  ``palette``, and ``note``: a sentence for flagged points, or ''), or the reason it cannot be drawn;
- ``draw_png(data) -> matplotlib Figure`` and ``draw_plotly(data) -> dict`` (a plotly figure; ``layout.height`` sets
  its height on the page).

``plots.render_all`` draws every definition as a PNG, ``html.figures`` as plotly: both reports show the same set, in
the same order, with the same series colours. A new figure is one new module here.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

REQUIRED = ("NAME", "TITLE", "CAPTION", "ORDER", "prepare", "draw_png", "draw_plotly")


def definitions() -> list[ModuleType]:
    """Every figure module of this folder, in report order (``ORDER``)."""
    modules = [importlib.import_module(f"{__name__}.{info.name}") for info in pkgutil.iter_modules(__path__)]
    return sorted(modules, key=lambda m: m.ORDER)


def caption(module: ModuleType, data: dict) -> str:
    """The figure's caption, with its note on flagged points where it has one."""
    note = data.get("note", "")
    return f"{module.CAPTION} {note}" if note else module.CAPTION
