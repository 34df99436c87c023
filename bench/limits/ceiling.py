"""The matmul ceiling MFU is measured against: the device's own matmul rate, measured in the same run.

A ceiling that a case beats is not a ceiling. So per device x dtype x threads we time
(the same timing blocks as the cases, CEILING_REPEATS blocks per product):

1. square products, growing from the smallest while the next size fits a time budget;
2. the GEMMs the run's cases really execute (``mlp.gemms``: each layer's forward product and
   both backward products, in autograd's layouts), largest first, within a second budget;
3. the fastest products again at the end of the run (the machine drifts).

Each product's rate is its best block (a block is tens of milliseconds of back-to-back
products); the ceiling is the best product, and its spread is that product's IQR / median.
A case whose achieved matmul rate still beats it is flagged (``under_measured``), never
shown silently above 100%. Where the device is known we also give the datasheet's dense peak.

The budgets bound the time on a CPU without a fast path for a dtype (bf16 on AVX2 parts:
~1 GFLOP/s against ~56 for fp32): it stops at a small size in seconds instead of spending
minutes on 2048³ products; the sizes reached are recorded.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

import mlp
from mlp import Precision
from mlp.traffic import Gemm, square

from .peak import DATASHEET_TFLOPS, CpuPeak, cpu_peak_or_reason
from ..analysis.stats import summarize
from ..instruments.clocks import clock_for, time_block
from ..instruments import telemetry
from ..instruments.timing import TimingConfig, calibrate_iters
from .registry import declare
from .speed_of_light import Bound, divided

CPU_SIZES = (256, 512, 1024, 2048)  # start small (slow dtypes); a 2-core CPU reaches its plateau by 1-2k
CUDA_SIZES = (1024, 2048, 4096, 8192, 16384)  # tensor cores need large tiles to saturate
CEILING_REPEATS = 7  # samples per product: a median and an IQR (the ceiling's own spread) from each
CEILING_BUDGET_S = 3.0  # per device x dtype x threads: seconds, not minutes, even where a dtype is slow
SHAPES_BUDGET_S = 4.0  # the cases' own GEMMs, at the start of the run (largest first; what fits)
END_BUDGET_S = 2.0  # the best products again at the end of the run: the machine drifts, keep the best
END_PRODUCTS = 4  # how many of the fastest products the end pass re-measures
CEILING_MIN_BLOCK_S = 0.03
MIN_BLOCKS = 3  # a product past its budget's deadline still gets a median and an IQR
MIN_SHAPE_FLOPS = 2 * 128**3  # smaller case GEMMs are dispatch-bound: far below the ceiling, not worth the budget
SLOW_CEILING_FRACTION = 0.25  # a dtype's fast path runs at >= fp32's rate (AMX: ~10x); emulation at ~1/50
UNTIMED_PRODUCTS = 2  # warm-up product + calibration product before the timed blocks
COST_MARGIN = 1.25  # n³ scaling from a smaller size underestimates: caches, allocation and randn of the inputs


@dataclass(frozen=True)
class Ceiling:
    device: str
    dtype: str
    device_name: str
    measured_tflops: float  # the best block's rate over every product measured, in any pass
    matmul_size: int  # the best square's n
    datasheet_tflops: float | None
    datasheet_source: str | None
    threads: int = 0  # torch threads during the measurement (a CPU ceiling is per thread count)
    sizes_tried: tuple[int, ...] = ()  # the sizes measured, smallest first (the budget stops the growth)
    budget_s: float = 0.0  # the time budget of this measurement
    spent_s: float = 0.0  # wall time it took
    best_product: str = ""  # the product measured_tflops comes from (``Gemm.label``)
    spread_rel: float = math.nan  # IQR / median of that product's block samples: the ceiling's own noise
    samples_per_product: int = 0
    product_tflops: dict[str, float] = field(default_factory=dict)  # every product -> its best block's TFLOP/s
    case_shapes: int = 0  # distinct GEMMs the run's cases execute on this device x dtype x threads
    case_shapes_measured: int = 0  # ... of which the shapes budget measured
    pass_tflops: dict[str, float] = field(default_factory=dict)  # best rate per pass: squares, start, end
    shapes_budget_s: float = 0.0  # budget of the case-shape passes (start and end together)
    shapes_spent_s: float = 0.0
    # median SM clock per pass (CUDA, NVML): under a power cap the clock, not the kernel, can set a pass's rate
    pass_clock_mhz: dict[str, float] = field(default_factory=dict)

    def with_pass_clock(self, pass_name: str, clock_mhz: float | None) -> Ceiling:
        return self if clock_mhz is None else replace(self, pass_clock_mhz={**self.pass_clock_mhz,
                                                                            pass_name: clock_mhz})

    def as_dict(self) -> dict:
        return asdict(self)


def slower_than_fp32(ceiling: dict, fp32: dict) -> str | None:
    """A reason when a reduced-precision ceiling is far below fp32's on the same device (no fast path)."""
    if ceiling["measured_tflops"] >= SLOW_CEILING_FRACTION * fp32["measured_tflops"]:
        return None
    return (f"its measured matmul rate, {ceiling['measured_tflops'] * 1e3:.3g} GFLOP/s (n={ceiling['matmul_size']}), "
            f"is below {SLOW_CEILING_FRACTION:.0%} of fp32's {fp32['measured_tflops'] * 1e3:.3g} GFLOP/s")


