"""A limit's statistic over its timed blocks (bench.limits.ceiling, bench.limits.bandwidth, bench.limits.dispatch), on constructed times.

Each limit is a best-of: the matmul ceiling is its best product's fastest block (flops / min seconds, in TFLOP/s),
the bandwidth its fastest single call (bytes / min seconds), the dispatch floor the fastest block per op. The
blocks here are built so that the min, the median and the max each pick another winner, and the expected values
are computed by hand and with numpy's percentiles, never read back from the code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.limits import bandwidth, ceiling, dispatch
from bench.instruments.timing import TimingConfig

from virtual_clock import VirtualClock  # tests/bench/ is on sys.path

MS = 1e-3


def _iqr_rel(x) -> float:
    q1, med, q3 = np.percentile(np.asarray(x, dtype=float), [25, 50, 75])
    return (q3 - q1) / med


def test_block_samples_time_only_the_blocks_after_the_warm_up_and_the_calibration_call():
    """Call 0 (warm-up) takes 100 ms, call 1 (calibration) 2 ms: blocks of ceil(5/2) = 3 calls; block k's calls
    take k+1 ms each, so the samples are 1, 2, 3, 4 ms and nothing of the warm-up."""
    clock, calls = VirtualClock(), []

    def fn(i):
        n = len(calls)
        calls.append(n)
        clock.now += (100.0 if n == 0 else 2.0 if n == 1 else 1.0 + (n - 2) // 3) * MS

    samples = ceiling.block_samples(fn, clock, TimingConfig(min_block_s=5 * MS), repeats=4)
    assert samples == pytest.approx([1 * MS, 2 * MS, 3 * MS, 4 * MS])
    assert len(calls) == 2 + 4 * 3


def test_the_matmul_ceiling_is_the_best_products_fastest_block_in_tflops(monkeypatch):
    """256^3 (2 x 256^3 FLOPs): one block at 100 GFLOP/s, the rest at 20-30; 512^3: every block at 50 GFLOP/s.
    The fastest block picks 256 at 0.1 TFLOP/s; a median or a slowest block would pick 512 at 0.05."""
    flops = {256: 2 * 256**3, 512: 2 * 512**3}
    seconds = {256: [flops[256] / r for r in (20e9, 25e9, 30e9, 100e9, 20e9, 25e9, 30e9)],
               512: [flops[512] / 50e9] * 7}
    monkeypatch.setattr(ceiling, "_product_samples", lambda gemm, *args, **kw: list(seconds[gemm.m]))
    monkeypatch.setattr(ceiling, "datasheet_peak", lambda *args: (None, None))
    monkeypatch.setattr(ceiling, "device_name", lambda device: "test CPU")
    c = ceiling.measure_ceiling("cpu", "fp32", sizes=(256, 512), budget_s=60.0)
    assert c.sizes_tried == (256, 512)
    assert c.measured_tflops == pytest.approx(0.1, rel=1e-9)
    assert c.matmul_size == 256 and c.best_product == "256x256x256 nn"
    assert c.product_tflops == pytest.approx({"256x256x256 nn": 0.1, "512x512x512 nn": 0.05}, rel=1e-9)
    assert c.spread_rel == pytest.approx(_iqr_rel(seconds[256]), rel=1e-9)
    assert c.pass_tflops == pytest.approx({"squares": 0.1}, rel=1e-9)


def test_the_bandwidth_is_the_fastest_single_call_of_each_kernel_in_bytes_per_second(monkeypatch):
    """One thread, three fake kernels on the virtual clock. Per kernel: a 0.25 ms warm-up call (the fastest of all:
    it must count for nothing), then one call per round, with times built so min, median and max disagree."""
    clock = VirtualClock()
    nbytes = 1_000_000
    rounds = {  # ms per round: memmove has the single fastest call, triad the best median, copy the 2nd-best call
        "copy": [0.5] + [3.0] * 19,
        "triad": [1.0] * 20,
        "memmove": [0.4] + [0.9, 1.2, 1.5, 2.0] * 4 + [0.9, 1.2, 1.5],
    }
    big_n = 1 << 20
    cache_ms = {"copy": 0.05, "triad": 0.01, "memmove": 0.04}  # triad is no copy: not in the cache level

    def fake_kernels(n, dev, dtype):
        counters = {name: 0 for name in rounds}

        def kernel(name):
            def call():
                i = counters[name]
                counters[name] += 1
                if n != big_n:  # the cache-resident level: constant calls, blocks of ceil(0.2 ms / call)
                    clock.now += cache_ms[name] * MS
                else:
                    clock.now += (0.25 if i == 0 else rounds[name][(i - 1) % 20]) * MS
            return call

        moved = {"copy": 2 * nbytes, "triad": 3 * nbytes, "memmove": 2 * nbytes}
        return {name: (kernel(name), moved[name]) for name in rounds}

    monkeypatch.setattr(bandwidth, "_kernels", fake_kernels)
    monkeypatch.setattr(bandwidth, "clock_for", lambda dev: clock)
    element = 4
    monkeypatch.setattr(bandwidth, "last_level_cache_bytes",
                        lambda device: (big_n * element // bandwidth.CACHE_MULTIPLE, "test"))
    with torch.inference_mode():
        old = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            b = bandwidth.measure_bandwidth("cpu", "fp32")
        finally:
            torch.set_num_threads(old)
    assert b.rounds == 20 and b.threads_tried == (1,)
    copy_best = 2 * nbytes / (0.4 * MS)  # 5e9 B/s: memmove's one fast call (a copy too) beats copy_'s 0.5 ms
    triad_best = 3 * nbytes / (1.0 * MS)  # 3e9 B/s
    assert b.copy_bytes_per_s == pytest.approx(copy_best, rel=1e-9)
    assert b.triad_bytes_per_s == pytest.approx(triad_best, rel=1e-9)
    assert b.bytes_per_s == pytest.approx(copy_best, rel=1e-9) and (b.best_kernel, b.best_threads) == ("memmove", 1)
    assert b.spread_rel == pytest.approx(_iqr_rel(rounds["memmove"]), rel=1e-9)  # of the times, not the rates
    assert b.cache_bytes_per_s == pytest.approx(2 * nbytes / (0.04 * MS), rel=1e-9)  # memmove's, 5e10 B/s


def test_the_dispatch_floor_is_the_fastest_block_and_the_lower_per_op_of_backprop_and_inference(monkeypatch):
    """_best: the min block and its IQR / median. _measure_tiny: each figure divided by its own op count."""
    blocks = [3e-6, 1e-6, 2e-6, 5e-6, 2e-6]
    monkeypatch.setattr(dispatch, "block_samples", lambda *args, **kw: list(blocks))
    monkeypatch.setattr(dispatch, "WARMUP_S", 0.0)
    best, spread = dispatch._best(lambda i: None, VirtualClock())
    assert best == 1e-6 and spread == pytest.approx(_iqr_rel(blocks), rel=1e-9)

    # in _measure_tiny's order: backprop, inference, the engine's backward, the whole step
    ops, times = iter([50, 20, 25, 70]), iter([(100e-6, 0.1), (30e-6, 0.2), (40e-6, 0.3), (500e-6, 0.4)])
    monkeypatch.setattr(dispatch, "count_ops", lambda fn: next(ops))
    monkeypatch.setattr(dispatch, "_best", lambda fn, clock: next(times))
    step, x, y = dispatch.tiny_step("cpu")
    floor = dispatch._measure_tiny(torch.device("cpu"), 1e-6, step, x, y, VirtualClock(), 0.0, 2)
    assert floor.per_op_s == pytest.approx(30e-6 / 20)  # inference's 1.5 us < backprop's 2 us
    assert floor.backprop_per_op_s == pytest.approx(100e-6 / 50)
    assert floor.autograd_per_op_s == pytest.approx(40e-6 / 25)
    assert (floor.tiny_backprop_s, floor.tiny_backprop_ops, floor.spread_rel) == (100e-6, 50, 0.1)
    assert (floor.tiny_inference_s, floor.tiny_inference_ops) == (30e-6, 20)
    assert (floor.tiny_step_s, floor.tiny_step_ops, floor.tiny_autograd_ops) == (500e-6, 70, 25)
    assert math.isclose(dispatch.phase_per_op_s(floor.as_dict(), "backward"), 30e-6 / 20)


def test_a_phases_bytes_are_charged_the_cache_rate_while_a_quarter_of_them_fits_the_llc():
    """mlp.traffic touches a tensor at most 4 times in a phase, so bytes / 4 <= LLC may all stay in the cache: the
    cache copy's rate (the faster of it and DRAM's); one byte beyond 4 x LLC is charged DRAM's rate."""
    from bench.limits.speed_of_light import memory_bytes_per_s

    llc = 8 * 2**20
    limits = {"bytes_per_s": 20e9, "cache_bytes_per_s": 80e9, "cache_bytes": llc}
    assert memory_bytes_per_s(limits, 2 * llc) == 80e9
    assert memory_bytes_per_s(limits, 4 * llc) == 80e9
    assert memory_bytes_per_s(limits, 4 * llc + 4) == 20e9
    assert memory_bytes_per_s({**limits, "cache_bytes_per_s": 10e9}, llc) == 20e9  # a slower cache read: DRAM's
