"""Fixtures of the bench tests: ``sleeping_steps``, a training step whose phases take known times.

Every sweep measures a memory-bandwidth ceiling (~2 s: arrays past the last-level cache) and a
dispatch floor (~1 s). Tests of other things get fixed stand-ins, so the suite stays fast; the
real measurements are tested in test_limits.py and run in the session-scoped sweeps (the smoke
run, the report's run), which function-scoped fixtures do not reach. Mark a test
``real_limits`` to measure them for real.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch
from sleeping_step import SLEEPS, Sleeps, sleeping_build  # tests/bench/ is on sys.path (rootdir conftest mode)
from stand_ins import STAND_IN_BYTES_PER_S, STAND_IN_PER_OP_S

from bench.instruments import timing
from bench.limits.bandwidth import Bandwidth
from bench.limits import registry
from bench.limits.dispatch import DispatchFloor, best_of_passes



def _bandwidth(device: str, dtype: str) -> Bandwidth:
    rate = STAND_IN_BYTES_PER_S
    return Bandwidth(device, dtype, torch.get_num_threads(), 0, 0, "test stand-in", rate, rate, rate, 0.0, 0.0)


def _dispatch(device: str) -> DispatchFloor:
    per_op = STAND_IN_PER_OP_S
    return DispatchFloor(device, torch.get_num_threads(), per_op, per_op, 45 * per_op, 45, 46 * per_op, 46, 0.0, 0.0)


@pytest.fixture(autouse=True)
def _stand_in_limits(request, monkeypatch):
    if request.node.get_closest_marker("real_limits") is None:
        monkeypatch.setattr(registry, "registered", _stand_in_registry(registry.registered()))


def _stand_in_registry(limits: tuple) -> Callable[[], tuple]:
    """The registry with the bandwidth and dispatch passes replaced by the stand-ins (the engine reads the registry;
    the limit modules' own functions stay real for the tests that call them)."""
    stand_ins = {"bandwidth": {"measure": _bandwidth},
                 "dispatch": {"measure": lambda device, dtype: _dispatch(device),
                              "again": lambda start, device: best_of_passes(start, _dispatch(device))}}
    replaced = tuple(replace(limit, **stand_ins.get(limit.name, {})) for limit in limits)
    return lambda: replaced


@pytest.fixture
def sleeping_steps(monkeypatch) -> Sleeps:
    """Every step ``bench.instruments.timing`` builds in this test sleeps ``SLEEPS`` in its phases (sleeping_step.py)."""
    monkeypatch.setattr(timing, "build_step", sleeping_build(timing.build_step))
    return SLEEPS
