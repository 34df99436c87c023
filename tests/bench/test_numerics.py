"""Numerics beside speed (``bench.instruments.numerics``): each case's distance from fp32 eager, and its flag.

The reference here is independent of the code under test: plain ``nn.Linear``/``nn.ReLU`` layers (a copy of
the step's initial weights), ``F.mse_loss``, ``torch.autograd.grad`` and the SGD update written out, for the
same batches. Against it: the fp32 eager step and a legitimately equal variant (the fused epilogue in fp32,
the same arithmetic on the CPU) are not flagged; a variant that drops one layer's bias is; bf16 autocast is
within its dtype's tolerance and bf16 parameters are not (docs/design.md "Numerics beside speed").
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import mlp
from bench.instruments import numerics
from bench.case.cases import Case
from bench.instruments.clocks import torch_threads

WIDTH, DEPTH, BATCH = 32, 2, 16
LR = mlp.CLASSIC_LR


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny nets: one thread (the cases' own), so a busy machine cannot stall OpenMP's barriers."""
    with torch_threads(1):
        yield


def _case(**knobs) -> Case:
    return Case(width=WIDTH, depth=DEPTH, batch=BATCH, threads=1, **knobs)


def independent_reference(case: Case) -> tuple[numerics.Trace, int, int]:
    """fp32, plain PyTorch: the step's initial weights copied into nn.Linear layers, autograd, w -= lr * g."""
    start_model = numerics.build(numerics.reference_case(case)).model
    linears = [m for m in start_model.modules() if isinstance(m, nn.Linear)]
    layers = []
    for i, old in enumerate(linears):
        new = nn.Linear(old.in_features, old.out_features)
        with torch.no_grad():
            new.weight.copy_(old.weight)
            new.bias.copy_(old.bias)
        layers += [new] + ([nn.ReLU()] if i < len(linears) - 1 else [])
    net = nn.Sequential(*layers)
    params = list(net.parameters())
    start = [p.detach().clone() for p in params]
    gen = torch.Generator().manual_seed(numerics.SEED)
    batches = [case.make_batch(gen) for _ in range(numerics.STEPS)]
    loss0, grads0 = math.nan, None
    for i, (x, y) in enumerate(batches):
        loss = F.mse_loss(net(x), y)
        grads = torch.autograd.grad(loss, params)
        if i == 0:
            loss0, grads0 = float(loss.detach()), [g.clone() for g in grads]
        with torch.no_grad():
            for p, g in zip(params, grads):
                p -= LR * g
    trace = numerics.Trace(loss0, grads0, start, [p.detach().clone() for p in params])
    return trace, max(BATCH, WIDTH), len(linears)


def variant_trace(case: Case) -> numerics.Trace:
    with mlp.matmul_precision(mlp.Precision(case.dtype)):
        step = numerics.build(case)
        return numerics.trace(step, numerics.numerics_batches(case, step))


def test_the_fp32_eager_step_is_the_independent_reference():
    case = _case()
    reference, reduction, layers = independent_reference(case)
    judged = numerics.judged("fp32", variant_trace(case), reference, reduction, layers)
    assert judged["numerics"] == ""
    assert judged["loss_rel_err"] < 1e-6 and judged["grad_rel_err"] < 1e-6 and judged["weights_rel_err"] < 1e-4
    assert numerics.case_numerics(case)["numerics"] == "reference"  # fp32 eager is not compared with itself


def test_a_legitimately_equal_variant_is_not_flagged():
    """The fused epilogue in fp32: addmm then relu_ on the CPU, the same arithmetic as Linear + ReLU."""
    case = _case(epilogue="fused")
    reference, reduction, layers = independent_reference(case)
    assert numerics.judged("fp32", variant_trace(case), reference, reduction, layers)["numerics"] == ""
    row = numerics.case_numerics(case)
    assert row["numerics"] == "" and row["grad_rel_err"] <= row["numerics_tol"]


def test_a_variant_that_drops_one_layers_bias_is_flagged(monkeypatch):
    """A plausible one-line bug in the fused epilogue: the first layer's bias left out of the matmul."""
    fused = mlp.epilogue.fused_linear_relu
    first = {}

    def without_first_bias(x, linear):
        first.setdefault("layer", linear)
        if linear is first["layer"]:
            return torch.relu(x @ linear.weight.t())
        return fused(x, linear)

    monkeypatch.setattr(mlp.epilogue, "fused_linear_relu", without_first_bias)
    case = _case(epilogue="fused")
    reference, reduction, layers = independent_reference(case)
    judged = numerics.judged("fp32", variant_trace(case), reference, reduction, layers)
    assert judged["grad_rel_err"] == pytest.approx(1.0)  # that bias gets no gradient at all
    assert "grads" in judged["numerics"] and "beyond tolerance" in judged["numerics"]
    first.clear()
    row = numerics.case_numerics(case)  # the product's own path, against its fp32 eager reference
    assert row["numerics"].startswith("beyond tolerance") and row["grad_rel_err"] > row["numerics_tol"]