def device_name(device: str) -> str:
    if device == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    from ..instruments.env import cpu_model

    return cpu_model()


def datasheet_peak(name: str, dtype: str, device: str = "cuda") -> tuple[float | None, str | None]:
    """The GPU's datasheet line, or on a CPU the theoretical peak (``bench.limits.peak``, an estimate with its inputs)."""
    if device == "cpu":
        peak = cpu_peak_or_reason(dtype)
        return (peak.tflops, f"estimate: {peak.formula}") if isinstance(peak, CpuPeak) else (None, peak)
    for key, peaks in DATASHEET_TFLOPS.items():  # ordered: the more specific keys first
        if key in name:
            return peaks.get(dtype), f"NVIDIA {key} datasheet, dense"
    return None, None


def peak_checked(ceiling: Ceiling) -> Ceiling:
    """``ceiling`` with its peak withdrawn (empty, and a one-line reason) where the measured ceiling beats it: a peak
    below what the device did is no peak (an estimate's clock or lane model wrong for this CPU, a datasheet line of
    another variant), and MFU against it would read high."""
    peak = ceiling.datasheet_tflops
    if not peak or ceiling.measured_tflops <= peak:
        return ceiling
    return replace(ceiling, datasheet_tflops=None,
                   datasheet_source=f"withdrawn: the measured ceiling {ceiling.measured_tflops:.4g} TFLOP/s beat "
                                    f"{peak:.4g} ({ceiling.datasheet_source})")


def measure_ceiling(device: str, dtype: str, sizes: tuple[int, ...] | None = None,
                    budget_s: float = CEILING_BUDGET_S) -> Ceiling:
    """Best matmul TFLOP/s of square products for ``dtype`` on ``device``, within a budget.

    Sizes are tried in increasing order; the next one is measured only while its predicted cost
    (the last size's time per product scaled by n³) fits in the budget left, so the budget holds
    on a CPU where the dtype is 50x slower than fp32. The first size is always measured.
    ``measure_case_shapes`` then adds the products the cases really run.

    Runs with the current ``torch.get_num_threads()``: callers set the thread count of the cases
    it will be compared with, so a 1-thread case is not measured against a 2-thread ceiling.
    """
    precision = mlp.parse_enum(Precision, dtype, "dtype")
    dev = torch.device(device)
    sizes = tuple(sorted(sizes or (CUDA_SIZES if dev.type == "cuda" else CPU_SIZES)))
    config = TimingConfig(min_block_s=CEILING_MIN_BLOCK_S)
    start = time.perf_counter()
    tried, per_product_s, results = [], math.nan, {}
    with mlp.matmul_precision(precision):
        for n in sizes:
            if tried and _predicted_cost_s(per_product_s * (n / tried[-1]) ** 3, config) > \
                    budget_s - (time.perf_counter() - start):
                break
            samples = _product_samples(square(n), dev, precision, clock_for(dev), config, start + budget_s)
            per_product_s = summarize(samples).median
            tried.append(n)
            results[square(n).label] = samples
    name = device_name(device)
    peak, source = datasheet_peak(name, precision.value, dev.type)
    rates = {label: _tflops(_gemm_of(label), samples) for label, samples in results.items()}
    best = max(rates, key=rates.get)
    return peak_checked(Ceiling(dev.type, precision.value, name, rates[best], _gemm_of(best).m, peak, source,
                                torch.get_num_threads(), tuple(tried), budget_s, time.perf_counter() - start,
                                best_product=best, spread_rel=_spread(results[best]),
                                samples_per_product=CEILING_REPEATS, product_tflops=rates,
                                pass_tflops={"squares": rates[best]}))


