"""FLOPs of a module the analytic accounting does not know, counted with ``FlopCounterMode``.

One training step's forward and its loss + backward are run under
``torch.utils.flop_counter.FlopCounterMode``, first on the ``meta`` device (shapes only: no storage,
no arithmetic, any size), and where the module cannot run there (a data-dependent op), on the CPU.
FlopCounterMode counts matrix products (mm, addmm, bmm, convolutions, attention) by the same
2·m·n·k convention as ``mlp.accounting``, so a module that ``mlp.flops`` knows counts the same here;
elementwise work is not counted (it is left unknown, not guessed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .options import Loss
from .train import make_loss


@dataclass(frozen=True)
class CountedFlops:
    """Matmul FLOPs of one step as counted: the forward, and the loss + backward; where they were counted."""

    forward_matmul: int
    backward_matmul: int
    device: str  # "meta" or "cpu"

    @property
    def step_matmul(self) -> int:
        return self.forward_matmul + self.backward_matmul


def count_flops(build, batch: int, input_shape: tuple[int, ...], out_features: int,
                loss: Loss | str | Callable = Loss.MSE,
                make_batch: Callable[[str], tuple[object, torch.Tensor]] | None = None) -> CountedFlops:
    """Count one step of ``build(device)`` (a fresh module on ``device``) on a random batch of ``batch``.

    The input does not require grad (data never does), as in the measured step. ``make_batch(device)``, where
    given, makes the (input, target) pair instead (an input that is a tuple or dict of tensors: the module is
    then a ``bench.case.plugin`` call that unpacks it); ``loss`` is a ``Loss``, a registered user loss's name or a
    callable (``make_loss``).
    """
    loss_fn = make_loss(loss)
    make_batch = make_batch or (lambda device: _random_batch(device, batch, input_shape, out_features, loss))
    try:
        return _count(build("meta"), "meta", make_batch("meta"), loss_fn)
    except Exception:  # noqa: BLE001 - a data-dependent op cannot run on meta: count it for real
        return _count(build("cpu"), "cpu", make_batch("cpu"), loss_fn)


def _random_batch(device: str, batch: int, input_shape: tuple[int, ...], out_features: int, loss) -> tuple:
    x = torch.randn(batch, *input_shape, device=device)  # (batch, *input_shape)
    if isinstance(loss, str) and loss == Loss.CROSS_ENTROPY.value:  # class labels; else a (batch, out) target
        return x, torch.randint(0, out_features, (batch,), device=device)
    return x, torch.randn(batch, out_features, device=device)


def _count(model: nn.Module, device: str, data: tuple, loss_fn: Callable) -> CountedFlops:
    x, y = data
    with FlopCounterMode(display=False) as forward:
        out = model(x)
    with FlopCounterMode(display=False) as backward:
        loss_fn(out, y).backward()
    return CountedFlops(forward.get_total_flops(), backward.get_total_flops(), device)
