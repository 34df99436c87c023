"""What to run: a ``Case`` is one measured configuration; a ``Sweep`` declares many as data.

A Case round-trips through a results row (``to_row`` / ``from_row``), so any
row of a summary table can be re-run exactly. Strings are parsed once, here,
at the edge: a bad value raises ValueError naming it and the valid choices.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

import mlp
from mlp import Loss, Optimizer, Precision, parse_enum

# The closed choices live with the fields (no torch); they are imported from here too.
from .case_fields import (
    FIELD_TYPES,
    LATER_DEFAULTS,
    Backend,
    CaseFields,
    CompileMode,
    CompileScope,
    CudaGraph,
    Device,
    Network,
    Scaling,
)


TEACHING_IO = (3, 1)  # the classic notebook's regression: 3 inputs, 1 output (50,561 parameters)


@dataclass(frozen=True, order=True)
class Case(CaseFields):
    """Everything that defines one measured configuration (the fields: ``bench.case_fields.CaseFields``).

    Values are parsed and normalised here: for the named networks, width/depth/in/out are fixed by
    the network and stored as 0 so that equal configurations compare equal. ``threads=0`` means
    torch's default; the thread count actually used is recorded in the run's environment.
    """

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        for name, kind in FIELD_TYPES.items():  # numbers from a CSV row or a flag: one parser per type
            if kind is not str:
                set_(name, (_as_int if kind is int else _as_float)(name, getattr(self, name)))
        network = parse_enum(Network, self.network, "network")
        set_("network", network.value)
        set_("activation", mlp.activation_spec(self.activation).name)
        set_("device", parse_enum(Device, self.device, "device").value)
        set_("dtype", parse_enum(Precision, self.dtype, "dtype").value)
        set_("compile", _parse_compile(self.compile).value)
        set_("optimizer", parse_enum(Optimizer, self.optimizer, "optimizer").value)
        set_("loss", parse_enum(Loss, self.loss, "loss").value)
        set_("backend", parse_enum(Backend, self.backend, "backend").value)
        set_("scaling", parse_enum(Scaling, self.scaling, "scaling").value)
        _require(self.world_size >= 1, f"world_size must be >= 1, got {self.world_size}")
        _require(self.bucket_cap_mb >= 0, f"bucket_cap_mb must be >= 0, got {self.bucket_cap_mb}")
        _require(self.batch >= 1, f"batch must be >= 1, got {self.batch}")
        _require(self.threads >= 0, f"threads must be >= 0, got {self.threads}")
        _require(self.in_features >= 0 and self.out_features >= 0, "in/out features must be >= 0")
        if network is Network.UNIFORM:
            _require(self.width >= 1, f"width must be >= 1, got {self.width}")
            _require(self.depth >= 0, f"depth must be >= 0, got {self.depth}")
        else:  # the named networks fix their shape (and FashionMNIST its activation and loss)
            set_("width", 0)
            set_("depth", 0)
            set_("in_features", 0)
            set_("out_features", 0)
            if network is not Network.TEACHING:
                set_("activation", "relu")
                set_("loss", Loss.CROSS_ENTROPY.value)
        if self.dtype == Precision.FP16.value and self.device != Device.CUDA.value:
            raise ValueError("dtype 'fp16' needs device 'cuda' (fp16 autocast training is a CUDA recipe)")
        self._check_knobs(set_)

    def _check_knobs(self, set_) -> None:
        """The fastest-step knobs: parsed, normalised, and refused where they cannot build a correct step."""
        set_("compile_scope", parse_enum(CompileScope, self.compile_scope, "compile_scope").value)
        set_("cuda_graph", parse_enum(CudaGraph, self.cuda_graph, "cuda_graph").value)
        set_("param_dtype", parse_enum(mlp.ParamDtype, self.param_dtype, "param_dtype").value)
        set_("epilogue", parse_enum(mlp.Epilogue, self.epilogue, "epilogue").value)
        # Moot settings read as the default, so that a grid (--compile none,default --compile-scope model,step)
        # collapses to the cases that differ: fp32/tf32 parameters are in the compute dtype already, and without
        # a compile mode nothing is compiled, at any scope.
        if Precision(self.dtype).autocast_dtype is None:
            set_("param_dtype", mlp.ParamDtype.FP32.value)
        if not self.compiled:
            set_("compile_scope", CompileScope.MODEL.value)
        mlp.check_knobs(self.knobs, Precision(self.dtype), self.device)
        if self.epilogue == mlp.Epilogue.FUSED.value:
            mlp.check_fused_activation(self.activation)

    # ------------------------------------------------------------------ typed views
    # The fields stay plain strings (they are the results row and the case_id's input); these
    # give the enums, so that code compares members, not ``.value`` strings.

    @property
    def compile_mode(self) -> CompileMode:
        return CompileMode(self.compile)

    @property
    def compiled(self) -> bool:
        return self.compile_mode is not CompileMode.NONE

    @property
    def cuda_graphs(self) -> bool:
        """reduce-overhead / max-autotune on CUDA replay CUDA graphs (each step must be announced)."""
        return self.device == Device.CUDA.value and self.compile_mode in (CompileMode.REDUCE_OVERHEAD,
                                                                          CompileMode.MAX_AUTOTUNE)

    @property
    def whole_graph(self) -> bool:
        """The whole step captured in one CUDA graph (``--cuda-graph step``)."""
        return self.cuda_graph == CudaGraph.STEP.value

    @property
    def whole_step(self) -> bool:
        """The step runs as one unit (compiled as one function, or one CUDA graph): only the step is timed."""
        return self.whole_graph or self.compile_scope == CompileScope.STEP.value

    @property
    def knobs(self) -> "mlp.StepKnobs":
        """How ``mlp.TrainStep`` builds this case's step."""
        return mlp.StepKnobs(compile_mode=self.compile if self.compiled else None,
                             compile_step=self.compile_scope == CompileScope.STEP.value,
                             cuda_graph=self.whole_graph, param_dtype=self.param_dtype, epilogue=self.epilogue)

    # ------------------------------------------------------------------ identity

    @property
    def case_id(self) -> str:
        """Short stable identifier (hash of every field) used to join samples, summaries and runs.

        Fields added later (the data-parallel ones, ``case_fields.added_later``) enter the hash only away
        from their defaults, so every case (and baseline) recorded before they existed keeps its identifier.
        """
        text = "|".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                        if not (f.name in LATER_DEFAULTS and getattr(self, f.name) == LATER_DEFAULTS[f.name]))
        return hashlib.sha1(text.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """Human-readable one-liner, e.g. ``uniform w256 d2 b64 relu cpu fp32 eager``."""
        net = self.network if self.network != Network.UNIFORM.value else f"w{self.width} d{self.depth}"
        if self.network == Network.TEACHING.value and self.activation != "relu":
            net += f" {self.activation}"
        elif self.network == Network.UNIFORM.value:
            net += f" {self.activation}"
        comp = f"compile:{self.compile}" if self.compiled else "eager"
        comp += ":step" if self.compile_scope == CompileScope.STEP.value else ""
        comp += " graph:step" if self.whole_graph else ""
        comp += f" params:{self.dtype}" if self.param_dtype != mlp.ParamDtype.FP32.value else ""
        comp += " fused-epilogue" if self.epilogue != mlp.Epilogue.NONE.value else ""
        extra = "" if self.optimizer == Optimizer.SGD.value else f" {self.optimizer}"
        extra += f" t{self.threads}" if self.threads else ""
        if self.backend != Backend.NONE.value:
            extra += f" ddp:{self.backend} x{self.world_size} {self.scaling} bucket{self.bucket_cap_mb:g}MB"
        return f"{net} b{self.batch} {self.device} {self.dtype} {comp}{extra}"

    def to_row(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> "Case":
        """Rows written before the data-parallel fields existed take their defaults."""
        return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in row})

    def cli_flags(self) -> str:
        """The ``mlpbench run`` flags that measure exactly this case (fields that differ from the defaults)."""
        default = Case(network=self.network)  # a named network's fixed fields are not flags
        changed = [f.name for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)]
        names = ["network", *changed, "device"] if self.network != Network.UNIFORM.value else [*changed, "device"]
        return " ".join(f"--{name.replace('_', '-')} {getattr(self, name)}" for name in dict.fromkeys(names))

    # ------------------------------------------------------------------ building

    @property
    def io_features(self) -> tuple[int, int]:
        if self.network == Network.UNIFORM.value:
            return (self.in_features or self.width, self.out_features or self.width)
        if self.network == Network.TEACHING.value:
            return TEACHING_IO
        return (784, mlp.FASHION_MNIST_CLASSES)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example (without the batch dimension)."""
        if self.network in (Network.FASHION_MNIST.value, Network.FASHION_MNIST_ORIGINAL.value):
            return mlp.FASHION_MNIST_IMAGE
        return (self.io_features[0],)

    def build_model(self) -> nn.Module:
        network = Network(self.network)
        if network is Network.UNIFORM:
            n_in, n_out = self.io_features
            return mlp.uniform(self.width, self.depth, self.activation, in_features=n_in, out_features=n_out)
        if network is Network.TEACHING:
            return mlp.teaching_mlp(*TEACHING_IO, activation=self.activation)
        return mlp.fashion_mnist_mlp(relu_on_logits=network is Network.FASHION_MNIST_ORIGINAL)

    def make_batch(self, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh random (input, target) batch on the case's device (never zeros)."""
        device = torch.device(self.device)
        where = "cpu"
        if device.type == "cuda":  # drawn on the GPU: the host takes seconds for a 134M-element batch
            seed = int(torch.randint(0, 2**62, (1,), generator=generator))
            generator, where = torch.Generator(device=device).manual_seed(seed), device
        x = torch.randn(self.batch, *self.input_shape, generator=generator, device=where).to(device)
        n_out = self.io_features[1]
        if self.loss == Loss.MSE.value:
            y = torch.randn(self.batch, n_out, generator=generator, device=where).to(device)
        else:
            y = torch.randint(0, n_out, (self.batch,), generator=generator, device=where).to(device)
        return x, y

    def with_(self, **changes) -> "Case":
        return replace(self, **changes)


