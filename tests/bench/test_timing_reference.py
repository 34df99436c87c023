"""bench.instruments.timing line by line against hand counts: the config's checks, block calibration, warm-up, the
budget's prediction and its skip, the clocks a block is read on, the batches a block cycles through, compiled and
whole-step cases, and the CUDA bookkeeping (memory peaks per phase, the harness's bytes) on a fake allocator.

Everything runs on tests/bench/virtual_clock.py's clock, which moves only when the fake step says so, so each number
below is written out by hand from docs/design.md's protocol and the docstrings, never read back from the code. Times
are binary fractions of a second (U = 2**-10 s) where a loop stops at an exact boundary, so that a ``<`` turned into
``<=`` changes a count and no rounding hides it.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

import mlp
from bench.case.cases import Case
from bench.instruments import timing
from bench.instruments.clocks import BATCH_POOL, ThreadCpuClock, torch_threads
from bench.instruments.timing import Phase, TimingConfig, calibrate_iters, over_budget_reason, predict_measure_s
from bench.runs.status import Status

from virtual_clock import CASE, MS, START_S, CountingStep, VirtualClock, measure_on  # tests/bench/ is on sys.path

U = 2.0**-10  # seconds: exact in binary, so sums of U are exact


# --------------------------------------------------------------------------- the config


@pytest.mark.parametrize("kwargs", [
    dict(repeats=1, min_time_s=0, warmup_s=0, min_block_s=1e-9, processes=1, max_case_s=None),
    dict(processes=16, max_case_s=1e-3, clock="cpu"),
    dict(max_case_s=3), dict(min_time_s=2), dict(repeats=7.0),
])
def test_the_config_takes_every_value_at_its_bounds(kwargs):
    config = TimingConfig(**kwargs)
    assert all(getattr(config, key) == value for key, value in kwargs.items())


@pytest.mark.parametrize("kwargs, message", [
    (dict(clock="cycles"), "clock must be one of wall, cpu, got 'cycles'"),
    (dict(repeats=0), "repeats must be >= 1, got 0"),
    (dict(min_time_s=-U), "min_time_s and warmup_s must be >= 0, min_block_s > 0"),
    (dict(warmup_s=-U), "min_time_s and warmup_s must be >= 0, min_block_s > 0"),
    (dict(min_block_s=0.0), "min_time_s and warmup_s must be >= 0, min_block_s > 0"),
    (dict(max_case_s=0), "max_case_s must be a positive number of seconds or None, got 0"),
    (dict(max_case_s=-1.0), "max_case_s must be a positive number of seconds or None, got -1.0"),
    (dict(max_case_s=math.inf), "max_case_s must be a positive number of seconds or None, got inf"),
    (dict(max_case_s=math.nan), "max_case_s must be a positive number of seconds or None, got nan"),
    (dict(processes=0), "processes must be a whole number from 1 to 16, got 0"),
    (dict(processes=17), "processes must be a whole number from 1 to 16, got 17"),
    (dict(processes=2.0), "processes must be a whole number from 1 to 16, got 2.0"),
    # what meta.json may hold: a bool, a string, a NaN or an infinity is no count of seconds or samples; the
    # fields after ``clock`` (processes) are checked too
    (dict(repeats=True), "repeats must be a finite number, got True"),
    (dict(processes=True), "processes must be a finite number, got True"),
    (dict(min_time_s=math.nan), "min_time_s must be a finite number, got nan"),
    (dict(warmup_s=math.inf), "warmup_s must be a finite number, got inf"),
    (dict(max_block_iters=math.nan), "max_block_iters must be a finite number, got nan"),
    (dict(max_rounds="200"), "max_rounds must be a finite number, got '200'"),
    (dict(max_case_s="10"), "max_case_s must be a finite number, got '10'"),
    (dict(min_block_s=None), "min_block_s must be a finite number, got None"),
])
def test_the_config_refuses_each_bad_value_with_its_own_message(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        TimingConfig(**kwargs)


# --------------------------------------------------------------------------- block calibration and warm-up


@pytest.mark.parametrize("per_iter_s, expected", [
    (0.0, 1), (-1.0, 1), (math.nan, 1),  # no usable reading: one call
    (0.003, 7),  # ceil(0.02 / 0.003) = ceil(6.67)
    (0.0075, 3),  # ceil(2.67)
    (0.05, 1),  # a call longer than a block: still one
    (1e-7, 2000),  # 200 000 calls wanted, capped at max_block_iters
])
def test_a_block_has_the_fewest_calls_that_last_min_block_s(per_iter_s, expected):
    assert calibrate_iters(per_iter_s, TimingConfig(min_block_s=0.02, max_block_iters=2000)) == expected


def test_the_cap_on_a_blocks_calls_is_the_configs():
    assert calibrate_iters(0.001, TimingConfig(min_block_s=0.02, max_block_iters=10)) == 10  # 20 wanted
    assert calibrate_iters(0.001, TimingConfig(min_block_s=0.02, max_block_iters=21)) == 20


def _steady(clock: VirtualClock, per_call_s: float):
    calls = []

    def fn(i):
        calls.append(i)
        clock.now += per_call_s
    return fn, calls


def test_warm_up_runs_until_both_its_budget_and_its_minimum_count_are_reached():
    """Calls of U against blocks of 4.5 U (5 calls): 1 call (U), then blocks of 5. Budget 10 U, at least 2 calls:
    1 (U), +5 (6 U, 6 calls: the count is met, the budget not), +5 (11 U): 11 calls. The return: the last mean."""
    config = TimingConfig(warmup_s=10 * U, min_warmup_iters=2, min_block_s=4.5 * U)
    clock = VirtualClock()
    fn, calls = _steady(clock, U)
    assert timing.warm_up(fn, clock, config) == U
    assert len(calls) == 11 and calls[:6] == [0, 0, 1, 2, 3, 4]  # each block calls fn(0..k-1)
    # its own budget: 5 U stops after 6 calls
    clock = VirtualClock()
    fn, calls = _steady(clock, U)
    timing.warm_up(fn, clock, config, budget_s=5 * U)
    assert len(calls) == 6
    # the count at its boundary: budget 0, at least 6 calls: 1 + 5 = 6 exactly, no third block
    clock = VirtualClock()
    fn, calls = _steady(clock, U)
    timing.warm_up(fn, clock, TimingConfig(warmup_s=0, min_warmup_iters=6, min_block_s=4.5 * U))
    assert len(calls) == 6
    # the budget at its boundary: 6 U spent exactly after 1 + 5 calls: no third block
    clock = VirtualClock()
    fn, calls = _steady(clock, U)
    timing.warm_up(fn, clock, TimingConfig(warmup_s=6 * U, min_warmup_iters=1, min_block_s=4.5 * U))
    assert len(calls) == 6


def test_warm_up_counts_what_the_ranks_agreed_on():
    """``agree`` (data-parallel: the slowest rank) doubles each reading to 2 U: blocks of ceil(4.5 / 2) = 3 calls,
    spent 2 U, 8 U, 14 U: 1 + 3 + 3 = 7 calls, and the agreed 2 U is what warm-up returns."""
    config = TimingConfig(warmup_s=10 * U, min_warmup_iters=2, min_block_s=4.5 * U)
    clock = VirtualClock()
    fn, calls = _steady(clock, U)
    assert timing.warm_up(fn, clock, config, agree=lambda s: 2 * s) == 2 * U
    assert len(calls) == 7


# --------------------------------------------------------------------------- the budget's prediction


def test_the_prediction_replays_the_warm_up_the_calibration_and_the_rounds_by_hand():
    """A step of U, inference 0.4 U, blocks of 4.5 U: 5 steps or 12 inferences (ceil 11.25) a block.

    Step warm-up (budget 10 U, >= 2 calls): U, 6 U, 11 U. Inference warm-up (budget 5 U, half): 0.4 U, then 12 x
    0.4 U: 5.2 U. The inference calibration call: 0.4 U. Rounds: repeats 3, but min_time_s 25 U of step blocks of
    5 U: exactly 5 rounds (25 U is not < 25 U), each a step block, a phase block (one step block) and an inference
    block: 10 U + 4.8 U. Total 11 + 5.2 + 0.4 + 5 x 14.8 = 90.6 U."""
    config = TimingConfig(repeats=3, min_time_s=25 * U, warmup_s=10 * U, min_warmup_iters=2, min_block_s=4.5 * U)
    assert predict_measure_s(U, config) == pytest.approx(90.6 * U, rel=1e-12)
    # max_rounds caps the rounds that min_time_s asks for: 4 rounds
    capped = TimingConfig(repeats=3, min_time_s=25 * U, warmup_s=10 * U, min_warmup_iters=2, min_block_s=4.5 * U,
                          max_rounds=4)
    assert predict_measure_s(U, capped) == pytest.approx((16.6 + 4 * 14.8) * U, rel=1e-12)
    # repeats alone (min_time_s 0): 3 rounds
    plain = TimingConfig(repeats=3, warmup_s=10 * U, min_warmup_iters=2, min_block_s=4.5 * U)
    assert predict_measure_s(U, plain) == pytest.approx((16.6 + 3 * 14.8) * U, rel=1e-12)
    # max_rounds 0 (the config allows it): the warm-up alone
    assert predict_measure_s(U, replace(capped, max_rounds=0)) == pytest.approx(16.6 * U, rel=1e-12)


def test_the_predicted_inference_warm_up_has_half_the_steps_budget():
    """Budget 14 U, at least 1 call, blocks of 4.5 U: the step warms up U, 6 U, 11 U, 16 U; the inference (0.4 U calls,
    blocks of 12) for half of it, 7 U: 0.4 U, 5.2 U, 10 U (a third, 4.67 U, would stop at 5.2 U). + the calibration
    call 0.4 U + one round 14.8 U: 16 + 10 + 0.4 + 14.8 = 41.2 U."""
    config = TimingConfig(repeats=1, warmup_s=14 * U, min_warmup_iters=1, min_block_s=4.5 * U)
    assert predict_measure_s(U, config) == pytest.approx(41.2 * U, rel=1e-12)


def test_the_predicted_warm_up_stops_at_the_same_boundaries_as_the_warm_up():
    """Budget 0 and at least 6 calls: U + 5 U = 6 U (the count met exactly). Inference (blocks of 12): 0.4 U +
    4.8 U (13 calls >= 6) + the calibration call 0.4 U. One round: 10 U + 4.8 U. Total 6 + 5.6 + 14.8 = 26.4 U.
    Budget 6 U and at least 1 call: U + 5 U = 6 U (the budget met exactly); inference (budget 3 U): 0.4 U + 4.8 U."""
    count = TimingConfig(repeats=1, warmup_s=0, min_warmup_iters=6, min_block_s=4.5 * U)
    assert predict_measure_s(U, count) == pytest.approx(26.4 * U, rel=1e-12)
    budget = TimingConfig(repeats=1, warmup_s=6 * U, min_warmup_iters=1, min_block_s=4.5 * U)
    assert predict_measure_s(U, budget) == pytest.approx(26.4 * U, rel=1e-12)


def test_a_zero_probe_still_predicts_a_finite_time():
    """A coarse clock can read a step as 0 s: the prediction then assumes 1 ns a step (blocks at the 2000-call cap)
    and returns, instead of looping on a zero budget."""
    config = TimingConfig(repeats=2, warmup_s=0, min_warmup_iters=1, min_block_s=0.02)
    ns = 1e-9  # warm-up: one call of each (budget 0), the inference calibration call, 2 rounds of capped blocks
    expected = ns + 0.4 * ns + 0.4 * ns + 2 * (2 * 2000 * ns + 2000 * 0.4 * ns)
    assert predict_measure_s(0.0, config) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("predicted, budget, text", [
    (37.3, 30, "predicted 37.3 s of measuring > --max-case-s 30; run it with --max-case-s 45"),  # 44.76 -> 45
    (160.0, 120, "predicted 160 s of measuring > --max-case-s 120; run it with --max-case-s 200"),  # 192 -> 200
    (10.0, 2.5, "predicted 10 s of measuring > --max-case-s 2.5; run it with --max-case-s 15"),  # 12 -> 15
    (0.3, 0.25, "predicted 0.3 s of measuring > --max-case-s 0.25; run it with --max-case-s 0.4"),  # 0.36 -> 0.4
    (25.0, 20, "predicted 25 s of measuring > --max-case-s 20; run it with --max-case-s 30"),  # 30 stays 30
])
def test_the_skip_reason_suggests_the_prediction_plus_a_fifth_rounded_up_to_a_half_digit(predicted, budget, text):
    assert over_budget_reason(predicted, budget) == text


# --------------------------------------------------------------------------- one case, on the virtual clock

SLOW = TimingConfig(repeats=2, warmup_s=0, min_warmup_iters=1, min_block_s=0.5)
ONE, TENTHS = (lambda n: 1.0), (lambda n: 0.4)  # calls of 1 and 0.4 units


def test_a_case_predicted_over_its_budget_is_skipped_after_two_steps(monkeypatch):
    """Steps of 1 s (>= the 0.5 s block: one call a block), inference 0.4 s: 2 calls (ceil 1.25). By hand: warm-up
    1 s; inference warm-up 0.4 s (budget 0, one call) + calibration 0.4 s; rounds 2 x (2 x 1 s + 2 x 0.4 s):
    7.4 s predicted. A 7 s budget skips it after the cold step and the probe (2 s), before anything else runs."""
    seen = []
    m, step = measure_on(monkeypatch, replace(SLOW, max_case_s=7), ONE, TENTHS, unit=1.0, on_predict=seen.append)
    assert seen == [pytest.approx(7.4)] and m.predicted_measure_s == pytest.approx(7.4)
    assert m.status == Status.SKIPPED
    assert m.reason == "predicted 7.4 s of measuring > --max-case-s 7; run it with --max-case-s 9"  # 8.88 -> 9
    assert (step.steps, step.infers) == (2, 0) and m.samples == {}
    assert m.measure_s == pytest.approx(2.0) and m.first_step_s == pytest.approx(1.0)
    assert m.steady_window is None and math.isnan(m.steady_measure_s)


def test_a_case_predicted_within_its_budget_is_measured_and_its_time_is_what_the_loops_took(monkeypatch):
    """The same case without a budget, and with a budget equal to its prediction: measured. Its wall bookkeeping on
    the virtual clock: cold 1 s + probe 1 s, then the steady part: warm-up 1 s, first inference 0.4 s, inference
    warm-up 0.4 s, calibration 0.4 s, and 2 rounds of a step block (1 s), a phase block (the fake's fixed phases,
    1 + 2 + 4 = 7 s) and an inference block (0.8 s). The steady time excludes the first inference."""
    m, step = measure_on(monkeypatch, SLOW, ONE, TENTHS, unit=1.0)
    assert m.status == Status.OK and m.predicted_measure_s == pytest.approx(7.4) and m.case is CASE
    assert (m.threads, m.optimizer_impl, m.untimed_phases) == (1, "foreach", "")  # CASE's 1 thread, the step's impl
    steady_s = 1 + 0.4 + 0.4 + 0.4 + 2 * (1 + 7 + 0.8)
    assert m.steady_window == pytest.approx((START_S + 2.0, START_S + 2.0 + steady_s))
    assert m.steady_measure_s == pytest.approx(steady_s - 0.4)
    assert m.measure_s == pytest.approx(2.0 + steady_s)
    assert m.iters_per_block == {Phase.STEP: 1, Phase.INFERENCE: 2, Phase.FORWARD: 1, Phase.BACKWARD: 1,
                                 Phase.OPTIMIZER: 1}
    at_budget, _ = measure_on(monkeypatch, replace(SLOW, max_case_s=m.predicted_measure_s), ONE, TENTHS, unit=1.0)
    assert at_budget.status == Status.OK and at_budget.reason == ""


def test_the_probe_of_a_short_step_is_a_block(monkeypatch):
    """Steps of U against blocks of 4.5 U: the probe is one step (U < 4.5 U) then a block of 5; the prediction is made
    from that block's mean (U, not the cold 50 U), so it equals the hand replay of a U step (repeats 1, warm-up 0 and
    1 call: U; the inference's 0.4 U calls in blocks of 12: 0.4 U + 0.4 U; a round 10 U + 4.8 U)."""
    config = TimingConfig(repeats=1, warmup_s=0, min_warmup_iters=1, min_block_s=4.5 * U)
    m, step = measure_on(monkeypatch, config, lambda n: 50.0 if n == 0 else 1.0, TENTHS, unit=U)
    assert m.predicted_measure_s == pytest.approx((U + 0.8 * U) + 14.8 * U, rel=1e-9)
    assert step.steps == 1 + (1 + 5) + 1 + 5  # cold, probe (1 + a block of 5), warm-up 1, one round's block of 5


