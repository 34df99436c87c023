"""bench.report.tables' joins and labels on hand-built runs (issue 50: mutmut's survivors of the merge tables).

The merge of real runs is checked against pandas on their CSVs in test_merge_machines.py; these pin the small
pieces it is made of, each against a hand-written expectation: the platform names, unique run names, the
fingerprint differences, the ceilings' and limits' last-run-wins merge, user models grouped as networks, the
compiled/eager pairs, and the log-linear crossover, checked against numpy's own interpolation.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from bench.report import tables


@pytest.mark.parametrize("device, env, name", [
    ("cuda", {"device_name": "NVIDIA H100 80GB HBM3", "cpu_model": "AMD EPYC"}, "NVIDIA H100 80GB HBM3"),
    ("cuda", {}, "CUDA GPU"),
    ("cpu", {"cpu_model": "Intel(R) Xeon(R) Platinum 8480+ CPU", "cpu_count": 8}, "CPU Xeon Platinum 8480+, 8 cores"),
    ("cpu", {"cpu_model": "AMD EPYC 7763 64-Core Processor", "cpu_count": 2}, "CPU EPYC 7763 64-Core, 2 cores"),
    ("cpu", {"cpu_model": "Genuine(TM) Thing(tm)"}, "CPU Genuine Thing"),
    ("cpu", {"cpu_count": 0}, "CPU CPU"),
])
def test_a_platform_is_the_gpu_or_the_cpu_model_without_trade_marks_and_its_cores(device, env, name):
    assert tables.platform_name(device, env) == name


def test_run_names_are_folder_names_made_unique():
    runs = [SimpleNamespace(path=p) for p in ("/x/a", "/y/a", "/z/b", "/w/a")]
    assert tables.run_names(runs) == ["a", "a#2", "b", "a#3"]


def test_size_labels():
    assert tables.size_label("uniform", 256.0, 3) == "w256 d3"
    assert tables.size_label("fashion_mnist", 0, 0) == "fashion_mnist"


def test_the_fingerprints_differ_on_each_key_where_runs_disagree_and_say_so_per_run():
    envs = {"A": {"torch": "2.14", "cpu_model": "EPYC", "cpu_capability": "AVX2"},
            "B": {"torch": "2.14", "cpu_model": "Xeon", "cpu_capability": "AVX512"},
            "C": {"torch": "2.14", "cpu_model": "EPYC"}}
    diffs = tables.fingerprint_differences(envs)
    assert diffs == {"cpu_model": {"A": "EPYC", "B": "Xeon", "C": "EPYC"},
                     "cpu_capability": {"A": "AVX2", "B": "AVX512", "C": None}}
    assert tables.describe_differences(diffs) == ["cpu_model: EPYC (A) vs Xeon (B) vs EPYC (C)",
                                                  "cpu_capability: AVX2 (A) vs AVX512 (B) vs None (C)"]
    assert tables.fingerprint_differences({"A": envs["A"], "B": dict(envs["A"])}) == {}


def _run(path, env, summary=None, **meta):
    return SimpleNamespace(path=path, meta={"env": env, **meta}, summary=summary)


def test_the_ceilings_merge_one_per_platform_dtype_threads_and_the_last_run_wins():
    ceiling = lambda rate, threads=None, dtype="fp32": {"device": "cpu", "dtype": dtype, "threads": threads,  # noqa: E731
                                                        "measured_tflops": rate}
    a = _run("/r/a", {"cpu_model": "EPYC", "cpu_count": 2, "torch_threads": 2},
             ceilings={"x": ceiling(1.0), "y": ceiling(5.0, 1), "z": ceiling(7.0, dtype="bf16")})
    b = _run("/r/b", {"cpu_model": "EPYC", "cpu_count": 2, "torch_threads": 2}, ceilings={"x": ceiling(2.0, 2)})
    merged = tables.merged_ceilings([a, b])
    got = {(r.dtype, r.threads): (r.measured_tflops, r.run) for r in merged.itertuples()}
    # a's 'x' recorded no threads: torch's default (2) is its thread count, the same row as b's, which wins
    assert got == {("fp32", 2): (2.0, "b"), ("fp32", 1): (5.0, "a"), ("bf16", 2): (7.0, "a")}
    assert set(merged["platform"]) == {"CPU EPYC, 2 cores"}
    assert tables.merged_ceilings([]).empty


def test_the_limits_merge_one_per_platform_and_key_and_the_last_run_wins():
    a = _run("/r/a", {"cpu_model": "EPYC"}, bandwidth={"cpu/t1": {"bytes_per_s": 1.0}, "cpu/t2": {"bytes_per_s": 3.0}})
    b = _run("/r/b", {"cpu_model": "EPYC"}, bandwidth={"cpu/t1": {"bytes_per_s": 2.0}})
    c = _run("/r/c", {"cpu_model": "Xeon"}, bandwidth={"cpu/t1": {"bytes_per_s": 9.0}})
    merged = tables.merged_limits([a, b, c], "bandwidth")
    got = {(r.platform, r.key): (r.bytes_per_s, r.run) for r in merged.itertuples()}
    assert got == {("CPU EPYC", "cpu/t1"): (2.0, "b"), ("CPU EPYC", "cpu/t2"): (3.0, "a"),
                   ("CPU Xeon", "cpu/t1"): (9.0, "c")}
    assert tables.merged_limits([a], "dispatch").empty


def _summary(**columns) -> pd.DataFrame:
    n = len(next(iter(columns.values())))
    base = {"case_id": [f"c{i}" for i in range(n)], "phase": "step", "status": "ok", "device": "cpu",
            "network": "uniform", "width": 64, "depth": 2, "activation": "relu", "model": ""}
    return pd.DataFrame({**base, **columns})


def test_a_user_model_is_its_own_network_and_its_empty_numbers_read_zero():
    frame = _summary(model=["", "m.py:Net(k=1)"], network=["uniform", np.nan], width=[64, np.nan],
                     depth=[2, np.nan])
    out = tables.user_models_as_networks(frame)
    assert out["network"].tolist() == ["uniform", "m.py:Net(k=1)"]
    assert out["width"].tolist() == [64, 0] and out["depth"].tolist() == [2, 0]
    assert frame["network"].isna().tolist() == [False, True]  # the caller's frame is left alone
    plain = _summary(width=[64, 128])
    assert tables.user_models_as_networks(plain) is plain


def test_merged_summary_labels_and_keeps_the_last_of_a_case_on_one_platform_counting_step_rows():
    a = _run("/r/a", {"cpu_model": "EPYC"}, _summary(case_id=["p", "p", "q"], phase=["step", "forward", "step"],
                                                     median_s=[1.0, 0.4, 2.0]))
    b = _run("/r/b", {"cpu_model": "EPYC"}, _summary(case_id=["p", "p"], phase=["step", "forward"],
                                                     median_s=[1.5, 0.6], network=["fashion_mnist"] * 2))
    merged, dropped = tables.merged_summary([a, b])
    assert dropped == 1  # p's step row of a; its forward row is dropped too, but a case is counted once
    got = {(r.case_id, r.phase): (r.median_s, r.run, r.size) for r in merged.itertuples()}
    assert got == {("q", "step"): (2.0, "a", "w64 d2"), ("p", "step"): (1.5, "b", "fashion_mnist"),
                   ("p", "forward"): (0.6, "b", "fashion_mnist")}
    empty, none = tables.merged_summary([])
    assert empty.empty and none == 0


def test_ok_rows_keep_the_ok_status_and_the_phases_asked():
    s = _summary(case_id=["a", "b", "c"], phase=["step", "forward", "step"], status=["ok", "ok", "error"])
    assert tables.ok_rows(s)["case_id"].tolist() == ["a", "b"]
    assert tables.ok_rows(s, ["forward"])["case_id"].tolist() == ["b"]


def test_compiled_cases_pair_with_their_eager_case_speedup_and_break_even():
    keys = {c: "x" for c in tables.identity_columns(["compile", "compile_scope"])}
    rows = [{**keys, "platform": "P", "phase": "step", "status": "ok", "compile": mode, "compile_scope": scope,
             "median_s": t, "compile_s": c}
            for mode, scope, t, c in [("none", "model", 4.0, 0.0), ("default", "model", 2.0, 10.0),
                                      ("max-autotune", "step", 5.0, 20.0)]]
    pairs = tables.compile_pairs(pd.DataFrame(rows))
    assert pairs["compile"].tolist() == ["default", "max-autotune"]
    assert pairs["speedup"].tolist() == [2.0, 0.8]
    assert pairs["break_even_steps"].iloc[0] == 5.0  # 10 s of compiling / 2 s saved per step
    assert math.isnan(pairs["break_even_steps"].iloc[1])  # slower: never pays back


def _crossover(batches, ratios) -> tuple[float, float]:
    keys = {c: "x" for c in tables.identity_columns(["device", "batch"])}
    frame = pd.DataFrame([{**keys, "batch": b, "speedup": r} for b, r in zip(batches, ratios)][::-1])  # unsorted
    row = tables.crossover_batches(frame).iloc[0]
    assert row["batches"] == len(batches)
    return row["wins_from"], row["crossover_batch"]


@pytest.mark.parametrize("batches, ratios", [
    ([4, 16, 64], [0.5, 2.0, 8.0]),
    ([8, 32, 128, 512], [0.2, 0.7, 0.9, 3.0]),
    ([1, 2, 4], [2.0, 0.5, 4.0]),  # a loss after a win: the crossover is after the last loss
])
def test_the_crossover_is_numpys_log_log_interpolation_after_the_last_loss(batches, ratios):
    b, r = np.array(batches, float), np.array(ratios, float)
    last = np.flatnonzero(r < 1)[-1]
    expected = math.exp(np.interp(0.0, np.log(r[last:last + 2]), np.log(b[last:last + 2])))
    wins_from, crossover = _crossover(b, r)
    assert wins_from == b[last + 1] and crossover == pytest.approx(expected, rel=1e-12)
    assert _crossover(b, np.maximum(r, 1.0)) == (b[0], b[0])  # never loses (1.0 is no loss): from the start
    lost = _crossover(b, np.minimum(r, 0.99))
    assert math.isnan(lost[0]) and math.isnan(lost[1])


@pytest.mark.parametrize("row, flag, cell", [
    ({"numerics": "beyond tolerance: x", "numerics_tol": 0.1}, "beyond tolerance: x", "NUMERICS beyond tolerance: x"),
    ({"numerics": "reference"}, "", "reference"),
    ({"numerics": "", "grad_rel_err": 0.0612}, "", "ok (grads 0.06)"),
    ({"numerics": ""}, "", "ok"),
    ({"numerics": float("nan"), "numerics_tol": 0.1, "grad_rel_err": 0.02}, "", "ok (grads 0.02)"),
    ({"numerics": float("nan"), "numerics_tol": float("nan")}, "", ""),
    ({}, "", ""),
])
def test_the_numerics_flag_and_cell(row, flag, cell):
    assert tables.numerics_flag(row) == flag
    assert tables.numerics_cell(row) == cell
