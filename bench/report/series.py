"""A figure's series: rows grouped by some case fields, each named by the fields that differ between the groups
and given its colour (``palette.series_colors``), computed once per figure for both report.md and report.html."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from .palette import series_colors


@dataclass(frozen=True)
class Series:
    name: str  # e.g. "w512 bf16 eager": the grouping fields whose values differ between the figure's series
    values: dict  # grouping field -> this series' value
    rows: pd.DataFrame
    color: str


def compile_label(mode: str) -> str:
    return "eager" if mode == "none" else f"compile:{mode}"


def series_name(values: dict, varying: Sequence[str]) -> str:
    parts = []
    for field in varying:
        value = values[field]
        if field == "compile":
            parts.append(compile_label(value))
        elif field == "threads":
            parts.append(f"t{value}" if value else "default threads")
        elif field == "device" and "platform" in varying:
            continue  # the platform names it
        elif field == "network" and value == "uniform":
            continue  # its width and depth name it
        elif field in ("width", "depth", "in_features", "out_features"):
            if value:  # 0: a named network's own sizes
                parts.append(f"{field[0] if field in ('width', 'depth') else field.split('_')[0]}{value}")
        else:
            parts.append(str(value))
    return " ".join(parts)


def split(rows: pd.DataFrame, keys: Sequence[str]) -> list[Series]:
    """Groups of ``rows`` by ``keys`` in sorted order, each named and coloured (distinct colours)."""
    groups = list(rows.groupby(list(keys), sort=True, dropna=False))
    varying = [k for i, k in enumerate(keys) if len({g[0][i] for g in groups}) > 1] or list(keys[:1])
    named = [(series_name(dict(zip(keys, values)), varying), dict(zip(keys, values)), group)
             for values, group in groups]
    colors = series_colors(list(range(len(named))))  # by position: two series never share one, even if named alike
    return [Series(name, values, group, colors[i]) for i, (name, values, group) in enumerate(named)]
