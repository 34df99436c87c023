"""bench.limits.ceiling line by line, on constructed block times and a fake wall clock (issue 50: mutation testing).

The measured products are replaced by hand-built samples and ``time.perf_counter`` by a clock that moves only when
a product is "measured", so every budget decision is exact: a product's predicted cost is worked out here from
the docstring's rule (the untimed products plus CEILING_REPEATS blocks of ``ceil(min_block_s / per-product s)``
calls, times COST_MARGIN), with powers of two so that the float arithmetic is exact at the boundary. Rates are
FLOPs (2 m k n, counted by hand) over seconds; spreads are numpy's IQR / median. The GEMM operands are checked
against torch.matmul / torch.addmm on the same tensors.
"""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.limits import ceiling
from bench.limits.ceiling import Ceiling
from bench.limits.peak import CpuPeak
from bench.instruments.clocks import Clock, CudaClock
from bench.instruments.timing import TimingConfig
from mlp import Precision
from mlp.traffic import Gemm

from torch_calls import TorchCalls  # tests/bench/ is on sys.path
from virtual_clock import VirtualClock

BLOCK = TimingConfig(min_block_s=ceiling.CEILING_MIN_BLOCK_S)


def _iqr_rel(x) -> float:
    q1, med, q3 = np.percentile(np.asarray(x, dtype=float), [25, 50, 75])
    return (q3 - q1) / med


def _cost(per_product_s: float) -> float:
    """The docstring's rule, by hand: 1.25 x (2 untimed + 7 blocks x ceil(0.03 s / per product)) x per product, a
    block at most TimingConfig's 2000 calls."""
    return 1.25 * (2 + 7 * max(1, min(2000, math.ceil(0.03 / per_product_s)))) * per_product_s


class FakeWall:
    """``time.perf_counter`` for the module under test: it moves by ``step`` each time a product is measured."""

    def __init__(self, step: float = 0.0):
        self.now, self.step = 1000.0, step

    def perf_counter(self) -> float:
        return self.now


@pytest.fixture
def wall(monkeypatch):
    fake = FakeWall()
    monkeypatch.setattr(ceiling, "time", SimpleNamespace(perf_counter=fake.perf_counter))
    return fake


def _products(monkeypatch, wall, seconds):
    """Replace the timed products: ``seconds(gemm)`` -> its block samples; each call advances the wall by
    ``wall.step`` and is recorded (gemm, deadline, the float32 matmul precision in force)."""
    calls = []

    def fake(gemm, dev, precision, clock, config, deadline=math.inf):
        calls.append(SimpleNamespace(gemm=gemm, dev=dev, precision=precision, clock=clock, config=config,
                                     deadline=deadline, matmul=torch.get_float32_matmul_precision()))
        wall.now += wall.step
        return list(seconds(gemm))

    monkeypatch.setattr(ceiling, "_product_samples", fake)
    monkeypatch.setattr(ceiling, "datasheet_peak", lambda name, dtype, device="cuda": (None, None))
    monkeypatch.setattr(ceiling, "device_name", lambda device: {"cpu": "test CPU", "cuda": "test GPU"}[device])
    return calls


# --------------------------------------------------------------------------- small pieces


@pytest.mark.parametrize("gemm", [Gemm(3, 5, 7), Gemm(3, 5, 7, True), Gemm(3, 5, 7, False, True),
                                  Gemm(3, 5, 7, True, True, True), Gemm(64, 48, 32, False, True, True)])
def test_a_label_reads_back_as_its_gemm(gemm):
    assert ceiling._gemm_of(gemm.label) == gemm
    assert ceiling._gemm_of("3x5x7 tn +bias") == Gemm(3, 5, 7, trans_a=True, trans_b=False, bias=True)


@pytest.mark.parametrize("trans_a, trans_b, bias", [(False, False, False), (True, False, True), (False, True, True),
                                                    (True, True, False)])
