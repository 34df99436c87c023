"""bench.instruments.clocks against the standard library's clocks and hand counts (issue 50: mutation testing of the clocks).

No absolute time is asserted: a clock's reading is compared with time.perf_counter_ns / time.thread_time_ns taken
around it, and a sleep's lower bound (time.sleep never returns early).
"""

from __future__ import annotations

import time

import pytest
import torch

from bench.instruments import clocks


def test_the_host_clock_is_perf_counter_in_seconds():
    clock = clocks.Clock(torch.device("cpu"))
    assert clock.elapsed_s(1_000, 2_500_001_000) == pytest.approx(2.5)
    before = time.perf_counter_ns()
    start = clock.mark()
    time.sleep(0.02)
    end = clock.mark()
    after = time.perf_counter_ns()
    assert 0.02 <= clock.elapsed_s(start, end) <= (after - before) * 1e-9
    assert clock.sync() is None


def test_the_thread_cpu_clock_leaves_out_sleep_and_counts_work():
    clock = clocks.ThreadCpuClock(torch.device("cpu"))
    t0 = time.thread_time_ns()
    start = clock.mark()
    time.sleep(0.05)  # off the CPU: a wall clock would read >= 50 ms
    end = clock.mark()
    t1 = time.thread_time_ns()
    assert clock.elapsed_s(start, end) <= (t1 - t0) * 1e-9 < 0.05
    start = clock.mark()
    sum(i * i for i in range(200_000))
    end = clock.mark()
    assert end > start


def test_a_cuda_clock_reads_its_events_in_seconds():
    class Event:
        def elapsed_time(self, other):  # torch.cuda.Event's milliseconds from this event to `other`
            return 250.0 if other is end else -1.0
    start, end = Event(), Event()
    assert clocks.CudaClock.elapsed_s(start, end) == 0.25


def test_a_cuda_clock_records_timing_events_and_synchronizes_its_device(monkeypatch):
    """torch.cuda.Event and torch.cuda.synchronize stood in for (no GPU here): what the clock asks of them."""
    made, synced = [], []

    class Event:
        def __init__(self, enable_timing=False):
            self.enable_timing, self.recorded = enable_timing, False
            made.append(self)

        def record(self):
            self.recorded = True
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "synchronize", synced.append)
    clock = clocks.CudaClock(torch.device("cuda", 1))
    event = clock.mark()
    assert made == [event] and event.enable_timing is True and event.recorded
    clock.sync()
    assert synced == [torch.device("cuda", 1)]


def test_each_device_gets_its_clock():
    cpu = torch.device("cpu")
    assert type(clocks.clock_for(torch.device("cuda"))) is clocks.CudaClock
    assert clocks.clock_for(torch.device("cuda", 1)).device == torch.device("cuda", 1)
    assert type(clocks.clock_for(torch.device("cuda"), cpu_time=True)) is clocks.CudaClock
    with clocks.torch_threads(1):
        assert type(clocks.clock_for(cpu, cpu_time=True)) is clocks.ThreadCpuClock
        assert clocks.clock_for(cpu, cpu_time=True).device == cpu
        assert type(clocks.clock_for(cpu)) is clocks.Clock
        assert clocks.clock_for(cpu).device == cpu
    with clocks.torch_threads(2):  # two threads: the other thread's work is not in this thread's CPU time, but is
        assert type(clocks.clock_for(cpu, cpu_time=True)) is clocks.ProcessCpuClock  # in the process's (issue 49)


class _CountingClock(clocks.Clock):
    """Marks 100 and then 400 (ns); counts the syncs."""

    def __init__(self):
        super().__init__(torch.device("cpu"))
        self.marks, self.syncs, self.log = iter([100, 400]), 0, []

    def mark(self):
        self.log.append("mark")
        return next(self.marks)

    def sync(self):
        self.log.append("sync")
        self.syncs += 1


def test_a_block_is_the_mean_of_its_calls_between_two_synchronized_marks():
    clock, calls = _CountingClock(), []
    mean = clocks.time_block(calls.append, 3, clock)
    assert calls == [0, 1, 2]
    assert mean == pytest.approx(300e-9 / 3)
    assert clock.log == ["sync", "mark", "mark", "sync"]  # nothing but the calls between the marks


def test_torch_threads_sets_and_restores_and_zero_leaves_the_default():
    old = torch.get_num_threads()
    target = 1 if old != 1 else 2
    with clocks.torch_threads(target):
        assert torch.get_num_threads() == target
    assert torch.get_num_threads() == old
    with clocks.torch_threads(0):
        assert torch.get_num_threads() == old
    with pytest.raises(RuntimeError):
        with clocks.torch_threads(target):
            raise RuntimeError("inside")
    assert torch.get_num_threads() == old


def test_the_cpu_time_clock_is_none_on_cuda_and_keeps_its_device():
    cpu = torch.device("cpu")
    assert clocks.cpu_clock(torch.device("cuda")) is None and clocks.cpu_clock(torch.device("cuda", 1)) is None
    with clocks.torch_threads(1):
        assert type(clocks.cpu_clock(cpu)) is clocks.ThreadCpuClock and clocks.cpu_clock(cpu).device == cpu
    with clocks.torch_threads(2):
        assert type(clocks.cpu_clock(cpu)) is clocks.ProcessCpuClock and clocks.cpu_clock(cpu).device == cpu


class _ScriptedClock(clocks.Clock):
    """Marks the given ns values in turn; logs each mark and sync under its name into a shared log."""

    def __init__(self, name: str, marks: list[int], log: list[str]):
        super().__init__(torch.device("cpu"))
        self.name, self.marks, self.log = name, iter(marks), log

    def mark(self):
        self.log.append(f"{self.name} mark")
        return next(self.marks)

    def sync(self):
        self.log.append(f"{self.name} sync")


def test_a_block_on_two_clocks_nests_the_first_inside_the_other_and_divides_each_by_its_calls():
    log, calls = [], []
    wall = _ScriptedClock("wall", [1_000, 5_000], log)  # 4000 ns over 4 calls: 1000 ns a call
    cpu = _ScriptedClock("cpu", [10, 8_010], log)  # 8000 ns over 4 calls: 2000 ns a call
    first, other = clocks.time_block_both(lambda i: (calls.append(i), log.append("call")), 4, wall, cpu)
    assert calls == [0, 1, 2, 3]
    assert (first, other) == (pytest.approx(1e-6), pytest.approx(2e-6))
    # the other clock's marks outside the first's, the syncs outermost (the first clock's), the calls alone inside
    assert log == ["wall sync", "cpu mark", "wall mark", "call", "call", "call", "call", "wall mark", "cpu mark",
                   "wall sync"]


def test_a_block_with_no_other_clock_is_time_block_and_nan():
    import math

    log, calls = [], []
    wall = _ScriptedClock("wall", [2_000, 8_000], log)
    first, other = clocks.time_block_both(calls.append, 3, wall, None)
    assert calls == [0, 1, 2] and first == pytest.approx(2e-6) and math.isnan(other)
    assert log == ["wall sync", "wall mark", "wall mark", "wall sync"]
