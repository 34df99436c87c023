"""``mlpbench show``: print a run's summary as a table."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, nargs="?", help="run folder (default: the latest under results/runs)")
    p.add_argument("--all-phases", action="store_true", help="one row per phase, not only the whole step")


def command(args) -> int:
    from ..report.markdown import format_summary
    from ..runs import RunKind, latest_run, load_run

    try:
        run = load_run(args.run or latest_run())
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if run.kind is RunKind.DDP:  # per-rank rows: the scaling table says what they mean
        from ..report.scaling import format_scaling

        print(format_scaling(run.summary, run.samples))
        return 0
    if run.kind is RunKind.LOADER:  # input-pipeline rows: the loader table says what they mean
        from ..report.loader import format_loader

        print(format_loader(run.summary))
        return 0
    print(format_summary(run.summary, all_phases=args.all_phases))
    return 0