def test_a_probe_step_of_exactly_one_block_is_not_timed_again(monkeypatch):
    """A step of U against blocks of U: the probe's one step already lasts a block, so no second reading (a block of
    ceil(1) = 1 step more) is taken: cold 1 + probe 1 + warm-up 1 + one round's block 1 = 4 steps."""
    config = TimingConfig(repeats=1, warmup_s=0, min_warmup_iters=1, min_block_s=U)
    _, step = measure_on(monkeypatch, config, ONE, ONE, unit=U)
    assert step.steps == 4


def test_the_inference_warm_up_has_half_the_steps_budget(monkeypatch):
    """Calls of U, blocks of 5 (4.5 U), warm-up budget 14 U: the step warms up 1 + 5 + 5 + 5 = 16 calls (16 U); the
    inference's budget is 7 U: 1 + 5 + 5 = 11 calls (11 U; a third of the budget would stop at 6, the whole at 16).
    Then the rounds (1): steps: cold 1, probe 1 + 5, warm-up 16, a block of 5 = 28; inferences: first 1, warm-up 11,
    calibration 1, a block of 5 = 18."""
    config = TimingConfig(repeats=1, warmup_s=14 * U, min_warmup_iters=1, min_block_s=4.5 * U)
    _, step = measure_on(monkeypatch, config, ONE, ONE, unit=U)
    assert (step.steps, step.infers) == (28, 18)


