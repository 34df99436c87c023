"""The hardware ceiling MFU is measured against: the device's own matmul rate, measured in the same run.

We time large square matmuls in the case's dtype (the same timing blocks as the
cases) and keep the best size's median. Where the device is known we also give
the datasheet's dense peak, and say which one a number is relative to.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

import mlp
from mlp import Precision

from .stats import summarize
from .clocks import clock_for, time_block
from .timing import TimingConfig, calibrate_iters

CPU_SIZES = (512, 1024, 2048)  # a 2-core CPU reaches its plateau by 1-2k
CUDA_SIZES = (4096, 8192, 16384)  # tensor cores need large tiles to saturate
CEILING_REPEATS = 5

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

    def as_dict(self) -> dict:
        return asdict(self)


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


def measure_ceiling(device: str, dtype: str, sizes: tuple[int, ...] | None = None) -> Ceiling:
    """Best median matmul TFLOP/s over ``sizes`` for ``dtype`` on ``device`` (autocast dtypes run natively).

    Runs with the current ``torch.get_num_threads()``: callers set the thread count of the cases
    it will be compared with, so a 1-thread case is not measured against a 2-thread ceiling.
    """
    precision = mlp.parse_enum(Precision, dtype, "dtype")
    dev = torch.device(device)
    sizes = sizes or (CUDA_SIZES if dev.type == "cuda" else CPU_SIZES)
    clock = clock_for(dev)
    config = TimingConfig(min_block_s=0.05)
    best_tflops, best_size = 0.0, sizes[0]
    with mlp.matmul_precision(precision):
        for n in sizes:
            a = torch.randn(n, n, device=dev, dtype=precision.compute_dtype)
            b = torch.randn(n, n, device=dev, dtype=precision.compute_dtype)
            matmul = lambda i: torch.mm(a, b)  # noqa: E731
            time_block(matmul, 1, clock)  # warm-up: heuristics, allocation
            iters = calibrate_iters(time_block(matmul, 1, clock), config)
            median = summarize([time_block(matmul, iters, clock) for _ in range(CEILING_REPEATS)]).median
            tflops = 2 * n**3 / median / 1e12
            if tflops > best_tflops:
                best_tflops, best_size = tflops, n
            del a, b
    name = device_name(device)
    peak, source = datasheet_peak(name, precision.value)
    return Ceiling(dev.type, precision.value, name, best_tflops, best_size, peak, source, torch.get_num_threads())