def test_bf16_autocast_is_within_its_tolerance_and_bf16_parameters_are_not():
    """bf16 autocast keeps fp32 master weights: its errors are the operands' rounding, within the bf16
    tolerance. bf16 parameters lose the small SGD updates: the weights' change is flagged (design.md)."""
    reference, reduction, layers = independent_reference(_case())
    autocast = numerics.judged("bf16", variant_trace(_case(dtype="bf16")), reference, reduction, layers)
    assert autocast["numerics"] == "", autocast
    assert 1e-4 < autocast["grad_rel_err"] < autocast["numerics_tol"]  # bf16, not silently fp32
    pure = numerics.judged("bf16", variant_trace(_case(dtype="bf16", param_dtype="compute")), reference,
                           reduction, layers)
    assert pure["grad_rel_err"] <= pure["numerics_tol"]  # the first step's gradients are bf16 autocast's
    assert pure["weights_rel_err"] > pure["weights_tol"] and "weights after" in pure["numerics"]


def test_the_tolerance_follows_the_unit_roundoff_and_the_depth():
    u = 2.0 ** -8
    assert numerics.tolerance("bf16", 1, 1) == pytest.approx(numerics.LAMBDA * 3 * (2 * u + 2.0 ** -24))
    assert numerics.tolerance("bf16", 64, 3) > numerics.tolerance("tf32", 64, 3) > numerics.tolerance("fp32", 64, 3)
    assert numerics.tolerance("fp32", 4096, 3) == pytest.approx(numerics.LAMBDA * 7 * 2.0 ** -24 * 64)
    assert numerics.tolerance("bf16", 64, 5) > numerics.tolerance("bf16", 64, 3)


def test_a_numerics_failure_is_said_not_raised(monkeypatch):
    def broken(case):
        raise RuntimeError("no memory for the reference\nsecond line")

    monkeypatch.setattr(numerics, "build", broken)
    numerics._REFERENCES.clear()
    row = numerics.case_numerics(_case(dtype="bf16"))
    assert row["numerics"] == "not measured: RuntimeError: no memory for the reference"
    assert math.isnan(row["grad_rel_err"])


@pytest.mark.slow
def test_a_compiled_whole_step_is_read_through_the_hook():
    """The gradients of a step compiled as one function come out through the optimiser pre-hook (one cold
    compile): within the fp32 tolerance, and really read (a missing gradient would count as zeros: error 1)."""
    row = numerics.case_numerics(_case(compile="default", compile_scope="step"))
    assert row["numerics"] == "", row
    assert row["grad_rel_err"] < 1e-5 and row["loss_rel_err"] < 1e-5


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_graph_step_is_read_at_capture_and_rewritten_by_each_replay():
    row = numerics.case_numerics(Case(width=WIDTH, depth=DEPTH, batch=BATCH, device="cuda", cuda_graph="step"))
    assert row["numerics"] == "", row
    assert row["grad_rel_err"] < 1e-5


def test_a_non_finite_variant_and_an_unseen_gradient_are_said():
    """A NaN in the variant is infinitely far (never within tolerance by comparison with NaN); a first step the
    optimiser skipped (fp16's GradScaler) has no gradients to compare, and says so."""
    reference, reduction, layers = independent_reference(_case())
    nan = numerics.Trace(math.nan, [g * math.nan for g in reference.grads], reference.start,
                         [e * math.nan for e in reference.end])
    judged = numerics.judged("fp32", nan, reference, reduction, layers)
    assert judged["loss_rel_err"] == judged["grad_rel_err"] == judged["weights_rel_err"] == math.inf
    assert judged["numerics"].startswith("beyond tolerance: loss inf")
    skipped = numerics.Trace(reference.loss, None, reference.start, reference.end)
    judged = numerics.judged("fp32", skipped, reference, reduction, layers)
    assert math.isnan(judged["grad_rel_err"])
    assert judged["numerics"] == "first step's gradients not seen (the optimiser skipped it)"


def test_the_pass_runs_only_where_the_case_budget_has_room_for_it():
    """About a first step plus 2 x STEPS steady steps beside what the timing took, within ``max_case_s``; the
    fp32 eager reference costs nothing and always reads 'reference'."""
    from bench.model.phases import Phase
    from bench.engine.runner import measured_numerics
    from bench.instruments.timing import Measurement, TimingConfig

    def measured(case):
        return Measurement(case, samples={Phase.STEP: [0.1] * 3}, first_step_s=2.0, measure_s=5.0)

    bf16 = _case(dtype="bf16")  # the pass would cost ~2 + 10 x 0.1 = 3 s
    assert measured_numerics(measured(bf16), TimingConfig(max_case_s=7.0))["numerics"] == (
        "not measured: the case budget (7 s) has no room for it (~3 s after 5 s of timing)")
    row = measured_numerics(measured(bf16), TimingConfig(max_case_s=8.5))
    assert row["numerics"] == "" and row["grad_rel_err"] > 0 and row["numerics_s"] > 0
    assert measured_numerics(measured(bf16), TimingConfig())["numerics"] == ""
    assert measured_numerics(measured(_case()), TimingConfig(max_case_s=5.0))["numerics"] == "reference"