def test_rounds_stop_at_max_rounds_and_at_min_time_exactly(monkeypatch):
    """Steps of U in blocks of 5 (5 U a block): min_time_s 25 U is reached after exactly 5 rounds (not 6), and
    max_rounds 3 stops before it."""
    base = TimingConfig(repeats=1, warmup_s=0, min_warmup_iters=1, min_block_s=4.5 * U, min_time_s=25 * U)
    m, _ = measure_on(monkeypatch, base, ONE, ONE, unit=U)
    assert [len(m.samples[p]) for p in Phase] == [5] * len(Phase)
    m, _ = measure_on(monkeypatch, replace(base, max_rounds=3), ONE, ONE, unit=U)
    assert [len(m.samples[p]) for p in Phase] == [3] * len(Phase)


class HalfCpuClock(VirtualClock):
    """A CPU-time clock that reads half of the wall clock's time (the step waits half of it)."""

    def __init__(self, wall: VirtualClock):
        super().__init__()
        self.wall = wall

    def mark(self):
        return self.wall.now / 2


def test_a_wall_run_keeps_the_cpu_reading_beside_it_and_a_cpu_run_the_wall_one(monkeypatch):
    """Steps of 2 ms (wall), read as 1 ms of CPU time. ``--clock wall``: samples 2 ms, clock_samples wall 2 ms and
    cpu 1 ms for the step and inference blocks. ``--clock cpu``: samples (the phases too) on the CPU clock, 1 ms;
    the rounds still count wall time: min_time_s 20 ms of 2 ms blocks is 10 rounds, not 20."""
    config = TimingConfig(repeats=1, warmup_s=0, min_warmup_iters=1, min_block_s=1e-6, min_time_s=0.02)
    for name, other_name, primary, other in (("wall", "cpu", 2.0, 1.0), ("cpu", "wall", 1.0, 2.0)):
        wall = VirtualClock()
        cpu = HalfCpuClock(wall)
        step = CountingStep(wall, lambda n: 2.0, lambda n: 2.0)
        monkeypatch.setattr(timing, "cpu_clock", lambda device: cpu)
        monkeypatch.setattr(timing, "clock_for", lambda device: wall)
        monkeypatch.setattr(timing, "build_step", lambda case: step)
        m = timing.measure(CASE, replace(config, clock=name))
        assert m.samples[Phase.STEP] == pytest.approx([primary * MS] * 10), name
        assert m.samples[Phase.FORWARD] == pytest.approx([CountingStep.FORWARD * MS * primary / 2] * 10), name
        assert m.clock_samples[name][Phase.STEP] == pytest.approx([primary * MS] * 10)
        assert set(m.clock_samples[other_name]) == {Phase.STEP, Phase.INFERENCE}
        assert m.clock_samples[other_name][Phase.STEP] == pytest.approx([other * MS] * 10)
        assert m.clock_samples[other_name][Phase.INFERENCE] == pytest.approx([other * MS] * 10)


