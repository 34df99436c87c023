"""bench.report.tables' joins and labels on hand-built runs (issue 50: mutmut's survivors of the merge tables).

The merge of real runs is checked against pandas on their CSVs in test_merge_machines.py; these pin the small
pieces it is made of, each against a hand-written expectation: the platform names, unique run names, the
fingerprint differences, the ceilings' and limits' last-run-wins merge, user models grouped as networks, the
compiled/eager pairs, and the log-linear crossover, checked against numpy's own interpolation.
"""

from __future__ import annotations

import math
from pathlib import Path
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
    assert len(merged) == 3 and merged.index.tolist() == [0, 1, 2] and "index" not in merged.columns
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


def _speed_rows(rows):
    keys = {c: "x" for c in tables.identity_columns(["device", "threads", "batch"])}
    return pd.DataFrame([{**keys, "phase": "step", "status": "ok", "batch": batch, "device": device,
                          "threads": threads, "median_s": median, "label": f"{device}{batch}", "platform": platform}
                         for device, threads, batch, median, platform in rows])


def test_the_device_speedup_is_cpu_over_gpu_per_case_on_the_first_platform_of_each():
    frame = _speed_rows([("cpu", 1, 4, 2.0, "CPU A"), ("cpu", 2, 4, 1.2, "CPU A"), ("cpu", 1, 16, 8.0, "CPU A"),
                         ("cpu", 1, 4, 0.5, "CPU B"),  # a second CPU platform: not used
                         ("cuda", 0, 4, 4.0, "H100"), ("cuda", 0, 16, 1.0, "H100"), ("cuda", 0, 4, 0.1, "H200")])
    out = tables.device_speedup(frame)
    got = {(r.batch, r.threads): (r.cpu_s, r.gpu_s, r.speedup, r.platform_cpu, r.platform_gpu) for r in out.itertuples()}
    assert got == {(4, 1): (2.0, 4.0, 0.5, "CPU A", "H100"), (4, 2): (1.2, 4.0, 0.3, "CPU A", "H100"),
                   (16, 1): (8.0, 1.0, 8.0, "CPU A", "H100")}
    assert set(out["label_cpu"]) == {"cpu4", "cpu16"} and set(out["label_gpu"]) == {"cuda4", "cuda16"}


def test_no_gpu_rows_no_speedup_and_rows_without_a_platform_are_their_device():
    cpu_only = _speed_rows([("cpu", 1, 4, 2.0, "CPU A")])
    empty = tables.device_speedup(cpu_only)
    assert len(empty) == 0 and {"threads", "cpu_s", "gpu_s", "speedup"} <= set(empty.columns)
    assert len(tables.device_speedup(_speed_rows([("cuda", 0, 4, 2.0, "H100")]))) == 0
    bare = _speed_rows([("cpu", 1, 4, 2.0, ""), ("cuda", 0, 4, 1.0, "")]).drop(columns="platform")
    out = tables.device_speedup(bare)
    assert out["speedup"].tolist() == [2.0] and (out["platform_cpu"].tolist(), out["platform_gpu"].tolist()) == \
        (["cpu"], ["cuda"])
    other_phase = _speed_rows([("cpu", 1, 4, 2.0, "A"), ("cuda", 0, 4, 1.0, "G")]).assign(phase="forward")
    assert len(tables.device_speedup(other_phase)) == 0 and len(tables.device_speedup(other_phase, "forward")) == 1


def test_a_run_path_is_taken_as_given_and_a_missing_run_is_a_usage_error(tmp_path, monkeypatch):
    from bench.errors import UsageError
    assert tables.resolve_run_path("some/run") == Path("some/run")
    monkeypatch.chdir(tmp_path)  # no runs/ here
    with pytest.raises(UsageError, match="no runs under"):
        tables.resolve_run_path("latest")
    with pytest.raises(UsageError, match="no runs under"):
        tables.load_runs(["latest"])
    with pytest.raises(UsageError):
        tables.load_runs([str(tmp_path / "nope")])


def test_a_limit_is_on_its_own_device_and_a_run_without_env_is_still_merged():
    gpu = _run("/r/g", {"cpu_model": "EPYC", "device_name": "NVIDIA H100"},
               dispatch={"cuda": {"device": "cuda", "per_op_s": 5e-6}, "cpu": {"per_op_s": 2e-6}})
    got = {r.key: r.platform for r in tables.merged_limits([gpu], "dispatch").itertuples()}
    assert got == {"cuda": "NVIDIA H100", "cpu": "CPU EPYC"}
    bare = SimpleNamespace(path="/r/bare", meta={"bandwidth": {"k": {"bytes_per_s": 1.0}}})
    assert tables.merged_limits([bare], "bandwidth")["platform"].tolist() == ["CPU CPU"]


