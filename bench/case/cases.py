"""What to run: a ``Case`` is one measured configuration; a ``Sweep`` declares many as data.

A Case round-trips through a results row (``to_row`` / ``from_row``), so any
row of a summary table can be re-run exactly. Strings are parsed once, here,
at the edge: a bad value raises ValueError naming it and the valid choices.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace

import torch
from torch import nn

import mlp
from mlp import Loss, Optimizer, Precision, parse_enum

# The closed choices live with the fields (no torch); they are imported from here too.
from ..model import keyvalues
from . import plugin
from ..model.case_fields import (
    BLOCK_NETWORKS,
    BUILT_IN_FIELDS,
    FIELD_DEFAULTS,
    FIELD_TYPES,
    KNOBS,
    LATER_DEFAULTS,
    USER_MODEL_FIELDS,
    Backend,
    CaseFields,
    CompileMode,
    CompileScope,
    CudaGraph,
    Device,
    Network,
    Scaling,
    Switch,
)
from ..model.sweep_file import SweepFields, load_preset, load_sweep_file, preset_names
from ..model.sweep_file import CUSTOM_MAX_CASE_S


TEACHING_IO = (3, 1)
SHAPE_SEPARATOR = "x"  # --input-shape 1,28,28 is stored 1x28x28 (a comma would read as a list of cases)
  # the classic notebook's regression: 3 inputs, 1 output (50,561 parameters)


@dataclass(frozen=True, order=True)
class Case(CaseFields):
    """Everything that defines one measured configuration (the fields: ``bench.model.case_fields.CaseFields``).

    Values are parsed and normalised here: for the named networks, width/depth/in/out are fixed by
    the network and stored as 0 so that equal configurations compare equal. ``threads=0`` means
    torch's default; the thread count actually used is recorded in the run's environment.
    """

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        for name, kind in FIELD_TYPES.items():  # numbers from a CSV row or a flag: one parser per type
            if kind is not str:
                set_(name, (_as_int if kind is int else _as_float)(name, getattr(self, name)))
        for name in USER_MODEL_FIELDS:  # a CSV reads an empty cell back as NaN
            value = getattr(self, name)
            if isinstance(value, (tuple, list)):  # input_shape=(1, 28, 28) from Python
                value = SHAPE_SEPARATOR.join(map(str, value))
            set_(name, "" if value is None or (isinstance(value, float) and value != value) else str(value))
        set_("model", plugin.normalise_name(self.model))
        self._check_io(set_)
        set_("model_args", keyvalues.normalise(self.model_args, "--model-args"))
        set_("optimizer_args", keyvalues.normalise(self.optimizer_args, "--optimizer-args"))
        network = parse_enum(Network, self.network, "network")
        set_("network", network.value)
        set_("activation", mlp.activation_spec(self.activation).name)
        set_("device", parse_enum(Device, self.device, "device").value)
        set_("dtype", parse_enum(Precision, self.dtype, "dtype").value)
        set_("compile", _parse_compile(self.compile).value)
        set_("optimizer", parse_enum(Optimizer, self.optimizer, "optimizer").value)
        set_("loss", _parse_loss(self.loss))
        set_("backend", parse_enum(Backend, self.backend, "backend").value)
        set_("scaling", parse_enum(Scaling, self.scaling, "scaling").value)
        _require(self.world_size >= 1, f"world_size must be >= 1, got {self.world_size}")
        _require(self.bucket_cap_mb >= 0, f"bucket_cap_mb must be >= 0, got {self.bucket_cap_mb}")
        _require(self.batch >= 1, f"batch must be >= 1, got {self.batch}")
        _require(self.threads >= 0, f"threads must be >= 0, got {self.threads}")
        _require(self.in_features >= 0 and self.out_features >= 0, "in/out features must be >= 0")
        set_("norm", parse_enum(mlp.Norm, self.norm, "norm").value)
        set_("bias", _parse_switch("bias", self.bias).value)
        self._check_block_fields(network)
        if self.model:
            _require(network is Network.UNIFORM, f"--model {self.model} replaces --network {network.value}; give one")
        else:
            _require(not self.model_args, f"--model-args {self.model_args} needs --model (a factory to pass them to)")
        mlp.optimizer_settings(self.optimizer, keyvalues.parse(self.optimizer_args, "--optimizer-args"))
        if network is Network.UNIFORM or network in BLOCK_NETWORKS:
            _require(self.width >= 1, f"width must be >= 1, got {self.width}")
            least = 1 if network in BLOCK_NETWORKS else 0  # a block net is its blocks
            _require(self.depth >= least, f"depth must be >= {least}, got {self.depth}")
            if network is Network.SWIGLU:
                set_("activation", "silu")  # SwiGLU's gate (_check_block_fields refused any other)
        else:  # the named networks fix their shape (and FashionMNIST its activation and loss)
            set_("width", 0)
            set_("depth", 0)
            set_("in_features", 0)
            set_("out_features", 0)
            if network is not Network.TEACHING:
                set_("activation", "relu")
                set_("loss", Loss.CROSS_ENTROPY.value)
        if self.precision is Precision.FP16 and self.device != Device.CUDA.value:
            raise ValueError("dtype 'fp16' needs device 'cuda' (fp16 autocast training is a CUDA recipe)")
        self._check_knobs(set_)

    def _check_io(self, set_) -> None:
        """A user's model's inputs, outputs and loss (``--input-shape``, ``inputs``, ``--output``, ``--loss FN``):
        parsed, and refused in one line where there is no ``--model`` or two of them disagree."""
        set_("sample_shape", _parse_shape(self.sample_shape))
        set_("inputs", plugin.normalise_name(self.inputs, "--inputs"))
        set_("output", self.output.strip())
        given = [flag for flag, value in (("--input-shape", self.sample_shape), ("--inputs", self.inputs),
                                          ("--output", self.output)) if value]
        if ":" in str(self.loss):
            given.append("--loss MODULE:FN")
        if not self.model:
            _require(not given, f"{given[0] if given else ''} applies to a user's model: add --model MODULE:FACTORY "
                                "(a built-in net fixes its input, output and loss)")
        _require(not (self.sample_shape and self.inputs),
                 f"--input-shape {self.sample_shape} and --inputs {self.inputs}: give one (the inputs function "
                 "makes its own shapes)")
        flat = math.prod(self.shape_dims)
        _require(not (self.sample_shape and self.in_features and self.in_features != flat),
                 f"--input-shape {self.sample_shape} is {flat} features per example, --in-features "
                 f"{self.in_features}: leave --in-features out (it is the flat size of the shape) or make them agree")

    def _check_knobs(self, set_) -> None:
        """The fastest-step knobs: parsed, normalised, and refused where they cannot build a correct step."""
        set_("compile_scope", parse_enum(CompileScope, self.compile_scope, "compile_scope").value)
        set_("cuda_graph", parse_enum(CudaGraph, self.cuda_graph, "cuda_graph").value)
        set_("param_dtype", parse_enum(mlp.ParamDtype, self.param_dtype, "param_dtype").value)
        set_("epilogue", parse_enum(mlp.Epilogue, self.epilogue, "epilogue").value)
        # Moot settings read as the default, so that a grid (--compile none,default --compile-scope model,step)
        # collapses to the cases that differ: fp32/tf32 parameters are in the compute dtype already, and without
        # a compile mode nothing is compiled, at any scope.
        if self.precision.autocast_dtype is None:
            set_("param_dtype", mlp.ParamDtype.FP32.value)
        if not self.compiled:
            set_("compile_scope", CompileScope.MODEL.value)
        mlp.check_knobs(self.knobs, self.precision, self.device)
        plain = Network(self.network) in BLOCK_NETWORKS or self.model  # accounted with fp32 parameters, no epilogue
        if plain and (self.param_dtype != mlp.ParamDtype.FP32.value or self.epilogue != mlp.Epilogue.NONE.value):
            raise ValueError(f"param_dtype {self.param_dtype!r} / epilogue {self.epilogue!r} apply to the uniform, "
                             f"teaching and FashionMNIST nets, not to {self.model or self.network!r}")
        if self.epilogue == mlp.Epilogue.FUSED.value:
            mlp.check_fused_activation(self.activation)

    def _check_block_fields(self, network: Network) -> None:
        """The block fields exist only where they apply: a one-line error names the field and where it does."""
        _require(self.expansion >= 1, f"expansion must be >= 1, got {self.expansion}")
        _require(self.hidden >= 0, f"hidden must be >= 0, got {self.hidden}")
        _require(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout:g}")
        applies = {"expansion": (Network.FFN, Network.RESIDUAL), "hidden": (Network.SWIGLU,),
                   "norm": (Network.RESIDUAL,), "dropout": BLOCK_NETWORKS, "bias": (Network.UNIFORM, *BLOCK_NETWORKS)}
        for name, networks in applies.items():
            if self.model and getattr(self, name) != FIELD_DEFAULTS[name]:
                raise ValueError(f"{name} {getattr(self, name)!r} is a field of the built-in nets, not of --model "
                                 f"{self.model}: pass your factory's own options with --model-args {name}=...")
            if getattr(self, name) != FIELD_DEFAULTS[name] and network not in networks:
                where = ", ".join(n.value for n in networks)
                raise ValueError(f"{name} {getattr(self, name)!r} does not apply to network {network.value!r} "
                                 f"(only to {where})")
        if network is Network.SWIGLU and self.activation not in (FIELD_DEFAULTS["activation"], "silu"):
            raise ValueError(f"activation {self.activation!r} does not apply to network 'swiglu' (its gate is SiLU)")

    # ------------------------------------------------------------------ typed views
    # The fields stay plain strings (they are the results row and the case_id's input); these
    # give the enums, so that code compares members, not ``.value`` strings.

    @property
    def compile_mode(self) -> CompileMode:
        return CompileMode(self.compile)

    @property
    def optimizer_options(self) -> dict:
        """The user's optimiser settings (``--optimizer-args``) as typed values; {} for the fixed defaults."""
        return keyvalues.parse(self.optimizer_args, "--optimizer-args")

    @property
    def user_model(self) -> bool:
        """The case measures a user's factory or module (``--model``), not a built-in network."""
        return bool(self.model)

    @property
    def loss_is_builtin(self) -> bool:
        """mse or cross_entropy, not a user's ``--loss MODULE:FN`` (which takes mse's (batch, out_features) target)."""
        return ":" not in self.loss

    @property
    def shape_dims(self) -> tuple[int, ...]:
        """``--input-shape`` as integers (() when not given)."""
        return tuple(int(d) for d in self.sample_shape.split(SHAPE_SEPARATOR)) if self.sample_shape else ()

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
        return any(knob.whole_step for _, knob, _ in self._knobs_on())

    def _knobs_on(self):
        """(field name, KnobSpec, value) of each knob away from its default (the knob off), in declaration order."""
        return [(name, knob, getattr(self, name)) for name, knob in KNOBS.items()
                if getattr(self, name) != FIELD_DEFAULTS[name]]

    @property
    def precision(self) -> Precision:
        """The case's precision, typed: ``dtype`` is its text, parsed and checked once in ``__post_init__``."""
        return Precision(self.dtype)

    @property
    def knobs(self) -> "mlp.StepKnobs":
        """How ``mlp.TrainStep`` builds this case's step."""
        arguments = {}
        for name, knob in KNOBS.items():  # each knob's declaration (case_fields) says what it sets
            arguments.update(knob.step_arguments(name, getattr(self, name)))
        return mlp.StepKnobs(**arguments)

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
        elif Network(self.network) in BLOCK_NETWORKS:
            net += f" w{self.width} d{self.depth} " + (f"h{self.hidden or mlp.llama_hidden(self.width)}"
                                                       if self.network == Network.SWIGLU.value
                                                       else f"x{self.expansion} {self.activation}")
            net += f" {self.norm}" if self.norm != mlp.Norm.NONE.value else ""
            net += f" drop{self.dropout:g}" if self.dropout else ""
        net += " nobias" if self.bias == Switch.OFF.value else ""
        if self.model:  # the model and its call: the width, depth and activation only where the factory takes them
            args = plugin.call_args(self)
            net = f"{self.model}" + (f"({args})" if args else "")
            net += f" in:{self.sample_shape}" if self.sample_shape else ""
            net += f" inputs:{self.inputs}" if self.inputs else ""
            net += f" output:{self.output}" if self.output else ""
        comp = f"compile:{self.compile}" if self.compiled else "eager"
        comp += "".join(knob.label_text(name, value, self.dtype) for name, knob, value in self._knobs_on())
        extra = "" if self.optimizer == Optimizer.SGD.value else f" {self.optimizer}"
        extra += f" [{self.optimizer_args}]" if self.optimizer_args else ""
        extra += f" t{self.threads}" if self.threads else ""
        extra += f" loss:{self.loss}" if not self.loss_is_builtin else ""
        if self.backend != Backend.NONE.value:
            extra += f" ddp:{self.backend} x{self.world_size} {self.scaling} bucket{self.bucket_cap_mb:g}MB"
        return f"{net} b{self.batch} {self.device} {self.dtype} {comp}{extra}"

    def to_row(self) -> dict[str, object]:
        """The case's fields as a row. A user's model's row leaves empty the built-in nets' fields at their defaults
        that its factory does not take (network, width, depth, activation, the block fields): they describe no
        part of the model. ``from_row`` reads an empty cell back as the default, so the case is the same."""
        row = asdict(self)
        if self.model:
            taken = plugin.taken_fields(self)
            for name in BUILT_IN_FIELDS:
                if name not in taken and row[name] == FIELD_DEFAULTS[name]:
                    row[name] = ""
        return row

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> "Case":
        """Rows written before the data-parallel fields existed take their defaults; so does an empty cell."""
        return cls(**{f.name: row[f.name] for f in fields(cls) if f.name in row and not _empty(row[f.name])})

    def cli_flags(self) -> str:
        """The ``mlpbench run`` flags that measure exactly this case (fields that differ from the defaults)."""
        default = Case(network=self.network)  # a named network's fixed fields are not flags
        changed = [f.name for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)]
        names = ["network", *changed, "device"] if self.network != Network.UNIFORM.value else [*changed, "device"]
        return " ".join(f"--{name.replace('_', '-')} {shlex.quote(str(getattr(self, name)))}"
                        for name in dict.fromkeys(names))

    # ------------------------------------------------------------------ building

    @property
    def io_features(self) -> tuple[int, int]:
        if self.network == Network.UNIFORM.value or Network(self.network) in BLOCK_NETWORKS:
            flat = math.prod(self.shape_dims) if self.sample_shape else 0  # --input-shape: in_features is its size
            return (self.in_features or flat or self.width, self.out_features or self.width)
        if self.network == Network.TEACHING.value:
            return TEACHING_IO
        return (784, mlp.FASHION_MNIST_CLASSES)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one example (without the batch dimension): ``--input-shape`` where given."""
        if self.network in (Network.FASHION_MNIST.value, Network.FASHION_MNIST_ORIGINAL.value):
            return mlp.FASHION_MNIST_IMAGE
        return self.shape_dims or (self.io_features[0],)

    def build_model(self) -> nn.Module:
        """The case's network; a user's model (``--model``) comes from its factory (``bench.case.plugin``)."""
        if self.model:
            return plugin.build(self)
        network = Network(self.network)
        bias = self.bias == Switch.ON.value
        if network is Network.UNIFORM:
            n_in, n_out = self.io_features
            return mlp.uniform(self.width, self.depth, self.activation, in_features=n_in, out_features=n_out,
                               bias=bias)
        if network in BLOCK_NETWORKS:
            n_in, n_out = self.io_features
            return mlp.block_net(network.value, self.width, self.depth, n_in, n_out, expansion=self.expansion,
                                 hidden=self.hidden, activation=self.activation, norm=self.norm, bias=bias,
                                 dropout=self.dropout)
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
        if self.inputs:  # the user's function makes the input on the device (a tensor, a tuple or a dict)
            x = plugin.make_inputs(self, device)
        else:
            x = torch.randn(self.batch, *self.input_shape, generator=generator, device=where).to(device)
        n_out = self.io_features[1]
        if self.loss == Loss.CROSS_ENTROPY.value:
            y = torch.randint(0, n_out, (self.batch,), generator=generator, device=where).to(device)
        else:  # mse, and a user's loss: a (batch, out_features) target
            y = torch.randn(self.batch, n_out, generator=generator, device=where).to(device)
        return x, y

    def with_(self, **changes) -> "Case":
        return replace(self, **changes)


def _parse_loss(value) -> str:
    """mse, cross_entropy, or a user's loss function ``MODULE:FN`` / ``PATH.py:FN`` (``fn(output, target)``)."""
    text = str(value.value if isinstance(value, Loss) else value).strip()
    if ":" in text:
        return plugin.normalise_name(text, "--loss")
    try:
        return parse_enum(Loss, text, "loss").value
    except ValueError as exc:
        raise ValueError(f"{exc} (or a function of yours, --loss MODULE:FN)") from None