def test_the_operands_are_in_autograds_layout_and_the_product_is_mm_or_addmm(monkeypatch, trans_a, trans_b, bias):
    gemm = Gemm(3, 5, 7, trans_a, trans_b, bias)
    a, b, c = ceiling._operands(gemm, torch.device("cpu"), torch.float64)
    assert a.shape == (3, 5) and b.shape == (5, 7) and a.dtype == b.dtype == torch.float64
    assert a.is_contiguous() != trans_a and a.t().is_contiguous() == trans_a  # a transposed view where trans_a
    assert b.is_contiguous() != trans_b and b.t().is_contiguous() == trans_b
    assert (c is not None) == bias and (c is None or (c.shape == (7,) and c.dtype == torch.float64))
    seen = {}

    def block_samples(fn, clock, config, deadline=math.inf, repeats=ceiling.CEILING_REPEATS):
        seen.update(fn=fn, clock=clock, config=config, deadline=deadline, repeats=repeats)
        return [1.0]

    got = []
    monkeypatch.setattr(ceiling, "_operands", lambda g, dev, dtype: got.append((g, dev)) or (a, b, c))
    monkeypatch.setattr(ceiling, "block_samples", block_samples)
    clock = VirtualClock()
    assert ceiling._product_samples(gemm, torch.device("cpu"), Precision.FP32, clock, BLOCK, 12.5) == [1.0]
    expected = a @ b + (c if bias else 0)
    assert torch.allclose(seen["fn"](0), expected)
    assert seen["clock"] is clock and seen["config"] is BLOCK and seen["deadline"] == 12.5
    assert seen["repeats"] == ceiling.CEILING_REPEATS and got == [(gemm, torch.device("cpu"))]


def test_the_operands_use_the_precisions_compute_dtype(monkeypatch):
    seen = {}

    def operands(gemm, dev, dtype):
        seen["dtype"] = dtype
        return torch.ones(2, 2), torch.ones(2, 2), None

    monkeypatch.setattr(ceiling, "_operands", operands)
    monkeypatch.setattr(ceiling, "block_samples", lambda fn, clock, config, deadline: [fn(0).sum().item()])
    assert ceiling._product_samples(Gemm(2, 2, 2), torch.device("cpu"), Precision.BF16, VirtualClock(), BLOCK) == [8.0]
    assert seen["dtype"] == torch.bfloat16


def test_block_samples_stop_at_the_deadline_but_never_below_min_blocks():
    """A deadline already past: MIN_BLOCKS (3) blocks, of ceil(5 / 2) = 3 calls each; asked for fewer than that,
    only as many as asked; no deadline: all that were asked for."""
    def timed(clock):
        def fn(i):
            clock.now += 2e-3
        return fn

    for deadline, repeats, expected in [(-math.inf, 7, 3), (-math.inf, 2, 2), (math.inf, 5, 5), (math.inf, 2, 2)]:
        clock = VirtualClock()
        samples = ceiling.block_samples(timed(clock), clock, TimingConfig(min_block_s=5e-3), deadline, repeats)
        assert samples == pytest.approx([2e-3] * expected)
        assert clock.now == pytest.approx(2e-3 * (2 + 3 * expected))  # warm-up, calibration, then the blocks


def test_a_products_predicted_cost_is_its_untimed_and_timed_calls_with_the_margin():
    for per_product_s in (2**-10, 2**-7, 2**-4, 20e-6, 0.5):
        assert ceiling._predicted_cost_s(per_product_s, BLOCK) == pytest.approx(_cost(per_product_s), rel=1e-12)
    assert ceiling._predicted_cost_s(2**-7, BLOCK) == 1.25 * (2 + 7 * 4) * 2**-7  # ceil(0.03 x 128) = 4 calls


def test_rate_and_spread_of_samples():
    samples = [4e-3, 1e-3, 2e-3, 8e-3, 3e-3]
    gemm = Gemm(100, 200, 300)
    assert ceiling._tflops(gemm, samples) == 2 * 100 * 200 * 300 / 1e-3 / 1e12  # TFLOP/s: 1e12 exactly
    assert ceiling._spread(samples) == pytest.approx(_iqr_rel(samples), rel=1e-12)


def test_the_fastest_products_are_ranked_by_rate():
    c = Ceiling("cpu", "fp32", "x", 3.0, 256, None, None,
                product_tflops={"8x8x8 nn": 1.0, "16x16x16 nn": 3.0, "4x4x4 tn": 2.0, "2x2x2 nt +bias": 0.5})
    assert ceiling.fastest_products(c, 2) == [Gemm(16, 16, 16), Gemm(4, 4, 4, trans_a=True)]
    assert ceiling.fastest_products(c) == [Gemm(16, 16, 16), Gemm(4, 4, 4, True), Gemm(8, 8, 8),
                                           Gemm(2, 2, 2, False, True, True)]  # END_PRODUCTS = 4 of 4
    five = replace(c, product_tflops={**c.product_tflops, "1x1x1 nn": 0.1})
    assert len(ceiling.fastest_products(five)) == 4 and Gemm(1, 1, 1) not in ceiling.fastest_products(five)


def test_a_case_is_flagged_only_when_it_beats_a_known_ceiling():
    assert ceiling.under_measured(1.5, 1.0) == "ceiling under-measured: this case ran at 150% of it"
    assert ceiling.under_measured(3.0, 2.0) == "ceiling under-measured: this case ran at 150% of it"
    assert ceiling.under_measured(1.0, 1.0) is None  # at the ceiling: not beaten
    assert ceiling.under_measured(0.5, 1.0) is None
    assert ceiling.under_measured(1.5, 0.0) is None and ceiling.under_measured(1.5, math.nan) is None
    assert ceiling.under_measured(1.5, -1.0) is None and ceiling.under_measured(math.nan, 1.0) is None


