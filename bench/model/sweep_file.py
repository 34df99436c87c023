"""Sweep files: a sweep declared in TOML (``mlpbench run sweeps/ffn.toml``), and the presets shipped as such files.

The format (docs/your-model.md, "Sweep files")::

    description = "my FFN block"   # run-level keys (RUN_KEYS) at the top, before the first [[grid]]
    max_case_s = 60                # the budgets: max_case_s, max_run_s, repeats, min_time_s, warmup_s
    device = "cpu"                 # a case field at the top applies to every grid (a grid's own value wins)

    [[grid]]                       # one table per grid; the sweep is their union, in order, duplicates once
    width = [256, 1024]            # a case field (bench.model.case_fields.SWEEP_FIELDS): a value or a list of values
    batch = 64

The keys of a grid are the case fields themselves, so a field added to ``CaseFields`` is a valid key with no
edit here. A file without a ``[[grid]]`` is one grid of its top-level case fields. A bad key, value or type is
one ``UsageError`` naming the file, the line and the key; tomllib gives no positions for keys, so
``_KeyLines`` finds them in the text. The presets (``bench/model/presets/*.toml``, package data) are read here too.

No torch: the CLI lists the presets while it builds its parser. ``bench.case.cases.Sweep`` adds the cases.
"""

from __future__ import annotations

import difflib
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from .case_fields import FIELD_ALIASES, FIELD_TYPES, SHAPE_FIELD, SWEEP_FIELDS
from ..errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package (pyproject: tomli for python_version < '3.11')
    import tomli as tomllib


SUFFIX = ".toml"
PATH_FIELDS = ("model", "inputs", "loss")  # a PATH.py:NAME in these names a file beside the sweep file
GRID_KEY = "grid"  # [[grid]]: one table per grid
CUSTOM_MAX_CASE_S = 60.0  # a sweep of flags alone, or a file without max_case_s: the user chose each case
NO_LIMIT_WORDS = ("inf", "none", "off")  # spellings of "no time budget" (TOML's own float inf works too)
# The run-level keys: what a sweep file may say besides its grids (each overridden by the flag of its name).
RUN_KEYS = {
    "description": "one line for --list-presets and the report",
    "all_devices": "without --device, run every grid on every available device (default true)",
    "skip_slow_dtypes": "skip the dtypes this device has no fast path for, unless --dtype names them (default false)",
    "max_case_s": "skip a case predicted to measure longer than this (seconds, or \"inf\"; default 60)",
    "max_run_s": "run budget in seconds (default: none)",
    "repeats": "samples per phase (default 12)",
    "min_time_s": "measure each case for at least this long (seconds)",
    "warmup_s": "warm-up budget per case (seconds, default 0.25)",
    "processes": "measure each compiled case in this many processes, pyperf's method (default 1)",
}
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string"}


@dataclass(frozen=True)
class SweepFields:
    """A sweep as plain data: a named union of grids and its run-level settings (``bench.case.cases.Sweep`` runs it).

    Each grid maps a case field to the values it takes (their product). ``None`` budgets mean the engine's
    default (``max_case_s=None``: no limit). ``locations`` (sweep files only) give, per grid, ``"file:line"``
    of each key, and of the grid's table under ``""``, so that a bad value is reported where it was written.
    """

    name: str
    grids: tuple[Mapping[str, tuple], ...]
    description: str = ""
    all_devices: bool = True  # without a --device override, run on every available device
    max_case_s: float | None = CUSTOM_MAX_CASE_S  # default --max-case-s: a case predicted longer is skipped
    skip_slow_dtypes: bool = False  # skip a dtype without a fast path on the device (unless --dtype names it)
    max_run_s: float | None = None
    repeats: int | None = None
    min_time_s: float | None = None
    warmup_s: float | None = None
    processes: int | None = None
    locations: tuple[Mapping[str, str], ...] = ()


# --------------------------------------------------------------------------- the presets


def preset_names() -> tuple[str, ...]:
    """The presets shipped with the package: the ``*.toml`` files in ``bench/model/presets/`` (sorted)."""
    return tuple(sorted(p.name[: -len(SUFFIX)] for p in _presets_dir().iterdir() if p.name.endswith(SUFFIX)))


def load_preset(name: str) -> SweepFields:
    """The preset ``name`` (``bench/model/presets/<name>.toml``); an unknown name is a UsageError listing the valid ones."""
    if name not in preset_names():
        raise UsageError(f"unknown preset {name!r}; valid: {', '.join(preset_names())}")
    resource = _presets_dir() / f"{name}{SUFFIX}"
    return parse_sweep(resource.read_text(encoding="utf-8"), f"bench/model/presets/{name}{SUFFIX}", name)


def _presets_dir():
    return resources.files(__package__) / "presets"


# --------------------------------------------------------------------------- a user's file


