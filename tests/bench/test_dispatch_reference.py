"""bench.limits.dispatch line by line, on fake block times and a fake wall clock (issue 50: mutation testing).

References: the op counts of the tiny step's pieces counted here by a dispatch mode of the test's own (every ATen
call below autograd, as the docstring defines an op), the tiny net's shapes from its docstring (8 wide, 2 layers,
batch 1), torch's own MSELoss and SGD, and hand-computed floors and warm-up counts.
"""

from __future__ import annotations

import contextlib
import math
from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.instruments.timing import TimingConfig
from bench.limits import dispatch
from bench.limits.dispatch import DispatchFloor, best_of_passes, phase_per_op_s

from torch_calls import TorchCalls  # tests/bench/ is on sys.path
from virtual_clock import VirtualClock


class AtenCount(TorchDispatchMode):
    """The reference count: every ATen operator call made while it is on."""

    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.n += str(func).startswith("aten.")
        return func(*args, **(kwargs or {}))


def aten_count(fn) -> int:
    with AtenCount() as counter:
        fn()
    return counter.n


def _floor(per_op_s: float, **kw) -> DispatchFloor:
    return DispatchFloor("cpu", 1, 1e-6, per_op_s, 45 * per_op_s, 45, 46 * per_op_s, 46, 0.0, 0.5, **kw)


# --------------------------------------------------------------------------- passes and phases


def test_a_start_without_a_floor_loses_to_a_finite_end_and_its_figures_are_filled_in():
    end = _floor(2e-6, autograd_per_op_s=1e-6)
    kept = best_of_passes({}, end)
    assert kept["per_op_s"] == 2e-6 and kept["floor_pass"] == "end" and kept["add_s"] == 1e-6
    assert math.isnan(kept["per_op_s_start"]) and kept["per_op_s_end"] == 2e-6
    assert kept["spent_s"] == 0.5 and kept["autograd_per_op_s"] == 1e-6


def test_a_tie_keeps_the_start_and_a_nan_end_never_wins():
    start = {**_floor(2e-6, autograd_per_op_s=3e-6).as_dict(), "spent_s": 0.25, "tiny_step_ops": 99}
    tie = best_of_passes(start, _floor(2e-6))
    assert (tie["floor_pass"], tie["tiny_step_ops"], tie["spent_s"]) == ("start", 99, 0.75)
    assert tie["autograd_per_op_s"] == 3e-6  # the end's nan is no reading
    both_nan = best_of_passes({"per_op_s": math.nan}, _floor(math.nan))
    assert both_nan["floor_pass"] == "start" and math.isnan(both_nan["per_op_s"])
    assert math.isnan(both_nan["autograd_per_op_s"])  # neither pass read one
    # a resumed run: the start dict already holds an end pass's floor; a worse new end leaves its pass name
    resumed = best_of_passes({"per_op_s": 1e-6, "per_op_s_start": 3e-6, "floor_pass": "end", "spent_s": 1.0},
                             _floor(2e-6, autograd_per_op_s=None))
    assert (resumed["floor_pass"], resumed["per_op_s_start"], resumed["per_op_s_end"]) == ("end", 3e-6, 2e-6)
    assert resumed["spent_s"] == 1.5 and math.isnan(resumed["autograd_per_op_s"])


def test_each_phase_is_charged_its_own_per_op_floor():
    both = {"per_op_s": 5e-6, "autograd_per_op_s": 2e-6}
    assert phase_per_op_s(both, "inference") == phase_per_op_s(both, "forward") == 5e-6
    assert phase_per_op_s(both, "") == phase_per_op_s(both, "optimizer") == 2e-6
    assert phase_per_op_s({"per_op_s": math.nan, "autograd_per_op_s": 2e-6}, "backward") == 2e-6  # nan is no floor
    assert phase_per_op_s({"per_op_s": 5e-6, "autograd_per_op_s": math.nan}, "backward") == 5e-6
    assert math.isnan(phase_per_op_s({}, "backward")) and math.isnan(phase_per_op_s({"autograd_per_op_s": 2e-6},
                                                                                    "forward"))


def test_the_overhead_term_is_the_charged_ops_at_the_phases_floor():
    record = {"per_op_s": 5e-6, "autograd_per_op_s": 2e-6}
    assert dispatch._overhead_s(record, {"aten_ops": 100, "phase": "backward"}) == pytest.approx(2e-4)
    assert dispatch._overhead_s(record, {"aten_ops": 100, "phase": "forward"}) == pytest.approx(5e-4)
    assert dispatch._overhead_s(record, {"aten_ops": 100}) == pytest.approx(2e-4)  # no phase: not a forward
    assert dispatch._overhead_s(record, {"aten_ops": 100, "compile": "default", "phase": "step"}) == 0.0
    assert math.isnan(dispatch._overhead_s(None, {"aten_ops": 100, "phase": "forward"}))
    assert math.isnan(dispatch._overhead_s(record, {"aten_ops": None, "phase": "forward"}))
    assert math.isnan(dispatch._overhead_s(record, {"phase": "forward"}))