def test_mfu_is_the_rate_over_the_same_run_ceiling():
    c = Ceiling("cpu", "fp32", "x", 0.2, 256, None, None)
    assert ceiling.ceiling_columns(0.05, c) == {"ceiling_tflops": 0.2, "mfu": 0.25, "ceiling_flag": ""}
    beaten = ceiling.ceiling_columns(0.3, c)
    assert beaten["mfu"] == pytest.approx(1.5) and beaten["ceiling_flag"] == ceiling.under_measured(0.3, 0.2)
    none = ceiling.ceiling_columns(0.05, None)
    assert math.isnan(none["ceiling_tflops"]) and math.isnan(none["mfu"]) and none["ceiling_flag"] == ""
    zero = ceiling.ceiling_columns(0.05, replace(c, measured_tflops=0.0))
    assert zero["ceiling_tflops"] == 0.0 and math.isnan(zero["mfu"]) and zero["ceiling_flag"] == ""
    # the registry's derived columns and compute term read a meta.json record (a dict) of the same ceiling
    record = c.as_dict()
    assert ceiling._row_columns(record, {"tflops": 0.05}) == {"ceiling_tflops": 0.2, "mfu": 0.25, "ceiling_flag": ""}
    assert math.isnan(ceiling._row_columns(None, {"tflops": 0.05})["mfu"])
    assert ceiling._compute_s(record, {"matmul_flops": 4e9}) == 4e9 / (0.2 * 1e12)  # 20 ms
    assert math.isnan(ceiling._compute_s(None, {"matmul_flops": 4e9}))
    assert math.isnan(ceiling._compute_s(record, {}))


def test_a_reduced_precision_is_slow_below_a_quarter_of_fp32():
    fp32 = {"measured_tflops": 0.1, "matmul_size": 1024}
    assert ceiling.slower_than_fp32({"measured_tflops": 0.025, "matmul_size": 512}, fp32) is None  # exactly 25%
    assert ceiling.slower_than_fp32({"measured_tflops": 0.2, "matmul_size": 512}, fp32) is None
    assert ceiling.slower_than_fp32({"measured_tflops": 0.002, "matmul_size": 512}, fp32) == (
        "its measured matmul rate, 2 GFLOP/s (n=512), is below 25% of fp32's 100 GFLOP/s")
    # 3 significant digits of GFLOP/s: 0.999 and 999, where a rate 0.1% high would print 1 and 1e+03
    assert ceiling.slower_than_fp32({"measured_tflops": 0.000999, "matmul_size": 256}, {"measured_tflops": 0.999}) \
        == "its measured matmul rate, 0.999 GFLOP/s (n=256), is below 25% of fp32's 999 GFLOP/s"


def test_the_device_name_is_the_gpus_or_the_cpu_model(monkeypatch):
    from bench.instruments import env

    monkeypatch.setattr(env, "cpu_model", lambda: "Test CPU 9000")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ceiling.device_name("cpu") == ceiling.device_name("cuda") == "Test CPU 9000"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 PCIe")
    assert ceiling.device_name("cuda") == "NVIDIA H100 PCIe" and ceiling.device_name("cpu") == "Test CPU 9000"


def test_the_datasheet_line_is_the_most_specific_name_and_a_cpu_gets_its_estimate(monkeypatch):
    assert ceiling.datasheet_peak("NVIDIA H100 PCIe", "bf16") == (756.0, "NVIDIA H100 PCIe datasheet, dense")
    assert ceiling.datasheet_peak("NVIDIA H100 80GB HBM3", "fp32") == (67.0, "NVIDIA H100 datasheet, dense")
    assert ceiling.datasheet_peak("NVIDIA A100-SXM4-80GB", "fp8") == (None, "NVIDIA A100 datasheet, dense")
    assert ceiling.datasheet_peak("NVIDIA GeForce RTX 4090", "fp32") == (None, None)
    peak = CpuPeak("fp32", 2, 2, 8, 2.5, 0.16, "avx2", "measured")
    monkeypatch.setattr(ceiling, "cpu_peak_or_reason", lambda dtype: peak if dtype == "fp32" else "no estimate: x")
    assert ceiling.datasheet_peak("AMD EPYC", "fp32", "cpu") == (0.16, f"estimate: {peak.formula}")
    assert ceiling.datasheet_peak("AMD EPYC", "bf16", "cpu") == (None, "no estimate: x")
    assert ceiling.datasheet_peak("NVIDIA H100 PCIe", "bf16", "cpu") == (None, "no estimate: x")  # the device decides


