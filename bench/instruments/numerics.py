"""Numerics beside speed: how far a case's step computes from the fp32 eager step, on the same weights and batches.

A faster knob (bf16, a compiled step, the fused epilogue, a CUDA graph) is only a win if it still trains the
same network. For every case other than fp32 eager, ``case_numerics`` builds two steps from the same seed,
the **reference** (the case with every knob off in fp32: eager, fp32 parameters, no epilogue, TF32 off) and
the **variant** (the case as measured, every knob on), runs each for ``STEPS`` training steps on the same
``STEPS`` batches, and records three relative errors, each the worst parameter tensor's (so one layer's
dropped bias cannot hide in the norm of the whole network):

* ``loss_rel_err``: the first step's loss, ``|l - l_ref| / |l_ref|``;
* ``grad_rel_err``: the first step's gradients, ``max_p ||g_p - g_ref,p|| / ||g_ref,p||``;
* ``weights_rel_err``: the weights' change after ``STEPS`` steps, ``max_p ||dw_p - dw_ref,p|| / ||dw_ref,p||``
  with ``dw = w_k - w_0`` on each side (relative to the change, not to the weights: after a few steps at a small
  learning rate the weights moved by ~1e-3 of themselves, and an error relative to them would read 1000x
  smaller than the update it spoils).

``numerics_tol`` bounds the loss and gradient errors, ``weights_tol`` the weights' (``tolerance``,
``weights_tolerance``: the unit roundoff of the dtype's operands and accumulator, the longest reduction, the
depth, and how finely fp32 stores the weights against their change; docs/design.md "Numerics beside speed"
derives them and sets them against measurements), and ``numerics`` is '' within them, or says which error is
beyond which.

Gradients are read by an optimiser step pre-hook, so a step that runs as one unit is read the same way:
eagerly it fires every step; traced into a compiled step, its copies are the compiled function's outputs;
in a CUDA graph it fires at capture, and each replay rewrites the copies it captured. Dropout is set to
p=0 on both sides (two RNG streams would differ by design, not by numerics). It costs one extra pair of
short step sequences per case, after its timing (on the CPU the reference's is kept for the next case
that shares it).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

import mlp
from mlp import Precision

from ..case.cases import Case
from ..model.case_fields import KNOBS_OFF
from .clocks import torch_threads
from ..errors import first_line
from .timing import build_step, cudagraph_step_marker

STEPS = 5  # k: the weights' change is compared after this many steps (docs/design.md says why 5)
SEED = 20240  # weights and batches of both sides
LAMBDA = 2.0  # the tolerances' margin over the error model (docs/design.md: bf16 gradients measured 0.9 to 1.1 of it)
# Unit roundoff (half the machine epsilon) of what a matmul's operands are rounded to, and of its accumulator
OPERAND_ROUNDOFF = {Precision.FP32: 0.0, Precision.TF32: 2.0 ** -11, Precision.BF16: 2.0 ** -8,
                    Precision.FP16: 2.0 ** -11}
ACCUMULATOR_ROUNDOFF = 2.0 ** -24  # fp32: every backend here accumulates a reduced-precision matmul in fp32
COLUMNS = ("loss_rel_err", "grad_rel_err", "weights_rel_err", "numerics_tol", "weights_tol", "numerics",
           "numerics_steps")
EAGER_FP32 = {"dtype": "fp32", **KNOBS_OFF}


@dataclass(frozen=True)
class Trace:
    """What a step computed: the first step's loss and gradients, the weights before and after the steps.

    Tensors are fp32 copies in the optimiser's parameter order; a gradient the step did not produce is None, and
    ``grads`` is None when the optimiser did not step at all in the first step.
    """

    loss: float
    grads: list
    start: list
    end: list


def reference_case(case: Case) -> Case:
    """The case fp32 eager would be: the same network, batch, device, threads and optimiser, every knob off."""
    return case.with_(**EAGER_FP32)


def is_reference(case: Case) -> bool:
    return reference_case(case) == case


def tolerance(dtype: Precision | str, reduction: int, layers: int) -> float:
    """The largest relative error of the loss and the gradients a correct step in ``dtype`` should show against
    fp32 eager.

    A matmul of reduction length n with operands rounded to unit roundoff u_op and an fp32 accumulator (u_acc)
    has a relative error of about 2 u_op (each product's two rounded operands) + u_acc sqrt(n) (the sum's
    rounding, probabilistic). A step chains ``2 L + 1`` such reductions (L Linear layers forward and backward,
    and the batch reduction of a weight gradient), and the measured errors grow with that count linearly (the
    first layer's gradient of a ReLU net reads 0.9 to 1.1 x (2 L + 1) x 2 u_op in bf16 for L = 3 and 5), so:
    ``LAMBDA * (2 L + 1) * (2 u_op + u_acc sqrt(n))``.
    """
    u_op = OPERAND_ROUNDOFF[Precision(dtype)]
    per_reduction = 2 * u_op + ACCUMULATOR_ROUNDOFF * math.sqrt(max(reduction, 1))
    return LAMBDA * (2 * max(layers, 1) + 1) * per_reduction


def weights_tolerance(grads_tol: float, reference: "Trace", steps: int = STEPS) -> float:
    """The weights' change may differ as much as the gradients that made it, plus what fp32 storage cannot
    resolve: each update is rounded to the weights' ulp (u_acc |w|), a random walk of ``steps`` roundings on
    either side, against a change of |dw|; ``rho`` is the reference's largest ||w|| / ||dw|| over the tensors."""
    rho = max((float(torch.linalg.vector_norm(e)) / float(torch.linalg.vector_norm(e - s))
               for s, e in zip(reference.start, reference.end) if torch.any(e != s)), default=0.0)
    return grads_tol + LAMBDA * math.sqrt(2 * steps) * ACCUMULATOR_ROUNDOFF * rho


def shape_of(case: Case, model: nn.Module) -> tuple[int, int]:
    """(the longest reduction: a Linear's input or output, or the batch; the number of Linear layers)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    return max([case.batch, *(m.in_features for m in linears), *(m.out_features for m in linears)]), len(linears)


def relative_error(value: torch.Tensor | None, reference: torch.Tensor | None) -> float:
    """``||value - reference|| / ||reference||`` in float64; a missing value counts as zeros; 0/0 is 0; a non-finite
    value is infinitely far."""
    if reference is None:
        return 0.0 if value is None or not torch.any(value) else math.inf
    ref = reference.double()
    diff = ref if value is None else value.double() - ref
    scale = float(torch.linalg.vector_norm(ref))
    err = float(torch.linalg.vector_norm(diff))
    if not math.isfinite(err):  # a NaN or an inf in the variant: as far as it gets
        return math.inf
    return err / scale if scale > 0 else (0.0 if err == 0 else math.inf)


def worst(values: Sequence[torch.Tensor | None], references: Sequence[torch.Tensor | None]) -> float:
    if len(values) != len(references):
        return math.inf  # a different set of parameters is not the same network
    return max((relative_error(v, r) for v, r in zip(values, references)), default=0.0)


def errors(variant: Trace, reference: Trace) -> dict[str, float]:
    """The three relative errors of ``variant`` against ``reference`` (module docstring)."""
    loss = abs(variant.loss - reference.loss) / abs(reference.loss) if reference.loss else abs(variant.loss)
    changes = lambda t: [e - s for s, e in zip(t.start, t.end)]  # noqa: E731
    return {"loss_rel_err": loss if math.isfinite(variant.loss) else math.inf,
            "grad_rel_err": math.nan if variant.grads is None else worst(variant.grads, reference.grads),
            "weights_rel_err": worst(changes(variant), changes(reference))}


def verdict(errs: dict[str, float], tol: float, weights_tol: float) -> str:
    """'' when every error is within its tolerance; else each one beyond it, with its value and its tolerance."""
    limits = {"loss_rel_err": ("loss", tol), "grad_rel_err": ("grads", tol),
              "weights_rel_err": (f"weights after {STEPS} steps", weights_tol)}
    beyond = [f"{limits[k][0]} {v:.2g} > {limits[k][1]:.2g}" for k, v in errs.items() if v > limits[k][1]]
    parts = ["beyond tolerance: " + ", ".join(beyond)] if beyond else []
    if math.isnan(errs["grad_rel_err"]):
        parts.append("first step's gradients not seen (the optimiser skipped it)")
    return "; ".join(parts)


def fp32_copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to(torch.float32, copy=True)


def trace(step: mlp.TrainStep, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], mark_step=lambda: None,
          seed: int = SEED) -> Trace:
    """Run ``step`` once per batch; the first step's loss and gradients, the weights before and after."""
    params = [p for group in step.optimizer.param_groups for p in group["params"]]
    start = [fp32_copy(p) for p in params]
    seen: dict[str, list] = {}

    def keep(optimizer, args, kwargs):  # before the update: the gradients the backward produced
        seen["grads"] = [None if p.grad is None else p.grad.detach().clone() for p in params]

    handle = step.optimizer.register_step_pre_hook(keep)
    try:
        torch.manual_seed(seed)
        loss, grads = math.nan, None
        for i, (x, y) in enumerate(batches):
            mark_step()
            out = step.step(x, y)
            if i == 0:
                loss = float(out.detach())  # read before the next step overwrites a graph's output
                # None: the optimiser never stepped (fp16's GradScaler skips a step whose gradients overflowed)
                grads = [None if g is None else fp32_copy(g) for g in seen["grads"]] if "grads" in seen else None
    finally:
        handle.remove()
    return Trace(loss, grads, start, [fp32_copy(p) for p in params])


def numerics_batches(case: Case, step: mlp.TrainStep) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(SEED)
    return [step.prepare(*case.make_batch(gen)) for _ in range(STEPS)]


def build(case: Case) -> mlp.TrainStep:
    """The case's step (``bench.instruments.timing.build_step``) from ``SEED``, with dropout off."""
    torch.manual_seed(SEED)
    step = build_step(case)
    for module in step.model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = 0.0
    return step


# The last reference, for the next case that shares it (the CPU only: on CUDA it is dropped after each case)
_REFERENCES: dict[Case, tuple[Trace, tuple[int, int]]] = {}


def reference_trace(case: Case) -> tuple[Trace, tuple[int, int]]:
    """(the fp32 eager trace of ``case``'s reference, its ``shape_of``); the last one is kept for the next case."""
    ref = reference_case(case)
    if ref not in _REFERENCES:
        _REFERENCES.clear()
        with mlp.matmul_precision(Precision.FP32):
            step = build(ref)
            _REFERENCES[ref] = (trace(step, numerics_batches(ref, step)), shape_of(ref, step.model))
    return _REFERENCES[ref]


def case_numerics(case: Case) -> dict:
    """The numerics columns of ``case`` (``COLUMNS``): blank for fp32 eager (the reference itself, said in
    ``numerics``) and for a data-parallel case; a failure to compute them is said in ``numerics``, never the
    case's failure."""
    blank = {c: math.nan for c in COLUMNS} | {"numerics": "", "numerics_steps": STEPS}
    if is_reference(case) or case.backend != "none":
        return blank | {"numerics": "reference" if is_reference(case) else ""}
    cuda = case.device == "cuda"
    try:  # the caller's random streams are left as they were (the pass seeds its own)
        with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda else []), \
                torch_threads(case.threads):
            reference, (reduction, layers) = reference_trace(case)
            with mlp.matmul_precision(case.precision):
                step = build(case)
                variant = trace(step, numerics_batches(case, step), cudagraph_step_marker(case))
            del step
    except Exception as exc:  # noqa: BLE001 - numerics not measured is said, the case's timing stands
        return blank | {"numerics": f"not measured: {type(exc).__name__}: {first_line(exc)}"}
    finally:
        if cuda:  # no copy of a large net stays on the GPU into the next case's timing and peak memory
            _REFERENCES.clear()
            gc.collect()
            torch.cuda.empty_cache()
    return judged(case.precision, variant, reference, reduction, layers)


def judged(dtype: Precision | str, variant: Trace, reference: Trace, reduction: int, layers: int) -> dict:
    """The numerics columns of ``variant`` against ``reference``, for a step in ``dtype`` of that shape."""
    errs = errors(variant, reference)
    tol = tolerance(dtype, reduction, layers)
    w_tol = weights_tolerance(tol, reference)
    return {**errs, "numerics_tol": tol, "weights_tol": w_tol, "numerics": verdict(errs, tol, w_tol),
            "numerics_steps": STEPS}
