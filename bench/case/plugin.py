"""A user's model as a case: ``--model my_pkg.blocks:make_ffn`` or ``--model ./blocks.py:make_ffn``.

The factory is imported (a dotted module from the current folder or the installed packages, or a file
by path), called with the case fields its signature declares (``width``, ``depth``, ``in_features``,
``out_features``, ``activation``, ``batch``, ...) plus the case's ``model_args``, and must return an
``nn.Module`` whose output on a ``(batch, *input_shape)`` input is ``(batch, out_features)``.
PyTorch's factory keywords ``device=None, dtype=None`` (torch.nn, timm, ...) get a ``torch.device`` and
the parameters' ``torch.dtype`` (``PARAMETER_DTYPE``); a case field the factory declares with another
meaning (a default of another type) is not passed (``Call``). ``measure()`` also takes a factory or a
module object directly: those are registered in this process under the name they are recorded with
(``register``), as are an ``inputs=`` function and a loss function.

Inputs and outputs (``ModelCall``): a case's ``inputs`` function makes a tensor, a tuple (``model(*args)``)
or a dict (``model(**kwargs)``); its ``output`` picks what the loss takes from a tuple or dict output.

``source_sha`` hashes the file that defines the factory (for a module object: its class's file and its
``repr``, which lists every layer), so that a run records which code it measured. ``check`` builds the
model and runs one forward, loss and backward on a tiny batch: the CLI calls it before anything is
measured, so a model that cannot be measured is one line (``ModelError``, exit code 2).
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..model import keyvalues
from ..model.case_fields import BLOCK_FIELDS, CASE_FIELD_NAMES, FIELD_DEFAULTS, KNOBS_OFF, USER_MODEL_FIELDS
from ..errors import ModelError, first_line

SHA_CHARS = 16
REGISTERED_MARK = "#"  # "module:Class#sha": a module object given to measure(), known only in its process
CHECK_BATCH = 2  # the batch of the check's one forward, loss and backward
CHECK_MAX_BYTES = 2**30  # larger models are checked on the meta device (shapes, no storage)
FACTORY_FIELDS = tuple(f for f in CASE_FIELD_NAMES if f not in USER_MODEL_FIELDS and f not in BLOCK_FIELDS)
TORCH_KEYWORDS = ("device", "dtype")  # PyTorch's factory keywords (nn.Linear(..., device=None, dtype=None))
# The parameters' dtype of every case of a user's model: fp32, tf32 and bf16/fp16 autocast all keep fp32 parameters
# (param_dtype 'compute' is refused for a user's model), so a factory's dtype= is always torch.float32.
PARAMETER_DTYPE = torch.float32
# case fields a model's label shows as its arguments where the case sets them (the rest are in the label anyway)
LABEL_FIELDS = ("width", "depth", "in_features", "out_features", "activation")

_REGISTERED: dict[str, object] = {}  # model name -> factory or module object, for measure()
_FILE_MODULES: dict[tuple[Path, str], object] = {}  # (path, content hash) -> module
_NOTED: set[tuple[str, str]] = set()  # (model, note) already printed: a note comes once per model, not per build


@dataclass(frozen=True)
class Factory:
    """A resolved ``--model``: what to call, and the hash of the source that defines it."""

    name: str  # the case's ``model`` field
    target: object  # a callable factory, or an nn.Module to copy
    source_sha: str

    @property
    def is_module(self) -> bool:
        return isinstance(self.target, nn.Module)


def normalise_name(text: str, flag: str = "--model") -> str:
    """The case's spelling of ``--model`` (checked for form only; nothing is imported): ``blocks.py:make_ffn``.
    ``flag``: the option it came from (``--inputs``, ``--loss`` name a function the same way)."""
    text = (text or "").strip()
    if not text:
        return ""
    where, sep, attr = text.rpartition(":")
    attr_name = attr.split(REGISTERED_MARK)[0]
    if not sep or not where or not attr_name.replace(".", "_").isidentifier():
        what = "FACTORY" if flag == "--model" else "FUNCTION"
        raise ValueError(f"{flag} {text!r}: expected MODULE:{what} or PATH.py:{what} "
                         f"(e.g. my_pkg.blocks:{'make_ffn' if flag == '--model' else 'fn'} or ./blocks.py:...)")
    if is_path(where):
        where = os.path.normpath(where)
    return f"{where}:{attr}"


def register(obj: object) -> str:
    """Make a factory or module object measurable in this process; returns the name cases record it under."""
    if isinstance(obj, nn.Module):
        cls = type(obj)
        name = f"{cls.__module__}:{cls.__qualname__}{REGISTERED_MARK}{_module_object_sha(obj)[:12]}"
    elif callable(obj):
        name = f"{getattr(obj, '__module__', None) or 'unknown'}:{getattr(obj, '__qualname__', type(obj).__name__)}"
    else:
        raise ModelError(f"measure() takes an nn.Module or a callable that returns one, got {type(obj).__name__}")
    name = name.replace("<locals>.", "").replace("<lambda>", "lambda")
    _REGISTERED[name] = obj
    return name


def _resolve(name: str, flag: str = "--model") -> Factory:
    if name in _REGISTERED:
        target = _REGISTERED[name]
        sha = _module_object_sha(target) if isinstance(target, nn.Module) else _callable_sha(target)
        return Factory(name, target, sha)
    if REGISTERED_MARK in name:
        raise ModelError(f"{flag} {name}: a module object given to measure() in another process; "
                         "give a factory (MODULE:FACTORY) to measure it again")
    where, _, attr = name.rpartition(":")
    module = _load_file(where, name, flag) if is_path(where) else _import(where, name, flag)
    target = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ModelError(f"{flag} {name}: {where} has no {attr!r}")
    if not callable(target):
        raise ModelError(f"{flag} {name}: {attr} is a {type(target).__name__}, not a callable")
    return Factory(name, target, file_sha(inspect.getsourcefile(module)) or _callable_sha(target))


def resolve(name: str, flag: str = "--model") -> Factory:
    """The factory a case names (``flag``: or the ``--inputs`` / ``--loss`` function). A file is loaded again when
    its content changed (a notebook edits it), a dotted module once per process (as Python imports); the hash is
    always of the source the factory came from."""
    return _resolve(name, flag)


def recipe(name: str) -> dict:
    """What another process needs to rebuild ``name`` (``bench.runs.recipe.ModelRecipe``'s fields, as a dict): the
    defining file and the folder it is imported from, the working folder, the source hash. A module object or a
    function of ``__main__`` (a script, a notebook) has no file to import: kind ``none``, with why."""
    factory = resolve(name)
    base = {"model": name, "source_sha": factory.source_sha, "cwd": os.getcwd()}
    module = inspect.getmodule(factory.target)
    module_name = getattr(module, "__name__", "") or ""
    try:
        source = Path(inspect.getsourcefile(module)).resolve() if module is not None else None
    except TypeError:
        source = None
    if factory.is_module or REGISTERED_MARK in name or source is None or module_name == "__main__":
        return {**base, "kind": "none", "why": "a module object or a function of a script or notebook: no file "
                "another process can import (give a factory as MODULE:FACTORY or PATH.py:FACTORY)"}
    where = name.rpartition(":")[0]
    if is_path(where):
        return {**base, "kind": "file", "import_root": str(source.parent), "files": [source.name],
                "source_dir": str(source.parent)}
    depth = len(where.split(".")) - (source.name != "__init__.py")  # folders between the import root and the file
    root = source.parents[depth]
    packages = [source.parents[i] / "__init__.py" for i in range(depth)]
    files = [source] + [p for p in packages if p.is_file() and p != source]
    return {**base, "kind": "module", "import_root": str(root), "source_dir": str(source.parent),
            "files": [f.relative_to(root).as_posix() for f in files]}


def recipes(cases) -> list[dict]:
    """``recipe`` of each user's model among ``cases``, with the model args its cases give it; a model that cannot
    be resolved any more (it fails as its cases' error rows) is kind ``none``, with why."""
    args: dict[str, set[str]] = {}
    for case in cases:
        if case.model:
            args.setdefault(case.model, set()).add(case.model_args)
    out = []
    for name, given in args.items():
        try:
            found = recipe(name)
        except ModelError as exc:
            found = {"model": name, "kind": "none", "cwd": os.getcwd(), "why": str(exc)}
        out.append({**found, "model_args": sorted(given)})
    return out


@dataclass(frozen=True)
class Call:
    """How a factory is called for a case: its keyword arguments, the case fields among them (``taken``), and the
    case fields it declares with another meaning, left at the factory's own default (``kept``: name, default)."""

    kwargs: dict
    taken: tuple[str, ...] = ()
    kept: tuple[tuple[str, object], ...] = ()


def factory_call(factory: Factory, fields: Mapping[str, object], model_args: Mapping[str, object],
                 given: Mapping[str, object] | None = None) -> Call:
    """The factory's call: the case fields it declares, then the model args (which override a case field).

    ``device`` / ``dtype`` declared as PyTorch's keywords (a ``None`` or torch default, or a torch annotation)
    get ``torch.device(device)`` and ``PARAMETER_DTYPE``. A case field declared with a default of another type
    (``activation=nn.GELU``) is not passed: the factory keeps its default, and where the user set that field
    (``given``: the case's own values, against the fields' defaults) it is a ``ModelError`` naming the
    ``--model-args`` key that sets it. A model arg the signature does not take, or a required parameter that is
    neither a case field nor a model arg, is a ``ModelError`` naming it.
    """
    if factory.is_module:
        if model_args:
            raise ModelError(f"--model {factory.name}: a module object takes no --model-args")
        return Call({})
    try:
        params = inspect.signature(factory.target).parameters
    except (TypeError, ValueError):
        return Call(dict(model_args))
    kinds = inspect.Parameter
    var_kw = any(p.kind is kinds.VAR_KEYWORD for p in params.values())
    named = [p for p in params.values() if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
    label = f"{factory.name}{inspect.signature(factory.target)}"
    for key in model_args:
        if key not in params and not var_kw:
            raise ModelError(f"--model {label}: takes no argument {key!r} (from --model-args)")
    kwargs, taken, kept = {}, [], []
    for p in named:
        if p.name not in fields or p.name in model_args:
            continue
        meaning = _meaning(p, fields[p.name])
        if meaning == "torch":
            kwargs[p.name] = torch.device(str(fields[p.name])) if p.name == "device" else PARAMETER_DTYPE
        elif meaning == "case":
            kwargs[p.name] = fields[p.name]
        else:
            value = (given or {}).get(p.name, FIELD_DEFAULTS.get(p.name))
            if value != FIELD_DEFAULTS.get(p.name):
                raise ModelError(f"--{p.name.replace('_', '-')} {value}: {factory.name} declares {p.name!r} with "
                                 f"another meaning (default {_spell(p.default)}); set it with --model-args "
                                 f"{p.name}=... and leave --{p.name.replace('_', '-')} out")
            kept.append((p.name, p.default))
            continue
        taken.append(p.name)
    kwargs.update({key: _torch_value(params.get(key), value) for key, value in model_args.items()})
    for p in params.values():
        if p.kind is kinds.POSITIONAL_ONLY and p.default is p.empty:
            raise ModelError(f"--model {label}: positional-only parameter {p.name!r}; the factory is called "
                             "with keyword arguments")
        if p in named and p.default is p.empty and p.name not in kwargs:
            raise ModelError(f"--model {label}: needs {p.name!r}, which is neither a case field "
                             f"({', '.join(FACTORY_FIELDS[:6])}, ...) nor in --model-args")
    return Call(kwargs, tuple(taken), tuple(kept))


def _meaning(param: inspect.Parameter, value: object) -> str:
    """What a declared case-field parameter means: ``torch`` (PyTorch's device/dtype keyword), ``case`` (the case
    field's value fits it: no default, None, or a default of the value's type) or ``other``."""
    default, annotation = param.default, param.annotation
    text = annotation if isinstance(annotation, str) else repr(annotation)
    if param.name in TORCH_KEYWORDS and (default is None or isinstance(default, (torch.device, torch.dtype))
                                         or annotation in (torch.device, torch.dtype) or "torch." in text):
        return "torch"
    if default is param.empty:
        plain = annotation is param.empty or not isinstance(annotation, type)
        return "case" if plain or isinstance(value, annotation) else "other"
    if default is None:
        return "case"
    fits = isinstance(value, type(default)) or (type(default) is float and type(value) is int)
    return "case" if fits and not (type(default) is bool and type(value) is not bool) else "other"


def _torch_value(param: inspect.Parameter | None, value: object) -> object:
    """A model arg for PyTorch's ``dtype=`` / ``device=`` given as text (``dtype=bfloat16``) as torch's object."""
    if param is None or not isinstance(value, str) or _meaning(param, value) != "torch":
        return value
    if param.name == "dtype":
        dtype = getattr(torch, value, None)
        if not isinstance(dtype, torch.dtype):
            raise ModelError(f"--model-args dtype={value}: not a torch dtype (e.g. float32, bfloat16)")
        return dtype
    return torch.device(value)


def _spell(value: object) -> str:
    return getattr(value, "__name__", None) or repr(value)


def case_call(case) -> Call:
    """The call of the case's factory (``factory_call`` with the case's fields and model args)."""
    factory = resolve(case.model)
    given = {name: getattr(case, name) for name in FACTORY_FIELDS}
    call = factory_call(factory, case_values(case), keyvalues.parse(case.model_args, "--model-args"), given)
    for name, default in call.kept:
        _note_once(case.model, f"{case.model} declares {name!r} with another meaning than the case field "
                               f"(default {_spell(default)}): it keeps its default; --model-args {name}=... sets it")
    return call


def _note_once(model: str, text: str) -> None:
    if (model, text) not in _NOTED:
        _NOTED.add((model, text))
        print(f"mlpbench: note: {text}", file=sys.stderr)


def call_args(case) -> str:
    """The model's arguments as its label shows them (``in_features=64,out_features=64``): the model args and the
    case fields a factory may take that the case sets (a net's size away from its default, the in/out features).
    Read off the case alone, never by importing the model: a label is the same wherever it is computed (a suite
    file read from another folder, a report), so what a factory does not take shows only where it was set."""
    shown = {name: getattr(case, name) for name in LABEL_FIELDS if getattr(case, name) != FIELD_DEFAULTS[name]}
    return keyvalues.canonical({**shown, **keyvalues.parse(case.model_args, "--model-args")})


def taken_fields(case) -> tuple[str, ...]:
    """The case fields the case's factory receives; () where it cannot be resolved or is a module object."""
    try:
        return () if resolve(case.model).is_module else case_call(case).taken
    except Exception:  # noqa: BLE001 - a row is written for a model that failed, too
        return ()


def build(case, device: str | torch.device | None = None) -> nn.Module:
    """The case's model from its factory (under ``torch.device(device)`` when given, e.g. ``meta``), as the step
    calls it (``ModelCall`` where the case has an ``inputs`` function or an ``output`` choice). A user loss
    (``--loss MODULE:FN``) is registered with ``mlp`` here, so the step built from the case's fields finds it."""
    factory = resolve(case.model)
    register_loss(case)
    if factory.is_module:  # a copy on the device asked for, or the ambient one (``with torch.device("meta")``)
        model = copy.deepcopy(factory.target).to(device if device is not None else torch.get_default_device())
        return ModelCall(model, case.output) if (case.inputs or case.output) else model
    kwargs = case_call(case).kwargs
    if isinstance(kwargs.get("device"), torch.device) and "device" not in case.model_args:
        # PyTorch's device= builds where the engine builds (the meta device for the accounting, the case's device
        # for the step: bench.instruments.timing.build_step), as the ambient ``with torch.device(...)`` does for the rest
        kwargs["device"] = torch.device(device) if device is not None else torch.get_default_device()
    try:
        if device is not None:
            with torch.device(device):
                model = factory.target(**kwargs)
        else:
            model = factory.target(**kwargs)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code: its failure is one line naming it
        raise ModelError(f"--model {case.model}: the factory raised {type(exc).__name__}: {first_line(exc)}") from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"--model {case.model}: the factory returned a {type(model).__name__}, not a torch.nn.Module")
    return ModelCall(model, case.output) if (case.inputs or case.output) else model


class ModelCall(nn.Module):
    """A user's model as the step calls it: the step's one input is a tensor (``model(x)``), a tuple
    (``model(*x)``) or a dict (``model(**x)``), and ``output`` (an index, ``"0"``, or a key, ``"logits"``) picks
    the tensor the loss takes from a tuple or dict output ("": the output itself)."""

    def __init__(self, model: nn.Module, output: str = ""):
        super().__init__()
        self.model = model
        self.output = output

    def forward(self, x):
        return select_output(call_model(self.model, x), self.output)


def call_model(model: nn.Module, x):
    """``model(x)``, ``model(*x)`` for a tuple or list, ``model(**x)`` for a dict."""
    if isinstance(x, Mapping):
        return model(**x)
    if isinstance(x, (tuple, list)):
        return model(*x)
    return model(x)


def select_output(out, output: str):
    """The part of ``out`` the loss takes: ``out[int(output)]`` for a digit, ``out[output]`` (or the attribute, as a
    Hugging Face ``ModelOutput`` has it) for a key, ``out`` itself for ""."""
    if not output:
        return out
    if output.lstrip("-").isdigit() and not isinstance(out, Mapping):
        return out[int(output)]
    if isinstance(out, Mapping):
        return out[output]
    return getattr(out, output)


def case_values(case) -> dict[str, object]:
    """The case fields a factory may declare, with in/out features resolved (0 means the width)."""
    n_in, n_out = case.io_features
    return {**{name: getattr(case, name) for name in FACTORY_FIELDS}, "in_features": n_in, "out_features": n_out}


def check_all(cases) -> None:
    """``check`` each distinct call of a user's factory among ``cases`` (batch, device, dtype do not matter)."""
    seen = set()
    for case in cases:
        if not case.model:
            continue
        small = _check_case(case)
        if small not in seen:
            seen.add(small)
            check(small)


def _check_case(case):
    return case.with_(batch=CHECK_BATCH, device="cpu", dtype="fp32", threads=0, optimizer="sgd", optimizer_args="",
                      **KNOBS_OFF)


def check(case) -> None:
    """Build the case's model and run one forward, loss and backward on a tiny CPU batch; ``ModelError`` if not.

    A model over ``CHECK_MAX_BYTES`` of parameters is checked on the meta device (no storage): the
    output's shape is still checked, and a forward that raises still fails. Each fault is one line that names
    its fix (``--input-shape``, ``inputs=``, ``--output``, ``--in-features/--out-features``, ``--loss``).
    """
    from mlp import make_loss

    small = _check_case(case)
    _check_fields_taken(case)
    meta = build(small, "meta")
    n_bytes = sum(p.numel() * p.element_size() for p in meta.parameters())
    device = "meta" if n_bytes > CHECK_MAX_BYTES else "cpu"
    model = meta if device == "meta" else build(small)
    inner = model.model if isinstance(model, ModelCall) else model
    x, y = small.make_batch(torch.Generator().manual_seed(0))
    x, y = _to(x, device), y.to(device)
    try:
        raw = call_model(inner, x)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"--model {case.model}: forward raised {type(exc).__name__}: {first_line(exc)} "
                         f"(on an input of {describe_input(x)}: {_input_fix(case)})") from exc
    out = _chosen_output(case, raw)
    n_out = case.io_features[1]
    if case.loss_is_builtin:
        want = (CHECK_BATCH, n_out)
        if tuple(out.shape) != want:
            raise ModelError(f"--model {case.model}: output shape {tuple(out.shape)} does not fit the {case.loss} "
                             f"loss, which needs (batch, out_features) = {want} for an input of "
                             f"{describe_input(x)}; set --out-features {out.shape[-1] if out.dim() else 1} "
                             f"(or --in-features / --input-shape), or change the model")
    try:
        loss = make_loss(case.loss)(out, y)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"--model {case.model}: the {case.loss} loss raised {type(exc).__name__}: "
                         f"{first_line(exc)} (output {tuple(out.shape)}, target {tuple(y.shape)})") from exc
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise ModelError(f"--loss {case.loss}: returned {shape}, not a scalar tensor; reduce it (e.g. .mean())")
    try:
        loss.backward()
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"--model {case.model}: loss and backward raised {type(exc).__name__}: "
                         f"{first_line(exc)}") from exc


