"""Timing primitives shared by the engine (``bench.instruments.timing``) and the gate's worker (``bench.gate.worker``).

A clock per device (host clock on CPU; CUDA events, read only after a synchronize,
on CUDA), a timed block with nothing else inside the loop, the pool of batches a
block cycles through, and the torch thread count for a while. Only torch is
imported: the gate worker loads this file by path from the measuring tree while
``bench`` itself may be the other tree's.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

import torch

BATCH_POOL = 4  # distinct random batches cycled through, so no step sees the same tensor twice in a row


class Clock:
    """Host clock for CPU work (synchronous)."""

    def __init__(self, device: torch.device):
        self.device = device

    def mark(self):
        return time.perf_counter_ns()

    def sync(self) -> None:
        pass

    @staticmethod
    def elapsed_s(start, end) -> float:
        return (end - start) * 1e-9


class CudaClock(Clock):
    """CUDA events recorded on the current stream; read only after a synchronize."""

    def mark(self):
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def sync(self) -> None:
        torch.cuda.synchronize(self.device)

    @staticmethod
    def elapsed_s(start, end) -> float:
        return start.elapsed_time(end) * 1e-3


class ThreadCpuClock(Clock):
    """CPU time of the calling thread (``time.thread_time_ns``): the time slices other processes take from it on a
    shared core do not enter. Only for CPU work on one torch thread, which runs in the calling thread."""

    def mark(self):
        return time.thread_time_ns()


def clock_for(device: torch.device, cpu_time: bool = False) -> Clock:
    """The device's clock; ``cpu_time`` on a CPU running one torch thread: the thread's CPU time, not wall time."""
    if device.type == "cuda":
        return CudaClock(device)
    return ThreadCpuClock(device) if cpu_time and torch.get_num_threads() == 1 else Clock(device)


def time_block(fn: Callable[[int], object], iters: int, clock: Clock) -> float:
    """Mean seconds per call of ``fn(i)`` over ``iters`` calls, nothing else inside the loop."""
    clock.sync()
    start = clock.mark()
    for i in range(iters):
        fn(i)
    end = clock.mark()
    clock.sync()
    return clock.elapsed_s(start, end) / iters


@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``threads`` for the block (0: leave torch's default)."""
    old = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)
