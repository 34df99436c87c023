"""A training step whose phases take known times, for timing tests that hold on a loaded machine.

``add_sleeps`` makes a model's forward, a loss function and a torch optimiser's ``step`` sleep a
fixed time, on top of the real work: ``time.sleep`` is the reference, and a missing or doubled
phase moves the numbers by whole sleeps. The sleeps sit where the real work is: a forward
pre-hook on the model (so forward and inference pay it), the loss function (loss + backward),
and the torch optimiser's own ``step`` (the optimiser phase). ``conftest.sleeping_steps`` applies
it to every step ``bench.instruments.timing`` builds.

Why not real compute: on the shared, loaded 2-core AMD EPYC (load average 3.6-6.4) the phase-sum
gap of tiny real cases ranged from -50% to +9% between runs, so a band that lets the unmodified
code pass also lets a step without its optimiser pass (see tests/bench/test_timing.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Sleeps:
    forward_s: float = 0.016  # also the inference time: 0.4 of the step, the prediction's assumption
    backward_s: float = 0.012  # loss + backward
    optimizer_s: float = 0.012  # optimiser step

    @property
    def step_s(self) -> float:
        return self.forward_s + self.backward_s + self.optimizer_s


SLEEPS = Sleeps()


def add_sleeps(model, loss_fn, optimizer, sleeps: Sleeps = SLEEPS):
    """Make ``model``'s forward, ``loss_fn`` and ``optimizer.step`` sleep; returns the wrapped loss function."""
    model.register_forward_pre_hook(lambda module, args: time.sleep(sleeps.forward_s))
    real_step = optimizer.step

    def sleeping_optimizer_step(*args, **kwargs):
        time.sleep(sleeps.optimizer_s)
        return real_step(*args, **kwargs)

    optimizer.step = sleeping_optimizer_step

    def sleeping_loss(out, y):
        time.sleep(sleeps.backward_s)
        return loss_fn(out, y)

    return sleeping_loss


def sleeping_build(real_build):
    """``bench.instruments.timing.build_step`` whose steps sleep ``SLEEPS`` in their phases (``add_sleeps``)."""
    def build(case):
        step = real_build(case)
        step.loss_fn = add_sleeps(step.model, step.loss_fn, step.optimizer)
        return step

    return build
