"""bench.limits.speed_of_light by hand: the floor's three terms, its bound, the rate a phase's bytes are charged at and the
ops a graph is charged (issue 50: mutation testing of the limits). Every expected number is written out here."""

from __future__ import annotations

import math

import pytest

from bench.limits import speed_of_light as sol

NAN = math.nan


def test_the_floor_is_the_larger_of_compute_and_memory_plus_dispatch():
    f = sol.floor(matmul_flops=6e9, nbytes=4e8, aten_ops=100, matmul_flops_per_s=2e12, bytes_per_s=1e11,
                  seconds_per_op=5e-6)
    assert (f.compute_s, f.memory_s, f.overhead_s) == (pytest.approx(3e-3), pytest.approx(4e-3), pytest.approx(5e-4))
    assert f.time_s == pytest.approx(4e-3 + 5e-4) and f.bound is sol.Bound.MEMORY
    assert sol.Floor(3.0, 1.0, 0.5).time_s == 3.5 and sol.Floor(3.0, 1.0, 0.5).bound is sol.Bound.COMPUTE
    assert sol.Floor(1.0, 1.0, 2.0).bound is sol.Bound.OVERHEAD
    assert sol.Floor(2.0, 2.0, 1.0).bound is sol.Bound.COMPUTE  # a tie names the first: compute


@pytest.mark.parametrize("values", [
    (None, 1.0, 1.0, 1.0, 1.0, 1.0), (1.0, NAN, 1.0, 1.0, 1.0, 1.0), (1.0, 1.0, math.inf, 1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0, 0.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0, 0.0, 1.0), (1.0, 1.0, 1.0, -1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0, 1.0, 1.0, None),
])
def test_no_floor_without_every_count_and_a_positive_limit(values):
    assert sol.floor(*values) is None


def test_a_zero_dispatch_floor_or_zero_ops_is_still_a_floor():
    assert sol.floor(1.0, 1.0, 0.0, 1.0, 1.0, 0.0).time_s == 1.0


def test_the_bytes_are_charged_at_the_cache_rate_when_the_phases_tensors_fit_the_llc():
    bw = {"bytes_per_s": 2e10, "cache_bytes_per_s": 8e10, "cache_bytes": 32e6}
    assert sol.TOUCHES_PER_BYTE == 4
    assert sol.memory_bytes_per_s(bw, 4 * 32e6) == 8e10  # exactly at the LLC: fits
    assert sol.memory_bytes_per_s(bw, 4 * 32e6 + 4) == 2e10
    assert sol.memory_bytes_per_s({**bw, "cache_bytes_per_s": 1e10}, 1e6) == 2e10  # the faster of the two
    assert sol.memory_bytes_per_s({**bw, "bytes_per_s": NAN}, 1e6) == 8e10
    assert sol.memory_bytes_per_s({**bw, "cache_bytes_per_s": None}, 1e6) == 2e10
    assert sol.memory_bytes_per_s({**bw, "cache_bytes_per_s": NAN}, 1e6) == 2e10
    assert sol.memory_bytes_per_s({**bw, "cache_bytes": None}, 1.0) == 2e10  # no LLC size: nothing fits
    assert sol.memory_bytes_per_s(bw, None) == 2e10
    assert math.isnan(sol.memory_bytes_per_s({}, 1.0))
    assert sol.memory_bytes_per_s({"cache_bytes_per_s": 8e10, "cache_bytes": 1e6}, 1.0) == 8e10


@pytest.mark.parametrize("row, ops", [
    ({"aten_ops": 120.0}, 120.0),
    ({"aten_ops": 120.0, "compile": "none", "cuda_graph": "none"}, 120.0),
    ({"aten_ops": 120.0, "compile": None, "cuda_graph": ""}, 120.0),  # blank fields of older runs: eager
    ({"aten_ops": 120.0, "compile": "default"}, 0.0),
    ({"aten_ops": 120.0, "cuda_graph": "step"}, 0.0),
])
def test_a_graph_is_charged_no_dispatch(row, ops):
    assert sol.charged_ops(row) == ops
    assert math.isnan(sol.charged_ops({}))


def test_the_summary_columns_by_hand():
    f = sol.Floor(2e-3, 1e-3, 1e-3)
    assert sol.columns(f, 6e-3) == {"sol_compute_s": 2e-3, "sol_memory_s": 1e-3, "sol_overhead_s": 1e-3,
                                    "sol_s": 3e-3, "sol_fraction": pytest.approx(0.5), "sol_bound": "compute"}
    assert math.isnan(sol.columns(f, 0.0)["sol_fraction"])
    empty = sol.columns(None, 1.0)
    assert empty["sol_bound"] == "" and all(math.isnan(v) for k, v in empty.items() if k != "sol_bound")
    assert list(empty) == ["sol_compute_s", "sol_memory_s", "sol_overhead_s", "sol_s", "sol_fraction", "sol_bound"]


def test_a_term_with_an_unknown_amount_or_rate_is_nan_not_infinite():
    """``divided``: a term is only known where both its amount and its rate are finite and the rate positive; an
    infinite amount (or rate) beside a finite other is no bound either, never inf (or 0) seconds."""
    assert sol.divided(3.0, 2.0) == 1.5
    for amount, rate in [(math.inf, 2.0), (3.0, math.inf), (math.nan, 2.0), (3.0, math.nan), (None, 2.0), (3.0, None),
                         (3.0, 0.0), (3.0, -1.0), (-math.inf, 2.0)]:
        assert math.isnan(sol.divided(amount, rate)), (amount, rate)


def test_a_graph_field_missing_from_an_older_run_charges_the_eager_ops():
    """A row recorded before a graph knob existed reads it back missing: None, "" or a CSV's NaN, each the knob off
    (the eager count charged); a string away from the default replays a graph (no dispatch term)."""
    for missing in (None, "", float("nan")):
        row = {"aten_ops": 40.0, "compile": missing, "compile_scope": missing, "cuda_graph": missing}
        assert sol.charged_ops(row) == 40.0, missing
    assert sol.charged_ops({"aten_ops": 40.0, "compile": "none", "cuda_graph": "none"}) == 40.0
    assert sol.charged_ops({"aten_ops": 40.0, "compile": "default"}) == 0.0
    assert sol.charged_ops({"aten_ops": 40.0, "cuda_graph": "step"}) == 0.0