def measure_case_shapes(ceiling: Ceiling, shapes: Sequence[Gemm], budget_s: float, pass_name: str) -> Ceiling:
    """``ceiling`` with ``shapes`` measured too (largest first, each while its predicted cost fits the budget).

    Every product keeps its best rate over the passes, and the ceiling is the best of them, so a
    case whose own GEMMs run faster than the squares is bounded by its own shapes. ``pass_name``
    (``start``, ``end``) records the best rate this pass saw: the drift between the two.
    """
    precision = mlp.parse_enum(Precision, ceiling.dtype, "dtype")
    dev = torch.device(ceiling.device)
    config = TimingConfig(min_block_s=CEILING_MIN_BLOCK_S)
    start = time.perf_counter()
    rates, spreads, measured = dict(ceiling.product_tflops), {ceiling.best_product: ceiling.spread_rel}, {}
    todo = [g for g in sorted(set(shapes), key=lambda g: (-g.flops, g)) if g.flops >= MIN_SHAPE_FLOPS]
    with mlp.matmul_precision(precision):
        for _ in range(2):  # a second sweep retries, largest first, what the first rate estimate priced out
            skipped = []
            for gemm in todo:
                rate_s = max(rates.values(), default=0.0) * 1e12 or 1e9  # the best so far: costs shrink as it rises
                cost = _predicted_cost_s(max(gemm.flops / rate_s, MIN_PRODUCT_S), config)
                if cost > budget_s - (time.perf_counter() - start):
                    skipped.append(gemm)
                    continue
                samples = _product_samples(gemm, dev, precision, clock_for(dev), config, start + budget_s)
                measured[gemm.label] = _tflops(gemm, samples)
                if measured[gemm.label] > rates.get(gemm.label, 0.0):  # a product's spread: that of its best pass
                    rates[gemm.label], spreads[gemm.label] = measured[gemm.label], _spread(samples)
            todo = skipped
    best = max(rates, key=rates.get)
    spread = spreads.get(best, math.nan)
    this_pass = max(measured.values(), default=math.nan)
    return peak_checked(replace(
        ceiling, measured_tflops=rates[best], best_product=best, spread_rel=spread, product_tflops=rates,
        pass_tflops={**ceiling.pass_tflops, pass_name: this_pass}, shapes_budget_s=ceiling.shapes_budget_s + budget_s,
        shapes_spent_s=ceiling.shapes_spent_s + time.perf_counter() - start,
        **({"case_shapes": len(set(shapes)), "case_shapes_measured": len(measured)} if pass_name == "start" else {})))


def fastest_products(ceiling: Ceiling, n: int = END_PRODUCTS) -> list[Gemm]:
    """The ``n`` products with the best rates so far: what the end-of-run pass re-measures."""
    ranked = sorted(ceiling.product_tflops, key=ceiling.product_tflops.get, reverse=True)
    return [_gemm_of(label) for label in ranked[:n]]


def under_measured(achieved_tflops: float, ceiling_tflops: float) -> str | None:
    """The flag for a case or phase whose achieved matmul rate beats its ceiling; None when it does not."""
    if not (ceiling_tflops > 0) or not (achieved_tflops > ceiling_tflops):
        return None
    return f"ceiling under-measured: this case ran at {achieved_tflops / ceiling_tflops:.0%} of it"


MIN_PRODUCT_S = 20e-6  # a tiny product still pays dispatch: do not predict it as free


def _predicted_cost_s(per_product_s: float, config: TimingConfig) -> float:
    """Wall time of one product's measurement: the untimed products plus CEILING_REPEATS calibrated blocks."""
    iters = calibrate_iters(per_product_s, config)
    return COST_MARGIN * (UNTIMED_PRODUCTS + CEILING_REPEATS * iters) * per_product_s


