"""A user's model as a case: ``--model my_pkg.blocks:make_ffn`` or ``--model ./blocks.py:make_ffn``.

The factory is imported (a dotted module from the current folder or the installed packages, or a file
by path), called with the case fields its signature declares (``width``, ``depth``, ``in_features``,
``out_features``, ``activation``, ``batch``, ``dtype``, ...) plus the case's ``model_args``, and must
return an ``nn.Module`` whose output on a ``(batch, in_features)`` input is ``(batch, out_features)``.
``measure()`` also takes a factory or a module object directly: those are registered in this process
under the name they are recorded with (``register``).

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

from . import keyvalues
from .case_fields import BLOCK_FIELDS, CASE_FIELD_NAMES, USER_MODEL_FIELDS
from .errors import ModelError, first_line

SHA_CHARS = 16
REGISTERED_MARK = "#"  # "module:Class#sha": a module object given to measure(), known only in its process
CHECK_BATCH = 2  # the batch of the check's one forward, loss and backward
CHECK_MAX_BYTES = 2**30  # larger models are checked on the meta device (shapes, no storage)
FACTORY_FIELDS = tuple(f for f in CASE_FIELD_NAMES if f not in USER_MODEL_FIELDS and f not in BLOCK_FIELDS)

_REGISTERED: dict[str, object] = {}  # model name -> factory or module object, for measure()
_FILE_MODULES: dict[tuple[Path, str], object] = {}  # (path, content hash) -> module


@dataclass(frozen=True)
class Factory:
    """A resolved ``--model``: what to call, and the hash of the source that defines it."""

    name: str  # the case's ``model`` field
    target: object  # a callable factory, or an nn.Module to copy
    source_sha: str

    @property
    def is_module(self) -> bool:
        return isinstance(self.target, nn.Module)


def normalise_name(text: str) -> str:
    """The case's spelling of ``--model`` (checked for form only; nothing is imported): ``blocks.py:make_ffn``."""
    text = (text or "").strip()
    if not text:
        return ""
    where, sep, attr = text.rpartition(":")
    attr_name = attr.split(REGISTERED_MARK)[0]
    if not sep or not where or not attr_name.replace(".", "_").isidentifier():
        raise ValueError(f"--model {text!r}: expected MODULE:FACTORY or PATH.py:FACTORY "
                         "(e.g. my_pkg.blocks:make_ffn or ./blocks.py:make_ffn)")
    if _is_path(where):
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


def _resolve(name: str) -> Factory:
    if name in _REGISTERED:
        target = _REGISTERED[name]
        sha = _module_object_sha(target) if isinstance(target, nn.Module) else _callable_sha(target)
        return Factory(name, target, sha)
    if REGISTERED_MARK in name:
        raise ModelError(f"--model {name}: a module object given to measure() in another process; "
                         "give a factory (MODULE:FACTORY) to measure it again")
    where, _, attr = name.rpartition(":")
    module = _load_file(where, name) if _is_path(where) else _import(where, name)
    target = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise ModelError(f"--model {name}: {where} has no {attr!r}")
    if not callable(target):
        raise ModelError(f"--model {name}: {attr} is a {type(target).__name__}, not a factory (a callable)")
    return Factory(name, target, _file_sha(inspect.getsourcefile(module)) or _callable_sha(target))


def resolve(name: str) -> Factory:
    """The factory a case names. A file is loaded again when its content changed (a notebook edits it), a
    dotted module once per process (as Python imports); the hash is always of the source the factory came from."""
    return _resolve(name)


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
    if _is_path(where):
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


