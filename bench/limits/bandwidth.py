"""The memory-bandwidth ceiling per device x dtype: a large copy and a triad, bytes read plus written, by STREAM's rules.

* copy: ``b.copy_(a)`` moves 2 x n elements (read a, write b);
* triad: ``torch.add(a, b, alpha=s, out=c)``, i.e. c = a + s*b, moves 3 x n (read a and b, write c);
* memmove (CPU): libc's ``memmove`` of a into b (``ctypes``), 2 x n: one thread, but with the
  non-temporal stores glibc uses past a size, which skip the read-for-ownership of b's lines that
  a vectorised ``copy_`` pays; a numpy copy is the same libc call, so the limit is not beaten by one.

STREAM's rules (McCalpin, stream.c) are the reference:

* **Arrays past every cache.** Each array is ``CACHE_MULTIPLE`` times the last-level caches the process
  can reach, summed over their instances (CPU: the highest level in sysfs, one per distinct
  ``shared_cpu_list`` among the CPUs we may run on; CUDA: the L2 size the device reports).
* **Best of N single calls.** A kernel call on such arrays takes milliseconds, far above the clock's
  resolution, so each sample is one call, and the rate is the best sample. (Until issue 37 a sample
  was the mean of a 30 ms block: on a shared 2-core machine every block caught a neighbour's burst,
  and a 2-thread copy waits for its slower thread, so the limit under-read by up to 2.8x.)
* **No page faults timed.** Every array is written once before the first timed call.
* **Kernels and thread counts interleaved.** Each round times one call of every kernel at every thread
  count (1 and the caller's count: on a loaded machine one thread can stream faster than two that wait
  for each other, and a case with two threads may reach what one thread reaches). ``interleave`` is
  called once per round (untimed): a test times its independent reference there, under the same load.

The ceiling is the best (kernel, threads) pair; its spread is that pair's IQR / median. A second
level, ``cache_bytes_per_s``, is the same copy on arrays that fit in the last-level cache: the speed of
light charges it to a phase whose bytes may all stay in that cache (``bench.limits.speed_of_light``).
"""

from __future__ import annotations

import ctypes
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import mlp
from mlp import Precision

from ..instruments.clocks import clock_for, time_block, torch_threads
from ..analysis.stats import summarize
from .registry import declare
from .speed_of_light import Bound, divided, memory_bytes_per_s

CACHE_MULTIPLE = 4  # arrays this many times the last-level caches: STREAM's rule
CACHE_RESIDENT_FRACTION = 8  # the cache level's arrays: 1/8 of the LLC each, so a copy's two fit with room to spare
DEFAULT_CACHE_BYTES = 32 * 2**20  # where the cache size cannot be read: a large server LLC
CPU_ROOT = Path("/sys/devices/system/cpu")
TRIAD_SCALAR = 3.0
COPIES = ("copy", "memmove")  # the kernels copy_bytes_per_s is the best of
SINGLE_THREADED = ("memmove",)  # timed at one thread only
ROUNDS = 20  # samples per kernel x threads (STREAM's NTIMES is 10; a shared machine needs more chances)
MIN_ROUNDS = 5  # past the budget, still this many: a best of 5 and an IQR
BANDWIDTH_BUDGET_S = 3.0  # the timed rounds of one level stop here (at least MIN_ROUNDS)
MIN_SAMPLE_S = 2e-4  # a sample shorter than this (a cache-resident copy) is a block of back-to-back calls


@dataclass(frozen=True)
class Bandwidth:
    device: str
    dtype: str
    threads: int  # the caller's torch threads: the limit is filed under it
    array_bytes: int  # one array
    cache_bytes: int  # the caches it is sized against (summed over instances)
    cache_source: str
    copy_bytes_per_s: float  # best over the thread counts, of copy_ and (CPU) memmove
    triad_bytes_per_s: float
    bytes_per_s: float  # the ceiling: the faster kernel
    spread_rel: float
    spent_s: float
    best_kernel: str = ""  # copy | triad | memmove
    best_threads: int = 0  # the thread count of the best sample
    threads_tried: tuple[int, ...] = ()
    rounds: int = 0  # samples per kernel x threads
    cache_array_bytes: int = 0  # one array of the cache-resident copy
    cache_bytes_per_s: float = math.nan  # that copy's best rate: the bound for bytes that stay in the LLC

    def as_dict(self) -> dict:
        return asdict(self)


def last_level_cache_bytes(device: str, cpus: set[int] | None = None, root: Path = CPU_ROOT) -> tuple[int, str]:
    """(bytes, where it came from): the CPU's highest cache level summed over its instances among ``cpus``
    (default: the CPUs this process may run on), or the GPU's L2."""
    if torch.device(device).type == "cuda":
        size = getattr(torch.cuda.get_device_properties(torch.cuda.current_device()), "L2_cache_size", 0)
        return (int(size), "CUDA L2_cache_size") if size else (DEFAULT_CACHE_BYTES, "assumed (L2 size unknown)")
    instances: dict[tuple[int, str], int] = {}  # (level, shared_cpu_list) -> bytes
    for cpu in sorted(cpus if cpus is not None else os.sched_getaffinity(0)):
        for index in sorted((root / f"cpu{cpu}" / "cache").glob("index*")):
            try:
                if (index / "type").read_text().strip() == "Instruction":
                    continue
                level = int((index / "level").read_text())
                shared = (index / "shared_cpu_list").read_text().strip() if (index / "shared_cpu_list").is_file() \
                    else str(cpu)
                instances[(level, shared)] = _parse_size((index / "size").read_text())
            except (OSError, ValueError):
                continue
    if not instances:
        return DEFAULT_CACHE_BYTES, "assumed (no sysfs cache sizes)"
    top = max(level for level, _ in instances)
    sizes = [size for (level, _), size in instances.items() if level == top]
    return sum(sizes), f"L{top} from sysfs ({len(sizes)} x {sizes[0] // 2**10} KiB)"


