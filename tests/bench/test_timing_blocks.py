"""Which call becomes which sample: bench.instruments.timing and bench.instruments.clocks on a virtual clock, against a hand count.

The step, its phases and the inference advance a virtual clock by a known amount per call, and each call's
duration tells which call it was (the n-th step call takes n+1 ms). So the protocol's bookkeeping is read off
exactly: the first step, the probe and the warm-up steps are not samples, the first sample is the step call
that follows them, every phase's sample is the mean of its own block's calls, and a block of k calls is divided
by k. The counts below are written out by hand from docs/design.md's protocol, not taken from the code.
"""

from __future__ import annotations

import pytest

from bench.instruments.clocks import time_block
from bench.instruments.timing import Phase, TimingConfig

from virtual_clock import MS, CountingStep, VirtualClock, measure_on  # tests/bench/ is on sys.path


def test_each_sample_is_the_step_call_after_the_first_the_probe_and_the_warm_up(monkeypatch):
    """One call per block (min_block_s far below a call): step call n takes n+1 ms.

    By hand: call 0 is the cold first step, call 1 the probe (10+ ms >= min_block_s: no second block), calls
    2, 3, 4 the three warm-up steps (warmup_s 0: the minimum count), so the samples are calls 5..5+repeats-1,
    i.e. 6, 7, ... ms. Inference: call 0 the first inference, 1-3 its warm-up, 4 the calibration call, then
    the samples are calls 5.. (6, 7, ... ms)."""
    config = TimingConfig(repeats=4, warmup_s=0.0, min_warmup_iters=3, min_block_s=1e-6)
    m, step = measure_on(monkeypatch, config, step_ms=lambda n: n + 1.0, infer_ms=lambda n: n + 1.0)
    assert m.first_step_s == pytest.approx(1 * MS)
    assert m.first_inference_s == pytest.approx(1 * MS)
    assert m.iters_per_block == {p: 1 for p in Phase}
    assert m.samples[Phase.STEP] == pytest.approx([6 * MS, 7 * MS, 8 * MS, 9 * MS])
    assert m.samples[Phase.INFERENCE] == pytest.approx([6 * MS, 7 * MS, 8 * MS, 9 * MS])
    assert m.samples[Phase.FORWARD] == pytest.approx([CountingStep.FORWARD * MS] * 4)
    assert m.samples[Phase.BACKWARD] == pytest.approx([CountingStep.BACKWARD * MS] * 4)
    assert m.samples[Phase.OPTIMIZER] == pytest.approx([CountingStep.OPTIMIZER * MS] * 4)
    assert (step.steps, step.infers) == (1 + 1 + 3 + 4, 1 + 3 + 1 + 4)  # nothing called that is not accounted


def test_a_block_of_k_calls_is_divided_by_k_and_its_calls_are_its_own(monkeypatch):
    """Steps of 2 ms against a 5 ms block: ceil(5/2) = 3 calls per block, each sample 2 ms (not 6, not 2*3/2).

    Inference: 1 ms calls -> 5 per block. The phases of an instrumented block: 1, 2, 4 ms per call whatever the
    block's length. The cold first step takes 50 ms and must reach no sample."""
    config = TimingConfig(repeats=3, warmup_s=0.0, min_warmup_iters=3, min_block_s=5 * MS)
    m, step = measure_on(monkeypatch, config, step_ms=lambda n: 50.0 if n == 0 else 2.0, infer_ms=lambda n: 1.0)
    # steps: cold 1, probe 1 + a block of 3 (2 ms < 5 ms), warm-up 1 + 3, rounds 3 x 3;
    # inferences: first 1, warm-up 1 + 5, calibration 1, rounds 3 x 5
    assert (step.steps, step.infers) == (1 + 4 + 4 + 9, 1 + 6 + 1 + 15)
    assert m.first_step_s == pytest.approx(50 * MS)
    assert m.iters_per_block[Phase.STEP] == 3 and m.iters_per_block[Phase.INFERENCE] == 5
    assert all(m.iters_per_block[p] == 3 for p in (Phase.FORWARD, Phase.BACKWARD, Phase.OPTIMIZER))
    assert m.samples[Phase.STEP] == pytest.approx([2 * MS] * 3)
    assert m.samples[Phase.INFERENCE] == pytest.approx([1 * MS] * 3)
    for phase, ms in ((Phase.FORWARD, 1.0), (Phase.BACKWARD, 2.0), (Phase.OPTIMIZER, 4.0)):
        assert m.samples[phase] == pytest.approx([ms * MS] * 3), phase


def test_min_time_adds_rounds_until_the_step_blocks_total_it(monkeypatch):
    """repeats 2 but min_time_s 59 ms with blocks of 3 x 2 ms steps: rounds continue while the step blocks total
    (samples x calls per block) < 59 ms, so exactly 10 rounds (54 ms after 9, 60 ms after 10). Summing the
    per-call samples instead of the blocks would run 30."""
    config = TimingConfig(repeats=2, min_time_s=0.059, warmup_s=0.0, min_warmup_iters=3, min_block_s=5 * MS)
    m, _ = measure_on(monkeypatch, config, step_ms=lambda n: 2.0, infer_ms=lambda n: 1.0)
    assert m.iters_per_block[Phase.STEP] == 3
    assert len(m.samples[Phase.STEP]) == 10
    assert all(len(m.samples[p]) == 10 for p in Phase)


def test_time_block_is_the_mean_of_exactly_its_calls():
    """fn(i) is called for i = 0..k-1 once each, and the block's time is divided by k."""
    clock, seen = VirtualClock(), []

    def fn(i):
        seen.append(i)
        clock.now += (i + 1) * MS

    assert time_block(fn, 4, clock) == pytest.approx((1 + 2 + 3 + 4) / 4 * MS)
    assert seen == [0, 1, 2, 3]
