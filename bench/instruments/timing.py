"""How to time: the measurement protocol of docs/design.md, for one case.

* Blocks, not calls: a sample is the mean over a block of iterations long
  enough to dwarf timer resolution and launch jitter (``min_block_s``).
* Warm-up until steady (a time budget and a minimum count). The first step
  (cold start, and for compiled cases the compilation) is timed on its own and
  never leaks into the samples.
* The whole step is timed with nothing inside the loop. Phases are timed in
  separate instrumented blocks: host clock reads between phases on CPU, CUDA
  events between phases (no synchronize inside the block) on CUDA. A whole-step
  case (``--compile-scope step``, ``--cuda-graph step``) has no phases to split: its
  step alone is timed, and no forward/backward/optimizer/inference rows are written.
* CUDA: events around blocks, one synchronize before any event is read; never
  a host clock around unsynchronised work.
* Rounds interleave the step, phase and inference blocks so machine drift hits
  every phase alike.
* A time budget per case (``max_case_s``): after the first step (cold start or
  compilation, kept apart) one more step (or a block of short ones) is timed, and the warm-up and rounds are
  predicted from it; a case predicted to take longer is returned ``skipped`` with
  the prediction, before the minutes are spent.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields

import torch

import mlp
from mlp import Precision

from ..case.cases import Case
from .clocks import BATCH_POOL, CLOCKS, Clock, clock_for, cpu_clock, time_block, time_block_both, torch_threads
from ..model.phases import TRAINING_PHASES, Phase
from ..runs.status import Status


@dataclass(frozen=True)
class TimingConfig:
    repeats: int = 12  # samples per phase (rounds)
    min_time_s: float = 0.0  # keep adding rounds until the step blocks total at least this long
    warmup_s: float = 0.25  # warm-up budget after the first step ...
    min_warmup_iters: int = 3  # ... and at least this many warm-up steps
    min_block_s: float = 0.02  # a block lasts at least this long (timer resolution, launch jitter)
    max_block_iters: int = 2000
    max_rounds: int = 200
    max_case_s: float | None = None  # skip a case whose predicted measuring time exceeds this (None: no limit)
    # what a timed block's seconds are: "wall" (perf_counter; CUDA events on CUDA), or "cpu" (a CPU case's CPU time:
    # the measuring thread's for one torch thread, the process's for more; clocks.cpu_clock). Both are recorded.
    clock: str = "wall"
    # processes measuring each compiled case (bench.engine.process_samples, pyperf's method); eager cases: one
    processes: int = 1

    def __post_init__(self):
        if self.clock not in CLOCKS:
            raise ValueError(f"clock must be one of {', '.join(CLOCKS)}, got {self.clock!r}")
        for f in fields(self):  # a value read back from meta.json may be anything JSON holds
            if f.name == "clock":
                continue
            value = getattr(self, f.name)
            if not (value is None and f.name == "max_case_s" or isinstance(value, (int, float))
                    and not isinstance(value, bool) and (math.isfinite(value) or f.name == "max_case_s")):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
        if not (isinstance(self.processes, int) and 1 <= self.processes <= 16):
            raise ValueError(f"processes must be a whole number from 1 to 16, got {self.processes!r}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be >= 1, got {self.repeats}")
        if self.min_time_s < 0 or self.warmup_s < 0 or self.min_block_s <= 0:
            raise ValueError("min_time_s and warmup_s must be >= 0, min_block_s > 0")
        if self.max_case_s is not None and not (0 < self.max_case_s < math.inf):
            raise ValueError(f"max_case_s must be a positive number of seconds or None, got {self.max_case_s}")


@dataclass
class Measurement:
    """Raw result of one case: every sample (seconds per iteration) plus the one-off timings."""

    case: Case
    status: Status = Status.OK
    reason: str = ""
    samples: dict[Phase, list[float]] = field(default_factory=dict)  # on the run's clock (TimingConfig.clock)
    # the step and inference blocks read on both clocks ("wall", "cpu"); the phases only on the run's clock
    clock_samples: dict[str, dict[Phase, list[float]]] = field(default_factory=dict)
    iters_per_block: dict[Phase, int] = field(default_factory=dict)
    first_step_s: float = math.nan  # cold start: first training step (includes compile when compiled)
    first_inference_s: float = math.nan  # first inference call (a second graph when compiled)
    compile_graphs: int = 0  # dynamo graphs compiled (training + inference)
    graph_breaks: int = 0
    recompiles: int = 0  # frames compiled after warm-up, i.e. during measurement (should be 0)
    peak_mem_bytes: dict[Phase, int] = field(default_factory=dict)  # CUDA only
    harness_mem_bytes: int | None = None  # CUDA only: allocated beyond the model and one batch (harness_bytes)
    optimizer_impl: str = ""
    threads: int = 0
    measure_s: float = 0.0  # wall time spent on this case
    predicted_measure_s: float = math.nan  # warm-up + rounds, predicted from the step after the first
    steady_measure_s: float = math.nan  # what that part really took (first inference call excluded)
    steady_window: tuple[float, float] | None = None  # perf_counter at the start and end of warm-up + rounds
    telemetry: dict = field(default_factory=dict)  # GPU telemetry columns (bench.instruments.telemetry), CUDA cases only
    untimed_phases: str = ""  # why only the step is timed (a whole-step case: Case.whole_step), else ''
    numerics: dict = field(default_factory=dict)  # how far from fp32 eager (bench.instruments.numerics.COLUMNS), after timing
    # sampling across processes (bench.engine.process_samples): which process took each sample, how many processes, the
    # spread of their medians per phase, and why a process is missing
    sample_process: dict[Phase, list[int]] = field(default_factory=dict)
    processes: int = 1
    process_spread: dict[Phase, float] = field(default_factory=dict)
    process_note: str = ""


# --------------------------------------------------------------------------- blocks


def calibrate_iters(per_iter_s: float, config: TimingConfig) -> int:
    if not per_iter_s > 0:
        return 1
    return max(1, min(config.max_block_iters, math.ceil(config.min_block_s / per_iter_s)))


# --------------------------------------------------------------------------- one case


def build_step(case: Case) -> mlp.TrainStep:
    """The case's step, every knob applied (``Case.knobs``: compile mode and scope, CUDA graph, param dtype, epilogue)."""
    # built on its device: initialising a w8192 network on the host takes seconds, on the GPU milliseconds
    with torch.device(case.device if case.device == "cuda" else "cpu"):
        model = case.build_model()
    return mlp.TrainStep(model, loss=case.loss, optimizer=case.optimizer, precision=case.dtype,
                         device=case.device, optimizer_options=case.optimizer_options, knobs=case.knobs)


