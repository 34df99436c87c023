"""The training step, split into phases the engine can time one by one, and the classic training loop.

``TrainStep`` owns model, loss and optimiser. Its phases are exactly what a
training loop does, so timing them separately and together is meaningful:

    forward(x)              -> out            (under autocast when mixed precision)
    loss_backward(out, y)   -> loss           (loss, then backward)
    optimizer_step()                          (step, then zero_grad(set_to_none=True))
    step(x, y)              -> loss           (all three, nothing in between)
    infer(x)                -> out            (forward under torch.inference_mode)
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Mapping

import torch
from torch import nn

from .data import batches
from .options import Loss, Optimizer, Precision, parse_enum

CLASSIC_LR = 0.01  # the classic notebook's SGD learning rate
MOMENTUM = 0.9
ADAM_LR = 1e-3  # Adam's own default; the classic 0.01 is too large for it


def _supports(opt_cls: type[torch.optim.Optimizer], flag: str) -> bool:
    return flag in inspect.signature(opt_cls.__init__).parameters


def optimizer_impl(optimizer: Optimizer | str, device: torch.device | str) -> str:
    """Which implementation we ask for: 'fused' where PyTorch has it for the device, else 'foreach'.

    Fused SGD/Adam/AdamW kernels exist for CUDA (and for CPU in recent releases,
    where ``torch.optim`` itself tells us through ``_get_fused_kernels_supported_devices``).
    """
    optimizer = parse_enum(Optimizer, optimizer, "optimizer")
    device_type = torch.device(device).type
    try:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        fused_devices = set(_get_fused_kernels_supported_devices())
    except ImportError:  # older torch: fused means CUDA
        fused_devices = {"cuda"}
    opt_cls = {Optimizer.ADAM: torch.optim.Adam, Optimizer.ADAMW: torch.optim.AdamW}.get(optimizer, torch.optim.SGD)
    if device_type in fused_devices and _supports(opt_cls, "fused"):
        return "fused"
    return "foreach"


# The settings a user may give each optimiser (``--optimizer-args``): values only. Others (momentum on plain
# SGD, amsgrad, foreach/fused) change the optimiser's state or implementation: those are --optimizer choices.
OPTIMIZER_OPTIONS = {
    Optimizer.SGD: ("lr", "weight_decay"),
    Optimizer.SGD_MOMENTUM: ("lr", "momentum", "dampening", "weight_decay", "nesterov"),
    Optimizer.ADAM: ("lr", "betas", "eps", "weight_decay"),
    Optimizer.ADAMW: ("lr", "betas", "eps", "weight_decay"),
}
_OPTIMIZER_CLASSES = {Optimizer.SGD: torch.optim.SGD, Optimizer.SGD_MOMENTUM: torch.optim.SGD,
                      Optimizer.ADAM: torch.optim.Adam, Optimizer.ADAMW: torch.optim.AdamW}


def optimizer_settings(optimizer: Optimizer | str, options: Mapping[str, object] | None = None) -> dict[str, object]:
    """The keyword arguments of the optimiser: its defaults here (lr 0.01, or 1e-3 for Adam; momentum 0.9),
    then ``options``. A setting the optimiser does not take, or a value torch refuses, is a ValueError."""
    optimizer = parse_enum(Optimizer, optimizer, "optimizer")
    options = dict(options or {})
    allowed = OPTIMIZER_OPTIONS[optimizer]
    unknown = [key for key in options if key not in allowed]
    if unknown:
        raise ValueError(f"--optimizer-args: {optimizer.value} takes {', '.join(allowed)}; not {unknown[0]!r}")
    settings = {"lr": ADAM_LR if optimizer in (Optimizer.ADAM, Optimizer.ADAMW) else CLASSIC_LR}
    if optimizer is Optimizer.SGD_MOMENTUM:
        settings["momentum"] = MOMENTUM
    settings.update(options)
    if optimizer is Optimizer.SGD_MOMENTUM and not (isinstance(settings["momentum"], (int, float))
                                                    and settings["momentum"] > 0):
        raise ValueError(f"--optimizer-args: sgd_momentum needs momentum > 0, got {settings['momentum']!r} "
                         "(use --optimizer sgd for none)")
    try:  # torch's own checks (lr >= 0, 0 <= beta < 1, nesterov with dampening 0, ...), on one dummy parameter
        _OPTIMIZER_CLASSES[optimizer]([torch.zeros(1, requires_grad=True)], **settings)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"--optimizer-args: {optimizer.value} refuses {options}: {exc}") from None
    return settings


def make_optimizer(
    optimizer: Optimizer | str, params, device: torch.device | str, lr: float | None = None,
    impl: str | None = None, options: Mapping[str, object] | None = None,
) -> torch.optim.Optimizer:
    """Build the optimiser with an explicit implementation (fused/foreach), never left to a default.

    ``options`` are the user's settings (``optimizer_settings``); ``lr`` (when not None) overrides them.
    """
    optimizer = parse_enum(Optimizer, optimizer, "optimizer")
    impl = impl or optimizer_impl(optimizer, device)
    if impl not in ("fused", "foreach", "for_loop"):
        raise ValueError(f"unknown optimizer implementation {impl!r}; valid: fused, foreach, for_loop")
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[impl]
    settings = optimizer_settings(optimizer, options)
    if lr is not None:  # lr=0.0 is a legal (frozen) setting, not "use the default"
        settings["lr"] = lr
    return _OPTIMIZER_CLASSES[optimizer](list(params), **settings, **flags)


def optimizer_state_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    """The tensors an optimiser holds in its state (moments, momentum buffers, Adam's ``step`` counters)."""
    return [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]


def make_loss(loss: Loss | str) -> nn.Module:
    loss = parse_enum(Loss, loss, "loss")
    return nn.MSELoss() if loss is Loss.MSE else nn.CrossEntropyLoss()


class TrainStep:
    """One training step of ``model``, with each phase callable on its own.

    Gradients are reset with ``zero_grad(set_to_none=True)`` inside the
    optimiser phase, so repeated steps never accumulate. With ``fp16`` a
    GradScaler scales the loss (the standard recipe; it costs one host sync
    per step for the inf check).
    """

    def __init__(
        self,
        model: nn.Module,
        loss: Loss | str = Loss.MSE,
        optimizer: Optimizer | str = Optimizer.SGD,
        precision: Precision | str = Precision.FP32,
        device: torch.device | str = "cpu",
        lr: float | None = None,
        compiled_model: nn.Module | None = None,
        optimizer_options: Mapping[str, object] | None = None,
    ):
        self.device = torch.device(device)
        self.precision = parse_enum(Precision, precision, "dtype")
        if self.precision is Precision.FP16 and self.device.type != "cuda":
            raise ValueError("dtype 'fp16' needs a CUDA device (autocast fp16 on CPU is not a training recipe)")
        self.loss_kind = parse_enum(Loss, loss, "loss")
        self.optimizer_kind = parse_enum(Optimizer, optimizer, "optimizer")
        self.model = model.to(self.device)
        self.forward_model = compiled_model if compiled_model is not None else self.model
        self.loss_fn = make_loss(self.loss_kind)
        self.optimizer_impl = optimizer_impl(self.optimizer_kind, self.device)
        self.optimizer = make_optimizer(self.optimizer_kind, self.model.parameters(), self.device, lr,
                                        self.optimizer_impl, optimizer_options)
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision is Precision.FP16 else None

    def _autocast(self):
        dtype = self.precision.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.forward_model(x)

    def loss_backward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            loss = self.loss_fn(out, y)
        (self.scaler.scale(loss) if self.scaler else loss).backward()
        return loss

    def optimizer_step(self) -> None:
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = self.loss_backward(self.forward(x), y)
        self.optimizer_step()
        return loss

    def infer(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self._autocast():
            return self.forward_model(x)


def train(step: TrainStep, x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int,
          seed: int = 0) -> list[float]:
    """The classic loop: for each epoch, for each mini-batch, one step. Returns the mean loss per epoch."""
    losses = []
    for epoch in range(epochs):
        total, count = 0.0, 0
        for xb, yb in batches(x, y, batch_size, seed=seed + epoch):
            total += step.step(xb, yb).item() * len(xb)
            count += len(xb)
        losses.append(total / count)
    return losses
