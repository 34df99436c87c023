"""What ``mlpbench run --resume RUN`` continues: the run's own cases and its own timing configuration.

A resumed run measures the cases its meta.json planned with the timing configuration it recorded
(``repeats``, ``min_time_s``, ``warmup_s``, ``max_case_s``, the block sizes), not the preset's
defaults: a run started with ``--max-case-s inf --repeats 200`` and killed mid-case goes on with
them, so the case that killed it is measured again (and after a second death recorded as
``crashed``) instead of being skipped under a 60 s budget it never had. A timing flag given
with ``--resume`` overrides the recorded value; the one line ``note`` says which values hold.
Case flags, ``--preset`` and another ``--out`` cannot change a run that is resumed: refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

from ..case.cases import CUSTOM_MAX_CASE_S, PRESETS, Case
from ..errors import UsageError, first_line
from ..runs import META_JSON, DamagedRun, load_run
from ..instruments.timing import TimingConfig

SHOWN = ("repeats", "min_time_s", "warmup_s", "max_case_s")  # the values the note names (the flags' own)


@dataclass(frozen=True)
class Resumed:
    cases: list
    config: TimingConfig
    preset: str
    skip_slow_dtypes: bool
    note: str  # one line for the user: the configuration kept and what the flags changed


def refuse_new_plan(resume: Path, case_flags: dict, preset: str | None, out: Path | None) -> None:
    """A resumed run keeps its own cases and folder: a flag that would change them is bad input."""
    given = [f"--{name.replace('_', '-')}" for name in case_flags] + (["--preset"] if preset else [])
    if given:
        raise UsageError(f"--resume {resume} measures the run's own cases; {', '.join(given)} cannot change them "
                         "(start a new run with --out for other cases)")
    if out is not None and Path(out).resolve() != Path(resume).resolve():
        raise UsageError(f"--resume {resume} writes into that run folder; leave out --out {out}")


def resume_plan(path: Path, overrides: dict) -> Resumed:
    """The run at ``path`` to continue; ``overrides`` holds the timing flags given (``max_case_s`` None: inf)."""
    try:
        run = load_run(path)
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    meta_path = Path(path) / META_JSON
    cases = []
    for i, row in enumerate(run.meta.cases):
        try:
            cases.append(Case.from_row(row))
        except (TypeError, ValueError, KeyError, UsageError) as exc:
            raise DamagedRun(f"{meta_path}: cases[{i}]: {first_line(exc) or type(exc).__name__}") from None
    if not cases:
        raise UsageError(f"{path}: meta.json lists no cases to resume")
    known = {f.name for f in fields(TimingConfig)}
    recorded = {k: v for k, v in run.meta.timing_config.items() if k in known}
    if not recorded:  # a run from before the configuration was recorded: the preset's budget, as before
        preset = PRESETS.get(run.meta.preset)
        recorded = {"max_case_s": preset.max_case_s if preset else CUSTOM_MAX_CASE_S}
    try:
        config = TimingConfig(**{**recorded, **overrides})
    except (TypeError, ValueError) as exc:
        raise DamagedRun(f"{meta_path}: timing_config: {first_line(exc)}") from None
    return Resumed(cases, config, run.meta.preset, run.meta.skip_slow_dtypes, _note(path, config, overrides))


def _note(path: Path, config: TimingConfig, overrides: dict) -> str:
    def shown(name: str) -> str:
        value = getattr(config, name)
        value = math.inf if name == "max_case_s" and value is None else value
        return f"--{name.replace('_', '-')} {value:g}"

    kept = [shown(n) for n in SHOWN if n not in overrides]
    changed = [shown(n) for n in SHOWN if n in overrides]
    return (f"mlpbench: resuming {path} with its own timing: {', '.join(kept) or 'none kept'}"
            + (f"; changed by flags: {', '.join(changed)}" if changed else ""))
