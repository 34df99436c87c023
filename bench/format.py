"""How numbers and tables are printed, once, for every renderer (report, compare, scaling, gate, profile).

No project imports and no torch: measuring code, reporting code and the gate may all use it.
A missing value (None, NaN, pandas' NA) prints as an empty cell, never as 'nan'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

MS_PER_S = 1e3
US_PER_S = 1e6
EMPTY_TABLE = "(none)"


def missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN is the one value unequal to itself
    except (TypeError, ValueError):  # pandas.NA refuses bool()
        return True


def ms(seconds: float, digits: int = 3) -> str:
    """Seconds as milliseconds with ``digits`` decimals (``0.0123`` -> ``12.300``); blank when missing."""
    return "" if missing(seconds) else f"{seconds * MS_PER_S:.{digits}f}"


def sig(value: float, digits: int = 3) -> str:
    """``digits`` significant digits; blank when missing."""
    return "" if missing(value) else f"{value:.{digits}g}"


def pct(fraction: float, digits: int = 1) -> str:
    """A fraction as per cent (``0.125`` -> ``12.5%``); blank when missing."""
    return "" if missing(fraction) else f"{fraction:.{digits}%}"


def number(value: float, spec: str, absent: str = "n/a") -> str:
    """``format(value, spec)``, or ``absent`` when the value is missing."""
    return absent if missing(value) else format(value, spec)


def time_text(seconds: float) -> str:
    """A time with the unit that suits it: ``1.5 s``, ``12.3 ms``, ``45 µs``."""
    if missing(seconds):
        return ""
    if seconds >= 1:
        return f"{seconds:.3g} s"
    return f"{seconds * MS_PER_S:.3g} ms" if seconds >= 1e-4 else f"{seconds * US_PER_S:.3g} µs"


def duration(seconds: float) -> str:
    """A wait a person reads: ``45 s``, or ``2.5 min`` from two minutes on."""
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def interval(value: float, low: float, high: float, fmt: Callable[[float], str]) -> str:
    """``value [low, high]`` with ``fmt`` for each; ``-`` when the value is missing."""
    if missing(value):
        return "-"
    return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"


def table(rows: Sequence[dict], tablefmt: str = "github", empty: str = EMPTY_TABLE) -> str:
    """Rows of already-formatted cells as a table (tabulate; numbers are never re-parsed)."""
    from tabulate import tabulate

    return tabulate(list(rows), headers="keys", tablefmt=tablefmt, disable_numparse=True) if rows else empty