def test_compile_pairs_pair_step_rows_only_and_a_saving_under_a_second_still_pays_back():
    keys = {c: "x" for c in tables.identity_columns(["compile", "compile_scope"])}
    rows = [{**keys, "platform": "P", "phase": phase, "status": "ok", "compile": mode, "compile_scope": "model",
             "median_s": t, "compile_s": c}
            for phase, mode, t, c in [("step", "none", 1.0, 0.0), ("step", "default", 0.5, 10.0),
                                      ("forward", "none", 1.0, 0.0), ("forward", "default", 0.9, 10.0)]]
    pairs = tables.compile_pairs(pd.DataFrame(rows))
    assert pairs["phase"].tolist() == ["step"] and pairs["break_even_steps"].tolist() == [20.0]
    same = pd.DataFrame(rows[:2]).assign(median_s=1.0)  # no saving at all: never pays back (not infinitely late)
    assert math.isnan(tables.compile_pairs(same)["break_even_steps"].iloc[0])


def test_crossover_rows_keep_the_configurations_order_and_no_rows_keep_the_columns():
    keys = tables.identity_columns(["device", "batch"])
    base = {c: "x" for c in keys}
    rows = [{**base, "activation": act, "batch": b, "speedup": r}
            for act in ("relu", "gelu") for b, r in ((4, 0.5), (16, 2.0))]
    out = tables.crossover_batches(pd.DataFrame(rows))
    assert out["activation"].tolist() == ["relu", "gelu"]
    empty = tables.crossover_batches(pd.DataFrame(columns=keys + ["batch", "speedup"]))
    assert len(empty) == 0 and list(empty.columns) == keys + ["batches", "wins_from", "crossover_batch"]


def test_the_ceilings_table_has_its_columns_each_ceiling_on_its_device_and_runs_without_env_or_ceilings():
    assert list(tables.merged_ceilings([]).columns) == [
        "platform", "device", "dtype", "threads", "device_name", "measured_tflops", "matmul_size", "sizes_tried",
        "budget_s", "spent_s", "datasheet_tflops", "datasheet_source", "best_product", "spread_rel", "case_shapes",
        "case_shapes_measured", "pass_tflops", "shapes_spent_s", "run"]
    gpu = _run("/r/g", {"cpu_model": "EPYC", "device_name": "NVIDIA H100", "torch_threads": 2},
               ceilings={"g": {"device": "cuda", "dtype": "bf16", "threads": 0, "measured_tflops": 700.0,
                               "matmul_size": 8192},
                         "c": {"dtype": "fp32", "threads": 1, "measured_tflops": 0.1}})
    got = {r.dtype: (r.platform, r.matmul_size) for r in tables.merged_ceilings([gpu]).itertuples()}
    assert got["bf16"] == ("NVIDIA H100", 8192) and got["fp32"][0] == "CPU EPYC"
    bare = SimpleNamespace(path="/r/bare", meta={"ceilings": {"c": {"dtype": "fp32", "measured_tflops": 0.1}}})
    assert tables.merged_ceilings([bare])["platform"].tolist() == ["CPU CPU"]
    none = SimpleNamespace(path="/r/none", meta={"env": {"cpu_model": "EPYC"}})
    assert tables.merged_ceilings([none]).empty


def test_a_run_folder_that_is_not_there_is_named_in_the_usage_error(tmp_path):
    from bench.errors import UsageError
    with pytest.raises(UsageError, match="nope"):
        tables.load_runs([str(tmp_path / "nope")])


def test_a_run_without_env_is_merged_under_a_plain_cpu_platform():
    run = SimpleNamespace(path="/r/old", meta={}, summary=_summary(case_id=["p"], median_s=[1.0]))
    merged, dropped = tables.merged_summary([run])
    assert merged["platform"].tolist() == ["CPU CPU"] and dropped == 0


def test_a_run_at_the_root_is_named_by_its_path():
    assert tables.run_names([SimpleNamespace(path="/")]) == ["/"]


def test_merged_rows_are_numbered_afresh_with_a_user_model_among_them():
    a = _run("/r/a", {"cpu_model": "EPYC"}, _summary(case_id=["p", "q"], median_s=[1.0, 2.0]))
    b = _run("/r/b", {"cpu_model": "Xeon"}, _summary(case_id=["u", "v"], median_s=[3.0, 4.0],
                                                     model=["m.py:Net(k=1)", ""]))
    merged, _ = tables.merged_summary([a, b])
    assert merged.index.tolist() == [0, 1, 2, 3] and "index" not in merged.columns
    assert merged["network"].tolist() == ["uniform", "uniform", "m.py:Net(k=1)", "uniform"]
    assert merged["median_s"].tolist() == [1.0, 2.0, 3.0, 4.0]