def _parse_size(text: str) -> int:
    text = text.strip().upper()
    units = {"K": 2**10, "M": 2**20, "G": 2**30}
    return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)


def thread_counts(threads: int) -> tuple[int, ...]:
    """The thread counts measured for a limit filed under ``threads``: one thread, and ``threads``."""
    return tuple(sorted({1, max(threads, 1)}))


def measure_bandwidth(device: str, dtype: str, cache_multiple: int = CACHE_MULTIPLE,
                      interleave: Callable[[], object] | None = None) -> Bandwidth:
    """Best single-call bytes per second of a copy and a triad on arrays ``cache_multiple`` x the last-level caches,
    and of a copy that fits in them; ``interleave`` runs once per round of the large arrays (untimed)."""
    precision = mlp.parse_enum(Precision, dtype, "dtype")
    dev = torch.device(device)
    start = time.perf_counter()
    cache_bytes, source = last_level_cache_bytes(device)
    element = torch.empty((), dtype=precision.compute_dtype).element_size()
    threads = torch.get_num_threads()
    counts = thread_counts(threads) if dev.type == "cpu" else (threads,)
    n = cache_multiple * cache_bytes // element
    kernels = _kernels(n, dev, precision.compute_dtype)
    rates, rounds = _rounds(kernels, counts, dev, interleave)
    del kernels
    cache_n = max(cache_bytes // CACHE_RESIDENT_FRACTION // element, 1)
    cache_kernels = {k: v for k, v in _kernels(cache_n, dev, precision.compute_dtype).items() if k in COPIES}
    cache_rates, _ = _rounds(cache_kernels, counts, dev, None)
    del cache_kernels
    best = max(rates, key=lambda k: max(rates[k]))
    copy = max(max(v) for (kernel, _), v in rates.items() if kernel in COPIES)
    triad = max(max(v) for (kernel, _), v in rates.items() if kernel == "triad")
    return Bandwidth(dev.type, precision.value, threads, n * element, cache_bytes, source, copy, triad,
                     max(rates[best]), _spread(rates[best]), time.perf_counter() - start, best[0], best[1], counts,
                     rounds, cache_n * element, max(max(v) for v in cache_rates.values()))


def _kernels(n: int, dev: torch.device, dtype: torch.dtype) -> dict[str, tuple[Callable[[], object], int]]:
    """name -> (one call, bytes it moves); every array written here, before any timed call (no page faults timed)."""
    a = torch.full((n,), 1.0, device=dev, dtype=dtype)
    b = torch.full((n,), 2.0, device=dev, dtype=dtype)
    c = torch.zeros(n, device=dev, dtype=dtype)
    nbytes = n * a.element_size()
    kernels = {"copy": (lambda: c.copy_(a), 2 * nbytes),
               "triad": (lambda: torch.add(a, b, alpha=TRIAD_SCALAR, out=c), 3 * nbytes)}
    if dev.type == "cpu":
        kernels["memmove"] = (lambda: ctypes.memmove(c.data_ptr(), a.data_ptr(), nbytes), 2 * nbytes)
    return kernels


def _rounds(kernels: dict, counts: tuple[int, ...], dev: torch.device,
            interleave: Callable[[], object] | None) -> tuple[dict[tuple[str, int], list[float]], int]:
    """(kernel, threads) -> bytes/s of each sample; one sample of each per round, ROUNDS rounds within the budget."""
    clock = clock_for(dev)
    calls = {}
    for name, (fn, _) in kernels.items():
        for threads in counts[:1] if name in SINGLE_THREADED else counts:
            with torch_threads(threads):
                first = time_block(lambda i: fn(), 1, clock)  # warm-up: pools, first touch
                calls[(name, threads)] = max(1, math.ceil(MIN_SAMPLE_S / max(first, 1e-9)))
    rates: dict[tuple[str, int], list[float]] = {key: [] for key in calls}
    deadline, done = time.perf_counter() + BANDWIDTH_BUDGET_S, 0
    while done < ROUNDS and (done < MIN_ROUNDS or time.perf_counter() < deadline):
        for (name, threads), iters in calls.items():
            fn, nbytes = kernels[name]
            with torch_threads(threads):
                rates[(name, threads)].append(nbytes / time_block(lambda i: fn(), iters, clock))
        if interleave is not None:
            interleave()
        done += 1
    return rates, done


def _spread(rates: list[float]) -> float:
    return float(summarize([1 / r for r in rates]).iqr_rel)


def _memory_s(record: dict | None, row: dict) -> float:
    nbytes = row.get("traffic_bytes", math.nan)
    return divided(nbytes, memory_bytes_per_s(record or {}, nbytes))


LIMIT = declare("bandwidth", lambda device, dtype: measure_bandwidth(device, dtype),
                sol_term=Bound.MEMORY, sol_seconds=_memory_s)
