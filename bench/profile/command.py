"""``mlpbench profile``: where the time of one case goes.

One case, one process, never inside a ``run`` (the profiler's overhead must not
leak into benchmark numbers). Real training steps run under ``torch.profiler``
with a wait / warm-up / active schedule; every phase sits in a
``record_function`` range named after it (``forward``, ``backward``,
``optimizer``), so the trace shows the phases and operators can be attributed
to them. The profile folder gets:

* ``trace.json``: Chrome / Perfetto trace of the active steps (with memory events);
* ``profile.md``: overhead split per phase, the top operators per phase, FLOPs
  by module (``FlopCounterMode``) next to the analytic count, and memory
  analytic vs measured;
* ``meta.json``: the case, the schedule and the environment fingerprint;
* ``memory_snapshot.pickle`` with ``--memory-snapshot`` (CUDA only), for
  https://pytorch.org/memory_viz.

Attribution: ``key_averages()`` is global, so operators are assigned to a phase
by time: an operator belongs to the phase range that contains its start. Time
and not the parent chain, because on CUDA autograd runs backward on its own
device thread, whose operators have no parent in the main thread's ``backward``
range. Device (kernel) time is counted on the CPU operator that launched the
kernel (the profiler links them by correlation id), so it lands in the phase
that issued the work even though the GPU runs it later.

Module-level imports stay light: ``mlpbench --help`` imports this file.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..flags import CASE_FLAGS, add_case_arguments, case_overrides
from ..phases import TRAINING_PHASE_NAMES

if TYPE_CHECKING:
    import torch

    import mlp
    from bench.cases import Case

PROFILES_DIR = Path("results/profiles")
TRACE_FILE, REPORT_FILE, META_FILE, SNAPSHOT_FILE = "trace.json", "profile.md", "meta.json", "memory_snapshot.pickle"
PHASE_LABELS = TRAINING_PHASE_NAMES  # the record_function names of the phases

WAIT_STEPS = 2  # untraced: the first step pays allocation, oneDNN/cuBLAS heuristics and compilation
WARMUP_STEPS = 1  # traced but discarded: the profiler's own start-up cost lands here
ACTIVE_STEPS = 3  # recorded; tables report the mean per step over these
TOP_N = 10
REFERENCE_STEPS = 10  # steps timed again without the profiler, to show how much it inflates the phases
MEMORY_SNAPSHOT_MAX_ENTRIES = 100_000  # allocator events kept by the snapshot (a small MLP makes ~100 per step)
US_PER_MS = 1e3

# Host-side events that are ranges, not operators: excluded from the operator tables.
_NON_OPERATOR_PREFIXES = ("ProfilerStep", "Optimizer.step#", "Optimizer.zero_grad#")
_MEMORY_EVENT = "[memory]"


# --------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``mlpbench profile``: the case flags of ``run`` (one value each) plus the schedule."""
    add_case_arguments(parser)
    parser.add_argument("--out", type=Path, help="profile folder (default: results/profiles/<id>/)")
    parser.add_argument("--wait-steps", type=int, default=WAIT_STEPS,
                        help=f"untraced steps first (default {WAIT_STEPS})")
    parser.add_argument("--warmup-steps", type=int, default=WARMUP_STEPS,
                        help=f"traced, discarded steps (default {WARMUP_STEPS})")
    parser.add_argument("--active-steps", type=int, default=ACTIVE_STEPS,
                        help=f"recorded steps (default {ACTIVE_STEPS})")
    parser.add_argument("--top", type=int, default=TOP_N, help=f"operators per phase (default {TOP_N})")
    parser.add_argument("--by-shape", action="store_true", help="one row per operator and input shapes")
    parser.add_argument("--memory-snapshot", action="store_true",
                        help=f"CUDA only: also write {SNAPSHOT_FILE} for https://pytorch.org/memory_viz")


@dataclass(frozen=True)
class ProfileConfig:
    wait_steps: int = WAIT_STEPS
    warmup_steps: int = WARMUP_STEPS
    active_steps: int = ACTIVE_STEPS
    top_n: int = TOP_N
    by_shape: bool = False
    memory_snapshot: bool = False

    def __post_init__(self) -> None:
        if self.wait_steps < 0 or self.warmup_steps < 0:
            raise UsageError("--wait-steps and --warmup-steps must be >= 0")
        if self.active_steps < 1:
            raise UsageError(f"--active-steps must be >= 1, got {self.active_steps}")
        if self.top_n < 1:
            raise UsageError(f"--top must be >= 1, got {self.top_n}")

    @property
    def total_steps(self) -> int:
        return self.wait_steps + self.warmup_steps + self.active_steps