def test_the_clock_a_block_is_read_on():
    """``--clock wall``: the wall clock, the CPU-time one beside it; ``--clock cpu``: the other way round; a CUDA case
    has no CPU-time clock beside its events, and refuses ``--clock cpu`` in one line."""
    wall = VirtualClock()
    with torch_threads(1):
        primary, other = timing.run_clocks("wall", wall, torch.device("cpu"))
        assert primary is wall and type(other) is ThreadCpuClock
        primary, other = timing.run_clocks("cpu", wall, torch.device("cpu"))
        assert type(primary) is ThreadCpuClock and other is wall
    assert timing.run_clocks("wall", wall, torch.device("cuda")) == (wall, None)
    with pytest.raises(ValueError, match="^" + re.escape("--clock cpu times CPU work; a cuda case is timed on the "
                                                         "wall clock (CUDA events)") + "$"):
        timing.run_clocks("cpu", wall, torch.device("cuda"))


def _index(pool, x) -> int:
    return next(i for i, (px, _) in enumerate(pool) if px.shape == x.shape and torch.equal(px, x))


def test_the_batches_are_the_cases_seed_0_draws_cycled_in_order(monkeypatch):
    """The pool is BATCH_POOL batches drawn in order from a generator seeded 0 (drawn here with torch's generator),
    and call i of a block, of whichever kind, gets batch i mod BATCH_POOL: a block of 6 calls reads 0 1 2 3 0 1."""
    gen = torch.Generator().manual_seed(0)
    reference = [CASE.make_batch(gen) for _ in range(BATCH_POOL)]
    config = TimingConfig(repeats=1, warmup_s=0, min_warmup_iters=1, min_block_s=5.5 * U)
    m, step = measure_on(monkeypatch, config, ONE, ONE, unit=U)
    assert m.iters_per_block[Phase.STEP] == 6 and m.iters_per_block[Phase.INFERENCE] == 6  # ceil(5.5)
    pool = timing.case_pool(CASE, step)
    assert len(pool) == BATCH_POOL
    for (x, y), (rx, ry) in zip(pool, reference):
        assert torch.equal(x, rx) and torch.equal(y, ry)
    # the one round: its step block (the last 6 step calls), its phase block (the 6 forwards), its inference block
    steps = [(x, y) for kind, x, y in step.inputs if kind == "step"][-6:]
    forwards = [x for kind, x, _ in step.inputs if kind == "forward"]
    backwards = [(out, y) for kind, out, y in step.inputs if kind == "backward"]
    infers = [x for kind, x, _ in step.inputs if kind == "infer"][-6:]
    for block in (steps, backwards):  # the backward takes the forward's output (CountingStep's is its input)
        assert [_index(pool, x) for x, _ in block] == [0, 1, 2, 3, 0, 1]
        assert all(torch.equal(y, pool[_index(pool, x)][1]) for x, y in block)
    for block in (forwards, infers):
        assert [_index(pool, x) for x in block] == [0, 1, 2, 3, 0, 1]


