"""`mlpbench report RUN...`: report.md and plots for one-process runs, or the scaling report for ddp runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="run folder(s); 'latest' = the newest under results/runs")
    parser.add_argument("--out", type=Path, help="output folder (default: the run folder; required for several runs)")
    parser.add_argument("--html", action="store_true",
                        help="also write report.html: interactive figures, a sortable and filterable case table "
                             "(needs plotly, the html extra; skipped with a reason without it)")


def command(args: argparse.Namespace) -> int:
    # imported here: pandas and scipy take seconds, and `mlpbench report --help` needs neither
    from ..report.loader import is_loader_run, write_loader_report
    from ..report.markdown import PLOTS_DIR, write_report
    from ..report.scaling import is_ddp_run, write_scaling_report
    from ..runs import output_folder
    from ..report.tables import load_runs

    runs = load_runs(args.runs)
    paths = [Path(run.path).resolve() for run in runs]
    twice = next((run.path for run, path in zip(runs, paths) if paths.count(path) > 1), None)
    if twice is not None:
        raise UsageError(f"{twice} is given twice; a report merges different runs")
    if len(runs) > 1 and args.out is None:
        raise UsageError("several runs are merged into one report: give --out DIR for it")
    out_dir = output_folder(args.out or Path(runs[0].path), "--out")
    # data-parallel runs (per-rank rows) get the scaling figure and table
    write = write_scaling_report if any(is_ddp_run(run) for run in runs) else write_report
    if any(is_loader_run(run) for run in runs):  # input-pipeline runs: the loader figure and table
        write = write_loader_report
    report = write(runs, out_dir)
    drawn = [f for f in report.figures if f.path is not None]
    print(f"mlpbench: report {report.path} ({len(drawn)} figures in {report.path.parent / PLOTS_DIR}"
          + "".join(f"; {f.name} omitted: {f.reason}" for f in report.figures if f.path is None) + ")")
    if args.html:
        print(_write_html(runs, out_dir, write is write_report))
    return 0


def _write_html(runs, out_dir: Path, one_process: bool) -> str:
    """One line: where report.html went, or why it was not written (the report.md above stands either way)."""
    from ..report.webpage import plotly_missing

    if not one_process:
        return "mlpbench: report.html skipped: it covers one-process runs (not ddp or loader runs) for now"
    reason = plotly_missing()
    if reason:
        return f"mlpbench: report.html skipped: {reason}"
    from ..report.html import write_html_report

    page = write_html_report(runs, out_dir)
    drawn = [f for f in page.figures if f.figure is not None]
    return (f"mlpbench: report {page.path} ({page.path.stat().st_size / 1e6:.1f} MB, {len(drawn)} interactive "
            f"figures, opens from file:// with no network)")
