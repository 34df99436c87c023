"""The other two limits and the theoretical peak: bandwidth, dispatch floor, CPU peak; and the speed-of-light model.

References: ``lscpu`` for the cache size, ``torch.utils.benchmark`` for the copy and the
one-element add, synthetic /proc/cpuinfo texts for the peak formula, and hand-computed floors.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.utils.benchmark as tub

from bench.limits import bandwidth, ceiling, core_clock, speed_of_light
from bench.engine import runner
from bench.limits.dispatch import count_ops, measure_dispatch, tiny_step
from bench.limits.ceiling import Ceiling
from bench.limits.peak import cpu_peak, cpu_peak_or_reason

# the independent best may beat the limit by this much: both are bests of the same interleaved rounds, so only
# luck between neighbouring samples separates them (seen: 0.72-0.89 at load 12 on 2 cores, 0.76-1.25 at 16 on
# one thread); a limit read at half (the ``bandwidth-halved`` mutant) is beaten by about 2x
BOUND_MARGIN = 0.3
TEST_ROUNDS, TEST_BUDGET_S, NUMPY_PER_ROUND = 20, 5.0, 3
MAX_MEASUREMENTS, CLEAR_PASS = 3, 1.1  # a median ratio up to CLEAR_PASS needs no further measurement
IMUL_RAX_RAX = bytes([0x48, 0x0F, 0xAF, 0xC0])  # imul rax, rax: latency 3
CLOCK_AGREEMENT = 0.1
CEILING_SIZES, CEILING_TEST_BUDGET_S = (512, 1024), 1.5
ADD_BAND = 10
EPYC = "model name\t: AMD EPYC\nflags\t\t: fpu sse2 avx avx2 fma\ncpu MHz\t\t: 2445.000\nsiblings\t: 2\ncpu cores\t: 2\n"
XEON_SMT = ("model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\nflags\t\t: sse2 avx2 fma avx512f avx512_bf16\n"
            "cpu MHz\t\t: 3200.000\nsiblings\t: 4\ncpu cores\t: 2\n")


# --------------------------------------------------------------------------- theoretical CPU peak


def test_the_epyc_peak_is_the_issue_s_hand_computed_157_gflops():
    peak = cpu_peak("fp32", cpuinfo=EPYC, cpus=2, measured_ghz=2.445)
    assert peak.tflops * 1e3 == pytest.approx(2 * 2 * 8 * 2 * 2.445)  # 156.5 GFLOP/s
    assert peak.estimate and "2 cores x 2 FMA units x 8 fp32 lanes (avx2) x 2 x 2.44 GHz (measured" in peak.formula
    assert cpu_peak("bf16", cpuinfo=EPYC, cpus=2, measured_ghz=2.445) is None  # no native bf16: no theoretical line


def test_without_a_measured_clock_cpu_mhz_and_the_nominal_clock_give_no_peak_but_a_reason():
    # 'cpu MHz' of a VM and "@ 2.00GHz" are not the clock under load (issue 39: 2.6 reported, 3.9 GHz run)
    for text in (EPYC, XEON_SMT):
        reason = cpu_peak_or_reason("fp32", cpuinfo=text, cpus=2)
        assert isinstance(reason, str) and reason.startswith("no estimate") and "\n" not in reason
    assert cpu_peak("fp32", cpuinfo=XEON_SMT, cpus=4, max_freq_khz=3.5e6).clock_ghz == 3.5  # cpufreq: a bound


def test_the_measured_clock_and_physical_cores_win_over_the_nominal_clock_and_smt_siblings():
    peak = cpu_peak("fp32", cpuinfo=XEON_SMT, cpus=4, measured_ghz=3.1)
    assert (peak.cores, peak.lanes, peak.clock_ghz) == (2, 16, 3.1)  # 4 logical CPUs, 2 per core; not @ 2.00GHz
    assert cpu_peak("bf16", cpuinfo=XEON_SMT, cpus=4, measured_ghz=3.1).tflops == pytest.approx(2 * peak.tflops)
    higher = cpu_peak("fp32", cpuinfo=XEON_SMT, cpus=4, measured_ghz=3.1, max_freq_khz=3.4e6)
    assert higher.clock_ghz == 3.4  # the higher of the two candidates: the peak errs high, never low


def test_the_lane_model_follows_the_datapath_zen4_halves_avx512_zen5_and_amx_do_not():
    zen = "vendor_id\t: AuthenticAMD\ncpu family\t: {}\nflags\t\t: fma avx2 avx512f avx512_bf16\n"
    fp32, bf16 = (cpu_peak(d, cpuinfo=zen.format(25), cpus=1, measured_ghz=1.0) for d in ("fp32", "bf16"))
    assert (fp32.lanes, bf16.lanes) == (8, 16)  # Zen 4: a 512-bit FMA in two 256-bit halves
    assert cpu_peak("fp32", cpuinfo=zen.format(26), cpus=1, measured_ghz=1.0).lanes == 16  # Zen 5: 512-bit pipes
    amx = cpu_peak("bf16", cpuinfo=XEON_SMT.replace("avx512_bf16", "avx512_bf16 amx_bf16"), cpus=4, measured_ghz=1.0)
    assert amx.tflops * 1e3 == pytest.approx(2 * 1024 * 1.0) and amx.isa == "amx_bf16"  # 1024 FLOP/cycle/core


@pytest.mark.skipif(platform.machine().lower() not in core_clock.X86_64, reason="the add chain is x86-64 code")
def test_the_measured_clock_agrees_with_a_chain_of_another_latency():
    """An add chain (1 cycle each) against an imul chain (3 cycles each, Agner Fog's tables, every x86-64 core
    since 2008): a wrong cycle count, loop or unit reads differently in the two; both bests of short samples."""
    add = core_clock.chain_ghz()
    imul = core_clock.chain_ghz(IMUL_RAX_RAX, cycles_per_instruction=3)
    assert 0.5 < add.ghz < 7.0 and add.source.startswith("measured")
    assert add.ghz == pytest.approx(imul.ghz, rel=CLOCK_AGREEMENT), (add, imul)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_this_cpus_estimate_bounds_a_real_matmul_ceiling(dtype):
    """The estimate itself (before any withdrawal) against a short real ceiling: with 'cpu MHz' as the clock
    the bf16 estimate read 0.665 TFLOP/s against a 0.922 ceiling on a Zen 5 EPYC (issue 39)."""
    estimate = cpu_peak(dtype)
    if estimate is None:
        pytest.skip(f"no {dtype} estimate here: {cpu_peak_or_reason(dtype)}")
    measured = ceiling.measure_ceiling("cpu", dtype, sizes=CEILING_SIZES, budget_s=CEILING_TEST_BUDGET_S)
    assert measured.measured_tflops <= estimate.tflops, (measured.product_tflops, estimate.formula)
    assert measured.datasheet_tflops == estimate.tflops or measured.datasheet_tflops is None


def test_a_peak_below_the_measured_ceiling_is_withdrawn_with_a_reason():
    c = Ceiling("cpu", "bf16", "AMD EPYC", 0.922, 1024, 0.665, "estimate: 2 cores x ... x 2.6 GHz")
    withdrawn = ceiling.peak_checked(c)
    assert withdrawn.datasheet_tflops is None and withdrawn.datasheet_source.startswith("withdrawn: the measured")
    assert ceiling.peak_checked(replace(c, datasheet_tflops=1.04)) == replace(c, datasheet_tflops=1.04)


# --------------------------------------------------------------------------- bandwidth


@pytest.mark.skipif(shutil.which("lscpu") is None, reason="needs lscpu for the reference cache size")
def test_the_bandwidth_arrays_are_sized_past_the_last_level_caches_lscpu_reports():
    if os.sched_getaffinity(0) != set(range(os.cpu_count() or 0)):
        pytest.skip("pinned to some CPUs: lscpu sums the caches of all of them")
    out = subprocess.run(["lscpu", "-B", "-C=ALL-SIZE,LEVEL"], capture_output=True, text=True).stdout.split()
    sizes = {int(level): int(size) for size, level in zip(out[2::2], out[3::2]) if size.isdigit()}
    if not sizes:
        pytest.skip("lscpu reports no cache sizes here")
    llc, _ = bandwidth.last_level_cache_bytes("cpu")
    assert llc == sizes[max(sizes)]  # every instance of the last level, as STREAM's rule sums them


class InterleavedCopy:
    """The independent best, timed between the product's rounds (under the same load): torch.utils.benchmark's
    copy at one thread and at the limit's thread count, and a STREAM-style numpy copy (one thread, libc), each
    call timed alone; as many timed calls per round as the product's five (copy and triad at 1 and N threads,
    memmove), so neither gets more chances at a quiet moment."""

    def __init__(self, n: int, threads: int):
        self.a, self.c = torch.ones(n), torch.zeros(n)
        self.timers = {t: tub.Timer("c.copy_(a)", globals={"a": self.a, "c": self.c}, num_threads=t)
                       for t in bandwidth.thread_counts(threads)}
        self.nbytes = 2 * self.a.numel() * self.a.element_size()
        self.rates: dict[str, list[float]] = {"torch.utils.benchmark": [], "numpy": []}

    def sample(self) -> None:
        for timer in self.timers.values():
            self.rates["torch.utils.benchmark"].append(self.nbytes / timer.timeit(1).times[0])
        a, c = self.a.numpy(), self.c.numpy()
        for _ in range(NUMPY_PER_ROUND):
            start = time.perf_counter()
            np.copyto(c, a)
            self.rates["numpy"].append(self.nbytes / (time.perf_counter() - start))

    @property
    def best(self) -> float:
        return max(max(v) for v in self.rates.values())


def interleaved_ratio() -> tuple[float, bandwidth.Bandwidth, dict]:
    """One interleaved measurement: (independent best / the limit, the limit, the reference's bests)."""
    llc, _ = bandwidth.last_level_cache_bytes("cpu")
    reference = InterleavedCopy(bandwidth.CACHE_MULTIPLE * llc // 4, torch.get_num_threads())
    with torch.no_grad():
        measured = bandwidth.measure_bandwidth("cpu", "fp32", interleave=reference.sample)
    assert measured.array_bytes == reference.a.numel() * 4 >= 4 * measured.cache_bytes  # STREAM's sizing
    assert measured.bytes_per_s == max(measured.copy_bytes_per_s, measured.triad_bytes_per_s)
    assert measured.cache_bytes_per_s > 0 and measured.rounds >= bandwidth.MIN_ROUNDS
    seen = {k: f"{max(v) / 1e9:.1f} GB/s" for k, v in reference.rates.items()}
    return reference.best / measured.bytes_per_s, measured, seen


def test_the_bandwidth_limit_is_not_beaten_by_an_independent_best_in_the_same_rounds(monkeypatch):
    """Every round times the product's kernels, then the references, so a neighbour's burst hits both alike. On a
    quiet machine one measurement passes; on a loaded one (a best of 20 varies by +-30% at load 15, and one
    lucky 2-thread reference read 1.9x once at load 17) up to MAX_MEASUREMENTS, and their median ratio decides:
    the bound within BOUND_MARGIN, and a limit read at half (the ``bandwidth-halved`` mutant: near 2) fails."""
    monkeypatch.setattr(bandwidth, "ROUNDS", TEST_ROUNDS)  # more chances for both than a run's limit takes
    monkeypatch.setattr(bandwidth, "BANDWIDTH_BUDGET_S", TEST_BUDGET_S)
    ratios, seen = [], []
    while len(ratios) < MAX_MEASUREMENTS:
        ratio, measured, refs = interleaved_ratio()
        ratios.append(ratio)
        seen.append((f"{ratio:.2f}", f"{measured.bytes_per_s / 1e9:.1f} GB/s", refs))
        if float(np.median(ratios)) <= CLEAR_PASS:
            break
    assert float(np.median(ratios)) <= 1 + BOUND_MARGIN, seen


# --------------------------------------------------------------------------- dispatch floor


def test_the_dispatch_floor_s_add_matches_torch_utils_benchmark():
    floor = measure_dispatch("cpu")
    step, x, y = tiny_step("cpu")
    step.step(x, y)
    assert floor.tiny_backprop_ops == count_ops(lambda: step.loss_backward(step.forward(x), y)) > 0
    a, b = torch.ones(1), torch.ones(1)
    reference = min(min(tub.Timer("a + b", globals={"a": a, "b": b}).blocked_autorange(min_run_time=0.2).times)
                    for _ in range(3))
    # microseconds on a loaded machine (seen: 1.4 against 6.9 us at load 14): a band that still catches a unit
    # error (seconds per block instead of per call is a factor of hundreds)
    assert reference / ADD_BAND <= floor.add_s <= reference * ADD_BAND
    assert floor.backprop_per_op_s == pytest.approx(floor.tiny_backprop_s / floor.tiny_backprop_ops)
    assert floor.tiny_inference_ops == count_ops(lambda: step.infer(x)) > 0
    # the floor per op is the cheaper kind: an inference phase must not be charged a backward's per-op cost
    assert floor.per_op_s == min(floor.backprop_per_op_s, floor.tiny_inference_s / floor.tiny_inference_ops)
    loss = step.loss_fn(step.forward(x), y)
    replay = lambda: loss.backward(retain_graph=True)  # noqa: E731
    assert floor.tiny_autograd_ops == count_ops(replay) > 0
    engine = min(min(tub.Timer("replay()", globals={"replay": replay}).blocked_autorange(min_run_time=0.2).times)
                 for _ in range(3)) / floor.tiny_autograd_ops
    assert engine / ADD_BAND <= floor.autograd_per_op_s <= engine * ADD_BAND


def test_a_backward_is_charged_the_engine_s_per_op_floor_and_a_forward_the_python_one():
    from bench.limits.dispatch import phase_per_op_s

    dispatch = {"per_op_s": 5e-6, "autograd_per_op_s": 2.5e-6}
    assert [phase_per_op_s(dispatch, p) for p in ("forward", "inference", "backward", "optimizer", "step")] == \
        [5e-6, 5e-6, 2.5e-6, 2.5e-6, 2.5e-6]
    assert phase_per_op_s({"per_op_s": 5e-6}, "backward") == 5e-6  # a run from before the engine's figure
    assert phase_per_op_s({"per_op_s": 2e-6, "autograd_per_op_s": 3e-6}, "backward") == 2e-6  # never above per_op_s
    row = {"device": "cpu", "dtype": "fp32", "threads": 0, "tflops": 0.0, "median_s": 1e-3, "phase": "backward",
           "matmul_flops": 0.0, "traffic_bytes": 0.0, "aten_ops": 100}
    meta = {"ceilings": {"cpu/fp32": {"device": "cpu", "dtype": "fp32", "device_name": "x", "measured_tflops": 0.1,
                                      "matmul_size": 256, "datasheet_tflops": None, "datasheet_source": None}},
            "bandwidth": {"cpu/fp32": {"bytes_per_s": 1e10}}, "dispatch": {"cpu": dispatch}}
    assert runner.derived_columns(row, meta)["sol_s"] == pytest.approx(100 * 2.5e-6)
    assert runner.derived_columns({**row, "phase": "forward"}, meta)["sol_s"] == pytest.approx(100 * 5e-6)


def test_the_run_keeps_the_lower_of_its_start_and_end_dispatch_passes_whole():
    from dataclasses import replace

    from bench.limits.dispatch import best_of_passes

    start = _floor(3e-6, add_s=1e-6).as_dict()
    lower = best_of_passes(start, _floor(2e-6, add_s=9e-7))
    assert (lower["per_op_s"], lower["add_s"], lower["floor_pass"]) == (2e-6, 9e-7, "end")
    assert (lower["per_op_s_start"], lower["per_op_s_end"]) == (3e-6, 2e-6)
    higher = best_of_passes(start, _floor(4e-6, add_s=2e-6))
    assert (higher["per_op_s"], higher["add_s"], higher["floor_pass"]) == (3e-6, 1e-6, "start")
    assert best_of_passes(start, replace(_floor(4e-6), per_op_s=math.nan))["per_op_s"] == 3e-6  # nan never wins
    resumed = best_of_passes(lower, _floor(2.5e-6))  # a resumed run's second end pass: 2e-6 still stands
    assert (resumed["per_op_s"], resumed["per_op_s_start"]) == (2e-6, 3e-6)
    engine = best_of_passes({**start, "autograd_per_op_s": 1e-6}, replace(_floor(2e-6), autograd_per_op_s=1.5e-6))
    assert (engine["per_op_s"], engine["autograd_per_op_s"]) == (2e-6, 1e-6)  # each floor the lower of its reads


def _floor(per_op_s: float, add_s: float = 1e-6):
    from bench.limits.dispatch import DispatchFloor

    return DispatchFloor("cpu", 1, add_s, per_op_s, 45 * per_op_s, 45, 46 * per_op_s, 46, 0.0, 0.5)


# --------------------------------------------------------------------------- the model


def test_the_floor_of_a_hand_computed_example():
    # 2 GFLOP at 100 GFLOP/s = 20 ms; 100 MB at 10 GB/s = 10 ms; 100 ops x 10 us = 1 ms
    f = speed_of_light.floor(2e9, 1e8, 100, 1e11, 1e10, 1e-5)
    assert (f.compute_s, f.memory_s, f.overhead_s) == pytest.approx((0.020, 0.010, 0.001))
    assert f.time_s == pytest.approx(0.021) and f.bound is speed_of_light.Bound.COMPUTE
    cols = speed_of_light.columns(f, measured_s=0.042)
    assert cols["sol_fraction"] == pytest.approx(0.5) and cols["sol_bound"] == "compute"
    tiny = speed_of_light.floor(1e6, 1e6, 30, 1e11, 1e10, 1e-5)  # 10 us, 100 us, 300 us
    assert tiny.bound is speed_of_light.Bound.OVERHEAD and tiny.time_s == pytest.approx(400e-6)
    optimizer = speed_of_light.floor(0, 4e8, 1, 1e11, 1e10, 1e-5)  # no matmul: 40 ms of bytes
    assert optimizer.bound is speed_of_light.Bound.MEMORY
    assert speed_of_light.floor(1e9, 1e8, math.nan, 1e11, 1e10, 1e-5) is None


def test_bytes_that_may_stay_in_the_cache_are_charged_at_the_cache_resident_rate():
    limit = {"bytes_per_s": 40e9, "cache_bytes_per_s": 150e9, "cache_bytes": 32 * 2**20}
    assert speed_of_light.memory_bytes_per_s(limit, 15e6) == 150e9  # a FashionMNIST step: its tensors fit
    assert speed_of_light.memory_bytes_per_s(limit, 4 * 32 * 2**20 + 1) == 40e9  # > 4 touches x the LLC: DRAM
    assert speed_of_light.memory_bytes_per_s({"bytes_per_s": 40e9}, 15e6) == 40e9  # no cache level measured
    assert math.isnan(speed_of_light.memory_bytes_per_s({}, 15e6))


def test_a_compiled_step_is_charged_no_eager_dispatch():
    assert speed_of_light.charged_ops({"aten_ops": 51, "compile": "none"}) == 51
    assert speed_of_light.charged_ops({"aten_ops": 51}) == 51  # rows from before the field
    assert speed_of_light.charged_ops({"aten_ops": 51, "compile": "default"}) == 0
    assert speed_of_light.charged_ops({"aten_ops": 51, "compile": "none", "cuda_graph": "step"}) == 0


def test_the_runner_feeds_the_model_the_run_s_own_limits():
    row = {"device": "cpu", "dtype": "fp32", "threads": 0, "tflops": 0.05, "median_s": 0.04,
           "matmul_flops": 2e9, "traffic_bytes": 1e8, "aten_ops": 100}
    meta = {"ceilings": {"cpu/fp32": {"device": "cpu", "dtype": "fp32", "device_name": "x", "measured_tflops": 0.1,
                                      "matmul_size": 256, "datasheet_tflops": None, "datasheet_source": None}},
            "bandwidth": {"cpu/fp32": {"bytes_per_s": 1e10}}, "dispatch": {"cpu": {"per_op_s": 1e-5}}}
    cols = runner.derived_columns(row, meta)
    assert cols["sol_s"] == pytest.approx(0.021) and cols["sol_fraction"] == pytest.approx(0.021 / 0.04)
    assert cols["mfu"] == pytest.approx(0.5) and cols["ceiling_flag"] == ""
    pinned = runner.derived_columns({**row, "threads": 1}, meta)  # no 1-thread limits measured: no floor
    assert math.isnan(pinned["sol_s"])


def test_the_op_count_does_not_depend_on_the_batch_it_is_counted_at():
    """The runner counts ops at a small batch (cheap); a real batch dispatches the same ops."""
    from bench.case.cases import Case

    case = Case(width=48, depth=2, batch=64, activation="gelu", optimizer="adam")
    small = runner.phase_ops(runner.ops_case(case))
    runner.phase_ops.cache_clear()
    real = runner.phase_ops(case.with_(threads=0))  # counted at the case's own batch
    assert small == real and small["step"] > 0