def test_a_peak_at_or_above_the_ceiling_stays_and_a_lower_one_is_withdrawn_with_both_figures():
    c = Ceiling("cpu", "fp32", "x", 0.5, 256, 0.5, "estimate: y")
    assert ceiling.peak_checked(c) is c  # equal: the ceiling did not beat it
    assert ceiling.peak_checked(replace(c, datasheet_tflops=None)).datasheet_source == "estimate: y"
    low = ceiling.peak_checked(replace(c, datasheet_tflops=0.25))
    assert low.datasheet_tflops is None and low.measured_tflops == 0.5
    assert low.datasheet_source == "withdrawn: the measured ceiling 0.5 TFLOP/s beat 0.25 (estimate: y)"


def test_a_pass_clock_is_added_beside_the_others_and_none_changes_nothing(monkeypatch):
    c = Ceiling("cuda", "bf16", "x", 1.0, 4096, None, None, pass_clock_mhz={"squares": 1980.0})
    assert c.with_pass_clock("end", None) is c
    assert c.with_pass_clock("end", 1500.0).pass_clock_mhz == {"squares": 1980.0, "end": 1500.0}
    assert c.as_dict()["pass_clock_mhz"] == {"squares": 1980.0} and c.as_dict()["measured_tflops"] == 1.0

    class Watch:
        def __init__(self, device):
            self.device = device

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return None

        def median_sm_clock_mhz(self):
            return 1755.0 if self.device == "cuda" else None

    monkeypatch.setattr(ceiling.telemetry, "CaseWatch", Watch)
    assert ceiling.clocked("cuda", "start", lambda: c).pass_clock_mhz == {"squares": 1980.0, "start": 1755.0}
    assert ceiling.clocked("cpu", "start", lambda: c) is c


# --------------------------------------------------------------------------- the squares' pass


def test_sizes_grow_while_the_next_ones_predicted_cost_fits_what_is_left_of_the_budget(monkeypatch, wall):
    """Each product's blocks take n^3 / 2^34 s per product (256: 2^-10 s, 512: 2^-7, 1024: 2^-4) and its measurement
    0.25 s of the wall. 512 is predicted from 256's median x 8 = 2^-7 s: _cost = 0.29296875 s, exactly what is left
    (budget 0.54296875 - 0.25 spent): measured. 1024's 0.703125 s does not fit the 0.04 s left: not measured."""
    wall.step = 0.25
    per = {256: 2**-10, 512: 2**-7, 1024: 2**-4, 2048: 2**-1}
    calls = _products(monkeypatch, wall, lambda g: [per[g.m]] * 7)
    budget = _cost(2**-7) + 0.25
    assert budget == 0.54296875
    c = ceiling.measure_ceiling("cpu", "fp32", sizes=(2048, 512, 1024, 256), budget_s=budget)
    assert c.sizes_tried == (256, 512) and [call.gemm for call in calls] == [Gemm(256, 256, 256), Gemm(512, 512, 512)]
    assert all(call.deadline == 1000.0 + budget for call in calls)  # the squares' own budget, from the start
    assert (c.budget_s, c.spent_s) == (budget, 0.5)
    # one fp32 product short of the boundary: 512 is not measured
    wall.now = 1000.0
    calls.clear()
    assert ceiling.measure_ceiling("cpu", "fp32", sizes=(256, 512), budget_s=budget - 2**-20).sizes_tried == (256,)


def test_the_prediction_scales_the_last_sizes_median_by_n_cubed(monkeypatch, wall):
    """256's blocks: median 2^-10 s (one fast outlier, one slow); 1024 next (no 512): 64 x 2^-10 = 2^-4 s, cost
    0.703125 s. A budget of exactly that measures it; a budget a hair less does not."""
    samples = {256: [2**-12, 2**-10, 2**-10, 2**-10, 2**-10, 2**-10, 2**-3], 1024: [2**-4] * 7}
    _products(monkeypatch, wall, lambda g: samples[g.m])
    assert ceiling.measure_ceiling("cpu", "fp32", sizes=(256, 1024), budget_s=_cost(2**-4)).sizes_tried == (256, 1024)
    assert ceiling.measure_ceiling("cpu", "fp32", sizes=(256, 1024),
                                   budget_s=_cost(2**-4) - 2**-20).sizes_tried == (256,)


