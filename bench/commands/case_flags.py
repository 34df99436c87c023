"""The case dimensions as command-line flags (``--width 256,1024``), shared by ``run`` and ``profile``.

Strings become typed comma lists here, once; a malformed list is a one-line
``UsageError``. No torch import: building the parser stays fast.
"""

from __future__ import annotations

import argparse
import math

from ..model import keyvalues
from ..model.case_fields import FIELD_CHOICES, FIELD_DEFAULTS, FIELD_TYPES, FLAG_FIELDS
from ..errors import UsageError

# flag -> (Case field, parser of one item), derived from the case's fields (bench.model.case_fields)
CASE_FLAGS = {name.replace("_", "-"): (name, FIELD_TYPES[name]) for name in FLAG_FIELDS}
# Flags whose 0 would silently mean "the default" (in/out features = the width): a user who types 0 made a mistake.
POSITIVE_FLAGS = ("in-features", "out-features")
NO_LIMIT_WORDS = ("inf", "none", "off")  # spellings of "no time budget"
# Flags that take key=value options (bench.model.keyvalues): a comma continues the key before it, so
# `--model-args hidden=1024,2048,expansion=4` is two cases; each case stores one canonical set.
OPTION_FLAGS = ("model-args", "optimizer-args")
# Flags whose value is one item, commas and all: --input-shape 1,28,28 is one shape (the case stores 1x28x28)
WHOLE_FLAGS = ("sample-shape",)
FLAG_ALIASES = {"sample-shape": ("--input-shape",)}  # the flag's other spellings (the first is shown in --help)
# What each case flag means, for --help (a field without an entry still gets its valid values and default).
FIELD_HELP = {
    "network": "the net", "width": "hidden width (uniform)", "depth": "hidden layers (uniform)",
    "in_features": "inputs (uniform; default: the width)", "out_features": "outputs (uniform; default: the width)",
    "batch": "batch size", "activation": "hidden activation", "device": "device (default: every available one)",
    "dtype": "precision: the compute dtype (a user's model keeps fp32 parameters; bf16 and fp16 are autocast)",
    "compile": "torch.compile mode", "optimizer": "optimiser",
    "loss": "loss, or a function of yours fn(output, target), MODULE:FN (default mse)",
    "sample_shape": "a user's model: one example's input shape, e.g. 1,28,28 (in_features is its flat size; "
                    "default: (in_features,))",
    "inputs": "a user's model: MODULE:FN, fn(batch, device, dtype) makes its input, a tensor, tuple or dict "
              "(default: none)",
    "output": "a user's model: what the loss takes from a tuple or dict output, an index (0) or a key (logits) "
              "(default: the output)",
    "threads": "torch threads (0: torch's default)",
    "model": "a user's model factory, MODULE:FACTORY or PATH.py:FACTORY (docs/your-model.md; default: none)",
    "model_args": "the factory's options, key=value[,value...][,key=value]; a value list sweeps it (default: none)",
    "optimizer_args": "torch.optim settings, e.g. lr=3e-4,weight_decay=0.1,betas=0.9:0.95; a value list sweeps "
                      "(default: none)",
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
        group.add_argument(*FLAG_ALIASES.get(flag, ()), f"--{flag}", dest=field,
                           metavar="OPTIONS" if flag in OPTION_FLAGS else "SHAPE" if flag in WHOLE_FLAGS else "LIST",
                           help=case_flag_help(field))


def case_flag_help(field: str) -> str:
    """``hidden activation: identity, relu, ... (default relu)``: the valid values from the closed choices
    (``case_fields.FIELD_CHOICES``, no torch), else the type. ``%`` is doubled for argparse."""
    what = FIELD_HELP.get(field, field.replace("_", " "))
    kind = FIELD_TYPES[field]
    values = ", ".join(FIELD_CHOICES[field]) if field in FIELD_CHOICES else (
        "integers" if kind is int else "numbers" if kind is float else "text")
    default = "" if "default" in what else f" (default {FIELD_DEFAULTS[field]})"  # unless the text says it
    return f"{what}: {values}{default}".replace("%", "%%")


USER_MODEL_COMMANDS = "`mlpbench run` and bench.measure()"  # where --model is measured today


def case_overrides(args: argparse.Namespace, *, user_model: bool = True) -> dict[str, tuple]:
    """The case flags as typed comma lists; ``user_model=False``: a command that takes only the built-in nets
    refuses ``--model`` and its options in one line."""
    out = _overrides(args)
    given = [f for f in ("model", "model_args", "optimizer_args") if f in out]
    if given and not user_model:
        raise UsageError(f"--{given[0].replace('_', '-')}: measured by {USER_MODEL_COMMANDS}; "
                         "this command takes the built-in networks")
    return out


def _overrides(args: argparse.Namespace) -> dict[str, tuple]:
    out = {}
    for flag, (field, item_type) in CASE_FLAGS.items():
        value = getattr(args, flag.replace("-", "_"), None)
        if value is not None and flag in OPTION_FLAGS:
            try:
                out[field] = keyvalues.expand(value, f"--{flag}")
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        elif value is not None and flag in WHOLE_FLAGS:
            out[field] = (value,)
        elif value is not None:
            out[field] = comma_list(value, item_type, flag)
            if flag in POSITIVE_FLAGS and min(out[field]) < 1:
                raise UsageError(f"--{flag} must be >= 1, got {min(out[field])} (leave it out for the width)")
    return out
