"""One input-pipeline case measured: the classic loop end to end against the same step fed resident tensors.

The loop is the classic notebook's, through torchvision and a DataLoader::

    dataset = FashionMNIST(root, train=True, download=False, transform=ToTensor())
    loader = DataLoader(dataset, batch_size, shuffle=True, num_workers, pin_memory, persistent_workers)
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        step(x, y)                                  # forward, loss + backward, SGD step, zero_grad

Per loop step three parts are timed, each one a sample (``iters_per_block`` 1):

* ``wait``: the host blocked in ``next(iterator)`` until the batch arrived (the loader's work in
  this process with ``num_workers=0``, the wait for a worker's batch otherwise; a new epoch's
  iterator, when the bounded steps run past one, is part of it), host clock;
* ``copy``: the host-to-device copy of images and labels; on CUDA between CUDA events (from pinned
  memory with ``pin_memory``, asynchronous), on the CPU the ``.to`` that has nothing to copy;
* ``compute``: the training step on that batch; on CUDA between CUDA events, on the CPU host clock;
* ``iteration``: one pass of the loop: on the CPU the host time from asking for the batch to the end
  of the step; on CUDA the time between the ends of two consecutive steps on the device (so a GPU that
  idles while the host waits for data shows it).

All events are read after one synchronize at the end; nothing synchronises inside the loop.
The end-to-end throughput is the measured steps' examples over the loop's wall time (from the first
measured ``next`` to a synchronize after the last step). The *step-only* throughput is the same
``TrainStep`` timed the usual way (``bench.instruments.timing``'s warm-up until steady, then blocks of calls of at
least ``min_block_s``, no instrumentation inside) on ``BATCH_POOL`` batches of the dataset's own images,
resident on the device. Step-only blocks are measured before the loop starts its workers, so the two
never compete for the cores.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

import mlp

from ..case.cases import Case
from ..instruments.clocks import BATCH_POOL, clock_for, time_block
from ..instruments.timing import TimingConfig, build_step, calibrate_iters, case_context, warm_up

STEP_ONLY = "step"  # the step-only phase keeps the engine's name, so summaries read alike
LOOP_PHASES = ("wait", "copy", "compute", "iteration")
DEFAULT_STEPS = 100  # measured loop steps per case (bounded: an epoch of batch 64 is 938 steps)
DEFAULT_WARMUP_STEPS = 10  # loop steps before measuring: worker start-up, first allocations


@dataclass(frozen=True)
class LoaderCase:
    """One input-pipeline configuration: the step's Case and the DataLoader's knobs."""

    case: Case
    num_workers: int = 0
    pin_memory: bool = False
    persistent_workers: bool = True

    def __post_init__(self) -> None:
        if self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")

    @property
    def case_id(self) -> str:
        return f"{self.case.case_id}-w{self.num_workers}-p{int(self.pin_memory)}-k{int(self.persistent_workers)}"

    @property
    def label(self) -> str:
        return (f"{self.case.label} workers{self.num_workers} pin:{'on' if self.pin_memory else 'off'}"
                + ("" if self.persistent_workers or not self.num_workers else " transient"))

    def to_row(self) -> dict[str, object]:
        return {**self.case.to_row(), "num_workers": self.num_workers, "pin_memory": self.pin_memory,
                "persistent_workers": self.persistent_workers}


@dataclass(frozen=True)
class LoopConfig:
    steps: int = DEFAULT_STEPS
    warmup_steps: int = DEFAULT_WARMUP_STEPS
    timing: TimingConfig = TimingConfig()  # the step-only blocks: repeats, warm-up, block length

    def __post_init__(self) -> None:
        if self.steps < 1 or self.warmup_steps < 0:
            raise ValueError(f"steps must be >= 1 and warmup steps >= 0, got {self.steps} and {self.warmup_steps}")


@dataclass
class LoaderMeasurement:
    """Raw result of one case: per-step samples of the loop's parts, step-only block samples, one-offs."""

    lcase: LoaderCase
    status: str = "ok"  # ok | skipped | error
    reason: str = ""
    samples: dict[str, list[float]] = field(default_factory=dict)  # phase -> seconds (per step or per call)
    step_only_iters: int = 0
    first_batch_s: float = math.nan  # iterator created -> first batch (worker start-up with workers)
    loop_wall_s: float = math.nan  # the measured steps' wall time, synchronised
    loop_examples: int = 0  # examples in the measured steps (a last partial batch counts what it holds)
    optimizer_impl: str = ""
    torch_threads: int = 0
    measure_s: float = 0.0

    @property
    def epoch_samples_per_s(self) -> float:
        return self.loop_examples / self.loop_wall_s if self.loop_wall_s > 0 else math.nan


def skip_reason(lcase: LoaderCase) -> str | None:
    """Why a case cannot run here (a row, not an error), or None."""
    if lcase.case.device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available on this machine"
    if lcase.pin_memory and lcase.case.device != "cuda":
        return "pin_memory pins host memory for a copy to a CUDA device; a CPU case copies nothing"
    return None