def test_the_first_size_is_measured_whatever_the_budget_and_the_defaults_are_the_cpu_sizes(monkeypatch, wall):
    calls = _products(monkeypatch, wall, lambda g: [1e-9] * 7)
    assert ceiling.measure_ceiling("cpu", "fp32", sizes=(512, 256), budget_s=0.0).sizes_tried == (256,)
    c = ceiling.measure_ceiling("cpu", "fp32")  # tiny products: every default size fits
    assert c.sizes_tried == ceiling.CPU_SIZES == (256, 512, 1024, 2048) and c.budget_s == ceiling.CEILING_BUDGET_S
    assert c.matmul_size == 2048 and c.best_product == "2048x2048x2048 nn"  # same time: the most FLOPs
    assert c.measured_tflops == pytest.approx(2 * 2048**3 / 1e-9 / 1e12)
    assert all(call.config.min_block_s == ceiling.CEILING_MIN_BLOCK_S for call in calls)
    assert all(call.dev == torch.device("cpu") for call in calls)
    assert all(type(call.clock) is Clock and call.clock.device == torch.device("cpu") for call in calls)


def test_the_ceiling_record_says_what_was_measured_and_with_what(monkeypatch, wall):
    """256 at 2^-10 s per product with one fast block; 512 at 2^-7: the best block of 256 is 2 x 256^3 / 2^-11 s."""
    wall.step = 0.125
    s256 = [2**-10, 2**-11, 2**-10, 2**-9, 2**-10, 2**-10, 2**-9]
    calls = _products(monkeypatch, wall, lambda g: s256 if g.m == 256 else [2**-7] * 7)
    monkeypatch.setattr(ceiling, "datasheet_peak", lambda name, dtype, device="cuda": (
        (50.0, f"sheet of {name} {dtype} {device}") if device == "cpu" else (None, None)))
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        c = ceiling.measure_ceiling("cpu", "tf32", sizes=(256, 512), budget_s=60.0)
    finally:
        torch.set_num_threads(old)
    best = 2 * 256**3 / 2**-11 / 1e12
    assert (c.device, c.dtype, c.device_name, c.threads) == ("cpu", "tf32", "test CPU", 1)
    assert (c.datasheet_tflops, c.datasheet_source) == (50.0, "sheet of test CPU tf32 cpu")
    assert c.measured_tflops == pytest.approx(best) and c.pass_tflops == pytest.approx({"squares": best})
    assert c.product_tflops == pytest.approx({"256x256x256 nn": best, "512x512x512 nn": 2 * 512**3 / 2**-7 / 1e12})
    assert c.spread_rel == pytest.approx(_iqr_rel(s256)) and c.samples_per_product == ceiling.CEILING_REPEATS == 7
    assert (c.matmul_size, c.sizes_tried, c.spent_s, c.budget_s) == (256, (256, 512), 0.25, 60.0)
    assert all(call.precision is Precision.TF32 and call.matmul == "high" for call in calls)  # TF32 on while timed
    assert torch.get_float32_matmul_precision() == "highest"


def test_a_datasheet_peak_below_the_measured_ceiling_is_withdrawn_by_the_measurement(monkeypatch, wall):
    _products(monkeypatch, wall, lambda g: [2**-10] * 7)
    monkeypatch.setattr(ceiling, "datasheet_peak", lambda *a: (1e-6, "too low"))
    c = ceiling.measure_ceiling("cpu", "fp32", sizes=(256,), budget_s=1.0)
    assert c.datasheet_tflops is None and c.datasheet_source.startswith("withdrawn: the measured ceiling")


# --------------------------------------------------------------------------- the case-shape passes


def _start(tflops: dict[str, float], best: str, spread: float = 0.5) -> Ceiling:
    return Ceiling("cpu", "fp32", "x", tflops[best] if tflops else 0.0, 256, None, None, threads=1,
                   best_product=best, spread_rel=spread, product_tflops=dict(tflops), pass_tflops={"squares": 1.0},
                   shapes_budget_s=1.5, shapes_spent_s=0.25)


def test_case_shapes_are_measured_largest_first_and_the_small_ones_skipped(monkeypatch, wall):
    """Three distinct shapes (one given twice) at or above MIN_SHAPE_FLOPS (2 x 128^3), one below: measured from the
    most FLOPs down; the start pass records 4 distinct shapes, 3 measured."""
    wall.step = 0.125
    big, mid, edge, small = Gemm(256, 512, 256, True), Gemm(256, 256, 256), Gemm(128, 128, 128), Gemm(128, 128, 127)
    assert edge.flops == ceiling.MIN_SHAPE_FLOPS > small.flops
    times = {big: 2**-8, mid: 2**-10, edge: 2**-15}  # 2^-8: 2 x 2^25 FLOPs at 2^34 FLOP/s = 0.017 TFLOP/s
    calls = _products(monkeypatch, wall, lambda g: [times[g]] * 7)
    start = _start({"256x256x256 nn": 1e-3}, "256x256x256 nn")
    c = ceiling.measure_case_shapes(start, [mid, small, big, edge, mid], budget_s=100.0, pass_name="start")
    assert [call.gemm for call in calls] == [big, mid, edge]
    assert (c.case_shapes, c.case_shapes_measured) == (4, 3)
    rates = {g.label: g.flops / t / 1e12 for g, t in times.items()}
    assert c.product_tflops == pytest.approx(rates)
    assert c.best_product == max(rates, key=rates.get) == edge.label
    assert c.measured_tflops == pytest.approx(rates[edge.label]) and c.spread_rel == 0.0
    assert c.pass_tflops == pytest.approx({"squares": 1.0, "start": rates[edge.label]})
    assert (c.shapes_budget_s, c.shapes_spent_s) == (101.5, 0.25 + 3 * 0.125)
    assert all(call.deadline == 1000.0 + 100.0 for call in calls)
    assert all(call.config.min_block_s == ceiling.CEILING_MIN_BLOCK_S for call in calls)


