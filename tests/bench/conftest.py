"""Fixtures of the bench tests: ``sleeping_steps``, a training step whose phases take known times."""

from __future__ import annotations

import pytest
from sleeping_step import SLEEPS, Sleeps, add_sleeps  # tests/bench/ is on sys.path (rootdir conftest mode)

from bench import timing


@pytest.fixture
def sleeping_steps(monkeypatch) -> Sleeps:
    """Every step ``bench.timing`` builds in this test sleeps ``SLEEPS`` in its phases (sleeping_step.py)."""
    real_build = timing.build_step

    def build(case):
        step = real_build(case)
        step.loss_fn = add_sleeps(step.model, step.loss_fn, step.optimizer)
        return step

    monkeypatch.setattr(timing, "build_step", build)
    return SLEEPS