def _parse_shape(text: str) -> str:
    """``--input-shape``: ``1,28,28`` or ``1x28x28`` (positive integers) -> ``1x28x28``; "" stays ""."""
    text = text.strip().strip("()[]").replace(" ", "")
    if not text:
        return ""
    parts = [p for p in text.replace(",", SHAPE_SEPARATOR).split(SHAPE_SEPARATOR) if p]
    if not parts or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"--input-shape {text!r}: expected one example's shape as positive integers, e.g. 1,28,28")
    return SHAPE_SEPARATOR.join(str(int(p)) for p in parts)


def _empty(value) -> bool:
    """A cell that holds nothing: None, "" or NaN (how a CSV reads an empty cell back)."""
    return value is None or (isinstance(value, str) and not value) or (isinstance(value, float) and value != value)


def _parse_compile(value) -> CompileMode:
    if isinstance(value, str) and value.strip().lower() in ("off", "eager", "false", ""):
        return CompileMode.NONE
    if isinstance(value, str):
        value = value.strip().lower().replace("_", "-")
    for member in CompileMode:
        if member.value == value or member is value:
            return member
    raise ValueError(f"unknown compile mode {value!r}; valid: {', '.join(m.value for m in CompileMode)}")


_SWITCH_WORDS = {"on": Switch.ON, "true": Switch.ON, "1": Switch.ON, "off": Switch.OFF, "false": Switch.OFF,
                 "0": Switch.OFF}