def test_equal_flops_are_taken_in_the_gemms_own_order(monkeypatch, wall):
    a, b = Gemm(256, 256, 128), Gemm(128, 256, 256, True)  # same FLOPs
    calls = _products(monkeypatch, wall, lambda g: [2**-10] * 7)
    ceiling.measure_case_shapes(_start({}, ""), [a, b], 100.0, "start")
    assert [call.gemm for call in calls] == sorted([a, b])


def test_an_end_pass_keeps_each_products_best_rate_and_its_spread_and_leaves_the_start_counts(monkeypatch, wall):
    """The start measured A at 2 and B at 1 TFLOP/s (A's spread 0.5). The end pass re-measures both: A slower (its
    start rate and spread stay), B faster with spread IQR/median of its new blocks: B is now the best."""
    a, b = Gemm(1024, 1024, 1024), Gemm(512, 1024, 1024, False, True)
    start = replace(_start({a.label: 2.0, b.label: 1.0}, a.label), case_shapes=5, case_shapes_measured=2)
    blocks_b = [b.flops / 4e12 * f for f in (1.0, 1.25, 1.5, 2.0, 1.25, 1.0, 3.0)]  # best: 4 TFLOP/s
    _products(monkeypatch, wall, lambda g: [g.flops / 1.5e12] * 7 if g == a else blocks_b)
    end = ceiling.measure_case_shapes(start, [a, b], 100.0, "end")
    assert end.product_tflops == pytest.approx({a.label: 2.0, b.label: 4.0})
    assert end.best_product == b.label and end.measured_tflops == pytest.approx(4.0)
    assert end.spread_rel == pytest.approx(_iqr_rel(blocks_b))
    assert end.pass_tflops == pytest.approx({"squares": 1.0, "end": 4.0})
    assert (end.case_shapes, end.case_shapes_measured) == (5, 2)
    # the slower product stays best when the faster one was only measured slower: its old spread is kept
    slow = ceiling.measure_case_shapes(start, [a], 100.0, "end")
    assert slow.best_product == a.label and slow.spread_rel == 0.5 and slow.measured_tflops == 2.0
    assert slow.pass_tflops["end"] == pytest.approx(1.5)
    # a best product with no spread on record (measured in a pass whose blocks are not known): nan, not a guess
    assert math.isnan(ceiling.measure_case_shapes(replace(start, best_product=""), [], 1.0, "end").spread_rel)


def test_a_pass_that_measures_nothing_records_nan_and_keeps_the_ceiling(monkeypatch, wall):
    _products(monkeypatch, wall, lambda g: [1.0] * 7)
    start = _start({"256x256x256 nn": 1e-3}, "256x256x256 nn")
    c = ceiling.measure_case_shapes(start, [Gemm(1024, 1024, 1024)], 0.0, "start")
    assert math.isnan(c.pass_tflops["start"]) and c.product_tflops == start.product_tflops
    assert (c.case_shapes, c.case_shapes_measured, c.measured_tflops) == (1, 0, 1e-3)


