"""bench.instruments.counters: exact per-phase counters, checked against independent references.

FLOPs against mlp's analytic accounting (FlopCounterMode does the counting, the
formula knows nothing of it); operator calls against torch.profiler's events;
fresh bytes against tensor sizes; and the counts repeat exactly.
"""

from __future__ import annotations

import collections
import functools
import json

import pytest
import torch

import mlp
from bench.instruments import counters
from bench.case.cases import Case
from bench.gate.worker import inject_step
from bench.instruments.timing import build_step

CASES = [
    Case(network="teaching", batch=16),  # MSE + SGD
    Case(width=32, depth=2, batch=8, activation="gelu", optimizer="adam", loss="cross_entropy", out_features=5),
    Case(width=32, depth=1, batch=8, optimizer="sgd_momentum", dtype="bf16"),  # autocast casts
]
IDS = [c.label for c in CASES]
# Where the two counting methods differ by construction, not by error:
# * under a TorchDispatchMode, autograd's unpacking of saved outputs shows up as extra
#   aten.detach calls that the profiler (no mode active) never sees;
# * under autocast, mse_loss's promotion to fp32 is a cast whose profiler events nest a
#   second _to_copy inside the first, so the two methods split the casts differently.
NOT_COMPARABLE_OPS = {"fp32": {"aten::detach"}, "bf16": {"aten::detach", "aten::_to_copy"}}


def _count(case: Case, inject: str = "none") -> counters.CaseCounters:
    step = build_step(case)
    inject_step(step, inject)
    return counters.count_step(step, case, case.make_batch(torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_counts_repeat_exactly(case):
    first, second = _count(case), _count(case)
    assert first.metrics() == second.metrics()
    assert {p: c.ops for p, c in first.phases.items()} == {p: c.ops for p, c in second.phases.items()}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_matmul_flops_equal_the_analytic_formula(case):
    counted = _count(case).phases
    expected = mlp.flops(case.build_model(), case.batch, case.loss, case.optimizer)
    assert counted["forward"].matmul_flops == expected.forward_matmul
    assert counted["backward"].matmul_flops == expected.backward_matmul
    assert counted["step"].matmul_flops == expected.step_matmul
    assert counted["inference"].matmul_flops == expected.forward_matmul
    assert counted["optimizer"].matmul_flops == 0


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_whole_step_counts_what_its_phases_count(case):
    phases = _count(case).phases
    parts = ("forward", "backward", "optimizer")
    for metric in ("aten_ops", "matmul_flops", "alloc_bytes"):
        assert getattr(phases["step"], metric) == sum(getattr(phases[p], metric) for p in parts), metric


@functools.cache
def _composite_implicit(name: str) -> bool:
    """True when every (non-out) overload of ``aten::name`` decomposes above autograd (linear, to, ...)."""
    packet = getattr(torch.ops.aten, name.split("::")[1])
    answers = []
    for overload in packet.overloads():
        if "out" in overload:
            continue
        full = name if overload == "default" else f"{name}.{overload}"
        try:
            answers.append(torch._C._dispatch_has_kernel_for_dispatch_key(full, "CompositeImplicitAutograd"))
        except RuntimeError:  # TorchScript-only overloads
            continue
    return bool(answers) and all(answers)


def _profiler_op_counts(fn) -> collections.Counter:
    """Outermost non-decomposing ATen op events: what reaches the dispatcher below autograd, by the profiler."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts: collections.Counter = collections.Counter()

    def visit(event, inside_op: bool) -> None:
        is_op = event.name.startswith("aten::") and not _composite_implicit(event.name)
        if is_op and not inside_op:
            counts[event.name] += 1
        for child in event.cpu_children:
            visit(child, inside_op or is_op)

    for root in (e for e in prof.events() if e.cpu_parent is None):
        visit(root, False)
    return counts


def _mode_op_counts(phase_counts: counters.PhaseCounts) -> collections.Counter:
    out: collections.Counter = collections.Counter()
    for name, n in phase_counts.ops.items():
        namespace, op = name.split(".")[:2]
        if namespace == "aten":
            out[f"aten::{op}"] += n
    return out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_op_counts_equal_the_profilers(case):
    step = build_step(case)
    x, y = case.make_batch(torch.Generator().manual_seed(0))
    counted = counters.count_step(step, case, (x, y)).phases["step"]  # leaves the step warm
    by_profiler = _profiler_op_counts(lambda: step.step(x, y))
    by_mode = _mode_op_counts(counted)
    for name in NOT_COMPARABLE_OPS[case.dtype]:
        by_profiler.pop(name, None)
        by_mode.pop(name, None)
    assert by_mode == by_profiler


def test_an_extra_op_adds_exactly_one_call_per_pass():
    case = CASES[0]
    before, after = _count(case).phases, _count(case, inject="extra-op").phases
    extra = {p: after[p].aten_ops - before[p].aten_ops for p in counters.PHASES}
    assert extra == {"forward": 1, "backward": 1, "optimizer": 0, "step": 2, "inference": 1}
    assert after["forward"].ops["aten.mul.Tensor"] == before["forward"].ops.get("aten.mul.Tensor", 0) + 1
    out_bytes = case.batch * case.io_features[1] * 4  # the (batch, 1) fp32 copy the * 1.0 makes
    assert after["forward"].alloc_bytes - before["forward"].alloc_bytes == out_bytes
    assert after["step"].matmul_flops == before["step"].matmul_flops


def test_fresh_bytes_skip_views_and_in_place_results():
    x = torch.randn(8, 16)
    counter = counters.OpCounter()
    with counter:
        x.t()  # view
        x.add_(1)  # in place
        y = x * 2  # one fresh (8, 16) fp32 tensor
    assert counter.alloc_bytes == y.numel() * y.element_size()


def test_a_scalar_read_is_a_host_sync():
    case = CASES[0]
    step = build_step(case)

    def log_loss_scale(module, inputs, output) -> None:
        output.sum().item()  # a scalar read, as a logging line might add: a host sync on CUDA

    step.model.register_forward_hook(log_loss_scale)
    phases = counters.count_step(step, case, case.make_batch()).phases
    assert phases["forward"].host_syncs == 1
    assert phases["backward"].host_syncs == 0


def test_counters_round_trip_through_json():
    original = _count(CASES[0])
    again = counters.CaseCounters.from_dict(json.loads(json.dumps(original.to_dict())))
    assert again == original


def test_compare_names_increases_as_regressions_and_reports_decreases():
    base = _count(CASES[0])
    bigger = counters.CaseCounters(base.parameters + 1, {**base.analytic}, base.phases)
    changes = counters.compare(base, bigger)
    assert [(c.metric, c.kind, c.is_regression) for c in changes] == [("parameters", "increase", True)]
    assert [(c.metric, c.kind, c.is_regression) for c in counters.compare(bigger, base)] == [
        ("parameters", "decrease", False)]
    assert counters.compare(base, base) == []


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available on this machine")
def test_cuda_phases_count_kernels_and_peak_memory():
    case = CASES[0].with_(device="cuda")
    first, second = _count(case), _count(case)
    for phase in ("forward", "backward", "step", "inference"):
        assert first.phases[phase].kernels > 0
        assert first.phases[phase].peak_mem_bytes > 0
    assert first.metrics() == second.metrics()