def command(args: argparse.Namespace) -> int:
    config = ProfileConfig(args.wait_steps, args.warmup_steps, args.active_steps, args.top, args.by_shape,
                           args.memory_snapshot)
    case = resolve_case(case_overrides(args))
    _check_runnable(case, config)
    out_dir = args.out or _new_profile_dir(case)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir} exists and is not empty; choose another --out")
    print(f"mlpbench: profiling {case.label} -> {out_dir}", file=sys.stderr)
    result = profile_case(case, config, out_dir)
    text = render_markdown(result)
    _write_outputs(result, text, out_dir)
    print(text)
    print(f"mlpbench: profile folder {out_dir} (open {TRACE_FILE} in https://ui.perfetto.dev)")
    return 0


def resolve_case(overrides: dict[str, tuple]) -> Case:
    """Exactly one case: ``Case()`` defaults with the flags applied; the device defaults to CUDA when present."""
    from ..cases import Case, Sweep, available_devices

    multi = [f"--{flag}" for flag, (field, _) in CASE_FLAGS.items() if len(overrides.get(field, ())) > 1]
    if multi:
        raise UsageError(f"profile takes exactly one case; {', '.join(multi)} got several values "
                         f"(profile them one at a time)")
    defaults = {"device": ("cuda" if "cuda" in available_devices() else "cpu",)}
    cases = Sweep("profile", ({},), all_devices=False).cases({**defaults, **overrides})
    if len(cases) != 1:  # unreachable with one value per flag; kept as the contract's guard
        raise UsageError(f"profile takes exactly one case, the flags give {len(cases)}")
    return cases[0]


def _check_runnable(case: Case, config: ProfileConfig) -> None:
    import torch

    if case.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available on this machine")
    if config.memory_snapshot and case.device != "cuda":
        raise UsageError(f"--memory-snapshot needs --device cuda (it records the CUDA caching allocator); "
                         f"this case runs on {case.device}")


def _new_profile_dir(case: Case) -> Path:
    from ..store import new_run_dir

    return new_run_dir(PROFILES_DIR, preset=re.sub(r"[^A-Za-z0-9_.-]+", "-", case.label))


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class OpStat:
    """One operator (or operator x input shapes) within one phase, per step."""

    name: str
    shapes: str
    calls: float
    self_cpu_us: float
    device_us: float  # kernels it launched (CUDA); 0 on CPU


@dataclass(frozen=True)
class PhaseTime:
    """Where one phase's time goes, per step (profiled), and its wall time without the profiler."""

    phase: str
    wall_us: float  # host time inside the phase's record_function range
    operator_self_cpu_us: float  # sum of operator self CPU time attributed to the phase (every thread)
    device_us: float  # kernel time launched from the phase (CUDA)
    unprofiled_wall_us: float

    @property
    def host_gap_us(self) -> float:
        """Host time in no operator: Python, module calls, autograd bookkeeping, the profiler itself."""
        return self.wall_us - self.operator_self_cpu_us


@dataclass(frozen=True)
class PhaseMemory:
    """Allocator traffic of one phase as the profiler's memory profiling saw it (bytes)."""

    phase: str
    allocated_bytes: int  # per step
    freed_bytes: int  # per step
    peak_above_start_bytes: int  # highest level reached during the phase, relative to its start (max over steps)
    cuda_peak_allocated_bytes: int | None  # torch.cuda.max_memory_allocated, reset per phase (absolute)


@dataclass(frozen=True)
class ModuleFlops:
    module: str  # FlopCounterMode's name, e.g. "MLP.1"
    kind: str  # e.g. "Linear(784->512)"
    forward: int
    backward: int


@dataclass(frozen=True)
class MeasuredMemory:
    """Bytes read off live tensors of one eager training step (independent of ``mlp.memory``)."""

    parameters_bytes: int
    gradients_bytes: int
    optimizer_state_bytes: int
    saved_activations_bytes: int  # unique storages packed by autograd, minus parameters and the batch
    data_bytes: int


