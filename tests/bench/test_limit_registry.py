"""The limit registry (``bench.limits.registry`` + ``bench.runs.limit_tables``) and ``LimitKey``, against lists
frozen from main before the registry (commit 6aa4c38): the tables meta.json held, how each was keyed, the warning
each pass printed, and the columns ``runner.derived_columns`` wrote. An independent reference: the strings below
were read off that commit's runner.py (``ceiling_key``, ``dispatch_key``, ``LIMIT_TABLES``), not from the registry."""

from __future__ import annotations

import math

import pytest

from bench.engine import runner
from bench.limits import registry
from bench.limits.key import LimitKey
from bench.limits.speed_of_light import Bound
from bench.runs import RunMeta
from bench.runs.limit_tables import LIMIT_TABLES

# frozen from main@6aa4c38: bench/runs/writer.py LIMIT_TABLES, and the keys runner.py built for each table
FROZEN_TABLES = ("ceilings", "bandwidth", "dispatch")
FROZEN_KEYS = {  # (device, dtype, threads) -> the key of each table
    ("cpu", "fp32", 0): {"ceilings": "cpu/fp32", "bandwidth": "cpu/fp32", "dispatch": "cpu"},
    ("cpu", "bf16", 1): {"ceilings": "cpu/bf16/t1", "bandwidth": "cpu/bf16/t1", "dispatch": "cpu/t1"},
    ("cuda", "bf16", 4): {"ceilings": "cuda/bf16", "bandwidth": "cuda/bf16", "dispatch": "cuda"},
}
FROZEN_DERIVED = ["ceiling_tflops", "mfu", "ceiling_flag", "sol_compute_s", "sol_memory_s", "sol_overhead_s",
                  "sol_s", "sol_fraction", "sol_bound"]
FROZEN_SOL_TERMS = {"ceilings": Bound.COMPUTE, "bandwidth": Bound.MEMORY, "dispatch": Bound.OVERHEAD}


def test_the_registry_declares_the_tables_main_wrote():
    assert tuple(t.name for t in LIMIT_TABLES) == FROZEN_TABLES
    assert tuple(limit.name for limit in registry.registered()) == FROZEN_TABLES
    assert {limit.name: limit.sol_term for limit in registry.registered()} == FROZEN_SOL_TERMS
    assert [limit.name for limit in registry.registered() if limit.first] == ["ceilings"]  # slow_dtypes reads it
    assert [limit.name for limit in registry.registered() if limit.again] == ["dispatch"]  # the end pass
    assert all(hasattr(RunMeta(), name) for name in FROZEN_TABLES)


@pytest.mark.parametrize("axis", sorted(FROZEN_KEYS))
def test_limit_keys_are_main_s_strings_and_parse_back(axis):
    device, dtype, threads = axis
    key = LimitKey(device, dtype, threads)
    for limit in registry.registered():
        text = str(key.for_table(limit.table.per_dtype))
        assert text == FROZEN_KEYS[axis][limit.name]
        assert LimitKey.parse(text) == key.for_table(limit.table.per_dtype)
    assert LimitKey.of({"device": device, "dtype": dtype, "threads": threads}) == key


def test_a_key_that_is_not_one_is_refused():
    for text in ("cpu/fp32/bf16", "", "cpu/fp32/t1/t2"):
        with pytest.raises(ValueError):
            LimitKey.parse(text)
    assert LimitKey.parse("cpu/tf32") == LimitKey("cpu", "tf32")  # a dtype named t... is not a thread count


