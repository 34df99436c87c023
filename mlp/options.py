"""The closed choices of a training step (optimiser, loss, precision), parsed once, and the precision context.

Strings from a command line or a results row become these enums here (``parse_enum``),
with a one-line error that names the valid values.
"""

from __future__ import annotations

import contextlib
import enum

import torch


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


class ParamDtype(str, enum.Enum):
    """Where the parameters live under a reduced precision (bf16/fp16); fp32 and tf32 have only FP32."""

    FP32 = "fp32"  # fp32 master weights: autocast casts weights (and the batch) every step; fp32 updates
    COMPUTE = "compute"  # parameters, gradients and optimiser state in the compute dtype: no casts, bf16 updates


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