def resident_pool(dataset, lcase: LoaderCase) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``BATCH_POOL`` batches of the dataset's own examples (through its transform), on the device."""
    batch, device = lcase.case.batch, torch.device(lcase.case.device)
    pool = []
    for b in range(BATCH_POOL):
        items = [dataset[(b * batch + i) % len(dataset)] for i in range(batch)]
        x = torch.stack([image for image, _ in items])  # (batch, 1, 28, 28)
        y = torch.tensor([label for _, label in items], dtype=torch.int64)  # (batch,)
        pool.append((x.to(device), y.to(device)))
    return pool


def measure_step_only(step: mlp.TrainStep, pool, config: TimingConfig, device: torch.device) -> tuple[list[float], int]:
    """The step fed resident batches, timed as ``mlpbench run`` times it: warm-up, then ``repeats`` blocks."""
    clock = clock_for(device)

    def train_step(i: int):
        x, y = pool[i % BATCH_POOL]
        step.step(x, y)

    iters = calibrate_iters(warm_up(train_step, clock, config), config)
    return [time_block(train_step, iters, clock) for _ in range(config.repeats)], iters


def measure_loop(step: mlp.TrainStep, loader, config: LoopConfig, device: torch.device) -> dict:
    """The classic loop for warm-up + measured steps; per-step parts as in the module docstring."""
    cuda = device.type == "cuda"
    start = time.perf_counter()
    iterator = iter(loader)
    first = next(iterator)
    first_batch_s = time.perf_counter() - start
    pending = [first]

    def next_batch():
        nonlocal iterator
        if pending:
            return pending.pop()
        try:
            return next(iterator)
        except StopIteration:  # the bounded steps ran past an epoch: a new epoch, as the classic loop does
            iterator = iter(loader)
            return next(iterator)

    def one_step():
        t0 = time.perf_counter()
        x, y = next_batch()
        t1 = time.perf_counter()
        if cuda:
            e0 = torch.cuda.Event(enable_timing=True)
            e1 = torch.cuda.Event(enable_timing=True)
            e2 = torch.cuda.Event(enable_timing=True)
            e0.record()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            e1.record()
            step.step(x, y)
            e2.record()
            return len(x), t1 - t0, (e0, e1, e2)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        t2 = time.perf_counter()
        step.step(x, y)
        t3 = time.perf_counter()
        return len(x), t1 - t0, (t1, t2, t3, t0)

    for _ in range(config.warmup_steps):
        one_step()
    if cuda:
        torch.cuda.synchronize(device)
        begin = torch.cuda.Event(enable_timing=True)
        begin.record()
    wall_start = time.perf_counter()
    records = [one_step() for _ in range(config.steps)]
    if cuda:
        torch.cuda.synchronize(device)
    loop_wall_s = time.perf_counter() - wall_start
    samples = {phase: [] for phase in LOOP_PHASES}
    previous_end = begin if cuda else None
    for _, wait_s, marks in records:
        samples["wait"].append(wait_s)
        if cuda:
            e0, e1, e2 = marks
            samples["copy"].append(e0.elapsed_time(e1) * 1e-3)
            samples["compute"].append(e1.elapsed_time(e2) * 1e-3)
            samples["iteration"].append(previous_end.elapsed_time(e2) * 1e-3)
            previous_end = e2
        else:
            t1, t2, t3, t0 = marks
            samples["copy"].append(t2 - t1)
            samples["compute"].append(t3 - t2)
            samples["iteration"].append(t3 - t0)
    return {"samples": samples, "first_batch_s": first_batch_s, "loop_wall_s": loop_wall_s,
            "loop_examples": sum(n for n, _, _ in records)}


def measure_loader_case(lcase: LoaderCase, dataset, config: LoopConfig = LoopConfig(), seed: int = 0) -> LoaderMeasurement:
    """Step-only blocks, then the loop, for one case; raises on failure (the command turns it into a row)."""
    wall_start = time.perf_counter()
    result = LoaderMeasurement(lcase)
    reason = skip_reason(lcase)
    if reason:
        result.status, result.reason = "skipped", reason
        return result
    case, device = lcase.case, torch.device(lcase.case.device)
    with case_context(case):
        torch.manual_seed(seed)
        step = build_step(case)
        result.optimizer_impl, result.torch_threads = step.optimizer_impl, torch.get_num_threads()
        step_only, result.step_only_iters = measure_step_only(step, resident_pool(dataset, lcase), config.timing,
                                                              device)
        loader = mlp.fashion_mnist_loader(dataset, case.batch, lcase.num_workers, lcase.pin_memory,
                                          lcase.persistent_workers, seed=seed)
        loop = measure_loop(step, loader, config, device)
        del loader  # persistent workers end here, before the next case measures
    result.samples = {STEP_ONLY: step_only, **loop["samples"]}
    result.first_batch_s, result.loop_wall_s = loop["first_batch_s"], loop["loop_wall_s"]
    result.loop_examples = loop["loop_examples"]
    result.measure_s = time.perf_counter() - wall_start
    return result