class GraphStep(CountingStep):
    whole_step = "the step compiled as one function"


def test_a_whole_step_case_times_only_its_step_and_counts_its_recompiles(monkeypatch):
    """--compile-scope step: no phase, inference or first-inference reading, the reason in ``untimed_phases``, the
    steady time not less any inference. Dynamo's counters stand in: 3 graphs, 1 break, and a frame compiled per step
    call, so the frames compiled after warm-up are the rounds' steps: 2 rounds x 1 = 2."""
    case = Case(width=8, depth=1, batch=2, threads=1, compile="default", compile_scope="step")
    assert case.whole_step
    holder = {}
    monkeypatch.setattr(timing, "_dynamo_counts", lambda: (3, 1, holder["step"].steps))
    config = TimingConfig(repeats=2, warmup_s=0, min_warmup_iters=1, min_block_s=0.5)

    class Held(GraphStep):
        def __init__(self, *args):
            super().__init__(*args)
            holder["step"] = self

    m, step = measure_on(monkeypatch, config, ONE, ONE, case=case, step_class=Held, unit=1.0)
    assert m.untimed_phases == "phases not timed apart: the step compiled as one function"
    assert set(m.samples) == {Phase.STEP} and m.iters_per_block == {Phase.STEP: 1}
    assert step.infers == 0 and math.isnan(m.first_inference_s)
    assert (m.compile_graphs, m.graph_breaks, m.recompiles) == (3, 1, 2)
    steady_s = 1 + 2 * 1  # warm-up 1 step, 2 rounds of 1 step
    assert m.steady_measure_s == pytest.approx(steady_s) and m.measure_s == pytest.approx(2 + steady_s)
    assert set(m.clock_samples["wall"]) == {Phase.STEP}


