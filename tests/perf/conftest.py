"""pytest-benchmark helpers for tests/perf: pedantic runs with CUDA synchronisation, one step per case.

``make test`` passes ``--benchmark-skip`` (pyproject's addopts), so these run only
with ``--benchmark-only`` (``make perf-save`` / ``make perf-compare``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import torch

from bench.case.cases import Case
from bench.instruments.timing import build_step

ROUNDS = 30  # timed calls per benchmark: enough for a stable median, ~0.5 s for the slowest phase here
WARMUP_ROUNDS = 5  # allocator and oneDNN/cuBLAS heuristics settle within a few steps
# One torch thread unless MLPBENCH_PERF_THREADS says otherwise (0 = torch's default): on a
# shared 2-core machine two OpenMP threads wait on each other whenever another job runs, and
# a 0.25 ms teaching-net forward was seen at 12-16 ms, which no saved-run comparison survives.
PERF_THREADS = int(os.environ.get("MLPBENCH_PERF_THREADS", "1"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run_pedantic(benchmark, target: Callable[..., object], setup: Callable[[], tuple],
                  device: torch.device) -> None:

    def synced_setup():
        args = setup()
        _sync(device)
        return args, {}

    def synced_target(*args):
        result = target(*args)
        _sync(device)
        return result

    benchmark.pedantic(synced_target, setup=synced_setup, rounds=ROUNDS, warmup_rounds=WARMUP_ROUNDS)


@pytest.fixture
def pedantic(benchmark):
    """``pedantic(target, setup, device)``: ``benchmark.pedantic`` with the device idle before each call
    and synchronised inside the timing.

    ``setup`` (untimed) returns the call's positional arguments. On CUDA the target
    ends with a synchronize, so the timer sees the work, not just the launches.
    """
    return lambda target, setup, device: _run_pedantic(benchmark, target, setup, device)


@pytest.fixture
def train_step(request) -> Iterator[tuple]:
    """(TrainStep, input, target) for the parametrised ``case``, run with ``PERF_THREADS`` torch threads."""
    case: Case = request.param.with_(threads=PERF_THREADS)
    threads_before = torch.get_num_threads()
    if case.threads:
        torch.set_num_threads(case.threads)
    step = build_step(case)
    x, y = case.make_batch(torch.Generator().manual_seed(0))
    try:
        yield step, x, y
    finally:
        torch.set_num_threads(threads_before)
