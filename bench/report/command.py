"""`mlpbench report RUN...`: report.md and plots for one-process runs, or the scaling report for ddp runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run folder(s); 'latest' = the newest under results/runs")
    parser.add_argument("--out", type=Path, help="output folder (default: the run folder; required for several runs)")


def command(args: argparse.Namespace) -> int:
    # imported here: pandas and scipy take seconds, and `mlpbench report --help` needs neither
    from .loader import is_loader_run, write_loader_report
    from .markdown import PLOTS_DIR, write_report
    from .scaling import is_ddp_run, write_scaling_report
    from .tables import load_runs

    runs = load_runs(args.runs)
    if len(runs) > 1 and args.out is None:
        raise UsageError("several runs are merged into one report: give --out DIR for it")
    out_dir = args.out or Path(runs[0].path)
    # data-parallel runs (per-rank rows) get the scaling figure and table
    write = write_scaling_report if any(is_ddp_run(run) for run in runs) else write_report
    if any(is_loader_run(run) for run in runs):  # input-pipeline runs: the loader figure and table
        write = write_loader_report
    report = write(runs, out_dir)
    drawn = [f for f in report.figures if f.path is not None]
    print(f"mlpbench: report {report.path} ({len(drawn)} figures in {report.path.parent / PLOTS_DIR}"
          + "".join(f"; {f.name} omitted: {f.reason}" for f in report.figures if f.path is None) + ")")
    return 0
