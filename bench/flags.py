"""The case dimensions as command-line flags (``--width 256,1024``), shared by ``run`` and ``profile``.

Strings become typed comma lists here, once; a malformed list is a one-line
``UsageError``. No torch import: building the parser stays fast.
"""

from __future__ import annotations

import argparse
import math

from .case_fields import FIELD_CHOICES, FIELD_DEFAULTS, FIELD_TYPES, FLAG_FIELDS
from .errors import UsageError

# flag -> (Case field, parser of one item), derived from the case's fields (bench.case_fields)
CASE_FLAGS = {name.replace("_", "-"): (name, FIELD_TYPES[name]) for name in FLAG_FIELDS}
# Flags whose 0 would silently mean "the default" (in/out features = the width): a user who types 0 made a mistake.
POSITIVE_FLAGS = ("in-features", "out-features")
NO_LIMIT_WORDS = ("inf", "none", "off")  # spellings of "no time budget"
# What each case flag means, for --help (a field without an entry still gets its valid values and default).
FIELD_HELP = {
    "network": "the net", "width": "hidden width (uniform)", "depth": "hidden layers (uniform)",
    "in_features": "inputs (uniform; default: the width)", "out_features": "outputs (uniform; default: the width)",
    "batch": "batch size", "activation": "hidden activation", "device": "device (default: every available one)",
    "dtype": "precision", "compile": "torch.compile mode", "optimizer": "optimiser", "loss": "loss",
    "threads": "torch threads (0: torch's default)",
}


def comma_list(text: str, item_type: type, name: str) -> tuple:
    items = [t.strip() for t in text.split(",")]
    if not items or any(not t for t in items):
        raise UsageError(f"--{name}: malformed list {text!r} (expected comma-separated values, e.g. 64,128)")
    if item_type is int:
        try:
            return tuple(int(t) for t in items)
        except ValueError:
            bad = next(t for t in items if not t.lstrip("-").isdigit())
            raise UsageError(f"--{name}: {bad!r} is not an integer (in {text!r})") from None
    return tuple(items)


def seconds_budget(text: str, name: str) -> float | None:
    """A positive number of seconds, or ``inf`` (also ``none``, ``off``) for no limit."""
    if text.strip().lower() in NO_LIMIT_WORDS:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if math.isinf(value) and value > 0:
        return None
    if not value > 0:  # also NaN and 'abc'
        raise UsageError(f"--{name}: {text!r} is not a positive number of seconds (use 'inf' for no limit)")
    return value


def add_case_arguments(parser: argparse.ArgumentParser) -> None:
    """The per-dimension flags shared by `run` and `profile` (comma lists), each with its valid values."""
    group = parser.add_argument_group("case dimensions (comma-separated lists override the preset)")
    for flag, (field, _) in CASE_FLAGS.items():
        group.add_argument(f"--{flag}", metavar="LIST", help=case_flag_help(field))


def case_flag_help(field: str) -> str:
    """``hidden activation: identity, relu, ... (default relu)``: the valid values from the closed choices
    (``case_fields.FIELD_CHOICES``, no torch), else the type. ``%`` is doubled for argparse."""
    what = FIELD_HELP.get(field, field.replace("_", " "))
    kind = FIELD_TYPES[field]
    values = ", ".join(FIELD_CHOICES[field]) if field in FIELD_CHOICES else (
        "integers" if kind is int else "numbers" if kind is float else "text")
    default = "" if "default" in what else f" (default {FIELD_DEFAULTS[field]})"  # unless the text says it
    return f"{what}: {values}{default}".replace("%", "%%")


def case_overrides(args: argparse.Namespace) -> dict[str, tuple]:
    out = {}
    for flag, (field, item_type) in CASE_FLAGS.items():
        value = getattr(args, flag.replace("-", "_"), None)
        if value is not None:
            out[field] = comma_list(value, item_type, flag)
            if flag in POSITIVE_FLAGS and min(out[field]) < 1:
                raise UsageError(f"--{flag} must be >= 1, got {min(out[field])} (leave it out for the width)")
    return out