def test_a_compiled_case_that_produced_no_graph_is_an_error_not_an_eager_measurement(monkeypatch):
    monkeypatch.setattr(timing, "_dynamo_counts", lambda: (0, 0, 0))
    case = Case(width=8, depth=1, batch=2, threads=1, compile="default")
    with pytest.raises(RuntimeError, match="^compiled case produced no graph: it would run eager$"):
        measure_on(monkeypatch, TimingConfig(repeats=1, warmup_s=0, min_warmup_iters=1, min_block_s=0.5),
                   ONE, ONE, case=case, unit=1.0)


def test_a_cuda_case_on_a_machine_without_cuda_is_skipped_with_why(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    case = Case(width=8, depth=1, batch=2, device="cuda")
    m = timing.measure(case)
    assert m.status == Status.SKIPPED and m.reason == "CUDA is not available on this machine" and m.case is case


def test_each_cuda_graph_step_is_announced_and_other_cases_announce_nothing():
    graphs = Case(width=8, depth=1, batch=2, device="cuda", compile="reduce-overhead")
    assert timing.cudagraph_step_marker(graphs) is torch.compiler.cudagraph_mark_step_begin
    assert timing.cudagraph_step_marker(CASE)() is None


# --------------------------------------------------------------------------- CUDA bookkeeping on a fake allocator


class FakeAllocator:
    """torch.cuda's byte counters, moved by the fake step: ``allocated`` now, ``peak`` since the last reset."""

    def __init__(self):
        self.allocated = self.peak = 0
        self.syncs = 0

    def alloc(self, n: int):
        self.allocated += n
        self.peak = max(self.peak, self.allocated)

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: setattr(self, "syncs", self.syncs + 1))
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: setattr(self, "peak", self.allocated))
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: self.peak)
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: self.allocated)


class AllocatingStep:
    """Each phase allocates a transient (freed before it returns) and keeps some: forward keeps 100 (the output and
    saved activations) over a transient 1 000; backward frees those 100 over a transient 2 000; the optimiser a
    transient 4 000; the whole step a transient 8 000; inference a transient 500. Each call checks that it gets the
    pool's first batch (and the backward the forward's output)."""

    X, Y, OUT = "x0", "y0", "forward's output"

    def __init__(self, allocator: FakeAllocator):
        self.a = allocator

    def _transient(self, n):
        self.a.alloc(n)
        self.a.alloc(-n)

    def forward(self, x):
        assert x == self.X
        self._transient(1000)
        self.a.alloc(100)
        return self.OUT

    def loss_backward(self, out, y):
        assert (out, y) == (self.OUT, self.Y)
        self._transient(2000)
        self.a.alloc(-100)

    def optimizer_step(self):
        self._transient(4000)

    def step(self, x, y):
        assert (x, y) == (self.X, self.Y)
        self._transient(8000)

    def infer(self, x):
        assert x == self.X
        self._transient(500)


