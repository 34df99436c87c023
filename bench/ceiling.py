"""The hardware ceiling MFU is measured against: the device's own matmul rate, measured in the same run.

We time square matmuls in the case's dtype (the same timing blocks as the
cases) and keep the best size's median. Where the device is known we also give
the datasheet's dense peak, and say which one a number is relative to.

The measurement has a time budget: it starts small and doubles the size while the
next size's measurement, predicted from the last one (cost grows as n³), fits in
what is left of the budget. A CPU without a fast path for a dtype (bf16 on AVX2
parts: ~1 GFLOP/s against ~56 for fp32) then stops at a small size in seconds
instead of spending minutes on 2048³ products; the size reached is recorded.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

import mlp
from mlp import Precision

from .stats import summarize
from .clocks import clock_for, time_block
from .timing import TimingConfig, calibrate_iters

CPU_SIZES = (256, 512, 1024, 2048)  # start small (slow dtypes); a 2-core CPU reaches its plateau by 1-2k
CUDA_SIZES = (1024, 2048, 4096, 8192, 16384)  # tensor cores need large tiles to saturate
CEILING_REPEATS = 5
CEILING_BUDGET_S = 3.0  # per device x dtype x threads: seconds, not minutes, even where a dtype is slow
CEILING_MIN_BLOCK_S = 0.05
SLOW_CEILING_FRACTION = 0.25  # a dtype's fast path runs at >= fp32's rate (AMX: ~10x); emulation at ~1/50
UNTIMED_PRODUCTS = 2  # warm-up product + calibration product before the timed blocks
COST_MARGIN = 1.25  # n³ scaling from a smaller size underestimates: caches, allocation and randn of the inputs

# Dense (no sparsity) datasheet peaks in TFLOP/s, by a substring of torch.cuda.get_device_name().
DATASHEET_TFLOPS = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},  # H200 SXM
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},  # H100 SXM
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
}


@dataclass(frozen=True)
class Ceiling:
    device: str
    dtype: str
    device_name: str
    measured_tflops: float
    matmul_size: int
    datasheet_tflops: float | None
    datasheet_source: str | None
    threads: int = 0  # torch threads during the measurement (a CPU ceiling is per thread count)
    sizes_tried: tuple[int, ...] = ()  # the sizes measured, smallest first (the budget stops the growth)
    budget_s: float = 0.0  # the time budget of this measurement
    spent_s: float = 0.0  # wall time it took

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
    from .env import cpu_model

    return cpu_model()


def datasheet_peak(name: str, dtype: str) -> tuple[float | None, str | None]:
    for key, peaks in DATASHEET_TFLOPS.items():  # ordered: the more specific keys first
        if key in name:
            return peaks.get(dtype), f"NVIDIA {key} datasheet, dense"
    return None, None


def measure_ceiling(device: str, dtype: str, sizes: tuple[int, ...] | None = None,
                    budget_s: float = CEILING_BUDGET_S) -> Ceiling:
    """Best median matmul TFLOP/s for ``dtype`` on ``device`` (autocast dtypes run natively), within a budget.

    Sizes are tried in increasing order; the next one is measured only while its predicted cost
    (the last size's time per product scaled by n³) fits in the budget left, so the budget holds
    on a CPU where the dtype is 50x slower than fp32. The first size is always measured.

    Runs with the current ``torch.get_num_threads()``: callers set the thread count of the cases
    it will be compared with, so a 1-thread case is not measured against a 2-thread ceiling.
    """
    precision = mlp.parse_enum(Precision, dtype, "dtype")
    dev = torch.device(device)
    sizes = tuple(sorted(sizes or (CUDA_SIZES if dev.type == "cuda" else CPU_SIZES)))
    clock = clock_for(dev)
    config = TimingConfig(min_block_s=CEILING_MIN_BLOCK_S)
    start = time.perf_counter()
    best_tflops, best_size, tried, per_product_s = 0.0, sizes[0], [], math.nan
    with mlp.matmul_precision(precision):
        for n in sizes:
            if tried and _predicted_cost_s(per_product_s * (n / tried[-1]) ** 3, config) > \
                    budget_s - (time.perf_counter() - start):
                break
            per_product_s = _median_product_s(n, dev, precision, clock, config)
            tried.append(n)
            tflops = 2 * n**3 / per_product_s / 1e12
            if tflops > best_tflops:
                best_tflops, best_size = tflops, n
    name = device_name(device)
    peak, source = datasheet_peak(name, precision.value)
    return Ceiling(dev.type, precision.value, name, best_tflops, best_size, peak, source, torch.get_num_threads(),
                   tuple(tried), budget_s, time.perf_counter() - start)


def _predicted_cost_s(per_product_s: float, config: TimingConfig) -> float:
    """Wall time of one size's measurement: the untimed products plus CEILING_REPEATS calibrated blocks."""
    iters = calibrate_iters(per_product_s, config)
    return COST_MARGIN * (UNTIMED_PRODUCTS + CEILING_REPEATS * iters) * per_product_s


def _median_product_s(n: int, dev: torch.device, precision: Precision, clock, config: TimingConfig) -> float:
    a = torch.randn(n, n, device=dev, dtype=precision.compute_dtype)
    b = torch.randn(n, n, device=dev, dtype=precision.compute_dtype)
    matmul = lambda i: torch.mm(a, b)  # noqa: E731
    time_block(matmul, 1, clock)  # warm-up: heuristics, allocation
    iters = calibrate_iters(time_block(matmul, 1, clock), config)
    return summarize([time_block(matmul, iters, clock) for _ in range(CEILING_REPEATS)]).median
