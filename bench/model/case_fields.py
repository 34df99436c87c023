"""The fields of a case, as plain data: names, types, defaults and the closed choices (no torch).

``bench.case.cases.Case`` adds parsing, identity and building on top of ``CaseFields``; the run
record (``bench.runs``) derives its case columns and the CLI (``bench.commands.case_flags``) its case flags
from these fields, so a new case dimension is one field here. Kept free of torch and of the
run record, so that readers of results import it cheaply and the case vocabulary does not
depend on the storage format.

A field added after runs were first recorded is declared with ``added_later(default)``: a run
folder written before it existed reads it back as that default.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field, fields

ADDED_LATER = "added_later"  # field metadata key: older runs lack this column and mean the default


class Network(str, enum.Enum):
    UNIFORM = "uniform"  # width x depth x activation family
    TEACHING = "teaching"  # in -> 256 -> 128 -> 128 -> out, ReLU
    FASHION_MNIST = "fashion_mnist"  # Flatten, 784 -> 512 -> 512 -> 10, raw logits
    FASHION_MNIST_ORIGINAL = "fashion_mnist_original"  # ... with the original's ReLU on the logits
    FFN = "ffn"  # depth x transformer FFN: width -> expansion*width -> width (mlp.blocks)
    SWIGLU = "swiglu"  # depth x LLaMA's w2(silu(w1 x) * w3 x), hidden units
    RESIDUAL = "residual"  # depth x pre-norm x + FFN(norm(x)), then the final norm


BLOCK_NETWORKS = (Network.FFN, Network.SWIGLU, Network.RESIDUAL)
NORM_NAMES = ("none", "layernorm", "rmsnorm")  # mlp.Norm: the norm of a residual block (a test keeps them equal)


class Switch(str, enum.Enum):
    ON = "on"
    OFF = "off"


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


KNOB = "knob"  # field metadata key: the field is a fastest-step knob (a ``KnobSpec``)
GRAPH, EAGER = "graph", "eager"


@dataclass(frozen=True)
class KnobSpec:
    """A fastest-step knob: the field's default is the knob off; ``on`` is the value ``mlpbench tune`` tries.

    ``kind``: GRAPH replaces eager dispatch with a graph (torch.compile, a CUDA graph): the op count and the
    FLOP counter see the step with it off (``GRAPHS_OFF``). An EAGER knob changes the eager step itself and is
    passed to ``mlp.StepKnobs`` under the field's own name. ``order``: its place in tune's chain, cheapest to
    build first. ``step``: how the field's value reaches ``mlp.StepKnobs`` (the keyword arguments it sets), for a
    knob whose step argument is not the field itself; None passes the value under the field's own name. So a new
    knob, graph or eager, is declared here and built in mlp/train.py, and no third file spells it.
    """

    kind: str
    on: str
    label: str  # the tune bar's label: what this step of the chain adds
    order: int
    step: Callable[[str], dict] | None = None
    whole_step: bool = False  # away from its default, the step runs as one unit (one graph): only the step is timed
    # what the case's label adds away from the default (str.format with the field's ``value`` and the case's
    # ``dtype``); None: the default " <field>:<value>"; "": nothing (the compile field has its own place in the label)
    tag: str | None = None

    def label_text(self, name: str, value: str, dtype: str) -> str:
        """What the case label adds for this knob's field ``name`` at ``value`` (away from its default)."""
        return f" {name}:{value}" if self.tag is None else self.tag.format(value=value, dtype=dtype)

    def step_arguments(self, name: str, value: str) -> dict:
        """The ``mlp.StepKnobs`` keyword arguments this knob's field ``name`` at ``value`` sets."""
        return {name: value} if self.step is None else self.step(value)


def added_later(default, *, flag: bool = True, sweep: bool | None = None, knob: KnobSpec | None = None):
    """A case field that runs recorded before it existed lack (they read back as ``default``).

    ``flag=False`` keeps it off ``mlpbench run``'s case flags (a command of its own sets it); ``sweep`` says
    whether a sweep file's grid may set it (default: as ``flag``; ``sweep=True`` for a field whose flag is
    hand-made elsewhere but that a sweep file may still name). ``knob``: a fastest-step knob whose ``default``
    is the knob off: ``mlpbench tune`` varies it and ``KNOBS_OFF`` resets it.
    """
    sweep = flag if sweep is None else sweep
    return field(default=default, metadata={ADDED_LATER: True, "flag": flag, "sweep": sweep, KNOB: knob})


