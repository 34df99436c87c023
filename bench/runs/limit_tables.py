"""The measured limits a run records, declared once as plain data (no torch): each one's meta.json table, how
its keys are built, which ``bench.limits`` module measures it, and what the noise model and the report read of it.

This is the registry's torch-free half. The measuring half is ``bench.limits.registry``: it imports
``bench.limits.<module>`` for each declaration here and takes that module's ``LIMIT`` (its pass and its columns).
The split follows the folder rules: runs/, analysis/ and report/ may not import limits/ (torch), so what they
need of a limit is here. A new limit is one module in bench/limits/ plus one ``LimitTable`` in ``LIMIT_TABLES``
(docs/design.md, "A new limit").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LimitTable:
    """One limit's record in meta.json: ``{str(LimitKey): the measured record (a dict)}`` under ``name``."""

    name: str  # the meta.json key (a RunMeta field, or kept in RunMeta.extra for a limit without one)
    title: str  # how messages name one measurement: "bandwidth limit"
    module: str  # bench.limits.<module>: its LIMIT measures it
    per_dtype: bool = True  # keyed device/dtype[/tN]; False: device[/tN] (one per device)
    probe: str | None = None  # the record's field two runs' noise states compare (told, not decisive); None: none
    probe_name: str = ""  # how the noise model names it: "dispatch floor"
    headline: str | None = None  # the record's field a report row shows when the report has no row of its own
    headline_unit: str = ""  # ... and its unit
    columns: tuple[str, ...] = ()  # the summary columns its ``derived`` writes on each row (bench.runs.columns)


LIMIT_TABLES: tuple[LimitTable, ...] = (
    # the matmul ceiling: its own report section and its own noise rules (rate and drift, decisive)
    LimitTable("ceilings", "matmul ceiling", "ceiling", headline="measured_tflops", headline_unit="TFLOP/s",
               columns=("ceiling_tflops", "mfu", "ceiling_flag")),
    LimitTable("bandwidth", "bandwidth limit", "bandwidth", probe="bytes_per_s", probe_name="bandwidth",
               headline="bytes_per_s", headline_unit="B/s"),
    LimitTable("dispatch", "dispatch limit", "dispatch", per_dtype=False, probe="per_op_s",
               probe_name="dispatch floor", headline="per_op_s", headline_unit="s per ATen op"),
)


def limit_table(name: str) -> LimitTable:
    for table in LIMIT_TABLES:
        if table.name == name:
            return table
    raise KeyError(f"no limit table {name!r}; declared: {', '.join(t.name for t in LIMIT_TABLES)}")
