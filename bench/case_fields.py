"""The fields of a case, as plain data: names, types, defaults and the closed choices (no torch).

``bench.cases.Case`` adds parsing, identity and building on top of ``CaseFields``; the run
record (``bench.runs``) derives its case columns and the CLI (``bench.flags``) its case flags
from these fields, so a new case dimension is one field here. Kept free of torch and of the
run record, so that readers of results import it cheaply and the case vocabulary does not
depend on the storage format.

A field added after runs were first recorded is declared with ``added_later(default)``: a run
folder written before it existed reads it back as that default.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields

ADDED_LATER = "added_later"  # field metadata key: older runs lack this column and mean the default


class Network(str, enum.Enum):
    UNIFORM = "uniform"  # width x depth x activation family
    TEACHING = "teaching"  # in -> 256 -> 128 -> 128 -> out, ReLU
    FASHION_MNIST = "fashion_mnist"  # Flatten, 784 -> 512 -> 512 -> 10, raw logits
    FASHION_MNIST_ORIGINAL = "fashion_mnist_original"  # ... with the original's ReLU on the logits


class CompileMode(str, enum.Enum):
    NONE = "none"
    DEFAULT = "default"
    REDUCE_OVERHEAD = "reduce-overhead"
    MAX_AUTOTUNE = "max-autotune"


class Device(str, enum.Enum):
    CPU = "cpu"
    CUDA = "cuda"


class Backend(str, enum.Enum):
    """Process-group backend of a data-parallel case; NONE is one process, no DistributedDataParallel."""

    NONE = "none"
    GLOO = "gloo"  # CPU tensors (and loopback/TCP between machines)
    NCCL = "nccl"  # CUDA tensors only


class Scaling(str, enum.Enum):
    """How the batch relates to the processes: WEAK keeps the batch per rank, STRONG keeps the global batch."""

    NONE = "none"
    WEAK = "weak"
    STRONG = "strong"


class CompileScope(str, enum.Enum):
    """What ``--compile`` compiles: the model alone (forward; autograd compiles its backward), or the whole step."""

    MODEL = "model"
    STEP = "step"  # forward, loss, backward and the optimiser step as one compiled function


class CudaGraph(str, enum.Enum):
    NONE = "none"
    STEP = "step"  # the whole training step captured in one CUDA graph and replayed (CUDA only)


def added_later(default, *, flag: bool = True):
    """A case field that runs recorded before it existed lack (they read back as ``default``).

    ``flag=False`` keeps it off ``mlpbench run``'s case flags (a command of its own sets it).
    """
    return field(default=default, metadata={ADDED_LATER: True, "flag": flag})


@dataclass(frozen=True, order=True)
class CaseFields:
    """Everything that defines one measured configuration, as plain values (see ``bench.cases.Case``).

    For the named networks, width/depth/in/out are fixed by the network and stored as 0.
    ``threads=0`` means torch's default. The string defaults are the values of
    ``mlp.Precision.FP32``, ``mlp.Optimizer.SGD``, ``mlp.Loss.MSE``, ``mlp.ParamDtype.FP32`` and
    ``mlp.Epilogue.NONE`` (a test checks).
    """

    network: str = Network.UNIFORM.value
    width: int = 256
    depth: int = 2
    in_features: int = 0  # 0: same as width (uniform) / the network's own
    out_features: int = 0
    batch: int = 64
    activation: str = "relu"
    device: str = Device.CPU.value
    dtype: str = "fp32"
    compile: str = CompileMode.NONE.value
    optimizer: str = "sgd"
    loss: str = "mse"
    threads: int = 0
    # Data parallelism (`mlpbench ddp`); the defaults are one plain process. `batch` is per rank.
    world_size: int = added_later(1, flag=False)
    backend: str = added_later(Backend.NONE.value, flag=False)
    scaling: str = added_later(Scaling.NONE.value, flag=False)
    bucket_cap_mb: float = added_later(0.0, flag=False)  # DDP gradient bucket size; 0 for a plain process
    # The fastest-step knobs (`mlpbench tune`, docs/design.md "Fastest-step knobs"); the defaults are the step
    # as it always was, so cases recorded before these existed keep their identifiers.
    compile_scope: str = added_later(CompileScope.MODEL.value)
    cuda_graph: str = added_later(CudaGraph.NONE.value)
    param_dtype: str = added_later("fp32")  # mlp.ParamDtype: fp32 masters under autocast, or "compute"
    epilogue: str = added_later("none")  # mlp.Epilogue: "fused" puts bias + ReLU in the matmul


CASE_FIELD_NAMES = tuple(f.name for f in fields(CaseFields))
FIELD_DEFAULTS = {f.name: f.default for f in fields(CaseFields)}
FIELD_TYPES = {f.name: {"int": int, "float": float, "str": str}[f.type] for f in fields(CaseFields)}
# Fields older runs lack, with the value they mean; the data-parallel ones are also left out of case_id
# at their defaults, so every case recorded before they existed keeps its identifier.
LATER_DEFAULTS = {f.name: f.default for f in fields(CaseFields) if f.metadata.get(ADDED_LATER)}
PARALLEL_DEFAULTS = {name: LATER_DEFAULTS[name] for name in ("world_size", "backend", "scaling", "bucket_cap_mb")}
KNOB_FIELDS = ("compile", "compile_scope", "cuda_graph", "param_dtype", "epilogue")  # what `mlpbench tune` varies
FLAG_FIELDS = tuple(f.name for f in fields(CaseFields) if f.metadata.get("flag", True))
