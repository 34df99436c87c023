"""The limits the engine measures, one ``Limit`` per module of bench/limits/, found through their plain-data
declarations (``bench.runs.limit_tables.LIMIT_TABLES``): each declared module defines ``LIMIT``.

The engine iterates ``registered()``: the start passes (``first`` ones before the dtypes a preset skips are
chosen: the skip reads the ceilings), an optional end pass, the summary columns a limit owns (``derived``) and
its term of the speed of light (``sol_term``, ``sol_seconds``: ``bench.limits.speed_of_light.floor_of``).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..runs.limit_tables import LIMIT_TABLES, LimitTable, limit_table
from .speed_of_light import Bound


@dataclass(frozen=True)
class Limit:
    """How the engine measures one limit and what a summary row takes from it.

    ``measure(device, dtype)`` returns an object with ``as_dict()`` (dtype is None for a limit not per dtype);
    ``again(record, device)``, where given, measures it once more after the cases and returns the record to keep;
    ``derived(record, row)`` the summary columns it owns (record None where the run lacks it);
    ``sol_seconds(record, row)`` the least seconds it allows the row, in the floor's ``sol_term`` (nan: unknown).
    """

    table: LimitTable
    measure: Callable[[str, str | None], Any]
    first: bool = False
    again: Callable[[dict, str], dict] | None = None
    derived: Callable[[Mapping | None, Mapping], dict] | None = None
    sol_term: Bound | None = None
    sol_seconds: Callable[[Mapping, Mapping], float] | None = None

    @property
    def name(self) -> str:
        return self.table.name


def declare(name: str, measure: Callable[[str, str | None], Any], **how: Any) -> Limit:
    """A limit module's ``LIMIT``: its declared table (``bench.runs.limit_tables``) and how it is measured."""
    return Limit(limit_table(name), measure, **how)


@functools.cache
def registered() -> tuple[Limit, ...]:
    """Every declared limit, in declaration order (a module that lacks ``LIMIT`` is a programming error)."""
    out = []
    for table in LIMIT_TABLES:
        limit = getattr(importlib.import_module(f"{__package__}.{table.module}"), "LIMIT")
        if limit.table != table:
            raise TypeError(f"bench.limits.{table.module}.LIMIT declares {limit.table.name!r}, not {table.name!r}")
        out.append(limit)
    return tuple(out)