def case_pool(case: Case, step: mlp.TrainStep, size: int = BATCH_POOL) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The case's batches (seed 0), stored as its step reads them (``TrainStep.prepare``)."""
    gen = torch.Generator().manual_seed(0)
    return [step.prepare(*case.make_batch(gen)) for _ in range(size)]


@contextlib.contextmanager
def case_context(case: Case):
    """Threads and matmul precision of the case for its duration; dynamo starts clean for compiled cases."""
    with torch_threads(case.threads):
        if case.compiled:
            # One dynamo cache per code object: without a reset, after `recompile_limit` cases every
            # nn.Sequential.forward would silently run eager.
            torch._dynamo.reset()
        with mlp.matmul_precision(Precision(case.dtype)):
            yield


def cudagraph_step_marker(case: Case) -> Callable[[], None]:
    """reduce-overhead / max-autotune on CUDA replay CUDA graphs: each new iteration must be announced."""
    if case.cuda_graphs:
        return torch.compiler.cudagraph_mark_step_begin
    return lambda: None


def _dynamo_counts() -> tuple[int, int, int]:
    from torch._dynamo.utils import counters

    return (counters["stats"]["unique_graphs"], sum(counters["graph_break"].values()), counters["frames"]["ok"])


def measure(case: Case, config: TimingConfig = TimingConfig(),
            on_predict: Callable[[float], object] | None = None) -> Measurement:
    """Measure one case: warm-up, then interleaved rounds of step / phase / inference blocks.

    After the first step, ``on_predict`` (a progress bar) gets the predicted measuring time, and a
    case predicted beyond ``config.max_case_s`` comes back ``skipped``. Raises on failure (OOM,
    compile error); the runner turns that into a status row.
    """
    wall_start = time.perf_counter()
    device = torch.device(case.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return Measurement(case, status=Status.SKIPPED, reason="CUDA is not available on this machine")
    result = Measurement(case)
    with case_context(case):
        compiled = case.compiled
        if compiled:
            from torch._dynamo.utils import counters
            counters.clear()
        step = build_step(case)
        result.optimizer_impl = step.optimizer_impl
        result.threads = torch.get_num_threads()
        clock = clock_for(device)
        pool = case_pool(case, step)
        mark_step = cudagraph_step_marker(case)
        whole = case.whole_step  # one compiled function or one CUDA graph: only the step itself is timed
        result.untimed_phases = f"phases not timed apart: {step.whole_step}" if whole else ""

        def train_step(i: int):
            x, y = pool[i % BATCH_POOL]
            mark_step()
            step.step(x, y)

        def infer(i: int):
            mark_step()
            step.infer(pool[i % BATCH_POOL][0])

        # cold start (and compilation) on its own clock
        result.first_step_s = time_block(train_step, 1, clock)
        result.predicted_measure_s = predict_measure_s(_probe_step_s(train_step, clock, config), config)
        if on_predict is not None:
            on_predict(result.predicted_measure_s)
        if config.max_case_s is not None and result.predicted_measure_s > config.max_case_s:
            result.status, result.reason = Status.SKIPPED, over_budget_reason(result.predicted_measure_s, config.max_case_s)
            result.measure_s = time.perf_counter() - wall_start
            return result
        steady_start = time.perf_counter()
        warm_per_iter = warm_up(train_step, clock, config)
        if not whole:
            result.first_inference_s = time_block(infer, 1, clock)
            warm_up(infer, clock, config, budget_s=config.warmup_s / 2)
        if compiled:
            graphs, breaks, frames_after_warmup = _dynamo_counts()
            result.compile_graphs, result.graph_breaks = graphs, breaks
            if graphs == 0:
                raise RuntimeError("compiled case produced no graph: it would run eager")

        step_iters = calibrate_iters(warm_per_iter, config)
        result.iters_per_block = {Phase.STEP: step_iters}
        if not whole:
            infer_iters = calibrate_iters(time_block(infer, 1, clock), config)
            result.iters_per_block.update({Phase.INFERENCE: infer_iters, **{p: step_iters for p in TRAINING_PHASES}})
        samples: dict[Phase, list[float]] = {p: [] for p in result.iters_per_block}
        both = {name: {p: [] for p in result.iters_per_block if p in BOTH_CLOCK_PHASES} for name in CLOCKS}
        primary, other = run_clocks(config.clock, clock, device)
        other_name = next(c for c in CLOCKS if c != config.clock)

        def timed(phase: Phase, fn, iters: int) -> None:
            value, other_value = time_block_both(fn, iters, primary, other)
            samples[phase].append(value)
            both[config.clock][phase].append(value)
            both[other_name][phase].append(other_value)

        rounds = 0
        while rounds < config.max_rounds and (
                rounds < config.repeats or sum(both["wall"][Phase.STEP]) * step_iters < config.min_time_s):
            timed(Phase.STEP, train_step, step_iters)
            if not whole:
                for phase, value in time_phases(step, pool, step_iters, primary, mark_step).items():
                    samples[phase].append(value)
                timed(Phase.INFERENCE, infer, infer_iters)
            rounds += 1
        result.samples, result.clock_samples = samples, both

        if compiled:
            result.recompiles = _dynamo_counts()[2] - frames_after_warmup
        steady_end = time.perf_counter()
        result.steady_window = (steady_start, steady_end)
        result.steady_measure_s = steady_end - steady_start - (0.0 if whole else result.first_inference_s)
        if device.type == "cuda":
            result.harness_mem_bytes = harness_bytes(step, pool)
            result.peak_mem_bytes = peak_memory_per_phase(step, pool, mark_step, step_only=whole)
    result.measure_s = time.perf_counter() - wall_start
    return result


BOTH_CLOCK_PHASES = (Phase.STEP, Phase.INFERENCE)  # blocks read on both clocks (samples.csv wall_s, cpu_s)


def run_clocks(name: str, wall: Clock, device: torch.device) -> tuple[Clock, Clock | None]:
    """(the clock a block's seconds are read on, the other one recorded beside it) for ``--clock name``; the CPU-time
    clock at the thread count in force (``clocks.cpu_clock``). CPU time has no meaning for a CUDA case: refused."""
    cpu = cpu_clock(device)
    if name == "cpu":
        if cpu is None:
            raise ValueError(f"--clock cpu times CPU work; a {device.type} case is timed on the wall clock "
                             "(CUDA events)")
        return cpu, wall
    return wall, cpu


# --------------------------------------------------------------------------- the case's time budget

INFERENCE_STEP_FRACTION = 0.4  # a forward alone: ~1/3 of a step's matmul FLOPs, plus per-call overhead
MIN_PREDICTED_ITER_S = 1e-9  # a zero reading (coarse clock) must not stall the warm-up simulation


def predict_measure_s(step_s: float, config: TimingConfig) -> float:
    """Seconds that warm-up and the timed rounds of ``measure`` will take for a step of ``step_s``.

    Replays the same loops (warm-up budgets and minimum counts, block calibration, repeats and
    ``min_time_s``) with a constant step time; the phase block costs one step block, inference
    ``INFERENCE_STEP_FRACTION`` of a step. Compilation is not in it: the first step already paid
    for the training graph, and a compiled inference graph's first call is kept apart too.
    """
    step_s = max(step_s, MIN_PREDICTED_ITER_S)
    infer_s = step_s * INFERENCE_STEP_FRACTION
    step_iters, infer_iters = calibrate_iters(step_s, config), calibrate_iters(infer_s, config)
    warm_up_s = (_warm_up_s(step_s, config, config.warmup_s) + _warm_up_s(infer_s, config, config.warmup_s / 2)
                 + infer_s)  # + the inference calibration call
    rounds = 0
    while rounds < config.max_rounds and (rounds < config.repeats or rounds * step_iters * step_s < config.min_time_s):
        rounds += 1
    return warm_up_s + rounds * (2 * step_iters * step_s + infer_iters * infer_s)


def _probe_step_s(train_step: Callable[[int], object], clock: Clock, config: TimingConfig) -> float:
    """One warm step; a short one is re-read as the mean of a block (one step is at the mercy of noise)."""
    one_s = time_block(train_step, 1, clock)
    if one_s >= config.min_block_s:
        return one_s  # a slow case: no second step before the budget decision
    return time_block(train_step, calibrate_iters(one_s, config), clock)


def _warm_up_s(per_iter_s: float, config: TimingConfig, budget_s: float) -> float:
    """What ``warm_up`` spends for a constant ``per_iter_s``."""
    spent, count, iters = 0.0, 0, 1
    while count < config.min_warmup_iters or spent < budget_s:
        spent += per_iter_s * iters
        count += iters
        iters = calibrate_iters(per_iter_s, config)
    return spent


def over_budget_reason(predicted_s: float, max_case_s: float) -> str:
    """The skip reason: the prediction, the budget, and the budget that would measure it."""
    return (f"predicted {predicted_s:.3g} s of measuring > --max-case-s {max_case_s:g}; "
            f"run it with --max-case-s {_round_up(predicted_s * BUDGET_HEADROOM):g}")


BUDGET_HEADROOM = 1.2  # the suggested budget leaves room for the prediction's error


def _round_up(value: float) -> float:
    """Up to a half step of the leading digit: 192 -> 200, 37 -> 40, 12 -> 15."""
    magnitude = 10 ** math.floor(math.log10(value))
    return math.ceil(value / magnitude * 2) / 2 * magnitude


def warm_up(fn: Callable[[int], object], clock: Clock, config: TimingConfig, budget_s: float | None = None,
            agree: Callable[[float], float] | None = None) -> float:
    """Run ``fn`` until the budget is spent and the minimum count reached; return the last mean per call.

    ``agree`` maps each block's time to one value shared by every process (data-parallel ranks take
    the slowest), so all ranks run the same number of blocks and iterations and no collective hangs.
    """
    budget_s = config.warmup_s if budget_s is None else budget_s
    spent, count, iters, per_iter = 0.0, 0, 1, math.nan
    while count < config.min_warmup_iters or spent < budget_s:
        per_iter = time_block(fn, iters, clock)
        if agree is not None:
            per_iter = agree(per_iter)
        spent += per_iter * iters
        count += iters
        iters = calibrate_iters(per_iter, config)
    return per_iter


def time_phases(step: mlp.TrainStep, pool, iters: int, clock: Clock, mark_step) -> dict[Phase, float]:
    """One instrumented block: a clock mark between phases, a single sync at the end."""
    marks = []
    clock.sync()
    for i in range(iters):
        x, y = pool[i % BATCH_POOL]
        mark_step()
        t0 = clock.mark()
        out = step.forward(x)
        t1 = clock.mark()
        step.loss_backward(out, y)
        t2 = clock.mark()
        step.optimizer_step()
        t3 = clock.mark()
        marks.append((t0, t1, t2, t3))
        del out
    clock.sync()
    totals = {p: 0.0 for p in TRAINING_PHASES}
    for t0, t1, t2, t3 in marks:
        totals[Phase.FORWARD] += clock.elapsed_s(t0, t1)
        totals[Phase.BACKWARD] += clock.elapsed_s(t1, t2)
        totals[Phase.OPTIMIZER] += clock.elapsed_s(t2, t3)
    return {p: v / iters for p, v in totals.items()}


def harness_bytes(step: mlp.TrainStep, pool) -> int:
    """CUDA bytes allocated between steps beyond what ``mlp.memory`` counts there (parameters, optimiser
    state, one batch): the pool's other batches and the process's standing allocations.

    The standing allocations are the cuBLAS/cuBLASLt workspaces, which PyTorch allocates through its
    caching allocator and keeps. They take 65-85 MiB in the first H100 run (results/reference/h100), and
    every phase's peak includes them. A measured peak less this is what the analytic phase peaks predict.
    """
    torch.cuda.synchronize()
    state = mlp.optimizer_state_tensors(step.optimizer)
    held = sum(t.nbytes for t in (*step.model.parameters(), *pool[0], *state) if t.is_cuda)
    return torch.cuda.memory_allocated() - held


def peak_memory_per_phase(step: mlp.TrainStep, pool, mark_step, step_only: bool = False) -> dict[Phase, int]:
    """Peak CUDA bytes allocated during each phase of one (untimed) step, reset before each phase.

    ``step_only``: a whole-step case (one compiled function, one CUDA graph) has only the step's peak.
    """
    peaks = {}
    x, y = pool[0]

    def run(phase: Phase, fn):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        value = fn()
        torch.cuda.synchronize()
        peaks[phase] = torch.cuda.max_memory_allocated()
        return value

    if step_only:
        mark_step()
        run(Phase.STEP, lambda: step.step(x, y))
        return peaks
    mark_step()
    out = run(Phase.FORWARD, lambda: step.forward(x))
    run(Phase.BACKWARD, lambda: step.loss_backward(out, y))
    del out
    run(Phase.OPTIMIZER, step.optimizer_step)
    mark_step()
    run(Phase.STEP, lambda: step.step(x, y))
    mark_step()
    run(Phase.INFERENCE, lambda: step.infer(x))
    return peaks
