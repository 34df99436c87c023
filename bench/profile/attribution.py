"""Operators, phase times and memory events assigned to the phases of the profiled steps.

An operator belongs to the phase range that contains its start (time, not the parent chain: on CUDA
autograd runs backward on its own device thread). Device time is counted on the CPU operator that
launched the kernel, so it lands in the phase that issued the work.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..model.phases import TRAINING_PHASE_NAMES
from .results import OpStat, PhaseMemory, PhaseTime

if TYPE_CHECKING:
    import torch


PHASE_LABELS = TRAINING_PHASE_NAMES  # the record_function names of the phases


# Host-side events that are ranges, not operators: excluded from the operator tables.
_NON_OPERATOR_PREFIXES = ("ProfilerStep", "Optimizer.step#", "Optimizer.zero_grad#")


_MEMORY_EVENT = "[memory]"


@dataclass(frozen=True)
class PhaseRange:
    phase: str
    start_us: float
    end_us: float


def phase_ranges(events: Iterable) -> list[PhaseRange]:
    """The host-side ``record_function`` ranges of the phases, in time order (one per phase per step)."""
    ranges = [PhaseRange(e.name, e.time_range.start, e.time_range.end)
              for e in events if e.name in PHASE_LABELS and _on_host(e)]
    return sorted(ranges, key=lambda r: r.start_us)


def _phase_at(ranges: Sequence[PhaseRange], starts: Sequence[float], t_us: float) -> str | None:
    i = bisect.bisect_right(starts, t_us) - 1
    return ranges[i].phase if i >= 0 and t_us <= ranges[i].end_us else None


def _on_host(event) -> bool:
    from torch.autograd import DeviceType

    return event.device_type == DeviceType.CPU and not event.is_async


def _is_operator(event) -> bool:
    """A host event that does work (ATen op, autograd node, CUDA runtime call), not a labelled range."""
    if not _on_host(event) or event.name == _MEMORY_EVENT or event.name in PHASE_LABELS:
        return False
    return not (getattr(event, "is_user_annotation", False) or event.name.startswith(_NON_OPERATOR_PREFIXES))


def _self_device_us(event) -> float:
    # torch >= 2.4 calls it device time; the cuda_* spelling is the deprecated older name
    value = getattr(event, "self_device_time_total", None)
    return float(value if value is not None else getattr(event, "self_cuda_time_total", 0))


def _attributed(events: Iterable, ranges: Sequence[PhaseRange]):
    """(phase, event) for every operator whose start lies inside a phase range, on any thread."""
    starts = [r.start_us for r in ranges]
    for event in events:
        if _is_operator(event):
            phase = _phase_at(ranges, starts, event.time_range.start)
            if phase is not None:
                yield phase, event


def operators_by_phase(events: Iterable, ranges: Sequence[PhaseRange], steps: int,
                       by_shape: bool = False) -> dict[str, list[OpStat]]:
    """Operators per phase, per step, sorted by device time then self CPU time (most expensive first)."""
    totals: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for phase, event in _attributed(events, ranges):
        shapes = str(event.input_shapes) if by_shape and event.input_shapes else ""
        acc = totals[(phase, event.name, shapes)]
        acc[0] += 1
        acc[1] += event.self_cpu_time_total
        acc[2] += _self_device_us(event)
    out: dict[str, list[OpStat]] = {p: [] for p in PHASE_LABELS}
    for (phase, name, shapes), (calls, cpu_us, dev_us) in totals.items():
        out[phase].append(OpStat(name, shapes, calls / steps, cpu_us / steps, dev_us / steps))
    for stats in out.values():
        stats.sort(key=lambda s: (s.device_us, s.self_cpu_us), reverse=True)
    return out


def phase_times(events: Iterable, ranges: Sequence[PhaseRange], steps: int,
                unprofiled_wall_us: dict[str, float]) -> list[PhaseTime]:
    wall = defaultdict(float)
    for r in ranges:
        wall[r.phase] += r.end_us - r.start_us
    cpu, dev = defaultdict(float), defaultdict(float)
    for phase, event in _attributed(events, ranges):
        cpu[phase] += event.self_cpu_time_total
        dev[phase] += _self_device_us(event)
    return [PhaseTime(p, wall[p] / steps, cpu[p] / steps, dev[p] / steps, unprofiled_wall_us.get(p, float("nan")))
            for p in PHASE_LABELS]


def memory_records(prof, device: str) -> list[tuple[float, int]]:
    """(time µs on the events' clock, bytes; negative = freed) of the allocator events of ``device``."""
    from torch.autograd import DeviceType

    kinds = {DeviceType.CUDA} if device == "cuda" else {DeviceType.CPU, DeviceType.MKLDNN, DeviceType.IDEEP}
    result = prof.profiler.kineto_results
    t0_ns = result.trace_start_ns()
    return sorted(((e.start_ns() - t0_ns) / 1e3, e.nbytes()) for e in result.events()
                  if e.name() == _MEMORY_EVENT and e.device_type() in kinds)


def phase_memory(records: Sequence[tuple[float, int]], ranges: Sequence[PhaseRange], steps: int,
                 cuda_peaks: dict[str, int]) -> list[PhaseMemory]:
    """Per phase: bytes allocated and freed per step, and the peak above the level at the phase's start."""
    times = [t for t, _ in records]
    allocated, freed, peak = defaultdict(int), defaultdict(int), defaultdict(int)
    for r in ranges:
        level = 0
        for _, nbytes in records[bisect.bisect_left(times, r.start_us):bisect.bisect_right(times, r.end_us)]:
            level += nbytes
            allocated[r.phase] += max(nbytes, 0)
            freed[r.phase] += max(-nbytes, 0)
            peak[r.phase] = max(peak[r.phase], level)
    return [PhaseMemory(p, allocated[p] // steps, freed[p] // steps, peak[p], cuda_peaks.get(p))
            for p in PHASE_LABELS]