def test_each_phase_peak_is_its_own_from_a_reset_at_its_start(monkeypatch):
    """From 10 000 bytes resident: forward peaks at 11 000; backward starts with forward's 100 kept, so 12 100;
    the optimiser 14 000, the step 18 000, inference 10 500. A whole-step case: the step alone. Every CUDA graph
    iteration is announced: before the forward, the step and the inference (3), or the step alone (1)."""
    allocator = FakeAllocator()
    allocator.install(monkeypatch)
    allocator.alloc(10_000)
    marks = []
    pool = [(AllocatingStep.X, AllocatingStep.Y), ("x1", "y1")]
    peaks = timing.peak_memory_per_phase(AllocatingStep(allocator), pool, lambda: marks.append(1))
    assert peaks == {Phase.FORWARD: 11_000, Phase.BACKWARD: 12_100, Phase.OPTIMIZER: 14_000, Phase.STEP: 18_000,
                     Phase.INFERENCE: 10_500}
    assert len(marks) == 3 and allocator.allocated == 10_000
    marks.clear()
    assert timing.peak_memory_per_phase(AllocatingStep(allocator), pool, lambda: marks.append(1),
                                        step_only=True) == {Phase.STEP: 18_000}
    assert len(marks) == 1


class FakeCudaTensor:
    is_cuda = True

    def __init__(self, nbytes):
        self.nbytes = nbytes


def test_the_harness_bytes_are_the_allocated_less_the_parameters_one_batch_and_the_optimiser_state(monkeypatch):
    """50 000 allocated; CUDA parameters of 1 000 + 2 000, the first batch 300 + 100: the harness holds 46 600. The
    pool's other batches are the harness's own; host tensors (here the optimiser's CPU state) are not on the GPU."""
    allocator = FakeAllocator()
    allocator.install(monkeypatch)
    allocator.alloc(50_000)
    weight = torch.nn.Parameter(torch.zeros(4))
    optimizer = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    weight.grad = torch.ones(4)
    optimizer.step()  # a CPU momentum buffer of 16 bytes in the state
    assert sum(t.nbytes for t in mlp.optimizer_state_tensors(optimizer)) == 16
    step = SimpleNamespace(model=SimpleNamespace(parameters=lambda: iter([FakeCudaTensor(1000), FakeCudaTensor(2000)])),
                           optimizer=optimizer)
    pool = [(FakeCudaTensor(300), FakeCudaTensor(100)), (FakeCudaTensor(7000), FakeCudaTensor(7000))]
    assert timing.harness_bytes(step, pool) == 46_600
    assert allocator.syncs == 1


class CudaCountingStep(CountingStep):
    """A CUDA case's step on the fake allocator: its CUDA parameters (1 000 + 2 000 bytes) and an SGD without state;
    the phases it is asked for in the untimed memory pass allocate transients of 1 000 (forward), 2 000 (backward),
    4 000 (optimiser), 8 000 (step) and 500 (inference) bytes."""

    allocator: FakeAllocator
    whole_step = "one CUDA graph"

    def __init__(self, *args):
        super().__init__(*args)
        self.model = SimpleNamespace(parameters=lambda: iter([FakeCudaTensor(1000), FakeCudaTensor(2000)]))
        self.optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)

    def _transient(self, n):
        self.allocator.alloc(n)
        self.allocator.alloc(-n)

    def step(self, x, y):
        super().step(x, y)
        self._transient(8000)

    def infer(self, x):
        super().infer(x)
        self._transient(500)

    def forward(self, x):
        self._transient(1000)
        return super().forward(x)

    def loss_backward(self, out, y):
        self._transient(2000)
        super().loss_backward(out, y)

    def optimizer_step(self):
        self._transient(4000)
        super().optimizer_step()


@pytest.mark.parametrize("whole", [False, True])
def test_a_cuda_case_records_the_harness_bytes_and_each_phases_peak(monkeypatch, whole):
    """On a fake CUDA (an allocator with 50 000 bytes resident, a pool of 4 CUDA batches of 300 + 100 bytes): the
    harness holds 50 000 - (1 000 + 2 000 + 300 + 100) = 46 600 bytes; each phase's peak is the resident 50 000 plus
    its transient. A whole-step case (--cuda-graph step) has the step's peak only."""
    allocator = FakeAllocator()
    allocator.install(monkeypatch)
    allocator.alloc(50_000)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    pool = [(FakeCudaTensor(300), FakeCudaTensor(100)) for _ in range(BATCH_POOL)]
    monkeypatch.setattr(timing, "case_pool", lambda case, step: pool)
    CudaCountingStep.allocator = allocator
    case = Case(width=8, depth=1, batch=2, threads=1, device="cuda", cuda_graph="step" if whole else "none")
    assert case.whole_step is whole
    m, _ = measure_on(monkeypatch, SLOW, ONE, ONE, case=case, step_class=CudaCountingStep, unit=1.0)
    assert m.status == Status.OK and m.harness_mem_bytes == 46_600
    if whole:
        assert m.peak_mem_bytes == {Phase.STEP: 58_000}
    else:
        assert m.peak_mem_bytes == {Phase.FORWARD: 51_000, Phase.BACKWARD: 52_000, Phase.OPTIMIZER: 54_000,
                                    Phase.STEP: 58_000, Phase.INFERENCE: 50_500}
    assert all(math.isnan(v) for v in m.clock_samples["cpu"][Phase.STEP])  # no CPU-time clock beside CUDA events


