"""mlpbench from Python: ``measure`` one case, ``sweep`` a grid; both return a ``Result`` of DataFrames.

    from bench import measure
    result = measure(make_ffn, batch=256, model_args={"hidden": 1024})
    result.summary[["label", "phase", "median_s", "matmul_flops", "flops_source"]]

They run the engine itself (``bench.engine.runner.run_sweep``: the same warm-up, blocks, rounds, phases and
accounting as ``mlpbench run``) and write an ordinary run folder (``out=``, or a temporary one), which
``Result`` reads back: ``.summary`` and ``.samples`` have exactly the run folder's columns, and every
``mlpbench`` command (show, report, compare, history) takes ``result.run_dir``.

The model is a factory (called with the case fields its signature declares and ``model_args``), an
``nn.Module`` (copied for each build; in/out features read off its first and last ``nn.Linear`` unless
given), a ``"MODULE:FACTORY"`` / ``"PATH.py:FACTORY"`` string, or None for a built-in ``network``.
``input_shape=(1, 28, 28)`` sets one example's shape, ``inputs=fn`` (``fn(batch, device, dtype)`` -> a tensor,
tuple or dict) makes the input, ``output=0`` / ``output="logits"`` picks what the loss takes from a tuple or dict
output, and ``loss=fn`` (``fn(output, target)`` -> a scalar) is a loss of your own (docs/your-model.md).
It is checked first (built, one forward, loss and backward on a tiny batch): a model that cannot be
measured raises ``bench.errors.ModelError`` before anything is measured.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import pandas as pd

from .model import keyvalues
from .case import plugin
from .model.case_fields import FIELD_ALIASES, SHAPE_FIELD, CaseFields
from .case.cases import Case, Sweep
from .errors import ModelError
from .runs import LOCK_FILE, RunMeta, claim_run_dir, load_run
from .instruments.timing import TimingConfig

API_PRESET = "api"
DIMENSIONS = tuple(f.name for f in fields(CaseFields))
OPTION_FIELDS = ("model_args", "optimizer_args")
FUNCTION_FIELDS = ("inputs", "loss")  # fields that also take a Python function (registered like a model)


@dataclass(frozen=True)
class Result:
    """A run read back: ``summary`` (one row per case x phase) and ``samples`` (every raw block), as in the folder."""

    summary: pd.DataFrame
    samples: pd.DataFrame
    meta: RunMeta
    run_dir: Path

    @property
    def step(self) -> pd.DataFrame:
        """The whole-step rows (one per case)."""
        return self.summary[self.summary["phase"] == "step"].reset_index(drop=True)

    def save(self, path: str | Path) -> Path:
        """Copy the run folder to ``path`` (which must not exist yet); ``mlpbench show PATH`` then reads it."""
        path = Path(path)
        if path.exists():
            raise FileExistsError(f"{path} exists; choose another folder")
        shutil.copytree(self.run_dir, path, ignore=shutil.ignore_patterns(LOCK_FILE))
        return path

    def __repr__(self) -> str:
        columns = [c for c in ("label", "status", "median_s", "iqr_s", "matmul_flops", "flops_source", "mfu",
                               "reason") if c in self.summary.columns]
        return f"Result({self.run_dir}, {len(self.step)} cases)\n{self.step[columns].to_string()}"


def measure(model_or_factory=None, *, batch: int = 64, out: str | Path | None = None, progress: bool = False,
            limits: bool = True, repeats: int | None = None, min_time_s: float | None = None,
            warmup_s: float | None = None, max_case_s: float | None = None, clock: str | None = None,
            **fields_) -> Result:
    """Measure one case (``fields_``: any case field, e.g. ``device="cuda"``, ``dtype="bf16"``, ``loss=...``,
    ``model_args={"hidden": 1024}``, ``optimizer_args={"lr": 3e-4}``); a list is refused (that is ``sweep``)."""
    for name, value in {"batch": batch, **fields_}.items():
        if isinstance(value, list) or (name in OPTION_FIELDS and isinstance(value, Mapping)
                                       and any(isinstance(v, list) for v in value.values())):
            raise ValueError(f"measure() takes one value per field; {name}={value!r} is a list: use sweep()")
    return sweep(model_or_factory, batch=batch, out=out, progress=progress, limits=limits, repeats=repeats,
                 min_time_s=min_time_s, warmup_s=warmup_s, max_case_s=max_case_s, clock=clock, **fields_)


def sweep(model_or_factory=None, *, out: str | Path | None = None, progress: bool = True, limits: bool = True,
          repeats: int | None = None, min_time_s: float | None = None, warmup_s: float | None = None,
          max_case_s: float | None = None, clock: str | None = None, **dimensions) -> Result:
    """Measure the grid of ``dimensions`` (each a value or a list of values; ``model_args`` and
    ``optimizer_args`` dicts whose list values sweep), with the engine's protocol, into a run folder.

    ``limits=False`` skips the matmul ceiling, bandwidth and dispatch floor (about 10 s on a CPU):
    the timings are the same, MFU and the speed of light stay empty. ``clock``: "wall" (default) or "cpu", what a
    block's seconds are (``mlpbench run --clock``).
    """
    cases = grid_cases(model_or_factory, **dimensions)
    plugin.check_all(cases)
    config = TimingConfig(**{k: v for k, v in (("repeats", repeats), ("min_time_s", min_time_s),
                                               ("warmup_s", warmup_s), ("max_case_s", max_case_s),
                                               ("clock", clock)) if v is not None})
    if config.clock == "cpu" and any(c.device != "cpu" for c in cases):
        raise ValueError("clock='cpu' times CPU work; a CUDA case is timed on the wall clock (CUDA events)")
    run_dir = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="mlpbench-"))
    claim_run_dir(run_dir, otherwise="choose another out")
    from .engine.runner import run_sweep

    run_sweep(cases, run_dir, config, preset=API_PRESET, progress=progress, limits=limits)
    run = load_run(run_dir)
    return Result(run.summary, run.samples, run.meta, run_dir)


def grid_cases(model_or_factory=None, **dimensions) -> list[Case]:
    """The cases ``sweep`` measures (nothing is built): the product of ``dimensions``' lists, in order."""
    dimensions = {FIELD_ALIASES.get(name, name): value for name, value in dimensions.items()}
    unknown = set(dimensions) - set(DIMENSIONS)
    if unknown:
        raise ValueError(f"unknown case field(s) {sorted(unknown)}; valid: {', '.join(DIMENSIONS)}")
    grid = {name: _values(name, value) for name, value in dimensions.items()}
    for name in FUNCTION_FIELDS:  # inputs=fn, loss=fn: registered in this process under the name the case records
        if name in grid:
            grid[name] = tuple(v if isinstance(v, str) else plugin.register(v) for v in grid[name])
    if model_or_factory is not None:
        grid["model"] = (_model_name(model_or_factory),)
        if isinstance(model_or_factory, _nn_module()):
            grid.update(_io_of(model_or_factory, grid))
    return Sweep(API_PRESET, ({},)).cases(grid)


def _values(name: str, value) -> tuple:
    if name in OPTION_FIELDS:
        return keyvalues.expand_mapping(value, f"{name}")
    if name == SHAPE_FIELD and isinstance(value, tuple):  # input_shape=(1, 28, 28) is one shape; a list sweeps
        return (value,)
    if isinstance(value, (list, tuple, range)) and not isinstance(value, str):
        return tuple(value)
    return (value,)


def _model_name(model) -> str:
    if isinstance(model, str):
        return model
    return plugin.register(model)


def _nn_module():
    from torch import nn

    return nn.Module


def _io_of(module, grid: Mapping[str, Iterable]) -> dict[str, tuple]:
    """in/out features of a module object (its first and last nn.Linear) where the caller gave none."""
    from torch import nn

    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    out = {}
    shaped = SHAPE_FIELD in grid or "inputs" in grid  # its input is described already: a conv stem's first Linear
    for name, index in (("in_features", 0), ("out_features", -1)):
        if name not in grid and not (shaped and name == "in_features"):
            if not linears:
                raise ModelError(f"measure(): {type(module).__name__} has no nn.Linear to read {name} from; "
                                 f"give {name}=...")
            out[name] = (getattr(linears[index], name),)
    return out
