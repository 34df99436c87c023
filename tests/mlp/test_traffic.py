"""The GEMM list and the bytes count of ``mlp.traffic`` against what PyTorch really does.

References: the matrix products a real training step dispatches (recorded by a
``TorchDispatchMode``), the tensors autograd reads back in backward (``saved_tensors_hooks``:
every unpack is one read of a saved tensor) and the tensors the optimiser touches (its own
``state`` after a step).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import mlp
from mlp.traffic import Gemm, gemms, traffic

MATMUL_OPS = ("aten.mm.default", "aten.addmm.default")
CASES = [  # (width, depth, activation, loss, optimizer, dtype)
    (64, 2, "relu", "mse", "sgd", "fp32"),
    (48, 3, "gelu", "cross_entropy", "adam", "fp32"),
    (32, 1, "tanh", "mse", "sgd_momentum", "bf16"),
    (32, 2, "identity", "cross_entropy", "adamw", "bf16"),
]
BATCH, IN, OUT = 8, 24, 10


class _Matmuls(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.seen: list[Gemm] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if str(func) in MATMUL_OPS:
            a, b = (args[1], args[2]) if str(func) == "aten.addmm.default" else (args[0], args[1])
            transposed = lambda t: t.dim() == 2 and t.stride(0) == 1 and t.stride(1) != 1  # noqa: E731
            self.seen.append(Gemm(a.shape[0], a.shape[1], b.shape[1], transposed(a), transposed(b),
                                  str(func) == "aten.addmm.default"))
        return func(*args, **(kwargs or {}))


def _step(width, depth, activation, loss, optimizer, dtype):
    model = mlp.uniform(width, depth, activation, in_features=IN, out_features=OUT)
    step = mlp.TrainStep(model, loss, optimizer, dtype)
    x = torch.randn(BATCH, IN)
    y = torch.randn(BATCH, OUT) if loss == "mse" else torch.randint(0, OUT, (BATCH,))
    step.step(x, y)  # the first step creates the optimiser state
    return model, step, x, y


@pytest.mark.parametrize("case", CASES)
def test_the_gemms_are_the_products_a_step_dispatches(case):
    model, step, x, y = _step(*case)
    with _Matmuls() as recorder:
        step.step(x, y)
    assert sorted(recorder.seen) == sorted(gemms(model, BATCH))
    assert sum(g.flops for g in gemms(model, BATCH)) == mlp.flops(model, BATCH).step_matmul


@pytest.mark.parametrize("case", CASES)
def test_backward_reads_back_exactly_the_saved_tensors(case):
    model, step, x, y = _step(*case)
    reads = []

    def unpack(t):
        reads.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, unpack):
        out = step.forward(x)
        step.loss_backward(out, y)
    step.optimizer.zero_grad(set_to_none=True)
    expected = traffic(model, BATCH, (IN,), case[3], case[4], case[5]).backward.saved_bytes
    assert sum(reads) == expected


@pytest.mark.parametrize("case", CASES)
def test_the_optimizer_bytes_are_the_tensors_it_touches(case):
    model, step, x, y = _step(*case)
    out = step.forward(x)
    step.loss_backward(out, y)
    params = list(model.parameters())
    nbytes = lambda t: t.numel() * t.element_size()  # noqa: E731
    grads = sum(nbytes(p.grad) for p in params)
    state = sum(nbytes(t) for p in params for t in step.optimizer.state[p].values()
                if isinstance(t, torch.Tensor) and t.shape == p.shape)  # Adam's scalar `step` is not a stream
    touched = 2 * sum(nbytes(p) for p in params) + grads + 2 * state  # p read+written, g read, state read+written
    opt = traffic(model, BATCH, (IN,), case[3], case[4], case[5]).optimizer
    assert opt.total_bytes == touched
    assert opt.gradients_bytes == grads


def test_a_hand_counted_example():
    """w4 d1 relu, in 2, out 3, batch 5, fp32, MSE, SGD: every byte written out by hand."""
    model = mlp.uniform(4, 1, "relu", in_features=2, out_features=3)  # Linear(2,4) ReLU Linear(4,3)
    t = traffic(model, 5, (2,))
    f = 4  # fp32
    # forward: read W1 (8) + b1 (4) + W2 (12) + b2 (3); activations: write h (5x4), read h + write r, read r +
    # write logits (5x3); data: read x (5x2)
    assert t.forward.weights_bytes == (8 + 4 + 12 + 3) * f
    assert t.forward.activations_bytes == (20 + 20 + 20 + 20 + 15) * f
    assert t.forward.data_bytes == 10 * f
    params = 8 + 4 + 12 + 3
    assert t.optimizer.total_bytes == 3 * params * f  # read p and g, write p
    # backward saved reads: x (10) for dW1, relu's output (20), r (20) for dW2, W2 (12) for grad r, logits (15)
    # and target (15) for the loss
    assert t.backward.saved_bytes == (10 + 20 + 20 + 12 + 15 + 15) * f