def test_a_shape_priced_out_at_first_is_retried_once_the_rate_estimate_rises(monkeypatch, wall):
    """No rate yet: costs are priced at 1 GFLOP/s. The big shape (2 x 512^3 FLOPs: 0.27 s a product, cost 3 s) does not
    fit a 1 s budget; the small one (2 x 128^3: 4.2 ms, cost 0.27 s) does, and runs at 1 TFLOP/s; priced at that, the
    big one now fits (0.27 ms a product) and is measured in the second sweep."""
    big, small = Gemm(512, 512, 512), Gemm(128, 128, 128)
    calls = _products(monkeypatch, wall, lambda g: [g.flops / 1e12] * 7)
    c = ceiling.measure_case_shapes(_start({}, ""), [big, small], 1.0, "start")
    assert [call.gemm for call in calls] == [small, big]
    assert c.case_shapes_measured == 2 and c.product_tflops == pytest.approx({small.label: 1.0, big.label: 1.0})
    # the small one measured at 1 GFLOP/s: priced at that, the big one never fits
    calls = _products(monkeypatch, wall, lambda g: [g.flops / 1e9] * 7)
    slow = ceiling.measure_case_shapes(_start({}, ""), [big, small], 1.0, "start")
    assert [call.gemm for call in calls] == [small] and slow.case_shapes_measured == 1
    # the cost of a shape is priced at the best rate so far (1 GFLOP/s here: 1e-3 TFLOP/s), not a default
    calls.clear()
    ceiling.measure_case_shapes(_start({"64x64x64 nn": 1e-3}, "64x64x64 nn"), [big], 3.0, "start")
    assert calls == []  # 2 x 512^3 / 1e9 = 0.27 s a product: 1.25 x 9 x 0.27 = 3.02 s > 3
    ceiling.measure_case_shapes(_start({"64x64x64 nn": 1e-3}, "64x64x64 nn"), [big], 3.1, "start")
    assert [call.gemm for call in calls] == [big]


def test_a_tiny_product_is_priced_at_least_min_product_s(monkeypatch, wall):
    """A shape at MIN_SHAPE_FLOPS against a 1000 TFLOP/s estimate would cost microseconds; priced at MIN_PRODUCT_S
    (20 us) it costs 1.25 x (2 + 7 x 1500) x 20 us = 0.26255 s."""
    edge = Gemm(128, 128, 128)
    calls = _products(monkeypatch, wall, lambda g: [1.0] * 7)
    start = _start({"8192x8192x8192 nn": 1000.0}, "8192x8192x8192 nn")
    assert _cost(ceiling.MIN_PRODUCT_S) == pytest.approx(0.26255)
    ceiling.measure_case_shapes(start, [edge], 0.26, "start")
    assert calls == []
    ceiling.measure_case_shapes(start, [edge], 0.27, "start")
    assert [call.gemm for call in calls] == [edge]


def test_the_budget_left_shrinks_as_the_pass_spends_it(monkeypatch, wall):
    """Three equal shapes, each 0.5 s of wall, each predicted 0.26255 s (20 us products): with 1.2 s, the third no
    longer fits (0.2 s left); with the time spent added instead of subtracted, all three would."""
    wall.step = 0.5
    shapes = [Gemm(128, 128, 128), Gemm(128, 128, 128, True), Gemm(128, 128, 128, False, True)]
    calls = _products(monkeypatch, wall, lambda g: [1.0] * 7)
    c = ceiling.measure_case_shapes(_start({"8192x8192x8192 nn": 1000.0}, "8192x8192x8192 nn"), shapes, 1.2, "start")
    assert len(calls) == 2 and c.case_shapes_measured == 2 and c.shapes_spent_s == 0.25 + 1.0


def test_a_gpus_default_sizes_are_the_cuda_ones(monkeypatch, wall):
    """No CUDA needed: the products are stood in for, and the ceiling is filed under the device type."""
    peaks = []
    calls = _products(monkeypatch, wall, lambda g: [1e-9] * 7)
    monkeypatch.setattr(ceiling, "datasheet_peak", lambda name, dtype, device="cuda": peaks.append(device) or
                        (None, None))
    c = ceiling.measure_ceiling("cuda", "bf16")
    assert c.sizes_tried == ceiling.CUDA_SIZES == (1024, 2048, 4096, 8192, 16384) and c.device == "cuda"
    assert peaks == ["cuda"] and all(call.dev == torch.device("cuda") for call in calls)
    assert c.device_name == "test GPU" and all(type(call.clock) is CudaClock for call in calls)


def test_the_case_shapes_run_in_the_ceilings_precision_on_its_device(monkeypatch, wall):
    calls = _products(monkeypatch, wall, lambda g: [1e-6] * 7)
    start = replace(_start({"256x256x256 nn": 1e-3}, "256x256x256 nn"), dtype="tf32", device="cuda")
    c = ceiling.measure_case_shapes(start, [Gemm(256, 256, 256, True)], 100.0, "start")
    assert [(call.precision, call.matmul, call.dev) for call in calls] == [(Precision.TF32, "high",
                                                                            torch.device("cuda"))]
    assert type(calls[0].clock) is CudaClock and calls[0].clock.device == torch.device("cuda")
    assert c.dtype == "tf32" and torch.get_float32_matmul_precision() == "highest"