def _parse_switch(name: str, value) -> Switch:
    key = value.value if isinstance(value, Switch) else str(value).strip().lower()
    if key not in _SWITCH_WORDS:
        raise ValueError(f"{name} must be on or off, got {value!r}")
    return _SWITCH_WORDS[key]


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


@dataclass(frozen=True)
class Sweep(SweepFields):
    """A named union of grids (the fields: ``bench.model.sweep_file.SweepFields``). Each grid maps a Case field to the
    values to take (product); fields not in a grid take the Case default.

    Overrides (from the CLI) replace a dimension in every grid, so ``--preset quick --device cuda`` means the
    quick sweep on CUDA. The presets and a user's sweep file are TOML files read by ``bench.model.sweep_file``.
    """

    @classmethod
    def of(cls, spec: SweepFields) -> "Sweep":
        return cls(**{f.name: getattr(spec, f.name) for f in fields(SweepFields)})

    def cases(self, overrides: Mapping[str, Iterable] | None = None) -> list[Case]:
        """Every case of every grid, in order, each once. A value a Case refuses is a ValueError; in a sweep
        file's grid it names the file, the line and the key that holds it."""
        overrides = {k: tuple(v) for k, v in (overrides or {}).items()}
        unknown = set(overrides) - set(DIMENSIONS)
        if unknown:
            raise ValueError(f"unknown sweep dimension(s) {sorted(unknown)}; valid: {', '.join(DIMENSIONS)}")
        out: dict[Case, None] = {}  # ordered set: duplicates across grids collapse
        for index, grid in enumerate(self.grids):
            grid = {**grid, **overrides}
            keys = list(grid)
            for values in itertools.product(*(grid[k] for k in keys)):
                values = dict(zip(keys, values))
                try:
                    case = Case(**values)
                except ValueError as exc:
                    raise ValueError(self._located(index, values, set(overrides), exc)) from None
                out.setdefault(case, None)
        return list(out)

    def _located(self, index: int, values: dict, overridden: set, exc: ValueError) -> str:
        """The error of a grid's case at the line of the key whose value a Case refuses on its own, or else
        (two values that cannot go together) at the grid's table."""
        if not self.locations:
            return str(exc)
        where = self.locations[index]
        for key, value in values.items():
            if key in overridden or key not in where:
                continue
            try:
                Case(**{key: value})
            except ValueError as alone:
                return f"{where[key]}: {key}: {alone}"
        return f"{where['']}: [[grid]] {index + 1}: {exc}"


def available_devices() -> tuple[str, ...]:
    return ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)


# The presets are sweep files shipped in the package (bench/model/presets/*.toml): one format with a user's sweeps.
PRESETS: dict[str, Sweep] = {name: Sweep.of(load_preset(name)) for name in preset_names()}

def preset(name: str) -> Sweep:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]


def sweep_from_file(path, base=None) -> Sweep:
    """The sweep declared in the TOML file ``path`` (``bench.model.sweep_file``; its relative model paths spelled from
    ``base``, default the cwd); bad input is a UsageError."""
    return Sweep.of(load_sweep_file(path, base))