def _check_fields_taken(case) -> None:
    """A built-in net's field set for a model that does not take it is one line (it would change nothing): depth
    and activation, and the width where --in-features and --out-features leave it nothing to size."""
    taken = () if resolve(case.model).is_module else case_call(case).taken
    asked = [f for f in ("depth", "activation") if getattr(case, f) != FIELD_DEFAULTS[f]]
    sizes_io = not (case.in_features or case.sample_shape or case.inputs) or not case.out_features
    if case.width != FIELD_DEFAULTS["width"] and not sizes_io:
        asked.insert(0, "width")
    for name in asked:
        if name not in taken:
            raise ModelError(f"--{name} {getattr(case, name)}: {case.model} takes no {name!r}, so it would change "
                             f"nothing; leave --{name} out (the factory's own options go in --model-args)")


def _chosen_output(case, raw):
    """The tensor the loss takes from the model's raw output, or a ``ModelError`` naming ``--output``."""
    if not case.output:
        if isinstance(raw, torch.Tensor):
            return raw
        if isinstance(raw, Mapping):
            keys = ", ".join(map(str, raw))
            raise ModelError(f"--model {case.model}: forward returned a {type(raw).__name__} with keys {keys}; "
                             f"choose what the loss takes with --output KEY (output='{next(iter(raw), 'logits')}' "
                             "in Python)")
        if isinstance(raw, (tuple, list)):
            raise ModelError(f"--model {case.model}: forward returned a {type(raw).__name__} of {len(raw)}; "
                             "choose what the loss takes with --output 0 (an index; output='0' in Python)")
        raise ModelError(f"--model {case.model}: forward returned a {type(raw).__name__}, not a tensor "
                         "(a tuple or dict output: choose with --output)")
    try:
        out = select_output(raw, case.output)
    except (IndexError, KeyError, AttributeError, TypeError):
        have = (f"keys {', '.join(map(str, raw))}" if isinstance(raw, Mapping) else
                f"{len(raw)} items (0-{len(raw) - 1})" if isinstance(raw, (tuple, list)) else type(raw).__name__)
        raise ModelError(f"--output {case.output}: the output has {have}; give one of those") from None
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"--output {case.output}: picks a {type(out).__name__}, not a tensor; pick a tensor")
    return out