def factory_kwargs(factory: Factory, fields: Mapping[str, object], model_args: Mapping[str, object]) -> dict:
    """The keyword arguments of the factory: the case fields it declares, then the model args.

    A model arg that the signature does not take, a case field given as a model arg, or a required
    parameter that is neither is a ``ModelError`` naming it.
    """
    if factory.is_module:
        if model_args:
            raise ModelError(f"--model {factory.name}: a module object takes no --model-args")
        return {}
    for key in model_args:
        if key in fields:
            raise ModelError(f"--model-args {key}=...: {key!r} is a case field; use --{key.replace('_', '-')}")
    try:
        params = inspect.signature(factory.target).parameters
    except (TypeError, ValueError):
        return dict(model_args)
    kinds = inspect.Parameter
    var_kw = any(p.kind is kinds.VAR_KEYWORD for p in params.values())
    named = [p for p in params.values() if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)]
    label = f"{factory.name}{inspect.signature(factory.target)}"
    for key in model_args:
        if key not in params and not var_kw:
            raise ModelError(f"--model {label}: takes no argument {key!r} (from --model-args)")
    kwargs = {p.name: fields[p.name] for p in named if p.name in fields}
    kwargs.update(model_args)
    for p in params.values():
        if p.kind is kinds.POSITIONAL_ONLY and p.default is p.empty:
            raise ModelError(f"--model {label}: positional-only parameter {p.name!r}; the factory is called "
                             "with keyword arguments")
        if p in named and p.default is p.empty and p.name not in kwargs:
            raise ModelError(f"--model {label}: needs {p.name!r}, which is neither a case field "
                             f"({', '.join(FACTORY_FIELDS[:6])}, ...) nor in --model-args")
    return kwargs


def build(case, device: str | torch.device | None = None) -> nn.Module:
    """The case's model from its factory (under ``torch.device(device)`` when given, e.g. ``meta``)."""
    factory = resolve(case.model)
    kwargs = factory_kwargs(factory, case_values(case), keyvalues.parse(case.model_args, "--model-args"))
    if factory.is_module:  # a copy on the device asked for, or the ambient one (``with torch.device("meta")``)
        return copy.deepcopy(factory.target).to(device if device is not None else torch.get_default_device())
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
    return model


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
    return case.with_(batch=CHECK_BATCH, device="cpu", dtype="fp32", compile="none", threads=0,
                      optimizer="sgd", optimizer_args="")


def check(case) -> None:
    """Build the case's model and run one forward, loss and backward on a tiny CPU batch; ``ModelError`` if not.

    A model over ``CHECK_MAX_BYTES`` of parameters is checked on the meta device (no storage): the
    output's shape is still checked, and a forward that raises still fails.
    """
    from mlp import make_loss

    small = _check_case(case)
    meta = build(small, "meta")
    n_bytes = sum(p.numel() * p.element_size() for p in meta.parameters())
    device = "meta" if n_bytes > CHECK_MAX_BYTES else "cpu"
    model = meta if device == "meta" else build(small)
    x, y = small.make_batch(torch.Generator().manual_seed(0))
    x, y = x.to(device), y.to(device)
    try:
        out = model(x)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"--model {case.model}: forward raised {type(exc).__name__}: {first_line(exc)}") from exc
    if not isinstance(out, torch.Tensor):
        raise ModelError(f"--model {case.model}: forward returned a {type(out).__name__}, not a tensor")
    want = (CHECK_BATCH, case.io_features[1])
    if tuple(out.shape) != want:
        raise ModelError(f"--model {case.model}: output shape {tuple(out.shape)} does not fit the {case.loss} loss, "
                         f"which needs (batch, out_features) = {want} for an input of {tuple(x.shape)}; "
                         "set --in-features/--out-features or change the model")
    try:
        make_loss(case.loss)(out, y).backward()
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"--model {case.model}: loss and backward raised {type(exc).__name__}: "
                         f"{first_line(exc)}") from exc


# --------------------------------------------------------------------------- importing and hashing


def _is_path(where: str) -> bool:
    return where.endswith(".py") or "/" in where or os.sep in where


def _import(module_name: str, name: str):
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # `mlpbench` (a console script) does not put it there
        sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - ImportError, or the user's module failing at import
        raise ModelError(f"--model {name}: cannot import {module_name} ({type(exc).__name__}: "
                         f"{first_line(exc)})") from exc


def _load_file(where: str, name: str):
    path = Path(where).expanduser().resolve()
    if not path.is_file():
        raise ModelError(f"--model {name}: no such file {where}")
    sha = _file_sha(str(path))
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
        raise ModelError(f"--model {name}: cannot import {where} ({type(exc).__name__}: {first_line(exc)})") from exc
    _FILE_MODULES[path, sha] = module
    return module


def _file_sha(path: str | None) -> str:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:SHA_CHARS] if path else ""
    except OSError:
        return ""


def _callable_sha(fn: Callable) -> str:
    """The defining file's hash; else the function's own source (a notebook cell); else its bytecode."""
    try:
        sha = _file_sha(inspect.getsourcefile(fn))
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