# --------------------------------------------------------------------------- the real step, context and counters


def test_the_step_is_built_from_every_field_of_the_case():
    """The case's network (nn.Linear shapes of its width and depth, by hand), loss, optimiser and its options,
    precision, device and knobs reach mlp.TrainStep."""
    case = Case(width=8, depth=2, in_features=5, out_features=3, batch=2, loss="cross_entropy", optimizer="adamw",
                optimizer_args="lr=0.5,weight_decay=0.25", dtype="bf16", epilogue="fused", threads=1)
    step = timing.build_step(case)
    shapes = [tuple(m.weight.shape) for m in step.model.modules() if isinstance(m, torch.nn.Linear)]
    assert shapes == [(8, 5), (8, 8), (3, 8)]
    assert all(p.device.type == "cpu" and p.dtype == torch.float32 for p in step.model.parameters())
    assert isinstance(step.optimizer, torch.optim.AdamW)
    assert step.optimizer.defaults["lr"] == 0.5 and step.optimizer.defaults["weight_decay"] == 0.25
    assert step.precision == case.precision and step.knobs == case.knobs and step.device == torch.device("cpu")
    out, target = torch.zeros(2, 3), torch.tensor([0, 2])
    assert step.loss_fn(out, target).item() == pytest.approx(math.log(3))  # cross entropy of a uniform guess


def test_a_case_runs_with_its_threads_and_precision_and_a_compiled_one_starts_dynamo_clean(monkeypatch):
    resets = []
    monkeypatch.setattr(torch._dynamo, "reset", lambda: resets.append(1))
    before = torch.get_num_threads(), torch.get_float32_matmul_precision()
    with timing.case_context(Case(width=8, depth=1, batch=2, threads=1, dtype="tf32")):
        assert (torch.get_num_threads(), torch.get_float32_matmul_precision()) == (1, "high")
    assert (torch.get_num_threads(), torch.get_float32_matmul_precision()) == before and resets == []
    with timing.case_context(Case(width=8, depth=1, batch=2, threads=1, compile="default")):
        assert torch.get_float32_matmul_precision() == "highest"  # fp32
    assert resets == [1]


def test_dynamos_counts_are_its_graphs_its_breaks_summed_and_its_frames(monkeypatch):
    """torch._dynamo.utils.counters as a compile leaves them: 3 unique graphs, breaks of two reasons (2 + 5), 4
    frames compiled: (3, 7, 4)."""
    from collections import Counter, defaultdict

    from torch._dynamo import utils

    counters = defaultdict(Counter)
    counters["stats"]["unique_graphs"] = 3
    counters["graph_break"].update({"a reason": 2, "another": 5})
    counters["frames"].update({"ok": 4, "total": 9})
    monkeypatch.setattr(utils, "counters", counters)
    assert timing._dynamo_counts() == (3, 7, 4)


class DeviceContext:
    """Stands in for ``torch.device(...)`` as a context: records the device a model is built under."""

    entered: list = []

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        self.entered.append(self.device)

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("device", ["cuda", "cpu"])
def test_a_cases_model_is_built_on_its_own_device_and_every_field_reaches_the_step(monkeypatch, device):
    """A w8192 network initialised on the host takes seconds, on the GPU milliseconds: a CUDA case's model is built
    under ``torch.device("cuda")``, a CPU case's on the CPU. (Stand-ins for torch.device and mlp.TrainStep, so that a
    CUDA case's wiring is read on a machine without one.)"""
    DeviceContext.entered = []
    monkeypatch.setattr(timing, "torch", SimpleNamespace(device=DeviceContext))
    monkeypatch.setattr(timing, "mlp", SimpleNamespace(TrainStep=lambda model, **kw: (model, kw)))
    case = SimpleNamespace(device=device, build_model=lambda: "the model", loss="mse", optimizer="adamw",
                           precision="bf16", optimizer_options={"lr": 0.5}, knobs="the knobs")
    model, kwargs = timing.build_step(case)
    assert DeviceContext.entered == [device] and model == "the model"
    assert kwargs == {"loss": "mse", "optimizer": "adamw", "precision": "bf16", "device": device,
                      "optimizer_options": {"lr": 0.5}, "knobs": "the knobs"}
