"""FLOPs by module (``FlopCounterMode``) and memory measured on a separate eager copy of the case,
next to ``mlp``'s analytic counts; the profiled run is never touched by the counters.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..model.case_fields import GRAPHS_OFF
from .results import MeasuredMemory, ModuleFlops

if TYPE_CHECKING:
    import torch

    import mlp
    from bench.case.cases import Case


def eager_accounting(case: Case) -> tuple[list[ModuleFlops], tuple[int, int], MeasuredMemory]:
    """One eager training step under FlopCounterMode and saved-tensor hooks.

    Eager on purpose: FLOPs and saved tensors are properties of the architecture,
    and compiled graphs bypass the dispatcher that FlopCounterMode listens to.
    Two nested counters: the inner one sees the forward only, the outer one the
    whole step, so backward = outer - inner (per module too).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from ..instruments.timing import build_step

    step = build_step(case.with_(**GRAPHS_OFF))
    x, y = case.make_batch(torch.Generator().manual_seed(0))
    saved = _SavedStorages(exclude=[*step.model.parameters(), x, y])
    with FlopCounterMode(display=False) as whole, torch.autograd.graph.saved_tensors_hooks(saved.pack, _unpack):
        with FlopCounterMode(display=False) as forward_only:
            out = step.forward(x)
        step.loss_backward(out, y)
    gradients = sum(p.grad.nbytes for p in step.model.parameters() if p.grad is not None)
    step.optimizer_step()
    measured = MeasuredMemory(
        parameters_bytes=sum(p.nbytes for p in step.model.parameters()),
        gradients_bytes=gradients,
        optimizer_state_bytes=_optimizer_state_bytes(step.optimizer),
        saved_activations_bytes=saved.total_bytes,
        data_bytes=x.nbytes + y.nbytes,
    )
    fwd, total = forward_only.get_total_flops(), whole.get_total_flops()
    return _module_flops(step.model, forward_only, whole), (fwd, total - fwd), measured


class _SavedStorages:
    """Pack hook that records each distinct storage autograd saves (views of one storage count once)."""

    def __init__(self, exclude: Iterable[torch.Tensor]):
        self._excluded = {t.untyped_storage().data_ptr() for t in exclude}
        self._sizes: dict[int, int] = {}

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in self._excluded:
            self._sizes[storage.data_ptr()] = storage.nbytes()
        return tensor

    @property
    def total_bytes(self) -> int:
        return sum(self._sizes.values())


def _unpack(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def _optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    import mlp

    return sum(t.nbytes for t in mlp.optimizer_state_tensors(optimizer))


def _module_flops(model: torch.nn.Module, forward_only, whole) -> list[ModuleFlops]:
    """Per module: FlopCounterMode's names are ``<root class>[.<submodule path>]``; "Global" is the total."""
    fwd_counts, all_counts = forward_only.get_flop_counts(), whole.get_flop_counts()
    rows = []
    for name, ops in all_counts.items():
        if name == "Global":
            continue
        fwd = sum(fwd_counts.get(name, {}).values())
        rows.append(ModuleFlops(name, _module_kind(model, name), fwd, sum(ops.values()) - fwd))
    return rows


def _module_kind(model: torch.nn.Module, counter_name: str) -> str:
    path = counter_name.partition(".")[2]
    try:
        module = model.get_submodule(path) if path else model
    except AttributeError:
        return ""
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return f"{type(module).__name__}({module.in_features}->{module.out_features})"
    return type(module).__name__


def analytic_flops(case: Case, model) -> mlp.Flops:
    import mlp

    return mlp.flops(model, case.batch, case.loss, case.optimizer)


def analytic_memory(case: Case, model) -> mlp.Memory:
    import mlp

    return mlp.memory(model, case.batch, case.input_shape, case.loss, case.optimizer, case.precision, case.device)