def test_a_floor_as_a_dict_has_every_field():
    d = _floor(2e-6, tiny_autograd_ops=7).as_dict()
    assert len(d) == 15 and (d["device"], d["per_op_s"], d["tiny_step_ops"], d["tiny_autograd_ops"]) == \
        ("cpu", 2e-6, 46, 7)


# --------------------------------------------------------------------------- the tiny step and its counts


def test_the_tiny_step_is_an_8_wide_2_layer_mse_sgd_net_on_one_sample(monkeypatch):
    made = []
    real = dispatch.mlp.TrainStep

    def train_step(*args, **kwargs):
        made.append((args[1:], kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(dispatch.mlp, "TrainStep", train_step)
    with TorchCalls() as seen:
        step, x, y = dispatch.tiny_step("cpu")
    assert made == [(("mse", "sgd", "fp32", "cpu"), {})]  # the step on the device asked for
    assert [(args, kwargs) for _, args, kwargs in seen.named("randn")] == [((1, 8), {"device": "cpu"})] * 2
    assert x.shape == y.shape == (1, 8) and x.device.type == y.device.type == "cpu"
    assert not torch.equal(x, y)  # two draws
    linears = [m for m in step.model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears][:2] == [(8, 8), (8, 8)]
    assert any(isinstance(m, torch.nn.ReLU) for m in step.model.modules())
    assert isinstance(step.optimizer, torch.optim.SGD)
    assert step.loss_fn(x, y).item() == pytest.approx(torch.nn.MSELoss()(x, y).item())
    assert all(p.dtype == torch.float32 for p in step.model.parameters())


def test_count_ops_counts_the_aten_calls_of_the_function_it_is_given():
    a, b = torch.ones(3), torch.ones(3)
    assert dispatch.count_ops(lambda: (a + b) * 2) == aten_count(lambda: (a + b) * 2) == 2
    assert dispatch.count_ops(lambda: None) == 0


def test_the_tiny_figures_are_of_the_functions_the_docstring_names(monkeypatch):
    """Each figure's fn, run here by a stand-in for _best (twice: the engine's graph must survive a replay), and
    counted by count_ops: the counts equal the reference's counts of forward + loss + backward, the forward under
    inference mode, the recorded graph's backward, and the whole step, each from fresh gradients."""
    step, x, y = dispatch.tiny_step("cpu")
    step.step(x, y)
    reference_step, rx, ry = dispatch.tiny_step("cpu")
    reference_step.step(rx, ry)

    def fresh():
        reference_step.optimizer.zero_grad(set_to_none=True)

    backprop_ops = aten_count(lambda: reference_step.loss_backward(reference_step.forward(rx), ry))
    fresh()
    inference_ops = aten_count(lambda: reference_step.infer(rx))
    loss = reference_step.loss_fn(reference_step.forward(rx), ry)
    engine_ops = aten_count(lambda: loss.backward(retain_graph=True))
    fresh()
    step_ops = aten_count(lambda: reference_step.step(rx, ry))

    times, timed, clocks = iter([4e-5, 3e-5, 2e-5, 8e-5]), [], []

    def best(fn, clock):  # what is timed: the ops of one call, counted by the reference
        timed.append(aten_count(lambda: fn(0)))
        fn(1)
        clocks.append(clock)
        return next(times), 0.125

    monkeypatch.setattr(dispatch, "_best", best)
    wall = SimpleNamespace(perf_counter=lambda: 10.5)
    monkeypatch.setattr(dispatch, "time", wall)
    clock = VirtualClock()
    floor = dispatch._measure_tiny(torch.device("cpu"), 7e-7, step, x, y, clock, 10.0, 3)
    assert all(c is clock for c in clocks) and len(clocks) == 4
    # the timed calls are the counted ones (the engine's replay accumulates into the gradients it made: not equal)
    assert (timed[0], timed[1], timed[3]) == (backprop_ops, inference_ops, step_ops) and timed[2] >= engine_ops > 0
    assert (floor.tiny_backprop_ops, floor.tiny_inference_ops, floor.tiny_autograd_ops, floor.tiny_step_ops) == \
        (backprop_ops, inference_ops, engine_ops, step_ops)
    assert 0 < inference_ops < backprop_ops and 0 < engine_ops
    assert floor.per_op_s == min(4e-5 / backprop_ops, 3e-5 / inference_ops)
    assert floor.autograd_per_op_s == 2e-5 / engine_ops and floor.tiny_step_s == 8e-5
    assert (floor.device, floor.threads, floor.add_s, floor.spent_s, floor.spread_rel) == ("cpu", 3, 7e-7, 0.5, 0.125)


def test_the_floor_is_measured_on_one_thread_and_filed_under_the_callers(monkeypatch):
    """measure_dispatch: the add is one one-element a + b (2.0), the tiny step has been stepped once (its parameters
    moved), the figures are measured with torch at one thread, and the floor is filed under the caller's count.

    The caller's count (3) and the switch to one thread are stood in for, so no kernel runs on a thread pool here:
    mutmut forks each mutant from this process, and a fork after torch started a pool hangs at the child's first
    parallel kernel (docs/testing.md, "Fork and torch")."""
    seen, threads = {}, {"now": 3, "asked": []}

    @contextlib.contextmanager
    def torch_threads(n):
        old, threads["now"] = threads["now"], n
        threads["asked"].append(n)
        try:
            yield
        finally:
            threads["now"] = old

    def best(fn, clock):
        seen["add"] = fn(0)
        seen["clock"] = clock
        return 6e-7, 0.0

    def measure_tiny(dev, add_s, step, x, y, clock, start, threads_):
        seen.update(dev=dev, add_s=add_s, step=step, x=x, y=y, clock_tiny=clock, start=start, threads=threads_,
                    inside=threads["now"])
        return "floor"

    made = {}
    real_tiny_step = dispatch.tiny_step

    def tiny_step(device):
        step, x, y = real_tiny_step(device)
        made.update(before=[p.detach().clone() for p in step.model.parameters()], x=x, y=y)
        return step, x, y

    monkeypatch.setattr(dispatch, "_best", best)
    monkeypatch.setattr(dispatch, "_measure_tiny", measure_tiny)
    monkeypatch.setattr(dispatch, "tiny_step", tiny_step)
    monkeypatch.setattr(dispatch, "time", SimpleNamespace(perf_counter=lambda: 42.0))
    monkeypatch.setattr(dispatch, "torch_threads", torch_threads)
    monkeypatch.setattr(dispatch.torch, "get_num_threads", lambda: threads["now"])
    with TorchCalls() as torch_calls:
        assert dispatch.measure_dispatch("cpu") == "floor"
    assert threads == {"now": 3, "asked": [1]}
    assert [(args, kwargs) for _, args, kwargs in torch_calls.named("ones")] == \
        [((1,), {"device": torch.device("cpu")})] * 2  # the add's operands: one element each, on the device
    assert torch.equal(seen["add"], torch.tensor([2.0]))
    assert (seen["dev"], seen["add_s"], seen["start"], seen["threads"], seen["inside"]) == \
        (torch.device("cpu"), 6e-7, 42.0, 3, 1)
    assert seen["clock"] is seen["clock_tiny"] and seen["clock"].device == torch.device("cpu")
    assert seen["x"] is made["x"] and seen["y"] is made["y"]  # the tiny step's own sample and target
    after = list(seen["step"].model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(made["before"], after))  # one SGD step taken first


# --------------------------------------------------------------------------- the best block


def test_the_warm_up_runs_at_least_min_warmup_calls_and_until_warmup_s(monkeypatch):
    """Each call moves the wall by `step` s. WARMUP_S = 1/8 s: at 1/64 s a call, 8 calls; at 1 s a call, the
    MIN_WARMUP_CALLS (5) still run. Then the blocks: 1 ms blocks, MAX_BLOCKS of them, until 0.5 s after the warm-up;
    the floor is the fastest block and the spread IQR / median (numpy: q1 2, median 3, q3 4 -> 2/3)."""
    monkeypatch.setattr(dispatch, "WARMUP_S", 0.125)
    for step, warm_calls in [(2**-6, 8), (1.0, 5), (2**-4, 5)]:
        wall = SimpleNamespace(now=1.0)  # not 0: the warm-up measures from its own start
        calls, got = [], {}

        def fn(i, wall=wall, step=step, calls=calls):
            calls.append(i)
            wall.now += step

        def block_samples(fn_, clock, config, deadline, repeats, calls=calls, got=got, wall=wall):
            got.update(fn=fn_, clock=clock, config=config, deadline=deadline, repeats=repeats, now=wall.now,
                       warm=len(calls))
            return [3e-6, 1e-6, 4e-6, 2e-6, 5e-6]

        monkeypatch.setattr(dispatch, "time", SimpleNamespace(perf_counter=lambda wall=wall: wall.now))
        monkeypatch.setattr(dispatch, "block_samples", block_samples)
        clock = VirtualClock()
        assert dispatch._best(fn, clock) == (1e-6, pytest.approx(2 / 3))
        assert got["warm"] == warm_calls and got["fn"] is fn and got["clock"] is clock
        assert got["config"] == TimingConfig(min_block_s=1e-3) and got["repeats"] == 300
        assert got["deadline"] == got["now"] + 0.5
