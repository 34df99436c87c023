"""Every column a run writes is declared once (issue 48): ``bench.runs.columns`` (the leading columns and the
measured families), plus three declared beside their producers, in modules the torch-free record may not import:
GPU telemetry (``bench.instruments.telemetry.COLUMNS``), numerics (``bench.instruments.numerics.COLUMNS``) and each
limit's ``LimitTable.columns``.

The producers are run, not read: a real CPU sweep (the reporting tests' shared run), the engine's row builders on a
hand-made Measurement that has what the sweep lacks (three processes, GPU telemetry, both clocks), each limit's
``derived``, and the stored reference runs (an H100, data-parallel runs, older CPU runs) read with pandas alone.
A column a producer writes and nobody declared fails here with its name; so does a declared family nobody writes.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.runs.columns import LEADING_COLUMNS, MEASURED_COLUMNS, SAMPLE_COLUMNS, SAMPLE_EXTRA_COLUMNS
from bench.runs.limit_tables import LIMIT_TABLES

ROOT = Path(__file__).resolve().parents[3]


def declared_summary() -> set[str]:
    from bench.instruments import numerics, telemetry

    measured = {c for family in MEASURED_COLUMNS.values() for c in family}
    limits = {c for t in LIMIT_TABLES for c in t.columns}
    return set(LEADING_COLUMNS) | measured | limits | set(telemetry.COLUMNS) | set(numerics.COLUMNS)


def test_no_column_is_declared_twice():
    from bench.instruments import numerics, telemetry

    families = [*MEASURED_COLUMNS.values(), *(t.columns for t in LIMIT_TABLES), telemetry.COLUMNS, numerics.COLUMNS,
                LEADING_COLUMNS]
    names = [c for family in families for c in family]
    assert sorted(c for c in set(names) if names.count(c) > 1) == []


def test_a_real_sweep_writes_only_declared_columns_and_every_cpu_family(cpu_run_dir):
    summary = pd.read_csv(cpu_run_dir / "summary.csv")
    assert sorted(set(summary.columns) - declared_summary()) == []
    # the families a one-process CPU run writes are all there (a declaration nobody writes would go stale)
    from bench.instruments import numerics

    expected = {c for name, family in MEASURED_COLUMNS.items() if name not in ("processes", "data parallel")
                for c in family} | {c for t in LIMIT_TABLES for c in t.columns} | set(numerics.COLUMNS)
    assert sorted(expected - set(summary.columns)) == []
    samples = pd.read_csv(cpu_run_dir / "samples.csv")
    assert sorted(set(samples.columns) - set(SAMPLE_COLUMNS) - set(SAMPLE_EXTRA_COLUMNS)) == []


def test_the_engines_rows_with_processes_telemetry_and_two_clocks_are_declared():
    from bench.case.cases import Case
    from bench.engine.runner import sample_rows, summary_rows
    from bench.instruments import telemetry
    from bench.instruments.timing import Measurement
    from bench.model.phases import Phase

    case = Case(width=16, depth=1, batch=4)
    blocks = {p: [1e-3, 2e-3, 3e-3] for p in Phase}
    m = Measurement(case=case, samples=blocks, clock_samples={"wall": blocks, "cpu": blocks},
                    iters_per_block={p: 2 for p in Phase}, first_step_s=0.01, measure_s=1.0,
                    telemetry=telemetry.empty_columns("hand-made"), sample_process={p: [0, 1, 2] for p in Phase},
                    processes=3, process_spread={p: 0.05 for p in Phase}, process_note="",
                    numerics={"numerics_s": 0.0})
    rows = summary_rows(m, None)
    assert len(rows) == len(Phase)
    written = {k for row in rows for k in row}
    assert sorted(written - declared_summary()) == []
    assert set(MEASURED_COLUMNS["processes"]) <= written and set(telemetry.COLUMNS) <= written
    sampled = {k for row in sample_rows(m) for k in row}
    assert sorted(sampled - set(SAMPLE_COLUMNS) - set(SAMPLE_EXTRA_COLUMNS)) == []
    assert {"wall_s", "cpu_s", "process"} <= sampled


def test_each_limit_writes_exactly_the_columns_its_table_declares():
    from bench.limits import registry

    row = {"tflops": 1.0, "matmul_flops": 1e9, "median_s": 1e-3, "traffic_bytes": 1e6, "aten_ops": 10.0,
           "device": "cpu", "dtype": "fp32", "threads": 0, "phase": "step"}
    for limit in registry.registered():
        written = set(limit.derived(None, row)) if limit.derived is not None else set()
        assert written == set(limit.table.columns), limit.name


def test_every_stored_run_holds_only_declared_columns():
    """Runs measured by earlier versions (an H100 with NVML telemetry, torchrun data-parallel runs, the noise
    campaigns): a column they hold that nobody declares is one a reader could not name."""
    paths = [p for p in sorted((ROOT / "results").glob("**/summary.csv")) if p.stat().st_size]
    assert len(paths) > 20
    undeclared = {}
    for path in paths:
        extra = set(pd.read_csv(path, nrows=0).columns) - declared_summary()
        if extra:
            undeclared[str(path.relative_to(ROOT))] = sorted(extra)
    assert undeclared == {}
