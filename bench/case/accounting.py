"""Where each figure of a case comes from: the analytic accounting, or counting, or nowhere (an empty cell).

* **analytic** (``mlp.flops``, ``mlp.memory``, ``mlp.traffic``): the built-in networks, whose layers
  the accounting knows exactly (tests check it against FlopCounterMode and autograd).
* **counted**: any other module (a user's ``--model``, or a layer the accounting has no rule for).
  Matmul FLOPs are counted with ``FlopCounterMode`` once per case, forward and loss + backward of one
  step (``mlp.count_flops``). What follows from the parameters alone is exact: parameter, gradient
  and optimiser-state bytes, the data, the optimiser's FLOPs and traffic. What depends on what the
  module computes (elementwise FLOPs, saved activations, activation traffic) is unknown: those cells
  stay empty (NaN) and ``accounting_note`` says why; memory is then measured, on CUDA
  (``peak_mem_bytes``). ``traffic_bytes`` of a counted case counts only the known bytes, a lower
  bound, so its speed-of-light floor stays a floor.

A failure here is the case's, not the sweep's: the runner turns it into an error row.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass, field

import torch
from torch import nn

import mlp
from mlp import Gemm, Loss, Optimizer

from . import plugin
from .cases import Case
from ..model.phases import Phase


class FlopsSource(str, enum.Enum):
    ANALYTIC = "analytic"  # mlp.flops: from the architecture
    COUNTED = "counted"  # FlopCounterMode on one step


COUNTED_NOTE = ("FLOPs counted with FlopCounterMode (a module without analytic accounting); elementwise FLOPs, "
                "saved activations and activation traffic unknown, so left empty (memory: measured on CUDA); "
                "traffic_bytes counts parameters, gradients, optimizer state and data only (a lower bound)")
WEIGHT_DECAY_FLOPS_PER_PARAM = 2  # g += wd * p (AdamW's decoupled decay is already in its own count)
UNKNOWN = math.nan
DESCRIBED = ("model_linears", "model_in_features", "model_out_features", "model_input_shape")  # user models' columns


@dataclass(frozen=True)
class CaseFigures:
    """The per-phase counts of one case (phase names as keys; NaN where no source exists)."""

    source: FlopsSource
    parameters: int
    matmul_flops: dict[str, float]
    elementwise_flops: dict[str, float]
    traffic_bytes: dict[str, float]
    memory: dict[str, float]  # mlp.Memory.as_dict()'s keys (the mem_* columns without the prefix)
    phase_peak_bytes: dict[str, float]
    gemms: tuple[Gemm, ...] = ()  # the products the matmul ceiling is measured on (analytic cases only)
    model_source_sha: str = ""  # a user's model: the hash of the source that defines it
    note: str = ""
    described: dict[str, object] = field(default_factory=dict)  # a user's model: what was read off it (``described``)

    @property
    def needed_bytes(self) -> float:
        """What the step needs at least: the analytic total, or for a counted case the known parts."""
        total = self.memory["total_bytes"]
        if not math.isnan(total):
            return total
        return sum(self.memory[k] for k in ("parameters_bytes", "gradients_bytes", "optimizer_state_bytes",
                                            "data_bytes"))


def meta_model(case: Case) -> nn.Module:
    with torch.device("meta"):  # shapes only: a w8192 network costs no memory here
        return case.build_model()


def case_figures(case: Case) -> CaseFigures:
    """The case's figures, analytic where the accounting knows every layer, else counted (cached per case and
    version of a user's model source)."""
    return _case_figures(case, plugin.resolve(case.model).source_sha if case.user_model else "")


@functools.lru_cache(maxsize=512)
def _case_figures(case: Case, source_sha: str) -> CaseFigures:
    model = meta_model(case)
    if not case.user_model:
        try:
            mlp.layers_of(model)
        except ValueError:
            pass
        else:
            return _analytic(case, model)
    return _counted(case, model, source_sha)


def _analytic(case: Case, model: nn.Module) -> CaseFigures:
    f = mlp.flops(model, case.batch, case.loss, case.optimizer)
    memory = mlp.memory(model, case.batch, case.input_shape, case.loss, case.optimizer, case.precision, case.device,
                        param_dtype=case.param_dtype)
    traffic = mlp.traffic(model, case.batch, case.input_shape, case.loss, case.optimizer, case.precision, case.device,
                          param_dtype=case.param_dtype, fused_epilogue=case.epilogue == mlp.Epilogue.FUSED.value)
    optimizer = f.optimizer_elementwise + _decay_flops(case, model)
    matmul = {Phase.STEP: f.step_matmul, Phase.FORWARD: f.forward_matmul, Phase.BACKWARD: f.backward_matmul,
              Phase.OPTIMIZER: 0, Phase.INFERENCE: f.forward_matmul}
    elementwise = {Phase.STEP: f.step_elementwise - f.optimizer_elementwise + optimizer,
                   Phase.FORWARD: f.forward_elementwise, Phase.BACKWARD: f.loss_elementwise + f.backward_elementwise,
                   Phase.OPTIMIZER: optimizer, Phase.INFERENCE: f.forward_elementwise}
    return CaseFigures(FlopsSource.ANALYTIC, mlp.count_parameters(model), _by_name(matmul), _by_name(elementwise),
                       {p.value: traffic.phase(p.value).total_bytes for p in Phase}, memory.as_dict(),
                       memory.phase_peak_bytes(), tuple(mlp.gemms(model, case.batch)))


