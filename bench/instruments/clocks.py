"""Timing primitives shared by the engine (``bench.instruments.timing``) and the gate's worker (``bench.gate.worker``).

A clock per device (host clock on CPU; CUDA events, read only after a synchronize,
on CUDA), a timed block with nothing else inside the loop, the pool of batches a
block cycles through, and the torch thread count for a while. Only torch is
imported: the gate worker loads this file by path from the measuring tree while
``bench`` itself may be the other tree's.
"""

from __future__ import annotations

import contextlib
import math
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


class ProcessCpuClock(Clock):
    """CPU time of the whole process, every thread summed (``time.process_time_ns``): for CPU work on several torch
    threads. OpenMP workers that spin-wait for work count as working (docs/design.md, 'Clocks')."""

    def mark(self):
        return time.process_time_ns()


CLOCKS = ("wall", "cpu")  # --clock: what a timed block's seconds are


def cpu_clock(device: torch.device) -> Clock | None:
    """The CPU-time clock for work on ``device`` at torch's current thread count: the calling thread's CPU time for
    one thread, the process's for more; None on CUDA (its work is not the host's CPU time)."""
    if device.type == "cuda":
        return None
    return ThreadCpuClock(device) if torch.get_num_threads() == 1 else ProcessCpuClock(device)


def clock_for(device: torch.device, cpu_time: bool = False) -> Clock:
    """The device's clock; ``cpu_time`` on a CPU: its CPU time (``cpu_clock``), not wall time."""
    if device.type == "cuda":
        return CudaClock(device)
    return cpu_clock(device) if cpu_time else Clock(device)


def time_block(fn: Callable[[int], object], iters: int, clock: Clock) -> float:
    """Mean seconds per call of ``fn(i)`` over ``iters`` calls, nothing else inside the loop."""
    clock.sync()
    start = clock.mark()
    for i in range(iters):
        fn(i)
    end = clock.mark()
    clock.sync()
    return clock.elapsed_s(start, end) / iters


def time_block_both(fn: Callable[[int], object], iters: int, clock: Clock, other: Clock | None) -> tuple[float, float]:
    """``time_block`` read on two clocks at once (``other`` None: its reading is NaN): the other clock's marks lie
    outside the first's, so the first reads only the loop plus one clock call."""
    if other is None:
        return time_block(fn, iters, clock), math.nan
    clock.sync()
    other_start = other.mark()
    start = clock.mark()
    for i in range(iters):
        fn(i)
    end = clock.mark()
    other_end = other.mark()
    clock.sync()
    return clock.elapsed_s(start, end) / iters, other.elapsed_s(other_start, other_end) / iters


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
