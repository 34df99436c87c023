"""Exact, noise-free counters of one training step: layer 1 of the regression gate.

For one case and each phase (forward, loss+backward, optimiser, the whole step,
inference) we count what the step *does*, not how long it takes:

* ``aten_ops``: ATen operator calls that reach the dispatcher below autograd,
  counted by a ``TorchDispatchMode`` (so ``linear`` shows as ``t`` + ``addmm``,
  as it runs). Extra ops per step are the commonest eager-mode regression.
* ``matmul_flops``: ``torch.utils.flop_counter.FlopCounterMode`` on the same call.
* ``alloc_bytes``: bytes of fresh storage the ops return (views and in-place
  results excluded): catches an extra copy that the analytic model cannot see.
* ``host_syncs``: calls that make the host wait for the device on CUDA
  (``.item()``, data-dependent shapes, device-to-host copies), counted on every device.
* CUDA only: kernels launched, synchronize calls seen by the profiler, and peak
  allocated bytes (reset before each phase).

Per case also: parameter count and the analytic FLOPs and memory of ``mlp``.
Everything is an integer and repeats exactly from run to run on the same torch
build, so the gate compares with ``==`` and needs no statistics.

This module is part of the measuring instrument: ``bench.gate.worker`` loads it by
path next to a *different* tree's ``mlp`` (``mlpbench check --against REF``), so it
takes a built ``TrainStep`` and imports only ``bench.model.phases`` (relatively: the worker
loads the measuring tree's copy under a private package name).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from ..model.phases import TRAINING_PHASE_NAMES, Phase

PHASES = (*TRAINING_PHASE_NAMES, Phase.STEP.value, Phase.INFERENCE.value)  # the phases apart, then the wholes
# The first step creates optimiser state (momentum buffers, Adam moments and step
# counters) and so runs other ops than every later step; count a steady step.
WARMUP_STEPS = 2
# ATen ops that make the host wait for the device on CUDA: a scalar read, or an
# output whose shape depends on the data. (Device-to-host copies are detected by device.)
HOST_SYNC_OPS = frozenset({"_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_consecutive",
                           "unique_dim", "repeat_interleave"})
ATEN = "aten"


# --------------------------------------------------------------------------- counting ops


class OpCounter(TorchDispatchMode):
    """Counts every operator call below autograd, the bytes of fresh storage it returns, and host syncs.

    Nested calls inside a kernel are not seen (the mode is off while its handler
    runs), so each count is one call the step itself made.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: collections.Counter[str] = collections.Counter()
        self.alloc_bytes = 0
        self.host_syncs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = op_name(func)
        self.ops[name] += 1
        self.alloc_bytes += _fresh_storage_bytes(args, kwargs, out)
        if _is_host_sync(func, args, out):
            self.host_syncs += 1
        return out

    @property
    def aten_ops(self) -> int:
        return sum(n for name, n in self.ops.items() if name.startswith(ATEN + "."))


def op_name(func) -> str:
    """``aten.addmm.default``: namespace, operator and overload, as ``str(func)`` prints it."""
    return str(func)


def _tensors(tree) -> list[torch.Tensor]:
    return [t for t in torch.utils._pytree.tree_leaves(tree) if isinstance(t, torch.Tensor)]


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    return (str(t.device), t.untyped_storage().data_ptr())


def _fresh_storage_bytes(args, kwargs, out) -> int:
    seen = {_storage_key(t) for t in _tensors((args, kwargs))}
    total = 0
    for t in _tensors(out):
        key = _storage_key(t)
        if key not in seen:  # not a view of / in-place on an input, not counted twice
            seen.add(key)
            total += t.untyped_storage().nbytes()
    return total


