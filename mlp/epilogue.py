"""A fused epilogue: bias + ReLU inside the matmul, as one operator (``torch._addmm_activation``).

``Epilogue.FUSED`` runs each ``Linear`` followed by a ``ReLU`` as ``_addmm_activation(bias, x, W.t())``.
On CUDA that is cuBLASLt's ``RELU_BIAS`` epilogue: the bias add and the ReLU happen in the GEMM's
epilogue, so the pre-activation is never written and read back. On the CPU, PyTorch's kernel is
``addmm`` then an in-place ``relu_`` (one operator to dispatch, the same bytes moved).

PyTorch gives ``_addmm_activation`` no derivative, so ``FusedLinearReLU`` supplies the one ReLU and
``Linear`` have: ``threshold_backward`` on the saved output, then the two GEMMs and the bias sum.
Only ReLU: the GELU epilogue (``use_gelu=True``) is the tanh approximation on CUDA and the exact
erf GELU on the CPU, and its backward needs the pre-activation, which the fused kernel does not keep
(cuBLASLt's GELU_AUX output is not exposed), so a training step would recompute the matmul.
"""

from __future__ import annotations

import enum

import torch
from torch import nn

from .models import MLP


class Epilogue(str, enum.Enum):
    NONE = "none"
    FUSED = "fused"


FUSABLE_ACTIVATIONS = ("relu",)


class FusedLinearReLU(torch.autograd.Function):
    """``relu(x @ W.t() + b)`` in one ``_addmm_activation``, with ReLU's and Linear's backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        out = torch._addmm_activation(bias, x, weight.t())
        # what Linear + ReLU save: the input (for dW), the weight only where the input needs a gradient, the output
        ctx.save_for_backward(x, weight if x.requires_grad else None, out)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        x, weight, out = ctx.saved_tensors
        grad = torch.ops.aten.threshold_backward(grad_out, out, 0)  # ReLU's own backward, from its output
        grad_x = grad.mm(weight) if ctx.needs_input_grad[0] else None
        grad_w = grad.t().mm(x) if ctx.needs_input_grad[1] else None
        grad_b = grad.sum(0) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b


def fused_linear_relu(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
    """The pair ``Linear, ReLU`` on a 2-D batch; under autocast the operands are cast as autocast casts addmm's."""
    weight, bias = linear.weight, linear.bias
    device = x.device.type
    if torch.is_autocast_enabled(device):
        dtype = torch.get_autocast_dtype(device)
        x, weight, bias = x.to(dtype), weight.to(dtype), bias.to(dtype)
    with torch.autocast(device, enabled=False):
        return FusedLinearReLU.apply(x, weight, bias)


class FusedEpilogueMLP(nn.Module):
    """Runs an ``MLP``'s layers with every ``Linear, ReLU`` pair fused; the parameters are the MLP's own."""

    def __init__(self, model: nn.Sequential):
        super().__init__()
        check_fusable(model)
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self.model)
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, nn.Linear) and isinstance(nxt, nn.ReLU) and layer.bias is not None:
                x = fused_linear_relu(x, layer)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


def check_fusable(model: nn.Module) -> None:
    """A ValueError unless ``model`` is an MLP whose activation the fused epilogue has a backward for."""
    if not isinstance(model, MLP):
        raise ValueError(f"epilogue 'fused' needs an mlp.MLP, got {type(model).__name__}")
    check_activation(model.activation)


def check_activation(activation: str) -> None:
    if activation not in FUSABLE_ACTIVATIONS:
        raise ValueError(f"epilogue 'fused' needs activation {' or '.join(FUSABLE_ACTIVATIONS)}, got {activation!r} "
                         "(GELU's fused epilogue keeps no pre-activation for its backward; see mlp/epilogue.py)")
