"""Options as text: ``hidden=4096,expansion=4`` (``--model-args``, ``--optimizer-args``), parsed once (no torch).

A case stores its options as one canonical string (keys sorted, values normalised), so that equal
options give equal cases and equal case ids however they were typed. The grammar:

* ``key=value`` pairs separated by commas: ``lr=3e-4,weight_decay=0.1``;
* a comma-separated item without ``=`` continues the list of the key before it, and a list sweeps
  that key like every other flag: ``hidden=1024,2048,expansion=4`` is two cases (hidden 1024 and 2048);
* a tuple is written with colons: ``betas=0.9:0.95``;
* a value is an int (``4``), a float (``3e-4``, ``0.1``), a bool (``true``/``false``) or else a string.

Keys are Python identifiers; a value holds no ``=``, ``,`` or whitespace.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping

KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
TUPLE_SEPARATOR = ":"
Value = int | float | bool | str | tuple


def parse_value(text: str) -> Value:
    """``"4"`` -> 4, ``"3e-4"`` -> 0.0003, ``"true"`` -> True, ``"0.9:0.95"`` -> (0.9, 0.95), else the text."""
    if TUPLE_SEPARATOR in text:
        return tuple(parse_value(part) for part in text.split(TUPLE_SEPARATOR))
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def format_value(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return TUPLE_SEPARATOR.join(format_value(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return str(value)


def canonical(options: Mapping[str, Value]) -> str:
    """The one spelling of ``options``: keys sorted, values normalised (``lr=0.0003,weight_decay=0.1``)."""
    for key in options:
        _check_key(key, str(options))
    return ",".join(f"{key}={format_value(_normal(options[key]))}" for key in sorted(options))


def parse(text: str, what: str = "options") -> dict[str, Value]:
    """One set of options (no lists): ``"expansion=4,hidden=1024"`` -> ``{"expansion": 4, "hidden": 1024}``."""
    grid = parse_grid(text, what)
    many = [key for key, values in grid.items() if len(values) > 1]
    if many:
        raise ValueError(f"{what}: {many[0]!r} has several values in {text!r}; one case takes one value")
    return {key: values[0] for key, values in grid.items()}


def parse_grid(text: str, what: str = "options") -> dict[str, tuple[Value, ...]]:
    """``"hidden=1024,2048,expansion=4"`` -> ``{"hidden": (1024, 2048), "expansion": (4,)}``; "" -> {}."""
    text = (text or "").strip()
    if not text:
        return {}
    grid: dict[str, list[Value]] = {}
    key = None
    for item in (t.strip() for t in text.split(",")):
        if not item:
            raise ValueError(f"{what}: empty item in {text!r} (expected key=value[,value...],key=value)")
        if "=" in item:
            key, _, value = item.partition("=")
            key = key.strip()
            _check_key(key, text, what)
            if key in grid:
                raise ValueError(f"{what}: {key!r} is given twice in {text!r}")
            grid[key] = []
            item = value.strip()
        elif key is None:
            raise ValueError(f"{what}: {item!r} has no key in {text!r} (expected key=value, e.g. hidden=4096)")
        if not item or "=" in item or any(c.isspace() for c in item):
            raise ValueError(f"{what}: bad value {item!r} for {key!r} in {text!r}")
        grid[key].append(parse_value(item))
    return {k: tuple(v) for k, v in grid.items()}


def expand(text: str, what: str = "options") -> tuple[str, ...]:
    """Every case of a grid, each as its canonical string (``""`` -> ``("",)``): the values of one flag."""
    grid = parse_grid(text, what)
    keys = list(grid)
    return tuple(dict.fromkeys(canonical(dict(zip(keys, values)))
                               for values in itertools.product(*(grid[k] for k in keys))))


def normalise(text: str, what: str = "options") -> str:
    """The canonical spelling of one set of options given as text (what a case stores)."""
    return canonical(parse(text, what))


def _normal(value: Value) -> Value:
    return parse_value(format_value(value)) if not isinstance(value, str) else parse_value(value)


def _check_key(key: str, text: str, what: str = "options") -> None:
    if not KEY.match(key):
        raise ValueError(f"{what}: bad key {key!r} in {text!r} (a Python identifier, e.g. hidden)")


def expand_mapping(grid: Mapping[str, object] | str | None, what: str = "options") -> tuple[str, ...]:
    """``expand`` for Python values: ``{"hidden": [1024, 2048], "expansion": 4}`` -> two canonical strings.

    A list sweeps its key; a tuple is one value (``betas=(0.9, 0.95)``); a string is parsed as text.
    """
    if grid is None or isinstance(grid, str):
        return expand(grid or "", what)
    keys = list(grid)
    lists = [v if isinstance(v, list) else [v] for v in grid.values()]
    return tuple(dict.fromkeys(canonical(dict(zip(keys, values))) for values in itertools.product(*lists)))