def _parse_compile(value) -> CompileMode:
    if isinstance(value, str) and value.strip().lower() in ("off", "eager", "false", ""):
        return CompileMode.NONE
    if isinstance(value, str):
        value = value.strip().lower().replace("_", "-")
    for member in CompileMode:
        if member.value == value or member is value:
            return member
    raise ValueError(f"unknown compile mode {value!r}; valid: {', '.join(m.value for m in CompileMode)}")


def _as_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _as_float(name: str, value) -> float:
    try:
        if isinstance(value, bool):
            raise ValueError
        return float(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


# --------------------------------------------------------------------------- sweeps

DIMENSIONS = tuple(f.name for f in fields(Case))
CUSTOM_MAX_CASE_S = 60.0  # a sweep of flags alone: the user chose each case, so a roomier budget


@dataclass(frozen=True)
class Sweep:
    """A named union of grids. Each grid maps a Case field to the values to take (product).

    Fields not in a grid take the Case default. Overrides (from the CLI) replace a
    dimension in every grid, so ``--preset quick --device cuda`` means the quick
    sweep on CUDA.
    """

    name: str
    grids: tuple[Mapping[str, tuple], ...]
    description: str = ""
    all_devices: bool = True  # without a --device override, run on every available device
    max_case_s: float = CUSTOM_MAX_CASE_S  # default --max-case-s: a case predicted to measure longer is skipped

    def cases(self, overrides: Mapping[str, Iterable] | None = None) -> list[Case]:
        overrides = {k: tuple(v) for k, v in (overrides or {}).items()}
        unknown = set(overrides) - set(DIMENSIONS)
        if unknown:
            raise ValueError(f"unknown sweep dimension(s) {sorted(unknown)}; valid: {', '.join(DIMENSIONS)}")
        out: dict[Case, None] = {}  # ordered set: duplicates across grids collapse
        for grid in self.grids:
            grid = {**grid, **overrides}
            keys = list(grid)
            for values in itertools.product(*(grid[k] for k in keys)):
                case = Case(**dict(zip(keys, values)))
                out.setdefault(case, None)
        return list(out)


def _grid(**dims) -> dict[str, tuple]:
    return {k: tuple(v) if isinstance(v, (list, tuple)) else (v,) for k, v in dims.items()}


def available_devices() -> tuple[str, ...]:
    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


_CLASSIC_NETS = ("teaching", "fashion_mnist")

PRESETS: dict[str, Sweep] = {
    "smoke": Sweep("smoke", (
        _grid(width=(32, 64), depth=1, batch=(8, 32), activation=("relu", "gelu")),
        _grid(width=32, depth=1, batch=8, compile="default"),
        _grid(network="teaching", batch=4),
    ), "a handful of tiny CPU cases, one compiled; used by tests (~30 s cold on 2 cores)", all_devices=False,
        max_case_s=10.0),
    "quick": Sweep("quick", (
        # throughput vs batch, per width (figure 1 / the CPU-GPU heatmap)
        _grid(width=(128, 512, 1024), depth=2, batch=(16, 128, 1024), dtype=("fp32", "bf16")),
        _grid(width=512, depth=(1, 4), batch=128),  # depth
        _grid(width=512, depth=2, batch=128, activation=("gelu", "tanh", "sigmoid", "silu", "binary_step")),
        _grid(width=512, depth=2, batch=(16, 1024), compile=("none", "default")),  # compile vs eager
        _grid(network=_CLASSIC_NETS, batch=(4, 64)),
    ), "every knob at >= 2 values plus the classic nets; the default of `make bench` (< 5 min on 2 CPU cores)",
        max_case_s=30.0),  # its slowest fp32 case measures in ~6 s on a 2-core AMD EPYC: 5x headroom
    "classic": Sweep("classic", (
        _grid(network=_CLASSIC_NETS, batch=(4, 64, 256, 1024)),
        _grid(network="fashion_mnist_original", batch=(64,)),
        _grid(network=_CLASSIC_NETS, batch=64, optimizer=("sgd_momentum", "adam")),
    ), "the teaching and FashionMNIST nets at the classic batch sizes (4, 64) and larger", max_case_s=30.0),
    "full": Sweep("full", (
        _grid(width=(256, 1024, 4096, 8192), depth=(2, 4, 8), batch=(64, 1024, 8192), dtype=("fp32", "tf32", "bf16")),
        _grid(width=(1024, 8192), depth=4, batch=(4, 16, 64, 256, 1024, 4096, 16384), dtype=("bf16",),
              compile=("none", "default", "reduce-overhead", "max-autotune")),
        _grid(width=1024, depth=4, batch=1024, dtype="bf16", activation=tuple(mlp.ACTIVATIONS)),
        _grid(network=_CLASSIC_NETS, batch=(4, 64, 1024, 16384), compile=("none", "reduce-overhead")),
    ), "GPU-scale grid: widths to 8192, batches to 16384, all compile modes, fp32/tf32/bf16", max_case_s=120.0),
}

# The GPU kit (`mlpbench gpu-reference`, docs/gpu-reference.md): cases ordered by value, because a run budget
# (--max-run-s) measures them in order and skips the rest. Every run measures its matmul ceilings first.
_LARGE = dict(width=8192, depth=4, batch=8192)  # the large MLP of the MFU goal
_CROSSOVER = dict(width=(256, 1024, 4096, 8192), depth=2, batch=(4, 16, 64, 256, 1024, 4096, 16384))
_TINY_CROSSOVER = dict(width=(16, 64), depth=2, batch=(4, 64))
PRESETS.update({
    "gpu": Sweep("gpu", (
        _grid(**_LARGE, device="cuda", dtype="bf16", compile=("none", "default")),
        _grid(**_LARGE, device="cuda", dtype="fp16"),  # and so the run's fp16 ceiling
        _grid(network=_CLASSIC_NETS, batch=64, device="cuda", compile=("none", "reduce-overhead")),
        _grid(width=1024, depth=4, batch=64, device="cuda", compile=("none", "reduce-overhead")),
        _grid(dtype=("fp32", "bf16", "tf32"), **_CROSSOVER, device="cuda"),  # the CPU-GPU crossover grid
        _grid(width=1024, depth=4, batch=1024, device="cuda", dtype="bf16", activation=tuple(mlp.ACTIVATIONS)),
        _grid(width=1024, depth=(2, 3, 4, 5, 6, 7, 8), batch=1024, device="cuda", dtype="bf16"),
    ), "the GPU kit's CUDA sweep, by value: large MLP, reduce-overhead at batch 64, crossover grid, "
       "activations, depths (no max-autotune); run it under --max-run-s", all_devices=False, max_case_s=60.0),
    "crossover": Sweep("crossover", (
        _grid(batch=_CROSSOVER["batch"], width=_CROSSOVER["width"], depth=2),  # batch first: cheap cases first
    ), "the CPU side of the GPU kit's crossover grid (fp32, small batches first); run it under --max-run-s",
        all_devices=False, max_case_s=30.0),
    "gpu-tiny": Sweep("gpu-tiny", (
        _grid(width=64, depth=2, batch=64, device="cuda", compile=("none", "default")),
        _grid(network="teaching", batch=64, device="cuda", compile=("none", "reduce-overhead")),
        _grid(**_TINY_CROSSOVER, device="cuda"),
        _grid(width=32, depth=1, batch=16, device="cuda", activation=("relu", "gelu")),
        _grid(width=32, depth=(1, 2), batch=16, device="cuda"),
    ), "the gpu preset's groups at toy sizes: the CPU rehearsal of the GPU kit (--device cpu)",
        all_devices=False, max_case_s=10.0),
    "crossover-tiny": Sweep("crossover-tiny", (_grid(**_TINY_CROSSOVER),),
                            "the crossover preset at toy sizes (the GPU kit's rehearsal)", all_devices=False,
                            max_case_s=10.0),
})


def preset(name: str) -> Sweep:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]