def load_sweep_file(path: Path, base: Path | None = None) -> SweepFields:
    """The sweep in ``path``, named after the file's stem; a file that cannot be read or parsed is a UsageError.

    A relative model path in it is spelled relative to ``base`` when it lies under it (default: the cwd), else
    absolute (``_model_beside``); ``mlpbench check --suite`` spells them from the repository's top level."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = f" (the preset is --preset {path.name})" if path.name in preset_names() else ""
        raise UsageError(f"{path}: no such sweep file{hint}") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a sweep file") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.stem if path.suffix == SUFFIX else path.name)
    fields = parse_sweep(text, str(path), name)
    grids = tuple({**grid, **{key: tuple(_model_beside(v, path.parent, base) for v in grid[key])
                              for key in PATH_FIELDS if key in grid}} for grid in fields.grids)
    return replace(fields, grids=grids)


def _model_beside(model: str, folder: Path, base: Path | None = None) -> str:
    """A relative ``PATH.py:FACTORY`` in a sweep file names a file beside the sweep file, not in the cwd: spelled
    relative to ``base`` (the cwd by default) when it lies under it (case ids stay short and the same on every
    checkout), else absolute. A ``MODULE:FACTORY`` is imported from the cwd, as the flag's is."""
    where, sep, attr = model.rpartition(":")
    if not sep or not (where.endswith(".py") or "/" in where) or Path(where).expanduser().is_absolute():
        return model
    target = (folder / where).resolve()
    try:
        where = str(target.relative_to(Path(base or Path.cwd()).resolve()))
    except ValueError:
        where = str(target)
    return f"{where}:{attr}"