@dataclass(frozen=True, order=True)
class CaseFields:
    """Everything that defines one measured configuration, as plain values (see ``bench.case.cases.Case``).

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
    compile: str = field(default=CompileMode.NONE.value,
                         metadata={KNOB: KnobSpec(GRAPH, CompileMode.DEFAULT.value, "compile model", 4, tag="",
                                                   step=lambda v: {"compile_mode": None if v == "none" else v})})
    optimizer: str = "sgd"
    loss: str = "mse"
    threads: int = 0
    # Data parallelism (`mlpbench ddp`); the defaults are one plain process. `batch` is per rank.
    world_size: int = added_later(1, flag=False)
    backend: str = added_later(Backend.NONE.value, flag=False)
    scaling: str = added_later(Scaling.NONE.value, flag=False)
    bucket_cap_mb: float = added_later(0.0, flag=False)  # DDP gradient bucket size; 0 for a plain process
    # The built-in blocks (ffn, swiglu, residual; mlp.blocks). Each is rejected where it does not apply.
    expansion: int = added_later(4)  # ffn, residual: hidden = expansion x width
    hidden: int = added_later(0)  # swiglu: hidden units; 0: LLaMA's 8/3 x width rounded up to a multiple of 256
    norm: str = added_later(NORM_NAMES[0])  # residual: none, layernorm, rmsnorm
    dropout: float = added_later(0.0)  # ffn, swiglu, residual: on each block's output
    bias: str = added_later(Switch.ON.value)  # uniform and the blocks: biases of the Linears (and LayerNorm)
    # A user's model and options (bench.case.plugin, bench.model.keyvalues); "" is the built-in network and the fixed
    # optimiser settings, so every case recorded before these existed keeps its identifier.
    model: str = added_later("")  # "pkg.module:factory" or "path/to/file.py:factory"
    model_args: str = added_later("")  # the factory's own options, canonical "key=value,..." (bench.model.keyvalues)
    optimizer_args: str = added_later("")  # torch.optim keyword arguments, canonical "lr=0.0003,weight_decay=0.1"
    # The fastest-step knobs (`mlpbench tune`, docs/design.md "Fastest-step knobs"); the defaults are the step
    # as it always was, so cases recorded before these existed keep their identifiers.
    compile_scope: str = added_later(CompileScope.MODEL.value,
                                     knob=KnobSpec(GRAPH, CompileScope.STEP.value, "compile step", 5, tag=":step",
                                                   step=lambda v: {"compile_step": v == "step"}, whole_step=True))
    cuda_graph: str = added_later(CudaGraph.NONE.value,
                                  knob=KnobSpec(GRAPH, CudaGraph.STEP.value, "CUDA graph step", 3, tag=" graph:step",
                                                step=lambda v: {"cuda_graph": v == "step"}, whole_step=True))
    # mlp.ParamDtype: fp32 masters under autocast, or "compute"
    param_dtype: str = added_later("fp32", knob=KnobSpec(EAGER, "compute", "bf16 params", 1, tag=" params:{dtype}"))
    # mlp.Epilogue: "fused" puts bias + ReLU in the matmul
    epilogue: str = added_later("none", knob=KnobSpec(EAGER, "fused", "fused epilogue", 2, tag=" fused-epilogue"))
    # A user's model's inputs and outputs (bench.case.plugin, docs/your-model.md "Inputs and outputs"); "" is one
    # (batch, in_features) tensor in and the output itself to the loss, as before these existed.
    sample_shape: str = added_later("")  # --input-shape: one example's shape, "1x28x28" ("" is (in_features,))
    inputs: str = added_later("")  # "MODULE:FN": fn(batch, device, dtype) makes the input (tensor, tuple or dict)
    output: str = added_later("")  # which part of a tuple or dict output the loss takes: "0", "logits"


CASE_FIELD_NAMES = tuple(f.name for f in fields(CaseFields))
FIELD_DEFAULTS = {f.name: f.default for f in fields(CaseFields)}
FIELD_TYPES = {f.name: {"int": int, "float": float, "str": str}[f.type] for f in fields(CaseFields)}
# Fields older runs lack, with the value they mean; the data-parallel ones are also left out of case_id
# at their defaults, so every case recorded before they existed keeps its identifier.
LATER_DEFAULTS = {f.name: f.default for f in fields(CaseFields) if f.metadata.get(ADDED_LATER)}
USER_MODEL_FIELDS = ("model", "model_args", "optimizer_args", "sample_shape", "inputs", "output")
# Other spellings of a field, accepted by measure(), sweep() and a sweep file (the flag is --input-shape too).
FIELD_ALIASES = {"input_shape": "sample_shape"}
SHAPE_FIELD = "sample_shape"  # one example's shape: input_shape=(1, 28, 28) in Python and [1, 28, 28] in a sweep file
# The built-in blocks' own options: a user's factory takes options of these names as --model-args instead
# (the issue's own example is --model-args 'hidden=4096,expansion=4').
BLOCK_FIELDS = ("expansion", "hidden", "norm", "dropout", "bias")
# The built-in nets' fields: a user's model's row leaves them empty at their defaults unless its factory takes them
# (bench.case.cases.Case.to_row); the run's reader accepts them empty on such a row.
BUILT_IN_FIELDS = ("network", "width", "depth", "activation", *BLOCK_FIELDS)
PARALLEL_DEFAULTS = {name: LATER_DEFAULTS[name] for name in ("world_size", "backend", "scaling", "bucket_cap_mb")}
KNOBS = {f.name: f.metadata[KNOB] for f in fields(CaseFields) if f.metadata.get(KNOB)}  # field name -> KnobSpec
KNOB_FIELDS = tuple(KNOBS)  # what `mlpbench tune` varies
# Every knob off (its default): the eager step as it always was, the base `mlpbench tune` measures knobs against.
KNOBS_OFF = {name: FIELD_DEFAULTS[name] for name in KNOB_FIELDS}
# The graph knobs off, the eager ones kept: the step whose dispatched ops FlopCounterMode and the op count see.
GRAPHS_OFF = {name: FIELD_DEFAULTS[name] for name, knob in KNOBS.items() if knob.kind == GRAPH}
EAGER_KNOBS = tuple(name for name, knob in KNOBS.items() if knob.kind == EAGER)  # changed in the eager step itself
FLAG_FIELDS = tuple(f.name for f in fields(CaseFields) if f.metadata.get("flag", True))
# The keys a sweep file's [[grid]] table may set (bench.model.sweep_file): the run's case fields.
SWEEP_FIELDS = tuple(f.name for f in fields(CaseFields) if f.metadata.get("sweep", f.metadata.get("flag", True)))

# The closed choices whose enums live in mlp (which imports torch), mirrored here so that the CLI's help and a
# sweep file's checks name them without importing torch; tests/bench/test_cases.py checks each against mlp.
ACTIVATION_NAMES = ("identity", "binary_step", "binary_step_ste", "sigmoid", "tanh", "relu", "leaky_relu", "elu",
                    "selu", "gelu", "gelu_tanh", "silu", "mish", "softplus")  # mlp.ACTIVATIONS
PRECISION_NAMES = ("fp32", "tf32", "bf16", "fp16")  # mlp.Precision
OPTIMIZER_NAMES = ("sgd", "sgd_momentum", "adam", "adamw")  # mlp.Optimizer
LOSS_NAMES = ("mse", "cross_entropy")  # mlp.Loss
PARAM_DTYPE_NAMES = ("fp32", "compute")  # mlp.ParamDtype
EPILOGUE_NAMES = ("none", "fused")  # mlp.Epilogue
# field -> its valid values, for every string field that has a closed set (the flags' help lists them)
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "network": tuple(m.value for m in Network), "activation": ACTIVATION_NAMES,
    "device": tuple(m.value for m in Device), "dtype": PRECISION_NAMES,
    "compile": tuple(m.value for m in CompileMode), "optimizer": OPTIMIZER_NAMES, "loss": LOSS_NAMES,
    "backend": tuple(m.value for m in Backend), "scaling": tuple(m.value for m in Scaling),
    "norm": NORM_NAMES, "bias": tuple(m.value for m in Switch),
    "compile_scope": tuple(m.value for m in CompileScope), "cuda_graph": tuple(m.value for m in CudaGraph),
    "param_dtype": PARAM_DTYPE_NAMES, "epilogue": EPILOGUE_NAMES,
}
