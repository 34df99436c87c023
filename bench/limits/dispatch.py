"""The dispatch floor per device: what one ATen operator costs when it does (almost) no work.

The measurements, so that "overhead-bound" is a number of microseconds per op:

* ``add_s``: one one-element ``a + b``, timed in blocks (Python call, dispatcher, allocation;
  on CUDA one kernel launch);
* ``backprop_per_op_s``: the forward, loss and backward of a tiny training step (an 8-wide MLP,
  batch 1), warmed up, timed in blocks, divided by the ATen ops it dispatches (counted by the
  gate's ``OpCounter``). This includes autograd's Python and bookkeeping per op, as a real eager
  step does;
* ``inference_per_op_s``: the same net's forward under ``torch.inference_mode`` (``TrainStep.infer``),
  per op: no autograd, the cheapest ops a step dispatches;
* ``autograd_per_op_s``: the tiny net's backward alone (``loss.backward(retain_graph=True)`` on one
  recorded graph), per op: the ops autograd's C++ engine dispatches, with no Python between them
  (2.5 us against 4.9 us for the whole backprop's average on the 2-core Zen 5 EPYC);
* ``per_op_s``, the floor the speed-of-light model charges per op of a forward or inference phase:
  the lower of the backprop's and the inference's (an inference phase's ops cost less than a
  backward's: charged the backprop's average, a quiet machine's inference ran below its floor);
* ``phase_per_op_s``: what a backward, optimiser or whole-step phase is charged per op: the lower of
  ``per_op_s`` and ``autograd_per_op_s``. Those phases dispatch most of their ops from the engine
  or a foreach kernel, and charged the backprop's average a teaching-net backward (b4) read
  ``sol_fraction`` 1.03: a floor above its own measured time (CI, 2-core EPYC);
* ``tiny_step_s`` / ``tiny_step_ops``: the whole tiny step with its optimiser, for reference (seen:
  the fused CPU SGD of a 2-thread process took ~70 ms on a loaded 2-core machine, against ~2 ms for
  forward and backward: that is the optimiser, not dispatch, so it is kept out of the floor).

Timed on one thread: tensors this small never reach the thread pool, and a contended pool only adds waits.

Each is the best block of those timed within ``DISPATCH_BUDGET_S`` (after a short warm-up): a floor,
read between the bursts of other work on a shared machine. A run measures it at its start and again at its end
and keeps the lower (``best_of_passes``), as it does the matmul ceilings: a neighbour on the sibling hardware
thread slows every block of a 0.5 s window alike, and a floor read then charged an overhead-bound backward of
73 µs with 90 µs (seen beside a second test suite on the 2-core EPYC). The blocks are short (``DISPATCH_MIN_BLOCK_S``,
one or two tiny steps) and many: a 10 ms block on a 2-core machine at load 7 was never free of a
neighbour's slice, and its floor read 2x the per-op cost the run's own cases then showed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import torch

import mlp

from .ceiling import block_samples
from ..instruments.clocks import clock_for, time_block, torch_threads
from ..instruments.counters import OpCounter
from ..analysis.stats import summarize
from ..instruments.timing import TimingConfig
from .registry import declare
from .speed_of_light import Bound, charged_ops

TINY_WIDTH, TINY_DEPTH, TINY_BATCH = 8, 2, 1
DISPATCH_MIN_BLOCK_S = 0.001  # hundreds of microsecond calls per block; a tiny step or two: far below a time slice
DISPATCH_BUDGET_S = 0.5  # per measurement: blocks stop here (at least ceiling.MIN_BLOCKS), even on a contended machine
MAX_BLOCKS = 300  # more blocks, more chances to see the floor between the neighbours' bursts
WARMUP_S, MIN_WARMUP_CALLS = 0.1, 5


@dataclass(frozen=True)
class DispatchFloor:
    device: str
    threads: int
    add_s: float  # one one-element add
    per_op_s: float  # the floor per op: the lower of the backprop's and the inference's per op
    tiny_backprop_s: float
    tiny_backprop_ops: int
    tiny_step_s: float  # the whole tiny step, optimiser included
    tiny_step_ops: int
    spread_rel: float  # IQR / median of the tiny forward + backward's blocks
    spent_s: float
    backprop_per_op_s: float = float("nan")  # tiny forward + loss + backward, per ATen op
    tiny_inference_s: float = float("nan")  # the tiny forward under inference_mode
    tiny_inference_ops: int = 0
    autograd_per_op_s: float = float("nan")  # the tiny backward alone (the engine's ops), per ATen op
    tiny_autograd_ops: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def best_of_passes(start: dict, end: DispatchFloor) -> dict:
    """The floor to keep of a start pass (meta.json's dict) and an end pass: the one with the lower ``per_op_s``,
    whole (its figures belong together), with both passes' ``per_op_s`` and which one it is recorded.
    A pass that read no finite floor never wins. The engine's per-op floor is the lower of the two passes' own: it
    is its own measurement, and the lower read is the one nearer the floor."""
    best = start.get("per_op_s", math.nan)  # a resumed run's start dict may hold an earlier end pass's floor already
    end_wins = math.isfinite(end.per_op_s) and not (math.isfinite(best) and best <= end.per_op_s)
    kept = end.as_dict() if end_wins else dict(start)
    autograd = [v for v in (start.get("autograd_per_op_s"), end.autograd_per_op_s) if v is not None and math.isfinite(v)]
    kept.update(per_op_s_start=start.get("per_op_s_start", best), per_op_s_end=end.per_op_s,
                autograd_per_op_s=min(autograd, default=math.nan),
                floor_pass="end" if end_wins else start.get("floor_pass", "start"),
                spent_s=start.get("spent_s", 0.0) + end.spent_s)
    return kept


def tiny_step(device: str) -> tuple[mlp.TrainStep, torch.Tensor, torch.Tensor]:
    model = mlp.uniform(TINY_WIDTH, TINY_DEPTH, "relu")
    step = mlp.TrainStep(model, "mse", "sgd", "fp32", device)
    x = torch.randn(TINY_BATCH, TINY_WIDTH, device=device)
    y = torch.randn(TINY_BATCH, TINY_WIDTH, device=device)
    return step, x, y


def count_ops(fn) -> int:
    counter = OpCounter()
    with counter:
        fn()
    return counter.aten_ops


def measure_dispatch(device: str) -> DispatchFloor:
    dev = torch.device(device)
    clock = clock_for(dev)
    start = time.perf_counter()
    a, b = torch.ones(1, device=dev), torch.ones(1, device=dev)
    add_s, _ = _best(lambda i: a + b, clock)
    step, x, y = tiny_step(device)
    step.step(x, y)  # the first step creates state; count and time steady steps
    threads = torch.get_num_threads()  # the caller's setting: the floor is filed under it
    # tensors this small never fan out to the pool: one thread is the same dispatch, without the barrier
    # waits a contended pool adds (seen: 3.5 ms for 45 ops at load 15 on 2 cores)
    with torch_threads(1):
        return _measure_tiny(dev, add_s, step, x, y, clock, start, threads)


def _measure_tiny(dev, add_s, step, x, y, clock, start, threads) -> DispatchFloor:
    def backprop(i: int = 0) -> None:
        step.loss_backward(step.forward(x), y)
        step.optimizer.zero_grad(set_to_none=True)  # no ATen op: the next backward writes fresh gradients

    backprop_ops = count_ops(backprop)
    backprop_s, spread = _best(backprop, clock)
    inference_ops = count_ops(lambda: step.infer(x))
    inference_s, _ = _best(lambda i: step.infer(x), clock)
    loss = step.loss_fn(step.forward(x), y)  # one graph, replayed: the engine's ops only

    def engine(i: int = 0) -> None:
        loss.backward(retain_graph=True)  # accumulates into .grad: the add ops that does are counted too

    autograd_ops = count_ops(engine)
    autograd_s, _ = _best(engine, clock)
    step.optimizer.zero_grad(set_to_none=True)
    step_ops = count_ops(lambda: step.step(x, y))
    step_s, _ = _best(lambda i: step.step(x, y), clock)
    per_op_s = min(backprop_s / backprop_ops, inference_s / inference_ops)
    return DispatchFloor(dev.type, threads, add_s, per_op_s, backprop_s, backprop_ops, step_s, step_ops, spread,
                         time.perf_counter() - start, backprop_s / backprop_ops, inference_s, inference_ops,
                         autograd_s / autograd_ops, autograd_ops)


PYTHON_DISPATCHED = ("forward", "inference")  # phases whose every op is a Python call: charged ``per_op_s``


def phase_per_op_s(dispatch: dict, phase: str) -> float:
    """The floor per op a phase is charged (``dispatch``: meta.json's record): ``per_op_s`` for a forward or
    an inference, the lower of it and the engine's ``autograd_per_op_s`` for a backward, an optimiser or a whole
    step (a run from before the engine's figure: ``per_op_s`` throughout)."""
    per_op = dispatch.get("per_op_s", math.nan)
    engine = dispatch.get("autograd_per_op_s")
    if phase in PYTHON_DISPATCHED or engine is None or not math.isfinite(engine):
        return per_op
    return min(per_op, engine) if math.isfinite(per_op) else engine


def _best(fn, clock) -> tuple[float, float]:
    start, calls = time.perf_counter(), 0
    while calls < MIN_WARMUP_CALLS or time.perf_counter() - start < WARMUP_S:
        time_block(fn, 1, clock)
        calls += 1
    samples = block_samples(fn, clock, TimingConfig(min_block_s=DISPATCH_MIN_BLOCK_S),
                            deadline=time.perf_counter() + DISPATCH_BUDGET_S, repeats=MAX_BLOCKS)
    stats = summarize(samples)
    return stats.min, stats.iqr_rel


def _overhead_s(record: dict | None, row: dict) -> float:
    ops, per_op = charged_ops(row), phase_per_op_s(record or {}, str(row.get("phase", "")))
    return math.nan if ops is None or per_op is None else ops * per_op


# One floor per device x threads; measured again after the cases, the lower pass kept (``best_of_passes``).
LIMIT = declare("dispatch", lambda device, dtype: measure_dispatch(device),
                again=lambda start, device: best_of_passes(start, measure_dispatch(device)),
                sol_term=Bound.OVERHEAD, sol_seconds=_overhead_s)