def parse_sweep(text: str, source: str, name: str) -> SweepFields:
    """Parse and check a sweep file's text (``source`` names it in errors): keys, types and the run-level values.

    The case fields' values are checked as cases when the sweep is expanded (``bench.case.cases.Sweep.cases``, with
    the command line's overrides), and reported at the line of the key that holds the bad value.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        line = found.group(1) if found else "1"
        raise UsageError(f"{source}:{line}: TOML syntax error: {exc}") from None
    lines = _KeyLines(text)
    where = lambda table, key="": f"{source}:{lines.line(table, key)}"  # noqa: E731
    settings, defaults, defaults_spelled = {}, {}, []
    for key, value in data.items():
        if key == GRID_KEY:
            continue
        if key in RUN_KEYS:
            settings[key] = _run_value(key, value, where(("", 0), key))
        elif FIELD_ALIASES.get(key, key) in SWEEP_FIELDS:
            defaults[FIELD_ALIASES.get(key, key)] = _field_values(key, value, where(("", 0), key))
            defaults_spelled.append(key)
        else:
            raise UsageError(f"{where(('', 0), key)}: unknown key {key!r}{_suggest(key)}; valid at the top: "
                             f"{', '.join(RUN_KEYS)}, {GRID_KEY} (tables) and the case fields")
    tables = data.get(GRID_KEY, [])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise UsageError(f"{where(('', 0), GRID_KEY)}: {GRID_KEY}: expected [[{GRID_KEY}]] tables, "
                         f"got {_kind(tables)}")
    if not tables and not defaults:
        raise UsageError(f"{source}:1: the file declares no case: add a [[{GRID_KEY}]] table "
                         f"(or case fields at the top)")
    grids, locations = [], []
    for index, table in enumerate(tables or [{}]):
        at = (GRID_KEY, index) if tables else ("", 0)
        grid = dict(defaults)
        for key, value in table.items():
            if FIELD_ALIASES.get(key, key) not in SWEEP_FIELDS:
                hint = " (a run-level key: put it at the top, before the first [[grid]])" if key in RUN_KEYS else ""
                raise UsageError(f"{where(at, key)}: unknown key {key!r} in [[{GRID_KEY}]] {index + 1}"
                                 f"{hint or _suggest(key)}; valid: {', '.join(SWEEP_FIELDS)}")
            grid[FIELD_ALIASES.get(key, key)] = _field_values(key, value, where(at, key))
        grids.append(grid)
        spelled = {FIELD_ALIASES.get(k, k): k for k in [*defaults_spelled, *table]}  # the key as the file writes it
        locations.append({key: where(at if spelled.get(key, key) in table else ("", 0), spelled.get(key, key))
                          for key in grid} | {"": where(at)})
    return SweepFields(name=name, grids=tuple(grids), locations=tuple(locations), **settings)


# --------------------------------------------------------------------------- values


def _field_values(key: str, value, where: str) -> tuple:
    """A case field's value or list of values, each of the field's type (a table for a string field becomes
    its ``k=v,k=v`` spelling, as the flag takes it)."""
    if FIELD_ALIASES.get(key, key) == SHAPE_FIELD:  # input_shape = [1, 28, 28] is one shape; a list of them sweeps
        shapes = value if isinstance(value, list) and value and isinstance(value[0], list) else [value]
        value = ["x".join(map(str, v)) if isinstance(v, list) else v for v in shapes]
    items = value if isinstance(value, list) else [value]
    if not items:
        raise UsageError(f"{where}: {key}: an empty list measures nothing; give one value or more")
    return tuple(_field_value(key, item, where) for item in items)


def _field_value(key: str, item, where: str):
    kind = FIELD_TYPES[FIELD_ALIASES.get(key, key)]
    if kind is str and isinstance(item, dict):
        return ",".join(f"{k}={_spelled(v)}" for k, v in item.items())
    ok = (isinstance(item, kind) or (kind is float and isinstance(item, int))) and not isinstance(item, bool)
    if not ok:
        raise UsageError(f"{where}: {key}: expected {_TYPE_WORDS[kind]} (or a list of them), got {_kind(item)}")
    if kind is float and not math.isfinite(item):
        raise UsageError(f"{where}: {key}: expected a finite number, got {item!r}")
    return float(item) if kind is float else item


def _spelled(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):  # betas = [0.9, 0.95] -> 0.9:0.95, the flag's spelling
        return ":".join(_spelled(v) for v in value)
    return str(value)


def _run_value(key: str, value, where: str):
    if key == "description":
        if not isinstance(value, str):
            raise UsageError(f"{where}: {key}: expected a string, got {_kind(value)}")
        return value
    if key in ("all_devices", "skip_slow_dtypes"):
        if not isinstance(value, bool):
            raise UsageError(f"{where}: {key}: expected true or false, got {_kind(value)}")
        return value
    if key in ("repeats", "processes"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise UsageError(f"{where}: {key}: expected an integer, got {_kind(value)}")
        if value < 1:
            raise UsageError(f"{where}: {key}: must be >= 1, got {value}")
        return value
    if key in ("max_case_s", "max_run_s"):
        if isinstance(value, str) and value.strip().lower() in NO_LIMIT_WORDS:
            return None
        seconds = _number(key, value, where)
        if math.isinf(seconds) and seconds > 0:
            return None
        if not seconds > 0:
            raise UsageError(f"{where}: {key}: must be a positive number of seconds (or \"inf\"), got {value!r}")
        return seconds
    seconds = _number(key, value, where)  # min_time_s, warmup_s
    if not (0 <= seconds < math.inf):
        raise UsageError(f"{where}: {key}: must be a number of seconds >= 0, got {value!r}")
    return seconds


def _number(key: str, value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{where}: {key}: expected a number of seconds, got {_kind(value)}")
    return float(value)


def _kind(value) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "the string", list: "a list",
             dict: "a table"}
    name = next((word for kind, word in names.items() if isinstance(value, kind)), type(value).__name__)
    return f"{name} {value!r}" if isinstance(value, (bool, int, float, str)) else name


def _suggest(key: str) -> str:
    close = difflib.get_close_matches(key, [*SWEEP_FIELDS, *RUN_KEYS], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- positions


class _KeyLines:
    """The line of each key in a TOML text, per table (tomllib reports none): ``("", 0)`` is the top level,
    ``("grid", i)`` the i-th ``[[grid]]``, ``(name, 0)`` a ``[name]`` table. A line-by-line scan of the keys
    that begin a line (``key =``, ``"key" =``, ``a.b =``), outside multi-line strings and arrays; a key it
    cannot place (inside an inline table) is given its table's line."""

    _HEADER = re.compile(r"^\s*(\[\[\s*(?P<array>[^\]]+?)\s*\]\]|\[\s*(?P<table>[^\]]+?)\s*\])")
    _KEY = re.compile(r"""^\s*(?P<key>[A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*(\.\s*[^=]+?)?\s*=""")
    _STRINGS_AND_COMMENT = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'|#.*')

    def __init__(self, text: str):
        self.keys: dict[tuple[str, int], dict[str, int]] = {}
        self.tables: dict[tuple[str, int], int] = {("", 0): 1}
        counts: dict[str, int] = {}
        table, quote, depth = ("", 0), None, 0
        for number, line in enumerate(text.splitlines(), start=1):
            if quote:  # inside a multi-line string: only its closing quotes matter
                if line.count(quote) % 2:
                    quote = None
                continue
            header = self._HEADER.match(line) if depth == 0 else None
            key = self._KEY.match(line) if depth == 0 else None
            if header and not key:
                name = (header.group("array") or header.group("table")).strip().strip("\"'")
                index = counts.get(name, 0)
                counts[name] = index + 1 if header.group("array") else 0
                table = (name, index)
                self.tables.setdefault(table, number)
                continue
            if key:
                self.keys.setdefault(table, {}).setdefault(key.group("key").strip("\"'"), number)
            quote = next((q for q in ('"""', "'''") if line.count(q) % 2), None)
            if not quote:  # brackets left open continue the value on the next lines
                bare = self._STRINGS_AND_COMMENT.sub("", line)
                depth = max(0, depth + bare.count("[") + bare.count("{") - bare.count("]") - bare.count("}"))

    def line(self, table: tuple[str, int], key: str = "") -> int:
        found = self.keys.get(table, {}).get(key) if key else None
        if found is None and table[0] == GRID_KEY and table not in self.tables:  # grid = [{...}, ...] inline
            return self.keys.get(("", 0), {}).get(GRID_KEY, 1)
        return found or self.tables.get(table, 1)
