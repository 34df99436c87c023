"""A clock for tests of the timing and limit protocols: it moves only when a fake step or kernel says so."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from bench.case.cases import Case
from bench.instruments import timing
from bench.instruments.clocks import Clock

MS = 1e-3
START_S = 64.0  # the virtual clock's reading when a case starts: not 0, so that a time and a difference differ
CASE = Case(width=8, depth=1, batch=2, threads=1)


class VirtualClock(Clock):
    """``now`` is in seconds; a fake step adds what its call takes, so each sample shows which calls it timed."""

    def __init__(self, device=None):
        super().__init__(device)
        self.now = 0.0

    def mark(self):
        return self.now

    @staticmethod
    def elapsed_s(start, end) -> float:
        return end - start


class CountingStep:
    """A TrainStep stand-in: call n of ``step`` / ``infer`` takes ``step_ms(n)`` / ``infer_ms(n)``; the phases of an
    instrumented block take FORWARD / BACKWARD / OPTIMIZER ms each call (``unit``: another unit than the ms, in
    seconds). ``inputs`` records the inputs of each step, forward, backward and inference call, in order, as (kind,
    input, target): a forward's input, a backward's output and target, an inference's input (its target None)."""

    FORWARD, BACKWARD, OPTIMIZER = 1.0, 2.0, 4.0
    optimizer_impl, whole_step = "foreach", ""

    def __init__(self, clock: VirtualClock, step_ms, infer_ms, unit: float = MS):
        self.clock, self.step_ms, self.infer_ms, self.unit = clock, step_ms, infer_ms, unit
        self.steps = self.infers = 0
        self.inputs: list[tuple[str, object, object]] = []

    def prepare(self, x, y):
        return x, y

    def step(self, x, y):
        self.inputs.append(("step", x, y))
        self.clock.now += self.step_ms(self.steps) * self.unit
        self.steps += 1

    def infer(self, x):
        self.inputs.append(("infer", x, None))
        self.clock.now += self.infer_ms(self.infers) * self.unit
        self.infers += 1

    def forward(self, x):
        self.inputs.append(("forward", x, None))
        self.clock.now += self.FORWARD * self.unit
        return x

    def loss_backward(self, out, y):
        self.inputs.append(("backward", out, y))
        self.clock.now += self.BACKWARD * self.unit

    def optimizer_step(self):
        self.clock.now += self.OPTIMIZER * self.unit


def measure_on(monkeypatch, config, step_ms, infer_ms, case: Case = CASE, step_class=CountingStep, unit: float = MS,
               **measure_kw):
    """``timing.measure`` of ``case`` with a CountingStep on a VirtualClock, which also stands in for the wall clock
    (``time.perf_counter``) that measure reads for its own bookkeeping, from START_S; returns (measurement, step).
    The stand-ins check that they are asked for this case's step and its device's clock."""
    clock = VirtualClock()
    clock.now = START_S
    step = step_class(clock, step_ms, infer_ms, unit)

    def build_step(asked):
        assert asked is case
        return step

    def clock_for(device):
        assert device == torch.device(case.device)
        return clock

    monkeypatch.setattr(timing, "build_step", build_step)
    monkeypatch.setattr(timing, "clock_for", clock_for)
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=lambda: clock.now))
    return timing.measure(case, config, **measure_kw), step