def test_derived_columns_are_main_s_and_follow_the_hand_count():
    """Each term by hand: 2e9 FLOPs at 0.1 TFLOP/s = 20 ms; 1e8 bytes at 10 GB/s = 10 ms; 100 ops x 10 us = 1 ms."""
    meta = {"ceilings": {"cpu/fp32/t2": {"device": "cpu", "dtype": "fp32", "device_name": "cpu",
                                         "measured_tflops": 0.1, "matmul_size": 256, "datasheet_tflops": None,
                                         "datasheet_source": None, "threads": 2}},
            "bandwidth": {"cpu/fp32/t2": {"bytes_per_s": 1e10}},
            "dispatch": {"cpu/t2": {"per_op_s": 1e-5}}}
    row = {"device": "cpu", "dtype": "fp32", "threads": 2, "phase": "forward", "tflops": 0.05, "median_s": 0.042,
           "matmul_flops": 2e9, "traffic_bytes": 1e8, "aten_ops": 100, "compile": "none"}
    cols = runner.derived_columns(row, meta)
    assert list(cols) == FROZEN_DERIVED
    assert cols["mfu"] == pytest.approx(0.5) and cols["sol_s"] == pytest.approx(0.021)
    assert cols["sol_bound"] == "compute" and cols["sol_fraction"] == pytest.approx(0.5)
    unmeasured = runner.derived_columns({**row, "threads": 1}, meta)  # no 1-thread limits: empty, not another's
    assert list(unmeasured) == FROZEN_DERIVED and math.isnan(unmeasured["sol_s"]) and math.isnan(unmeasured["mfu"])


def test_a_limit_without_a_meta_field_keeps_its_table_in_meta_json():
    meta = RunMeta()
    meta.limit_table("l2_bandwidth")["cpu/fp32"] = {"bytes_per_s": 1.0}
    assert RunMeta.from_json(meta.to_json()).get("l2_bandwidth") == {"cpu/fp32": {"bytes_per_s": 1.0}}
    assert meta.limit_table("ceilings") is meta.ceilings


class _Record:
    def __init__(self, device: str, dtype: str | None):
        self.device, self.dtype = device, dtype

    def as_dict(self) -> dict:
        return {"device": self.device, "dtype": self.dtype, "bytes_per_s": 2e12}


NEW_OVERHEAD_S = 1e-3  # the made-up limit charges every row this many seconds of overhead


def test_a_new_limit_is_one_declaration_and_one_module(tmp_path, monkeypatch):
    """The worked example of docs/design.md, with nothing else edited: a declared table plus a ``Limit`` (here in
    the test in place of its module) are measured per key, written to meta.json, kept by a resume, added to the
    floor and listed by the report."""
    from bench.case.cases import Case
    from bench.instruments.timing import TimingConfig
    from bench.limits.ceiling import Ceiling
    from bench.report.markdown import limits_table
    from bench.runs import limit_tables, load_run
    from stand_ins import STAND_IN_PER_OP_S

    table = limit_tables.LimitTable("l2_bandwidth", "L2 bandwidth limit", "l2_bandwidth", headline="bytes_per_s",
                                    headline_unit="B/s")
    monkeypatch.setattr(limit_tables, "LIMIT_TABLES", limit_tables.LIMIT_TABLES + (table,))
    calls = []

    def measure(device, dtype):
        calls.append((device, dtype))
        return _Record(device, dtype)

    new = registry.Limit(table, measure, sol_term=Bound.OVERHEAD, sol_seconds=lambda record, row: NEW_OVERHEAD_S)
    known = registry.registered()  # the stand-ins' (tests/bench/conftest.py)
    monkeypatch.setattr(registry, "registered", lambda: known + (new,))
    monkeypatch.setattr("bench.limits.ceiling.measure_ceiling", lambda device, dtype, **kw: Ceiling(
        device, dtype, "fake cpu", 0.1, 256, None, None, 1, (256,), 1.0, 0.0))
    cases = [Case(width=16, depth=1, batch=8, threads=1), Case(width=32, depth=1, batch=8, threads=1)]
    config = TimingConfig(repeats=3, warmup_s=0.01, min_block_s=0.002)
    runner.run_sweep(cases[:1], tmp_path / "run", config, progress=False)
    runner.run_sweep(cases, tmp_path / "run", config, progress=False, resume=True)  # the key is measured once
    run = load_run(tmp_path / "run")
    assert calls == [("cpu", "fp32")] and run.meta.get("l2_bandwidth") == {"cpu/fp32/t1": _Record("cpu", "fp32").as_dict()}
    forward = run.summary[(run.summary["phase"] == "forward")]
    assert len(forward) == 2
    for _, row in forward.iterrows():  # hand count: the dispatch stand-in's ops x per op, plus the new term
        assert row["sol_overhead_s"] == pytest.approx(row["aten_ops"] * STAND_IN_PER_OP_S + NEW_OVERHEAD_S)
    assert "| l2_bandwidth cpu/fp32/t1 | 2e+12 B/s" in limits_table([run]).replace("  ", " ")
