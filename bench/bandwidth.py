"""The memory-bandwidth ceiling per device x dtype: a large copy and a triad, bytes read plus written.

* copy: ``b.copy_(a)`` moves 2 x n elements (read a, write b);
* triad: ``torch.add(a, b, alpha=s, out=c)``, i.e. c = a + s*b, moves 3 x n (read a and b, write c).

The arrays are ``CACHE_MULTIPLE`` times the last-level cache (CPU: the highest cache level in
sysfs; CUDA: the L2 size the device reports), so they stream from DRAM, not from a cache. Each
kernel is timed in CEILING_REPEATS blocks like the matmul ceiling; its rate is its best block,
the ceiling the faster of the two kernels, and its spread that kernel's IQR / median.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import mlp
from mlp import Precision

from .ceiling import CEILING_MIN_BLOCK_S, block_samples
from .clocks import clock_for
from .stats import summarize
from .timing import TimingConfig

CACHE_MULTIPLE = 4  # arrays this many times the last-level cache: well past it
DEFAULT_CACHE_BYTES = 32 * 2**20  # where the cache size cannot be read: a large server LLC
CPU_CACHES = Path("/sys/devices/system/cpu/cpu0/cache")
TRIAD_SCALAR = 3.0


@dataclass(frozen=True)
class Bandwidth:
    device: str
    dtype: str
    threads: int
    array_bytes: int  # one array
    cache_bytes: int  # the cache it is sized against
    cache_source: str
    copy_bytes_per_s: float
    triad_bytes_per_s: float
    bytes_per_s: float  # the ceiling: the faster kernel
    spread_rel: float
    spent_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def last_level_cache_bytes(device: str) -> tuple[int, str]:
    """(bytes, where it came from): the CPU's highest cache level (sysfs), or the GPU's L2."""
    if torch.device(device).type == "cuda":
        size = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "L2_cache_size", 0)
        return (int(size), "CUDA L2_cache_size") if size else (DEFAULT_CACHE_BYTES, "assumed (L2 size unknown)")
    best = (0, 0)
    for index in sorted(CPU_CACHES.glob("index*")):
        try:
            level = int((index / "level").read_text())
            size = _parse_size((index / "size").read_text())
        except (OSError, ValueError):
            continue
        best = max(best, (level, size))
    if best[1]:
        return best[1], f"L{best[0]} from sysfs"
    return DEFAULT_CACHE_BYTES, "assumed (no sysfs cache sizes)"


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def measure_bandwidth(device: str, dtype: str, cache_multiple: int = CACHE_MULTIPLE) -> Bandwidth:
    """Best-block bytes per second of a copy and a triad on arrays ``cache_multiple`` x the last-level cache."""
    precision = mlp.parse_enum(Precision, dtype, "dtype")
    dev = torch.device(device)
    cache_bytes, source = last_level_cache_bytes(device)
    element = torch.empty((), dtype=precision.compute_dtype).element_size()
    n = cache_multiple * cache_bytes // element
    start = time.perf_counter()
    a = torch.full((n,), 1.0, device=dev, dtype=precision.compute_dtype)
    b = torch.full((n,), 2.0, device=dev, dtype=precision.compute_dtype)
    c = torch.empty_like(a)
    clock = clock_for(dev)
    copy = _best_and_spread(lambda i: c.copy_(a), 2 * n * element, clock)
    triad = _best_and_spread(lambda i: torch.add(a, b, alpha=TRIAD_SCALAR, out=c), 3 * n * element, clock)
    best = max(copy, triad)
    del a, b, c
    return Bandwidth(dev.type, precision.value, torch.get_num_threads(), n * element, cache_bytes, source,
                     copy[0], triad[0], best[0], best[1], time.perf_counter() - start)


def _best_and_spread(fn, nbytes: int, clock) -> tuple[float, float]:
    stats = summarize(block_samples(fn, clock, TimingConfig(min_block_s=CEILING_MIN_BLOCK_S)))
    return nbytes / stats.min, stats.iqr_rel