def _is_host_sync(func, args, out) -> bool:
    if func._schema.name.split("::")[-1] in HOST_SYNC_OPS:
        return True
    devices_in = {t.device.type for t in _tensors(args)}
    devices_out = {t.device.type for t in _tensors(out)}
    return devices_out == {"cpu"} and bool(devices_in - {"cpu"})  # device -> host copy


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class PhaseCounts:
    aten_ops: int
    matmul_flops: int
    alloc_bytes: int
    host_syncs: int
    ops: Mapping[str, int] = field(default_factory=dict)  # every operator (any namespace) -> calls
    kernels: int | None = None  # CUDA only: kernels launched
    cuda_syncs: int | None = None  # CUDA only: synchronize calls the profiler saw
    peak_mem_bytes: int | None = None  # CUDA only: max allocated during the phase

    def metrics(self) -> dict[str, int]:
        values = {"aten_ops": self.aten_ops, "matmul_flops": self.matmul_flops, "alloc_bytes": self.alloc_bytes,
                  "host_syncs": self.host_syncs, "kernels": self.kernels, "cuda_syncs": self.cuda_syncs,
                  "peak_mem_bytes": self.peak_mem_bytes}
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class CaseCounters:
    parameters: int
    analytic: Mapping[str, int]  # from mlp's accounting: FLOPs and memory by formula
    phases: Mapping[str, PhaseCounts]

    def metrics(self) -> dict[str, int]:
        """Flat ``name -> integer`` view; the gate fails when any of these grows."""
        out = {"parameters": self.parameters, **{f"analytic.{k}": v for k, v in self.analytic.items()}}
        for phase, counts in self.phases.items():
            out.update({f"{phase}.{k}": v for k, v in counts.metrics().items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CaseCounters":
        phases = {p: PhaseCounts(**c) for p, c in data["phases"].items()}
        return cls(parameters=data["parameters"], analytic=dict(data["analytic"]), phases=phases)


# --------------------------------------------------------------------------- one case


def count_step(step, case, batch: tuple[torch.Tensor, torch.Tensor]) -> CaseCounters:
    """Counters of one steady training step of ``step`` (an ``mlp.TrainStep`` built for ``case``).

    ``batch`` is an (input, target) pair on the case's device.
    """
    x, y = batch
    for _ in range(WARMUP_STEPS):
        step.step(x, y)
    step.infer(x)
    phases = _run_phases(step, x, y, _count_calls)
    if torch.device(case.device).type == "cuda":
        cuda = _run_phases(step, x, y, _cuda_counts)
        phases = {p: PhaseCounts(**{**asdict(phases[p]), **cuda[p]}) for p in PHASES}
    return CaseCounters(parameters=sum(p.numel() for p in step.model.parameters()),
                        analytic=analytic_counts(step.model, case), phases=phases)


def _run_phases(step, x, y, measure: Callable[[Callable[[], object]], Any]) -> dict[str, Any]:
    """Each phase once, in training order, each measured on its own."""
    held: dict[str, torch.Tensor] = {}
    return {
        "forward": measure(lambda: held.setdefault("out", step.forward(x))),
        "backward": measure(lambda: step.loss_backward(held.pop("out"), y)),
        "optimizer": measure(step.optimizer_step),
        "step": measure(lambda: step.step(x, y)),
        "inference": measure(lambda: step.infer(x)),
    }


def _count_calls(fn: Callable[[], object]) -> PhaseCounts:
    counter = OpCounter()
    with FlopCounterMode(display=False) as flop_counter, counter:
        fn()
    return PhaseCounts(aten_ops=counter.aten_ops, matmul_flops=int(flop_counter.get_total_flops()),
                       alloc_bytes=counter.alloc_bytes, host_syncs=counter.host_syncs,
                       ops=dict(sorted(counter.ops.items())))


def _cuda_counts(fn: Callable[[], object]) -> dict[str, int]:
    """Kernels launched and synchronize calls (profiler), and peak allocated bytes, of one CUDA phase."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    events = list(prof.events())
    kernels = sum(1 for e in events if e.device_type == DeviceType.CUDA)
    # the closing synchronize above is ours, not the step's
    syncs = sum(1 for e in events if e.device_type == DeviceType.CPU and "Synchronize" in e.name) - 1
    return {"kernels": kernels, "cuda_syncs": max(syncs, 0), "peak_mem_bytes": int(peak)}


def analytic_counts(model: torch.nn.Module, case) -> dict[str, int]:
    """FLOPs and memory of the case by formula (``mlp.flops`` / ``mlp.memory``), independent of running it; {} for a
    user's model the formulas do not know (a lone Linear, a Dropout, a nested ``nn.Sequential``, a tuple input, a
    user's loss): its FLOPs are counted instead, in every phase."""
    import mlp

    if not case.loss_is_builtin:
        return {}
    try:
        mlp.layers_of(model)
        flops = mlp.flops(model, case.batch, case.loss, case.optimizer)
        memory = mlp.memory(model, case.batch, case.input_shape, case.loss, case.optimizer, case.dtype)
    except ValueError:
        return {}
    return {"step_matmul_flops": flops.step_matmul, "step_elementwise_flops": flops.step_elementwise,
            "memory_bytes": memory.total_bytes}


# --------------------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Change:
    metric: str  # e.g. "forward.aten_ops"
    before: int | None  # None: the metric is new
    after: int | None  # None: the metric is gone

    @property
    def kind(self) -> str:
        if self.before is None:
            return "added"
        if self.after is None:
            return "removed"
        return "increase" if self.after > self.before else "decrease"

    @property
    def is_regression(self) -> bool:
        return self.kind == "increase"


def compare(before: CaseCounters, after: CaseCounters) -> list[Change]:
    """Every metric that differs; an ``increase`` is a regression, the rest is reported."""
    old, new = before.metrics(), after.metrics()
    return [Change(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new), key=_metric_order)
            if old.get(k) != new.get(k)]


def op_changes(before: CaseCounters, after: CaseCounters) -> list[tuple[str, str, int, int]]:
    """(phase, operator, calls before, calls after) for every operator whose count changed."""
    out = []
    for phase in PHASES:
        old = before.phases[phase].ops if phase in before.phases else {}
        new = after.phases[phase].ops if phase in after.phases else {}
        out += [(phase, op, old.get(op, 0), new.get(op, 0)) for op in sorted(set(old) | set(new))
                if old.get(op, 0) != new.get(op, 0)]
    return out


def _metric_order(metric: str) -> tuple[int, str]:
    phase = metric.split(".", 1)[0]
    return (PHASES.index(phase) if phase in PHASES else -1, metric)