def _tflops(gemm: Gemm, samples: list[float]) -> float:
    """The best block's rate: a block is >= CEILING_MIN_BLOCK_S of back-to-back products, so its minimum is
    what the hardware reached, not timer noise; on a shared machine the median reads the neighbours' load."""
    return gemm.flops / summarize(samples).min / 1e12


def _spread(samples: list[float]) -> float:
    return summarize(samples).iqr_rel


def _gemm_of(label: str) -> Gemm:
    """The inverse of ``Gemm.label``."""
    dims, layout, *bias = label.split()
    m, k, n = (int(v) for v in dims.split("x"))
    return Gemm(m, k, n, layout[0] == "t", layout[1] == "t", bool(bias))


def _operands(gemm: Gemm, dev: torch.device, dtype: torch.dtype):
    """Operands in the layout autograd passes them (a transposed view where ``trans_*``)."""
    a = torch.randn(gemm.k, gemm.m, device=dev, dtype=dtype).t() if gemm.trans_a else \
        torch.randn(gemm.m, gemm.k, device=dev, dtype=dtype)
    b = torch.randn(gemm.n, gemm.k, device=dev, dtype=dtype).t() if gemm.trans_b else \
        torch.randn(gemm.k, gemm.n, device=dev, dtype=dtype)
    bias = torch.randn(gemm.n, device=dev, dtype=dtype) if gemm.bias else None
    return a, b, bias


def _product_samples(gemm: Gemm, dev: torch.device, precision: Precision, clock, config: TimingConfig,
                     deadline: float = math.inf) -> list[float]:
    """Seconds per product, CEILING_REPEATS blocks (fewer, but MIN_BLOCKS, past ``deadline``: a contended
    machine runs slower than predicted), after a warm-up and a calibration product."""
    a, b, bias = _operands(gemm, dev, precision.compute_dtype)
    matmul = (lambda i: torch.addmm(bias, a, b)) if bias is not None else (lambda i: torch.mm(a, b))  # noqa: E731
    return block_samples(matmul, clock, config, deadline)


def block_samples(fn, clock, config: TimingConfig, deadline: float = math.inf,
                  repeats: int = CEILING_REPEATS) -> list[float]:
    """Seconds per call of ``fn`` in ``repeats`` calibrated blocks (fewer, but MIN_BLOCKS, past ``deadline``),
    after a warm-up call (heuristics, allocation, first touch of the pages) and a calibration call.

    The one block loop of every limit: the matmul products here, the bandwidth kernels, and the dispatch
    floor's tiny calls (which ask for many blocks and stop at the deadline)."""
    time_block(fn, 1, clock)
    iters = calibrate_iters(time_block(fn, 1, clock), config)
    samples = []
    while len(samples) < repeats and (len(samples) < MIN_BLOCKS or time.perf_counter() < deadline):
        samples.append(time_block(fn, iters, clock))
    return samples


def ceiling_columns(tflops: float, ceiling: Ceiling | None) -> dict:
    """MFU against the same-run ceiling, and the flag when the case beats it (never silently above 100%)."""
    rate = ceiling.measured_tflops if ceiling else math.nan
    return {"ceiling_tflops": rate, "mfu": tflops / rate if rate else math.nan,
            "ceiling_flag": under_measured(tflops, rate) or ""}


def clocked(device: str, pass_name: str, measure: Callable[[], Ceiling]) -> Ceiling:
    """``measure()`` with the GPU's SM clock sampled while it runs, recorded as the pass's clock (CUDA)."""
    with telemetry.CaseWatch(device) as watch:
        ceiling = measure()
    return ceiling.with_pass_clock(pass_name, watch.median_sm_clock_mhz())


def _row_columns(record: dict | None, row: dict) -> dict:
    return ceiling_columns(row["tflops"], Ceiling(**record) if record else None)


def _compute_s(record: dict | None, row: dict) -> float:
    return divided(row.get("matmul_flops", math.nan), Ceiling(**record).measured_tflops * 1e12 if record else math.nan)


# The squares' pass, before the dtypes a preset skips are chosen (``slow_dtypes`` reads it); the case-shape
# passes that raise it are the engine's (``measure_case_shapes``, ``fastest_products``).
LIMIT = declare("ceilings", lambda device, dtype: clocked(device, "squares", lambda: measure_ceiling(device, dtype)),
                first=True, derived=_row_columns, sol_term=Bound.COMPUTE, sol_seconds=_compute_s)