@dataclass
class ProfileResult:
    case: Case
    config: ProfileConfig
    torch_version: str
    operators: dict[str, list[OpStat]]  # phase -> every operator, most expensive first
    times: list[PhaseTime]
    memory_phases: list[PhaseMemory]
    module_flops: list[ModuleFlops]
    flops_total: tuple[int, int]  # FlopCounterMode (forward, backward) of the whole model
    flops_analytic: mlp.Flops
    memory_analytic: mlp.Memory
    memory_measured: MeasuredMemory
    files: list[str]


# --------------------------------------------------------------------------- measurement


def profile_case(case: Case, config: ProfileConfig, out_dir: Path) -> ProfileResult:
    """Profile ``case`` and write its trace (and memory snapshot) into ``out_dir``; returns the numbers.

    Order: profiled steps first (they include the cold start in their wait steps),
    then, on the warm step, the same phases timed without the profiler and the
    CUDA peak memory per phase; FLOPs and memory are counted on a separate eager
    copy, so ``FlopCounterMode`` and saved-tensor hooks never touch the profiled run.
    """
    import torch

    from ..clocks import BATCH_POOL
    from ..timing import build_step, case_context, cudagraph_step_marker

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
    model = case.build_model()
    return ProfileResult(
        case=case, config=config, torch_version=torch.__version__,
        operators=operators_by_phase(events, ranges, config.active_steps, config.by_shape),
        times=phase_times(events, ranges, config.active_steps, unprofiled),
        memory_phases=phase_memory(_memory_records(prof, case.device), ranges, config.active_steps, cuda_peaks),
        module_flops=module_flops, flops_total=flops_total,
        flops_analytic=_analytic_flops(case, model),
        memory_analytic=_analytic_memory(case, model),
        memory_measured=measured, files=files,
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
    with profile(activities=activities, schedule=plan, record_shapes=True, profile_memory=True) as prof:
        for i in range(config.total_steps):
            _labelled_step(step, pool[i % len(pool)], mark_step)
            prof.step()
    return prof


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
    from ..clocks import clock_for
    from ..timing import time_phases

    seconds = time_phases(step, pool, REFERENCE_STEPS, clock_for(step.device), mark_step)
    return {phase.value: s * 1e6 for phase, s in seconds.items()}


def _cuda_peaks(step: mlp.TrainStep, pool, mark_step) -> dict[str, int]:
    from ..phases import TRAINING_PHASES
    from ..timing import peak_memory_per_phase

    peaks = peak_memory_per_phase(step, pool, mark_step)
    return {phase.value: peaks[phase] for phase in TRAINING_PHASES}


# --------------------------------------------------------------------------- attribution


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


def _memory_records(prof, device: str) -> list[tuple[float, int]]:
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


# --------------------------------------------------------------------------- FLOPs and memory (eager copy)


def eager_accounting(case: Case) -> tuple[list[ModuleFlops], tuple[int, int], MeasuredMemory]:
    """One eager training step under FlopCounterMode and saved-tensor hooks.

    Eager on purpose: FLOPs and saved tensors are properties of the architecture,
    and compiled graphs bypass the dispatcher that FlopCounterMode listens to.
    Two nested counters: the inner one sees the forward only, the outer one the
    whole step, so backward = outer - inner (per module too).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..timing import build_step

    step = build_step(case.with_(compile="none"))
    x, y = case.make_batch(torch.Generator().manual_seed(0))
    saved = _SavedStorages(exclude=[*step.model.parameters(), x, y])
    with FlopCounterMode(display=False) as whole, torch.autograd.graph.saved_tensors_hooks(saved.pack, _unpack):
        with FlopCounterMode(display=False) as forward_only:
            out = step.forward(x)
        step.loss_backward(out, y)
    gradients = sum(p.grad.nbytes for p in step.model.parameters() if p.grad is not None)
    step.optimizer_step()
    measured = MeasuredMemory(
        parameters_bytes=sum(p.nbytes for p in step.model.parameters()),
        gradients_bytes=gradients,
        optimizer_state_bytes=_optimizer_state_bytes(step.optimizer),
        saved_activations_bytes=saved.total_bytes,
        data_bytes=x.nbytes + y.nbytes,
    )
    fwd, total = forward_only.get_total_flops(), whole.get_total_flops()
    return _module_flops(step.model, forward_only, whole), (fwd, total - fwd), measured


class _SavedStorages:
    """Pack hook that records each distinct storage autograd saves (views of one storage count once)."""

    def __init__(self, exclude: Iterable[torch.Tensor]):
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._sizes: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._excluded:
            self._sizes[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def total_bytes(self) -> int:
        return sum(self._sizes.values())


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    import torch

    return sum(v.nbytes for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor))


def _module_flops(model: torch.nn.Module, forward_only, whole) -> list[ModuleFlops]:
    """Per module: FlopCounterMode's names are ``<root class>[.<submodule path>]``; "Global" is the total."""
    fwd_counts, all_counts = forward_only.get_flop_counts(), whole.get_flop_counts()
    rows = []
    for name, ops in all_counts.items():
        if name == "Global":
            continue
        fwd = sum(fwd_counts.get(name, {}).values())
        rows.append(ModuleFlops(name, _module_kind(model, name), fwd, sum(ops.values()) - fwd))
    return rows


def _module_kind(model: torch.nn.Module, counter_name: str) -> str:
    path = counter_name.partition(".")[2]
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:
        return ""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return f"{type(module).__name__}({module.in_features}->{module.out_features})"
    return type(module).__name__


def _analytic_flops(case: Case, model) -> mlp.Flops:
    import mlp

    return mlp.flops(model, case.batch, case.loss, case.optimizer)


def _analytic_memory(case: Case, model) -> mlp.Memory:
    import mlp

    return mlp.memory(model, case.batch, case.input_shape, case.loss, case.optimizer, case.dtype)


# --------------------------------------------------------------------------- rendering (takes only results)


def render_markdown(result: ProfileResult) -> str:
    """profile.md: header, overhead split, top operators per phase, FLOPs by module, memory."""
    parts = [_header(result), _times_section(result), _operators_section(result), _flops_section(result),
             _memory_section(result)]
    return "\n\n".join(parts) + "\n"


def _table(rows: list[dict]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers="keys", tablefmt="github", disable_numparse=True)


def _ms(us: float) -> str:
    return f"{us / US_PER_MS:.3f}"


def _header(r: ProfileResult) -> str:
    c = r.config
    return "\n".join([
        f"# Profile: {r.case.label}",
        "",
        f"case id `{r.case.case_id}`, torch {r.torch_version}; schedule: {c.wait_steps} untraced, "
        f"{c.warmup_steps} warm-up, {c.active_steps} recorded steps. Times are per step (mean over the "
        f"recorded steps) and include the profiler's overhead; the last column of the first table is the "
        f"same phase timed without it. Files: {', '.join(f'`{f}`' for f in r.files)}.",
    ])


def _times_section(r: ProfileResult) -> str:
    cuda = r.case.device == "cuda"
    rows = []
    for t in r.times:
        row = {"phase": t.phase, "host wall ms": _ms(t.wall_us), "operator self CPU ms": _ms(t.operator_self_cpu_us),
               "host gap ms": _ms(t.host_gap_us),
               "gap %": f"{t.host_gap_us / t.wall_us:.0%}" if t.wall_us > 0 else ""}
        if cuda:
            row |= {"device kernel ms": _ms(t.device_us), "host - device ms": _ms(t.wall_us - t.device_us),
                    "bound": "host" if t.wall_us > t.device_us else "device"}
        rows.append(row | {"wall ms, no profiler": _ms(t.unprofiled_wall_us)})
    meaning = ("On CUDA the host issues work and the device runs it: where host wall time exceeds kernel time the "
               "phase is host-bound (dispatch and launch overhead), and CUDA graphs or `torch.compile` can help; "
               "where kernel time dominates, only faster kernels help." if cuda else
               "The host gap is time in no operator: Python, module calls, autograd bookkeeping (and the profiler). "
               "A large gap means dispatch overhead, which `torch.compile` can remove; a small gap means the "
               "operators themselves are the cost.")
    return f"## Overhead split per phase\n\n{_table(rows)}\n\n{meaning}"


def _operators_section(r: ProfileResult) -> str:
    cuda = r.case.device == "cuda"
    order = "device time, then self CPU time" if cuda else "self CPU time"
    blocks = [f"## Top {r.config.top_n} operators per phase\n\nSorted by {order}; % is of the phase's operator "
              f"self CPU time."]
    for phase in PHASE_LABELS:
        stats = r.operators[phase]
        total_cpu = sum(s.self_cpu_us for s in stats) or 1.0
        rows = []
        for s in stats[:r.config.top_n]:
            row = {"operator": s.name}
            if r.config.by_shape:
                row["input shapes"] = s.shapes
            row |= {"calls": f"{s.calls:g}", "self CPU ms": _ms(s.self_cpu_us), "%": f"{s.self_cpu_us / total_cpu:.1%}"}
            if cuda:
                row["device ms"] = _ms(s.device_us)
            rows.append(row)
        blocks.append(f"### {phase}\n\n{_table(rows) if rows else '(no operators recorded)'}")
    return "\n\n".join(blocks)


def _flops_section(r: ProfileResult) -> str:
    rows = [{"module": f.module, "kind": f.kind, "forward FLOPs": f"{f.forward:,}", "backward FLOPs": f"{f.backward:,}",
             "total FLOPs": f"{f.forward + f.backward:,}"} for f in r.module_flops]
    fwd, bwd = r.flops_total
    a = r.flops_analytic
    rows.append({"module": "**FlopCounterMode total**", "kind": "", "forward FLOPs": f"{fwd:,}",
                 "backward FLOPs": f"{bwd:,}", "total FLOPs": f"{fwd + bwd:,}"})
    rows.append({"module": "**analytic (mlp.flops)**", "kind": "matmul", "forward FLOPs": f"{a.forward_matmul:,}",
                 "backward FLOPs": f"{a.backward_matmul:,}", "total FLOPs": f"{a.step_matmul:,}"})
    verdict = "equal" if (fwd, bwd) == (a.forward_matmul, a.backward_matmul) else "DIFFERENT"
    return (f"## FLOPs by module (one training step)\n\n{_table(rows)}\n\nFlopCounterMode vs analytic: **{verdict}**. "
            f"Both count matmuls only; the elementwise work (bias, activations, loss, optimiser: "
            f"{a.step_elementwise:,} FLOPs by the analytic convention) is not in either total.")


def _memory_section(r: ProfileResult) -> str:
    a, m = r.memory_analytic, r.memory_measured
    pairs = [("parameters", a.parameters_bytes, m.parameters_bytes, "parameter tensors"),
             ("gradients", a.gradients_bytes, m.gradients_bytes, ".grad after backward"),
             ("optimizer state", a.optimizer_state_bytes, m.optimizer_state_bytes, "optimizer.state after a step"),
             ("saved activations", a.saved_activations_bytes, m.saved_activations_bytes,
              "storages packed by autograd (saved-tensor hooks)"),
             ("data (input + target)", a.data_bytes, m.data_bytes, "batch tensors")]
    total_m = sum(p[2] for p in pairs)
    pairs.append(("total", a.total_bytes, total_m, ""))
    rows = [{"component": name, "analytic bytes": f"{ab:,}", "measured bytes": f"{mb:,}",
             "measured - analytic": f"{mb - ab:+,}", "measured from": how} for name, ab, mb, how in pairs]
    cuda = r.case.device == "cuda"
    phase_rows = []
    for p in r.memory_phases:
        row = {"phase": p.phase, "allocated bytes": f"{p.allocated_bytes:,}", "freed bytes": f"{p.freed_bytes:,}",
               "net bytes": f"{p.allocated_bytes - p.freed_bytes:+,}",
               "peak above phase start": f"{p.peak_above_start_bytes:,}"}
        if cuda:
            row["CUDA peak allocated (absolute)"] = f"{(p.cuda_peak_allocated_bytes or 0):,}"
        phase_rows.append(row)
    source = ("the profiler's memory events (CUDA caching allocator) and `torch.cuda.max_memory_allocated`, reset "
              "before each phase of a separate step" if cuda else "the profiler's memory profiling (CPU allocator)")
    return (f"## Memory: analytic vs measured\n\n{_table(rows)}\n\n"
            f"Analytic saved activations include {a.cast_weights_bytes:,} bytes of low-precision weight copies.\n\n"
            f"### Per phase ({r.case.device}), per step\n\nFrom {source}. The forward phase's net allocation is what "
            f"it leaves alive for backward: the activations the layers saved plus the output (the loss runs, and "
            f"saves its tensors, in the backward phase).\n\n{_table(phase_rows)}")


# --------------------------------------------------------------------------- files


def _write_outputs(result: ProfileResult, markdown: str, out_dir: Path) -> None:
    from ..env import fingerprint
    from ..store import write_atomic, write_meta

    write_atomic(out_dir / REPORT_FILE, markdown)
    write_meta(out_dir / META_FILE, {
        "case": result.case.to_row(), "case_id": result.case.case_id, "label": result.case.label,
        "schedule": asdict(result.config), "files": [*result.files, REPORT_FILE, META_FILE],
        "environment": fingerprint(),
    })
