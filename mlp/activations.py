"""Activation functions by name, including a binary step that can be trained through.

Every activation is an ``nn.Module`` so ``print(model)`` reads like the classic
examples. The registry also records two facts the accounting needs and that are
easy to get wrong:

* ``saves_input``: whether autograd keeps the activation's *input* alive for
  backward (GELU, SiLU, ... recompute from the input) on top of its output, which
  the next ``Linear`` keeps anyway. ReLU, sigmoid and tanh differentiate from
  their output alone, so they cost one tensor per hidden layer, not two.
* ``elementwise_flops``: a documented per-element cost convention for forward and
  backward (see ``mlp.accounting``). These are conventions, not measurements.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


class _StepFunction(torch.autograd.Function):
    """Heaviside step, 1 where x > 0 else 0, with a *defined* backward.

    ``torch.heaviside`` has no derivative in PyTorch (backward raises). The true
    derivative is 0 almost everywhere (a Dirac delta at 0), so training through
    a step is impossible in principle. We offer the two standard choices:

    * ``"zero"``: the true a.e. derivative, 0. The step still runs, gradients of
      the layers *before* it are exactly zero, only the layers after it learn.
    * ``"ste"``: the straight-through estimator with the hard-tanh window
      (Bengio et al., 2013): grad_in = grad_out where |x| <= 1, else 0.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, straight_through: bool) -> torch.Tensor:
        ctx.straight_through = straight_through
        if straight_through:
            ctx.save_for_backward(x)
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        if not ctx.straight_through:
            return torch.zeros_like(grad_out), None
        (x,) = ctx.saved_tensors
        return grad_out * (x.abs() <= 1).to(grad_out.dtype), None


class BinaryStep(nn.Module):
    """Binary step activation: ``1 if x > 0 else 0`` (0 at x == 0, like the classic).

    backward="zero" (default) uses the exact almost-everywhere derivative, 0;
    backward="ste" passes the gradient straight through where |x| <= 1.
    """

    BACKWARDS = ("zero", "ste")

    def __init__(self, backward: str = "zero"):
        super().__init__()
        if backward not in self.BACKWARDS:
            raise ValueError(f"unknown binary step backward {backward!r}; valid: {', '.join(self.BACKWARDS)}")
        self.backward_rule = backward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _StepFunction.apply(x, self.backward_rule == "ste")

    def extra_repr(self) -> str:
        return f"backward={self.backward_rule}"


@dataclass(frozen=True)
class ActivationSpec:
    name: str
    factory: Callable[[], nn.Module]
    saves_input: bool  # autograd keeps the pre-activation tensor for backward
    saves_output: bool  # autograd keeps the activation's output (shared with the next Linear's input)
    forward_flops_per_element: int  # convention, see mlp.accounting
    backward_flops_per_element: int
    description: str


# Per-element cost conventions: one FLOP per add/mul/compare/max, exp/tanh/erf
# counted as one each. They label elementwise work; MFU uses matmul FLOPs only.
_SPECS = (
    ActivationSpec("identity", nn.Identity, False, False, 0, 0, "linear, f(x) = x"),
    ActivationSpec("binary_step", lambda: BinaryStep("zero"), False, False, 1, 0,
                   "1 if x > 0 else 0; backward is the exact a.e. derivative, 0"),
    ActivationSpec("binary_step_ste", lambda: BinaryStep("ste"), True, False, 1, 3,
                   "binary step with straight-through gradient where |x| <= 1"),
    ActivationSpec("sigmoid", nn.Sigmoid, False, True, 4, 3, "1 / (1 + exp(-x))"),
    ActivationSpec("tanh", nn.Tanh, False, True, 1, 3, "tanh(x)"),
    ActivationSpec("relu", nn.ReLU, False, True, 1, 1, "max(x, 0)"),
    ActivationSpec("leaky_relu", nn.LeakyReLU, True, False, 2, 2, "x if x > 0 else 0.01 x"),
    ActivationSpec("elu", nn.ELU, True, False, 4, 4, "x if x > 0 else exp(x) - 1"),
    ActivationSpec("selu", nn.SELU, True, False, 5, 5, "scale * elu(x, alpha) with fixed constants"),
    ActivationSpec("gelu", nn.GELU, True, False, 8, 12, "x * Phi(x), exact erf form"),
    ActivationSpec("gelu_tanh", lambda: nn.GELU(approximate="tanh"), True, False, 9, 14,
                   "tanh approximation of GELU"),
    ActivationSpec("silu", nn.SiLU, True, False, 5, 7, "x * sigmoid(x) (swish)"),
    ActivationSpec("mish", nn.Mish, True, False, 7, 11, "x * tanh(softplus(x))"),
    ActivationSpec("softplus", nn.Softplus, True, False, 3, 4, "log(1 + exp(x))"),
)

ACTIVATIONS: dict[str, ActivationSpec] = {spec.name: spec for spec in _SPECS}


def activation_spec(name: str) -> ActivationSpec:
    """Look up an activation by name; unknown names raise ValueError listing the valid ones."""
    key = name.strip().lower().replace("-", "_") if isinstance(name, str) else name
    if key not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[key]


def make_activation(name: str) -> nn.Module:
    """A fresh activation module for ``name`` (see ``ACTIVATIONS``)."""
    return activation_spec(name).factory()
