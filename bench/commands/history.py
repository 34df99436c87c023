"""``mlpbench history``: keep a run per commit in a database and find where performance changed.

    mlpbench history add RUN [RUN ...] [--commit SHA] [--db PATH|URL]
    mlpbench history check [--last N] [--metric M,...] [--markdown FILE] [--db PATH|URL]
    mlpbench history plot [--out DIR] [--last N] [--db PATH|URL]
    mlpbench history evaluate [--series N] [--seed S] [--last N] [--penalty P]
    mlpbench history publish --out DIR [--last N] [--run-url TEMPLATE] [--db PATH|URL]

Exit codes: 0 fine, 1 ``check`` found a change in the last N commits, 2 bad input (one line).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from ..errors import UsageError

EXIT_OK, EXIT_CHANGE = 0, 1
DEFAULT_LAST = 10
DEFAULT_PLOT_DIR = Path("results/history")
DB_HELP = ("history database: a SQLite file path or a URL such as postgresql://user@host/db "
           "(default: $MLPBENCH_HISTORY_DB, else results/history.sqlite)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="history_command", metavar="VERB")
    add = verbs.add_parser("add", help="append runs (folders, or a gate --json with instruction counts)")
    add.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    add.add_argument("--commit", help="the commit the run measured (default: the run's recorded git commit)")
    add.add_argument("--db", help=DB_HELP)
    check = verbs.add_parser("check", help="change points per series; exit 1 on a change in the last N commits")
    check.add_argument("--last", default=str(DEFAULT_LAST), help=f"commits that count as recent (default {DEFAULT_LAST})")
    check.add_argument("--metric", help="comma list of metrics to check (default: all; e.g. median_s)")
    check.add_argument("--penalty", help="change-point penalty per log(n), in noise units (default: detect's)")
    check.add_argument("--markdown", type=Path, metavar="FILE", help="also append the summary here "
                       "(e.g. $GITHUB_STEP_SUMMARY)")
    check.add_argument("--db", help=DB_HELP)
    plot = verbs.add_parser("plot", help="trend plots per case with CI bands and change points, and summary.md")
    plot.add_argument("--out", type=Path, default=DEFAULT_PLOT_DIR, help=f"folder (default {DEFAULT_PLOT_DIR})")
    plot.add_argument("--last", default=str(DEFAULT_LAST), help=f"commits that count as recent (default {DEFAULT_LAST})")
    plot.add_argument("--db", help=DB_HELP)
    pub = verbs.add_parser("publish", help="a static web site: an index of every series, one page per series")
    pub.add_argument("--out", type=Path, required=True, help="the site's folder (only changed pages are rewritten)")
    pub.add_argument("--last", default=str(DEFAULT_LAST), help=f"commits that count as recent (default {DEFAULT_LAST})")
    pub.add_argument("--run-url", help="where a commit's point links: a template with {commit} and {run_path} "
                     "(default: the run folder the history recorded, as a file:// link)")
    pub.add_argument("--db", help=DB_HELP)
    ev = verbs.add_parser("evaluate", help="detection rate, delay and false alarms on simulated series")
    ev.add_argument("--series", default="100", help="series per scenario (default 100)")
    ev.add_argument("--seed", default="0", help="random seed (default 0)")
    ev.add_argument("--last", default=str(DEFAULT_LAST), help=f"--last of the simulated checks (default {DEFAULT_LAST})")
    ev.add_argument("--penalty", help="change-point penalty per log(n) (default: detect's)")


def command(args: argparse.Namespace) -> int:
    verb = args.history_command
    if verb is None:
        raise UsageError("history needs a verb: add, check, plot, publish or evaluate")
    return {"add": _add, "check": _check, "plot": _plot, "publish": _publish, "evaluate": _evaluate}[verb](args)


def _positive_int(text: str, flag: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UsageError(f"{flag} {text!r}: expected a whole number >= 1")
    return value


def _penalty(text: str | None) -> float:
    from ..history.detect import PENALTY_PER_LOG_N

    if text is None:
        return PENALTY_PER_LOG_N
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise UsageError(f"--penalty {text!r}: expected a positive number")
    return value


def _add(args: argparse.Namespace) -> int:
    from ..history.ingest import read_run
    from ..history.store import HistoryDB, shown_url

    runs = [read_run(path, args.commit) for path in args.runs]  # all read before anything is written
    with HistoryDB(args.db, create=True) as db:
        for run in runs:
            run_id = db.add(run)
            series = len({(p.machine.machine_id, p.case_id, p.phase, p.metric) for p in run.points})
            print(f"mlpbench history: added {run.run_path} as run {run_id} (commit {run.commit[:12]}, "
                  f"{len(run.points)} points in {series} series) to {shown_url(db.url)}")
    return EXIT_OK


def _checks(args: argparse.Namespace, metrics: set[str] | None = None, penalty: float | None = None):
    from ..history.detect import check_series
    from ..history.store import HistoryDB, shown_url

    last = _positive_int(args.last, "--last")
    with HistoryDB(args.db, create=False) as db:
        series, source = db.series(), shown_url(db.url)
    if metrics is not None:
        known = {s.key.metric for s in series}
        if not metrics <= known:
            raise UsageError(f"--metric: no series of {', '.join(sorted(metrics - known))} "
                             f"(the history holds {', '.join(sorted(known)) or 'nothing'})")
        series = [s for s in series if s.key.metric in metrics]
    kwargs = {} if penalty is None else {"penalty_per_log_n": penalty}
    return [check_series(s, last, **kwargs) for s in series], last, source


def _check(args: argparse.Namespace) -> int:
    from ..history.render import markdown_summary

    metrics = {m.strip() for m in args.metric.split(",") if m.strip()} if args.metric else None
    if args.markdown:
        from ..runs.outputs import output_file

        output_file(args.markdown, "--markdown")  # never a run's file, nor the history itself
    checks, last, source = _checks(args, metrics, _penalty(args.penalty))
    text = markdown_summary(checks, last, source)
    print(text)
    if args.markdown:
        try:
            with open(args.markdown, "a") as f:
                f.write(text)
        except OSError as exc:
            raise UsageError(f"cannot write {args.markdown}: {exc.strerror or exc}") from None
    return EXIT_CHANGE if any(c.flagged for c in checks) else EXIT_OK


def _plot(args: argparse.Namespace) -> int:
    from ..history.render import markdown_summary, plot_cases, plots_markdown

    from ..runs.outputs import output_folder

    output_folder(args.out, "--out")
    checks, last, source = _checks(args)
    try:
        paths = plot_cases(checks, args.out)
        summary = markdown_summary(checks, last, source) + "\n## Trends\n\n" + plots_markdown(paths, args.out)
        (args.out / "summary.md").write_text(summary)
    except OSError as exc:
        raise UsageError(f"cannot write to {args.out}: {exc.strerror or exc}") from None
    print(f"mlpbench history: {len(paths)} plots and summary.md in {args.out}")
    return EXIT_OK


def _publish(args: argparse.Namespace) -> int:
    from ..report.webpage import plotly_missing

    reason = plotly_missing()
    if reason:
        raise UsageError(f"history publish needs plotly: {reason}")
    from ..history.publish import publish

    result = publish(args.db, args.out, _positive_int(args.last, "--last"), args.run_url)
    print(f"mlpbench history: {result.pages} pages in {result.out_dir} ({result.written} written, "
          f"{result.pages + 1 - result.written} unchanged, {result.removed} removed) in {result.seconds:.1f} s; "
          f"open {result.out_dir / 'index.html'}")
    return EXIT_OK


def _evaluate(args: argparse.Namespace) -> int:
    import warnings

    from ..history import evaluate

    series = _positive_int(args.series, "--series")
    last = _positive_int(args.last, "--last")
    try:
        seed = int(args.seed)
    except ValueError:
        raise UsageError(f"--seed {args.seed!r}: expected a whole number") from None
    penalty = _penalty(args.penalty)
    outcomes = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's bootstrap on a constant segment: handled
        for scenario in evaluate.SCENARIOS:
            outcomes.append(evaluate.run_scenario(scenario, series, last, seed, penalty))
            print(f"mlpbench history: {scenario.name} done", file=sys.stderr)
    print(evaluate.render(outcomes, last, penalty))
    return EXIT_OK
