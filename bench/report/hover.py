"""report.html's plotly pieces shared by the figure definitions: a case's hover text and a figure's layout."""

from __future__ import annotations

import pandas as pd

from ..format import missing, time_text
from .webpage import escape
from .palette import FLAG_COLOR
from .tables import identity_columns


def case_fields(row: pd.Series) -> str:
    return ", ".join(f"{f} {row[f]}" for f in identity_columns() if f in row and not missing(row[f]))


def median_text(row: pd.Series, suffix: str = "") -> str:
    return (f"median {time_text(row['median_s' + suffix])} "
            f"[{time_text(row['ci_low_s' + suffix])}, {time_text(row['ci_high_s' + suffix])}] (95% CI)")


def hover(row: pd.Series, *extra: str) -> str:
    """The case's label, its fields and its median with the CI (plotly hover text, <br> between lines)."""
    platform = f" · {row['platform']}" if "platform" in row else ""
    lines = [f"<b>{escape(row['label'])}</b>{escape(platform)}", escape(case_fields(row)), escape(median_text(row))]
    return "<br>".join(lines + [escape(e) for e in extra if e])


def layout(title: str, x: str, y: str, *, xlog: bool = False, ylog: bool = False, **extra) -> dict:
    out = {"title": {"text": title, "font": {"size": 15}}, "hovermode": "closest", "margin": {"t": 60, "r": 20},
           "xaxis": {"title": {"text": x}, "type": "log" if xlog else "linear"},
           "yaxis": {"title": {"text": y}, "type": "log" if ylog else "linear"},
           "legend": {"font": {"size": 10}}, "hoverlabel": {"align": "left", "font": {"size": 11}}}
    out.update(extra)
    return out


def flag_annotations(points, text: str = "⚠", xref: str = "x", yref: str = "y") -> list[dict]:
    """Plotly annotations marking ``points`` ((x, y, hover) triples; on a log axis x or y is log10 of the value, as
    plotly places annotations): a flagged case's point."""
    return [{"x": x, "y": y, "xref": xref, "yref": yref, "text": text, "showarrow": True, "arrowhead": 0, "ax": 0,
             "ay": -18, "font": {"color": FLAG_COLOR, "size": 13}, "hovertext": escape(h)} for x, y, h in points]