def _input_fix(case) -> str:
    if case.inputs:
        return f"check the tensors --inputs {case.inputs} makes"
    return ("set --input-shape (e.g. 1,28,28 for images) or --in-features, or in Python inputs=fn(batch, device, "
            "dtype) for a tuple or dict input")


def _to(x, device):
    if isinstance(x, Mapping):
        return {k: _to(v, device) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return type(x)(_to(v, device) for v in x)
    return x.to(device) if isinstance(x, torch.Tensor) else x


def describe_input(x, batch: bool = True) -> str:
    """An input as shapes: ``(2, 1, 28, 28)``, ``(x (2, 16), mask (2, 16))``; ``batch=False``: one example's,
    joined as the ``model_input_shape`` column writes it (``1x28x28``, ``x=16;mask=16``)."""
    def shape(t):
        dims = tuple(t.shape) if isinstance(t, torch.Tensor) else ()
        return (str(dims) if batch else "x".join(map(str, dims[1:])) or "1") if dims or batch else type(t).__name__
    if isinstance(x, Mapping):
        return ("(" + ", ".join(f"{k} {shape(v)}" for k, v in x.items()) + ")" if batch else
                ";".join(f"{k}={shape(v)}" for k, v in x.items()))
    if isinstance(x, (tuple, list)):
        return "(" + ", ".join(shape(v) for v in x) + ")" if batch else ";".join(shape(v) for v in x)
    return shape(x)


def make_inputs(case, device: str | torch.device):
    """The case's input from its ``inputs`` function, ``fn(batch, device, dtype)`` (dtype: ``PARAMETER_DTYPE``):
    a tensor, a tuple or a dict of tensors; anything else, or a failure, is a ``ModelError`` naming the function."""
    fn = resolve(case.inputs, "--inputs").target
    try:
        x = fn(case.batch, torch.device(device), PARAMETER_DTYPE)
    except Exception as exc:  # noqa: BLE001 - the user's code
        raise ModelError(f"--inputs {case.inputs}: raised {type(exc).__name__}: {first_line(exc)} (it is called "
                         "as fn(batch, device, dtype))") from exc
    parts = list(x.values()) if isinstance(x, Mapping) else list(x) if isinstance(x, (tuple, list)) else [x]
    if not parts or not all(isinstance(t, torch.Tensor) for t in parts):
        raise ModelError(f"--inputs {case.inputs}: returned {type(x).__name__}; return a tensor, a tuple or a dict "
                         "of tensors")
    return x


def register_loss(case) -> None:
    """A user loss (``--loss MODULE:FN``) registered with ``mlp.make_loss`` under the case's name for it."""
    if not case.loss_is_builtin:
        import mlp

        mlp.register_loss(case.loss, resolve(case.loss, "--loss").target)


def linear_layers(model: nn.Module) -> int:
    """The ``nn.Linear`` modules of a model (what its row records as ``model_linears``)."""
    return sum(isinstance(m, nn.Linear) for m in model.modules())


# --------------------------------------------------------------------------- importing and hashing


def is_path(where: str) -> bool:
    """``where`` (the part of ``--model`` before the colon) names a file, ``PATH.py``, not a dotted module."""
    return where.endswith(".py") or "/" in where or os.sep in where


def _import(module_name: str, name: str, flag: str = "--model"):
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # `mlpbench` (a console script) does not put it there
        sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the user's module failing at import
        raise ModelError(f"{flag} {name}: cannot import {module_name} ({type(exc).__name__}: "
                         f"{first_line(exc)})") from exc


def _load_file(where: str, name: str, flag: str = "--model"):
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"{flag} {name}: no such file {where}")
    sha = file_sha(str(path))
    if (path, sha) in _FILE_MODULES:
        return _FILE_MODULES[path, sha]
    module_name = f"mlpbench_user_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look their module up here
    if str(path.parent) not in sys.path:  # the file may import its neighbours
        sys.path.append(str(path.parent))
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - a syntax error or an import inside the user's file
        del sys.modules[module_name]
        raise ModelError(f"{flag} {name}: cannot import {where} ({type(exc).__name__}: {first_line(exc)})") from exc
    _FILE_MODULES[path, sha] = module
    return module


def file_sha(path: str | None) -> str:
    """The source hash a run records for a model file (``model_source_sha``); "" for a file that cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:SHA_CHARS] if path else ""
    except OSError:
        return ""


def _callable_sha(fn: Callable) -> str:
    """The defining file's hash; else the function's own source (a notebook cell); else its bytecode."""
    try:
        sha = file_sha(inspect.getsourcefile(fn))
    except TypeError:
        sha = ""
    if sha:
        return sha
    try:
        return hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()[:SHA_CHARS]
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        return hashlib.sha256(code.co_code if code else repr(fn).encode()).hexdigest()[:SHA_CHARS]


def _module_object_sha(module: nn.Module) -> str:
    """Its class's source and its repr (every submodule with its shape): two different Sequentials differ."""
    return hashlib.sha256((_callable_sha(type(module)) + repr(module)).encode()).hexdigest()[:SHA_CHARS]
