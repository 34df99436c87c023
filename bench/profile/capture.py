"""Run the case under ``torch.profiler`` (phases in ``record_function`` ranges), then time the same
phases without it and read the CUDA peaks; returns a ``ProfileResult``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .accounting import analytic_flops, analytic_memory, eager_accounting
from .attribution import memory_records, operators_by_phase, phase_memory, phase_ranges, phase_times
from .results import SNAPSHOT_FILE, TRACE_FILE, ProfileConfig, ProfileResult
from .timeline import read_timeline

if TYPE_CHECKING:
    import torch

    import mlp
    from bench.case.cases import Case


REFERENCE_STEPS = 10  # steps timed again without the profiler, to show how much it inflates the phases


MEMORY_SNAPSHOT_MAX_ENTRIES = 100_000  # allocator events kept by the snapshot (a small MLP makes ~100 per step)
# Kineto (the profiler's C++ side) reads its log level from this variable once, when the process's first profile
# starts. Its levels: VERBOSE 0, INFO 1, WARNING 2, STAGE 3, ERROR 4, USDT 5 (the echo of its trace points,
# "USDT: ... profiler_start"); 6 prints none of them.
KINETO_LOG_LEVEL_ENV = "KINETO_LOG_LEVEL"
KINETO_SILENT = "6"


def profile_case(case: Case, config: ProfileConfig, out_dir: Path) -> ProfileResult:
    """Profile ``case`` and write its trace (and memory snapshot) into ``out_dir``; returns the numbers.

    Order: profiled steps first (they include the cold start in their wait steps),
    then, on the warm step, the same phases timed without the profiler and the
    CUDA peak memory per phase; FLOPs and memory are counted on a separate eager
    copy, so ``FlopCounterMode`` and saved-tensor hooks never touch the profiled run.
    """
    import torch

    from ..instruments.clocks import BATCH_POOL
    from ..instruments.timing import build_step, case_context, cudagraph_step_marker

    out_dir.mkdir(parents=True, exist_ok=True)
    files = [TRACE_FILE]
    with case_context(case):
        step = build_step(case)
        gen = torch.Generator().manual_seed(0)
        pool = [case.make_batch(gen) for _ in range(BATCH_POOL)]
        mark_step = cudagraph_step_marker(case)
        snapshot = out_dir / SNAPSHOT_FILE if config.memory_snapshot else None
        with _memory_history(snapshot):
            prof = _run_profiler(step, pool, config, mark_step)
        files += [SNAPSHOT_FILE] if snapshot else []
        prof.export_chrome_trace(str(out_dir / TRACE_FILE))
        events = list(prof.events())
        ranges = phase_ranges(events)
        unprofiled = _unprofiled_phase_wall_us(step, pool, mark_step)
        cuda_peaks = _cuda_peaks(step, pool, mark_step) if case.device == "cuda" else {}
        module_flops, flops_total, measured = eager_accounting(case)
    with torch.device("meta"):  # the analytic counts need shapes only
        model = case.build_model()
    return ProfileResult(
        case=case, config=config, torch_version=torch.__version__,
        operators=operators_by_phase(events, ranges, config.active_steps, config.by_shape),
        times=phase_times(events, ranges, config.active_steps, unprofiled),
        memory_phases=phase_memory(memory_records(prof, case.device), ranges, config.active_steps, cuda_peaks),
        module_flops=module_flops, flops_total=flops_total,
        flops_analytic=analytic_flops(case, model),
        memory_analytic=analytic_memory(case, model),
        memory_measured=measured, files=files,
        timeline=read_timeline(out_dir / TRACE_FILE) if case.device == "cuda" else None,
    )


@contextlib.contextmanager
def _memory_history(snapshot: Path | None):
    """Record the CUDA caching allocator's history and dump it to ``snapshot`` (nothing when None)."""
    if snapshot is None:
        yield
        return
    import torch

    torch.cuda.memory._record_memory_history(max_entries=MEMORY_SNAPSHOT_MAX_ENTRIES)
    try:
        yield
        torch.cuda.memory._dump_snapshot(str(snapshot))
    finally:
        torch.cuda.memory._record_memory_history(enabled=None)


def _run_profiler(step: mlp.TrainStep, pool, config: ProfileConfig, mark_step) -> torch.profiler.profile:
    from torch.profiler import ProfilerActivity, profile, schedule

    activities = [ProfilerActivity.CPU]
    if step.device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    plan = schedule(wait=config.wait_steps, warmup=config.warmup_steps, active=config.active_steps, repeat=1)
    with kineto_quiet_without_gpu(), \
            profile(activities=activities, schedule=plan, record_shapes=True, profile_memory=True) as prof:
        for i in range(config.total_steps):
            _labelled_step(step, pool[i % len(pool)], mark_step)
            prof.step()
    return prof


@contextlib.contextmanager
def kineto_quiet_without_gpu():
    """No "ERROR ... DeviceProperties.cpp ... gpuGetDeviceCount failed with code 35" on a machine without a GPU.

    A CUDA build of torch (PyPI's) profiles a CPU-only machine with kineto built against CUPTI; when the trace
    stops, kineto lists the GPUs' properties for the trace's metadata, and cudaGetDeviceCount fails for want of
    a driver (35: insufficient driver). Harmless, but printed at ERROR level on stderr, which torch leaves on.
    Where no CUDA device is usable (nothing of kineto's concerns the run there), kineto is silenced for the
    process's profiles, its trace points' "USDT: ... profiler_start" echo too, unless the user set its level.
    With a GPU nothing changes: there an ERROR of kineto's means something.
    """
    import torch

    if os.environ.get(KINETO_LOG_LEVEL_ENV) or torch.cuda.is_available():
        yield
        return
    os.environ[KINETO_LOG_LEVEL_ENV] = KINETO_SILENT
    try:
        yield
    finally:
        os.environ.pop(KINETO_LOG_LEVEL_ENV, None)


def _labelled_step(step: mlp.TrainStep, batch, mark_step) -> None:
    """One training step with each phase inside its record_function range; synchronised at the end."""
    import torch
    from torch.profiler import record_function

    x, y = batch
    mark_step()
    with record_function("forward"):
        out = step.forward(x)  # (batch, *input_shape) -> (batch, out_features)
    with record_function("backward"):
        step.loss_backward(out, y)
    with record_function("optimizer"):
        step.optimizer_step()
    if step.device.type == "cuda":  # outside the ranges: a step's kernels finish inside its profiler step
        torch.cuda.synchronize(step.device)


def _unprofiled_phase_wall_us(step: mlp.TrainStep, pool, mark_step) -> dict[str, float]:
    from ..instruments.clocks import clock_for
    from ..instruments.timing import time_phases

    seconds = time_phases(step, pool, REFERENCE_STEPS, clock_for(step.device), mark_step)
    return {phase.value: s * 1e6 for phase, s in seconds.items()}


def _cuda_peaks(step: mlp.TrainStep, pool, mark_step) -> dict[str, int]:
    from ..model.phases import TRAINING_PHASES
    from ..instruments.timing import peak_memory_per_phase

    peaks = peak_memory_per_phase(step, pool, mark_step)
    return {phase.value: peaks[phase] for phase in TRAINING_PHASES}