def _counted(case: Case, model: nn.Module, source_sha: str) -> CaseFigures:
    n_out = case.io_features[1]
    plugin.register_loss(case)
    example = _meta_input(case)
    counted = mlp.count_flops(lambda device: _built_on(case, device), case.batch, case.input_shape, n_out, case.loss,
                              make_batch=(lambda device: _user_batch(case, device)) if case.inputs else None)
    params = list(model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    classes = case.loss == Loss.CROSS_ENTROPY.value
    target_bytes = case.batch * (8 if classes else n_out * mlp.accounting.FP32_BYTES)  # int64 labels, else fp32
    input_elements = sum(t.numel() for t in _tensors(example))
    memory = {key: UNKNOWN for key in mlp.Memory.__dataclass_fields__} | {
        "parameters_bytes": param_bytes,
        "gradients_bytes": sum(p.numel() * p.element_size() for p in params if p.requires_grad),
        "optimizer_state_bytes": mlp.optimizer_state_bytes(model, case.optimizer),
        "data_bytes": sum(t.numel() * t.element_size() for t in _tensors(example)) + target_bytes,
        "total_bytes": UNKNOWN,
    }
    peaks = {p.value: UNKNOWN for p in Phase}
    peaks[Phase.OPTIMIZER.value] = (memory["parameters_bytes"] + memory["optimizer_state_bytes"] + memory["data_bytes"]
                                    + memory["gradients_bytes"])
    optimizer = (sum(p.numel() for p in params) * mlp.accounting.OPTIMIZER_FLOPS_PER_PARAM[Optimizer(case.optimizer)]
                 + _decay_flops(case, model))
    matmul = {Phase.STEP: counted.step_matmul, Phase.FORWARD: counted.forward_matmul,
              Phase.BACKWARD: counted.backward_matmul, Phase.OPTIMIZER: 0, Phase.INFERENCE: counted.forward_matmul}
    # the loss's and the optimiser's elementwise shares are known, the module's is not: the sums stay unknown
    elementwise = {Phase.STEP: UNKNOWN, Phase.FORWARD: UNKNOWN, Phase.BACKWARD: UNKNOWN, Phase.OPTIMIZER: optimizer,
                   Phase.INFERENCE: UNKNOWN}
    # the target's kind: a user's loss takes mse's (batch, out_features) target
    known = mlp.known_traffic(model, case.batch, (input_elements // case.batch,), n_out,
                              Loss.CROSS_ENTROPY.value if classes else Loss.MSE.value, case.optimizer)
    return CaseFigures(FlopsSource.COUNTED, mlp.count_parameters(model), _by_name(matmul), _by_name(elementwise),
                       {p.value: known.phase(p.value).total_bytes for p in Phase}, memory, peaks,
                       model_source_sha=source_sha, note=COUNTED_NOTE,
                       described=described(case, model, example) if case.user_model else {})


def described(case: Case, model: nn.Module, example) -> dict[str, object]:
    """What mlpbench read off a user's model for its row: its Linear layers, the in/out features it was measured
    with (in: the flat size of one example), and one example's input shape (``1x28x28``; ``x=16;mask=16``)."""
    n_in, n_out = case.io_features
    return {"model_linears": plugin.linear_layers(model), "model_in_features": math.nan if case.inputs else n_in,
            "model_out_features": n_out, "model_input_shape": plugin.describe_input(example, batch=False)}


def _meta_input(case: Case):
    """The case's input on the meta device (shapes only): the inputs function's, or a (batch, *shape) tensor."""
    if case.inputs:
        return plugin.make_inputs(case, "meta")
    return torch.empty(case.batch, *case.input_shape, device="meta")


def _user_batch(case: Case, device: str) -> tuple:
    n_out = case.io_features[1]
    if case.loss == Loss.CROSS_ENTROPY.value:
        return plugin.make_inputs(case, device), torch.randint(0, n_out, (case.batch,), device=device)
    return plugin.make_inputs(case, device), torch.randn(case.batch, n_out, device=device)


def _tensors(x) -> list[torch.Tensor]:
    if isinstance(x, dict):
        return list(x.values())
    return list(x) if isinstance(x, (tuple, list)) else [x]


def _built_on(case: Case, device: str) -> nn.Module:
    with torch.device(device):
        return case.build_model()


def _decay_flops(case: Case, model: nn.Module) -> int:
    decay = case.optimizer_options.get("weight_decay", 0)
    if not decay or case.optimizer == Optimizer.ADAMW.value:
        return 0
    return WEIGHT_DECAY_FLOPS_PER_PARAM * sum(p.numel() for p in model.parameters())


def _by_name(values: dict[Phase, float]) -> dict[str, float]:
    return {phase.value: value for phase, value in values.items()}


def columns(figures: CaseFigures, phase: str) -> dict[str, object]:
    """The accounting columns of one summary row (the counts; the rates come from the timings)."""
    return {
        "flops_source": figures.source.value,
        "matmul_flops": figures.matmul_flops[phase],
        "elementwise_flops": figures.elementwise_flops[phase],
        "traffic_bytes": figures.traffic_bytes[phase],
        "parameters": figures.parameters,
        **{f"mem_{k}": v for k, v in figures.memory.items()},
        "mem_phase_peak_bytes": figures.phase_peak_bytes[phase],
        "model_source_sha": figures.model_source_sha,
        "accounting_note": figures.note,
        **{key: figures.described.get(key, "" if key == "model_input_shape" else math.nan) for key in DESCRIBED},
    }