def test_an_unknown_dtype_is_named_in_the_error(monkeypatch, wall):
    _products(monkeypatch, wall, lambda g: [1e-6] * 7)
    with pytest.raises(ValueError, match=r"^unknown dtype 'fp13'; valid: "):
        ceiling.measure_ceiling("cpu", "fp13")
    with pytest.raises(ValueError, match=r"^unknown dtype 'fp13'; valid: "):
        ceiling.measure_case_shapes(replace(_start({}, ""), dtype="fp13"), [], 1.0, "start")


def test_there_are_two_sweeps_and_no_third(monkeypatch, wall):
    """Priced at 1 GFLOP/s, only C (2 x 128^3) fits a 1 s budget: it runs at 10 GFLOP/s. The second sweep, largest
    first: A (2 x 1024^3: 0.21 s a product at 10 GFLOP/s, cost 2.4 s) is still out, B (2 x 512^2 x 256: cost 0.39 s)
    fits and runs at 1 TFLOP/s, at which A would now fit (0.27 s); but the retry is one sweep, not until nothing
    changes: A stays unmeasured."""
    a, b, c = Gemm(1024, 1024, 1024), Gemm(512, 512, 256), Gemm(128, 128, 128)
    rate = {c: 1e10, b: 1e12, a: 1e12}
    assert _cost(a.flops / 1e10) > 1.0 > _cost(b.flops / 1e10) and _cost(a.flops / 1e12) < 1.0 < _cost(b.flops / 1e9)
    calls = _products(monkeypatch, wall, lambda g: [g.flops / rate[g]] * 7)
    out = ceiling.measure_case_shapes(_start({}, ""), [a, b, c], 1.0, "start")
    assert [call.gemm for call in calls] == [c, b] and out.case_shapes_measured == 2 and a.label not in out.product_tflops


@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, True)])
def test_the_operands_are_drawn_on_the_ceilings_device(trans_a, trans_b):
    dev = torch.device("cpu")
    with TorchCalls() as seen:
        ceiling._operands(Gemm(3, 5, 7, trans_a, trans_b, True), dev, torch.float64)
    assert [kwargs for _, _, kwargs in seen.named("randn")] == [{"device": dev, "dtype": torch.float64}] * 3
    assert [args for _, args, _ in seen.named("randn")] == [(5, 3) if trans_a else (3, 5),
                                                            (7, 5) if trans_b else (5, 7), (7,)]


def test_block_samples_stop_when_the_deadline_is_reached_not_after(monkeypatch):
    monkeypatch.setattr(ceiling, "time", SimpleNamespace(perf_counter=lambda: 5.0))
    clock = VirtualClock()

    def fn(i):
        clock.now += 1e-3

    assert len(ceiling.block_samples(fn, clock, BLOCK, deadline=5.0, repeats=7)) == ceiling.MIN_BLOCKS == 3
    assert len(ceiling.block_samples(fn, clock, BLOCK, deadline=5.5, repeats=7)) == 7


def test_a_shape_whose_cost_is_exactly_the_budget_left_is_measured(monkeypatch, wall):
    """Each cost as the code's rule computes it, in the same order of float operations: a budget of exactly that is
    enough, the next double below it is not. At the default 1 GFLOP/s (no rate above 0 yet), at a 1 TFLOP/s rate so far,
    and at the MIN_PRODUCT_S floor."""
    g = Gemm(256, 256, 256)
    cases = [({"8x8x8 nn": 0.0}, _cost(g.flops / 1e9)), ({"8x8x8 nn": 1.0}, _cost(g.flops / (1.0 * 1e12))),
             ({"8x8x8 nn": 1000.0}, _cost(ceiling.MIN_PRODUCT_S))]
    for rates, cost in cases:
        calls = _products(monkeypatch, wall, lambda gemm: [1.0] * 7)
        start = _start(rates, next(iter(rates), ""))
        ceiling.measure_case_shapes(start, [g], math.nextafter(cost, 0.0), "start")
        assert calls == [], rates
        ceiling.measure_case_shapes(start, [g], cost, "start")
        assert [call.gemm for call in calls] == [g], rates


def test_a_pass_that_only_equals_a_products_best_keeps_that_bests_spread(monkeypatch, wall):
    """The end pass reads A at exactly its start rate (the same fastest block) with another spread: the start's
    spread stays, as it belongs to the pass that set the rate."""
    a = Gemm(1024, 1024, 1024)
    fastest = a.flops / 2e12
    start = _start({a.label: a.flops / fastest / 1e12}, a.label, spread=0.5)
    _products(monkeypatch, wall, lambda g: [fastest, 2 * fastest, 3 * fastest, 4 * fastest, fastest, fastest,
                                            fastest])
    end = ceiling.measure_case_shapes(start, [a], 100.0, "end")
    assert end.measured_tflops == start.measured_tflops and end.spread_rel == 0.5
