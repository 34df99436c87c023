"""Whiskers far from the median: a case whose 95% CI of the median reaches beyond ``WIDE_FACTOR`` x its median
(or below 1 / ``WIDE_FACTOR`` of it) is flagged, in the figures (a mark and a note) and in the case tables.

Such an interval is a few slow samples among few (a recompile, a page fault, a busy neighbour), not the case's
speed: the median stands, but a comparison against it is weak until the case is rerun with more repeats.
"""

from __future__ import annotations

import math

import pandas as pd

from ..format import time_text

WIDE_FACTOR = 2.0
NAMED = 4  # flagged cases a figure's note names; the Cases table's status marks every one


def wide_factor(median: float, low: float, high: float) -> float:
    """How far the interval's far end lies from the median, as a factor (>= 1); NaN where a value is missing."""
    try:
        median, low, high = float(median), float(low), float(high)
    except (TypeError, ValueError):
        return math.nan
    if not (median > 0 and low > 0 and high > 0):
        return math.nan
    return max(high / median, median / low)


def is_wide(median: float, low: float, high: float) -> bool:
    return wide_factor(median, low, high) >= WIDE_FACTOR


def row_is_wide(row, suffix: str = "") -> bool:
    return is_wide(row.get("median_s" + suffix), row.get("ci_low_s" + suffix), row.get("ci_high_s" + suffix))


def wide_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frame`` (median_s, ci_low_s, ci_high_s) whose CI is wide."""
    if not len(frame):
        return frame
    mask = [is_wide(m, lo, hi) for m, lo, hi in zip(frame["median_s"], frame["ci_low_s"], frame["ci_high_s"])]
    return frame[mask]


def wide_text(row) -> str:
    """'95% CI to 250 ms against a 30.1 ms median' (the far end)."""
    median, low, high = row["median_s"], row["ci_low_s"], row["ci_high_s"]
    far = high if high / median >= median / low else low
    return f"95% CI to {time_text(far)} against a {time_text(median)} median"


def wide_note(frame: pd.DataFrame, mark: str) -> str:
    """One sentence naming the flagged cases of a figure, or '' where none is."""
    wide = wide_rows(frame)
    if not len(wide):
        return ""
    wide = wide.assign(factor=[wide_factor(*v) for v in zip(wide["median_s"], wide["ci_low_s"], wide["ci_high_s"])])
    wide = wide.sort_values("factor", ascending=False)
    cases = "; ".join(f"{r['label']} ({wide_text(r)})" for _, r in wide.head(NAMED).iterrows())
    more = f"; and {len(wide) - NAMED} more" if len(wide) > NAMED else ""
    return (f"{mark} {len(wide)} case(s) have a 95% CI reaching beyond {WIDE_FACTOR:g}x (or below 1/{WIDE_FACTOR:g}) "
            f"of their median, a few slow samples among few: {cases}{more} (\"wide CI\" in the Cases table's "
            "status). Rerun them with more --repeats before comparing.")
