"""The training step, split into phases the engine can time one by one.

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
import enum
import inspect
import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn


class Optimizer(str, enum.Enum):
    SGD = "sgd"
    SGD_MOMENTUM = "sgd_momentum"
    ADAM = "adam"
    ADAMW = "adamw"


class Loss(str, enum.Enum):
    MSE = "mse"
    CROSS_ENTROPY = "cross_entropy"


class Precision(str, enum.Enum):
    """Numeric precision of a case. Mixed modes keep fp32 master weights and use autocast."""

    FP32 = "fp32"
    TF32 = "tf32"  # fp32 tensors, TF32 tensor-core matmuls (CUDA Ampere+); same as fp32 on CPU
    BF16 = "bf16"  # autocast to bfloat16 (CPU and CUDA)
    FP16 = "fp16"  # autocast to float16 with a GradScaler (CUDA only)

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}.get(self)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.autocast_dtype or torch.float32


CLASSIC_LR = 0.01  # the classic notebook's SGD learning rate
MOMENTUM = 0.9
ADAM_LR = 1e-3  # Adam's own default; the classic 0.01 is too large for it


def parse_enum(enum_cls: type[enum.Enum], value: object, what: str) -> enum.Enum:
    """``enum_cls(value)`` with a ValueError that names the bad value and the valid choices."""
    if isinstance(value, enum_cls):
        return value
    key = value.strip().lower().replace("-", "_") if isinstance(value, str) else value
    for member in enum_cls:
        if member.value == key:
            return member
    valid = ", ".join(m.value for m in enum_cls)
    raise ValueError(f"unknown {what} {value!r}; valid: {valid}")


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


def make_optimizer(
    optimizer: Optimizer | str, params, device: torch.device | str, lr: float | None = None,
    impl: str | None = None,
) -> torch.optim.Optimizer:
    """Build the optimiser with an explicit implementation (fused/foreach), never left to a default."""
    optimizer = parse_enum(Optimizer, optimizer, "optimizer")
    impl = impl or optimizer_impl(optimizer, device)
    if impl not in ("fused", "foreach", "for_loop"):
        raise ValueError(f"unknown optimizer implementation {impl!r}; valid: fused, foreach, for_loop")
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "for_loop": {"foreach": False}}[impl]
    params = list(params)
    if lr is None:  # lr=0.0 is a legal (frozen) setting, not "use the default"
        lr = ADAM_LR if optimizer in (Optimizer.ADAM, Optimizer.ADAMW) else CLASSIC_LR
    if optimizer is Optimizer.SGD:
        return torch.optim.SGD(params, lr=lr, **flags)
    if optimizer is Optimizer.SGD_MOMENTUM:
        return torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, **flags)
    if optimizer is Optimizer.ADAM:
        return torch.optim.Adam(params, lr=lr, **flags)
    return torch.optim.AdamW(params, lr=lr, **flags)


def make_loss(loss: Loss | str) -> nn.Module:
    loss = parse_enum(Loss, loss, "loss")
    return nn.MSELoss() if loss is Loss.MSE else nn.CrossEntropyLoss()


@contextlib.contextmanager
def matmul_precision(precision: Precision):
    """Set TF32 for the duration: on for ``tf32``, off for everything else (recorded, never inherited)."""
    old_matmul = torch.backends.cuda.matmul.allow_tf32
    old_cudnn = torch.backends.cudnn.allow_tf32
    old_float32 = torch.get_float32_matmul_precision()
    tf32 = precision is Precision.TF32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = old_matmul
        torch.backends.cudnn.allow_tf32 = old_cudnn
        torch.set_float32_matmul_precision(old_float32)


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
                                        self.optimizer_impl)
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


# --------------------------------------------------------------------------- data


def teacher(in_features: int, out_features: int, seed: int = 0, hidden: int = 32) -> nn.Module:
    """A fixed random network whose outputs are the learnable regression targets."""
    gen = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(in_features, hidden), nn.Tanh(), nn.Linear(hidden, out_features))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) / math.sqrt(max(p.shape[-1], 1)))
    return net


def regression_data(n: int, in_features: int, out_features: int, learnable: bool = True,
                    seed: int = 0, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random regression data like the classic notebook.

    ``learnable=False`` is the classic: random X, independent random y (nothing
    to learn, the loss can only fall towards the variance of y).
    ``learnable=True``: y = teacher(X) for a fixed random teacher, so a
    training loop visibly learns.
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, in_features, generator=gen)
    if learnable:
        with torch.no_grad():
            y = teacher(in_features, out_features, seed + 1)(x)
    else:
        y = torch.randn(n, out_features, generator=gen)
    return x.to(device), y.to(device)


def classification_data(n: int, image_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10,
                        seed: int = 0, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """FashionMNIST-shaped random images in [0, 1) and integer labels."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, *image_shape, generator=gen)
    y = torch.randint(0, num_classes, (n,), generator=gen)
    return x.to(device), y.to(device)


def torchvision_status() -> str | None:
    """None when ``torchvision`` imports here, else the one-line reason it does not.

    torchvision's PyPI wheel is built against CUDA torch: with a CPU-only torch the
    import itself raises (not only ImportError), so everything that needs it asks first.
    """
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import failure means "not usable here"
        return f"torchvision does not import with this torch ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
    return None


def fashion_mnist_data(root: str, train: bool = True, device: torch.device | str = "cpu",
                       download: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The real FashionMNIST split as tensors: images (n, 1, 28, 28) in [0, 1] and int64 labels.

    Reads torchvision's layout under ``root`` (``FashionMNIST/raw/*-ubyte``); imports
    torchvision only when called. ``download`` is off by default: benchmark machines
    often have no network, and a silent download inside a benchmark is a surprise.
    """
    reason = torchvision_status()
    if reason:
        raise RuntimeError(f"real FashionMNIST needs torchvision: {reason}")
    from torchvision.datasets import FashionMNIST

    dataset = FashionMNIST(root, train=train, download=download)
    x = dataset.data.unsqueeze(1).to(torch.float32) / 255.0  # (n, 28, 28) uint8 -> (n, 1, 28, 28) float
    return x.to(device), dataset.targets.to(torch.int64).to(device)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = True,
            drop_last: bool = False, seed: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches that cover every example exactly once per epoch.

    The last partial batch is kept unless ``drop_last=True`` says otherwise
    (the classic ``create_dummy_dataloader`` dropped it silently).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} != {len(y)}")
    n = len(x)
    if shuffle:
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        order = torch.randperm(n, generator=gen).to(x.device)
    else:
        order = torch.arange(n, device=x.device)
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


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
