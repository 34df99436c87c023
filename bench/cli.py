"""Command-line entry point ``mlpbench`` (also ``python -m bench``).

Strings are parsed here, once. Bad input is a one-line error and exit code 2,
never a traceback; nothing is written before the input is known to be good.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from .errors import EXIT_INTERRUPTED, EXIT_USAGE, UsageError, sigterm_as_interrupt
from .flags import add_case_arguments, case_overrides, seconds_budget

DEFAULT_PRESET = "quick"
CUSTOM_PRESET = "custom"  # a sweep defined by the case flags alone

# Sub-commands implemented in their own modules: each has add_arguments(parser) and command(args) -> int.
EXTERNAL_COMMANDS = {
    "report": ("bench.report.command", "write report.md and plots for one or more runs"),
    "compare": ("bench.confirm", "per-case ratios and verdicts between two runs (--confirm re-measures)"),
    "check": ("bench.gate.command", "performance regression gate (exact counters + noise-aware timing)"),
    "bisect": ("bench.gate.bisect", "the first commit at which the gate fails, by halving GOOD..BAD"),
    "profile": ("bench.profile.command", "profile one case: trace, top operators, FLOPs by module, memory"),
    "crosscheck": ("bench.crosscheck", "engine vs torch.utils.benchmark on three classic cases"),
    "ddp": ("bench.ddp.command", "data-parallel scaling with torchrun + DistributedDataParallel"),
    "loader": ("bench.loader.command", "the classic FashionMNIST loop end to end: DataLoader, copy, step"),
    "gpu-reference": ("bench.gpuref.command", "the GPU kit: every CUDA check and measurement, stage by stage, bounded"),
    "history": ("bench.history.command", "performance over commits: a history database and its change points"),
    "tune": ("bench.tune", "the fastest-step knobs on one case: the fastest, a waterfall, the command to reproduce it"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage dump
        raise UsageError(message)


def resolve_cases(sweep, overrides: dict[str, tuple]):
    """The cases of ``sweep`` (a ``bench.cases.Sweep``) with CLI overrides; `device` defaults to every
    available device where the sweep says so (``all_devices``)."""
    from .cases import available_devices

    if "device" not in overrides and sweep.all_devices:
        overrides = {**overrides, "device": available_devices()}
    return sweep.cases(overrides)


def _sweep_of(args, overrides: dict[str, tuple]):
    """A sweep file, a preset, or else the case flags' own grid over the Case defaults (``--width 256,512``
    is two cases); no flags at all mean the ``quick`` preset."""
    from .cases import Sweep, preset, sweep_from_file

    if args.sweep is not None and args.preset is not None:
        raise UsageError(f"give a sweep file or --preset, not both (got {args.sweep} and --preset {args.preset})")
    if args.sweep is not None:
        return sweep_from_file(args.sweep)
    if args.preset is not None:
        return preset(args.preset)
    return Sweep(CUSTOM_PRESET, ({},)) if overrides else preset(DEFAULT_PRESET)


# --------------------------------------------------------------------------- run / show

# TimingConfig fields a flag, a sweep file or a resumed run sets
BUDGET_FLAGS = ("repeats", "min_time_s", "warmup_s", "processes")


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    from .sweep_file import preset_names

    p.add_argument("sweep", nargs="?", type=Path, metavar="SWEEP_FILE",
                   help="a sweep declared in TOML (docs/your-model.md, 'Sweep files'); the case flags then "
                        "override its grids and the budget flags its budgets")
    p.add_argument("--preset", metavar="NAME",
                   help=f"a shipped sweep: {', '.join(preset_names())} (--list-presets says what each is); the "
                        f"case flags then override its grids (default: {DEFAULT_PRESET}, or only the case flags' "
                        f"own grid when any is given)")
    add_case_arguments(p)
    p.add_argument("--out", type=Path, help="run folder (default: results/runs/<run-id>/)")
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue a run folder: measure only missing cases")
    p.add_argument("--dry-run", action="store_true", help="print the cases, measure nothing")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--repeats", type=int, help="samples per phase (default 12)")
    p.add_argument("--min-time-s", type=float, help="measure each case for at least this long")
    p.add_argument("--warmup-s", type=float, help="warm-up budget per case (default 0.25)")
    p.add_argument("--processes", type=int, metavar="K",
                   help="measure each compiled case in K processes, pyperf's method (bench.process_samples): "
                        "each process compiles its own graph, and the spread between them lands in the run and "
                        "compare's noise (default: the sweep's processes, quick and full 3; else 1)")
    p.add_argument("--clock", choices=("wall", "cpu"),
                   help="what a timed block's seconds are: wall (default) or cpu, a CPU case's CPU time (the "
                        "measuring thread's on one torch thread, the process's on more; steadier on a shared "
                        "machine, and OpenMP spin-waits count as work: docs/design.md, 'Clocks'); samples.csv "
                        "keeps both")
    p.add_argument("--max-case-s", metavar="SECONDS",
                   help="skip a case whose measuring time, predicted after its first step, exceeds this "
                        "(default: the sweep's max_case_s, e.g. quick 30, smoke 10, full 120; flags alone 60; "
                        "'inf' for no limit)")
    p.add_argument("--max-run-s", metavar="SECONDS",
                   help="run budget: start a case only while the time left covers its prediction; the rest "
                        "become skipped rows ('run budget'). Default: the sweep's max_run_s, else no limit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-show", action="store_true", help="do not print the summary table at the end")


def _cmd_run(args) -> int:
    from .cases import CUSTOM_MAX_CASE_S, PRESETS
    from .env import busy_warning
    from .runner import run_sweep
    from .runs import Status, claim_run_dir, load_run, new_run_dir
    from .timing import TimingConfig

    if args.list_presets:
        for name, sweep in PRESETS.items():
            print(f"{name:14s} {len(sweep.cases()):4d} cases/device  {sweep.description}")
        return 0
    flags = {k: getattr(args, k) for k in BUDGET_FLAGS if getattr(args, k) is not None}
    max_case_s = seconds_budget(args.max_case_s, "max-case-s") if args.max_case_s is not None else None
    max_run_s = seconds_budget(args.max_run_s, "max-run-s") if args.max_run_s is not None else None
    if args.clock is not None:
        flags["clock"] = args.clock
    try:
        TimingConfig(**flags)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    meta_extra = {}
    if args.resume and args.sweep is not None:
        raise UsageError(f"--resume continues the cases its folder lists: give no sweep file (got {args.sweep})")
    if args.resume:  # the run's own cases and timing configuration; the timing flags given override it
        from .resume import refuse_new_plan, resume_plan

        refuse_new_plan(args.resume, case_overrides(args), args.preset, args.out)
        given = {**flags, **({"max_case_s": max_case_s} if args.max_case_s is not None else {})}
        resumed = resume_plan(args.resume, {k: v for k, v in given.items() if k != "clock"})
        if args.clock is not None and args.clock != resumed.config.clock:
            raise UsageError(f"--resume {args.resume} was timed on the {resumed.config.clock} clock; its remaining "
                             f"cases cannot be timed on another (--clock {args.clock})")
        cases, config, preset_name = resumed.cases, resumed.config, resumed.preset
        out_dir, skip_slow_dtypes = Path(args.resume), resumed.skip_slow_dtypes
        print(resumed.note, file=sys.stderr)
    else:
        overrides = case_overrides(args)
        sweep = _sweep_of(args, overrides)
        cases = resolve_cases(sweep, overrides)
        preset_name = sweep.name
        out_dir = args.out or new_run_dir(preset=preset_name)
        # a preset skips the dtypes this device has no fast path for; dtypes the user named are measured
        skip_slow_dtypes = sweep.skip_slow_dtypes and "dtype" not in overrides
        budgets = {k: getattr(sweep, k) for k in BUDGET_FLAGS if getattr(sweep, k) is not None}
        if args.max_case_s is None:  # not given: the sweep's default
            max_case_s = sweep.max_case_s
        if args.max_run_s is None:
            max_run_s = sweep.max_run_s
        if args.sweep is not None:
            meta_extra["sweep_file"] = str(args.sweep)
        config = TimingConfig(**{**budgets, **flags}, max_case_s=max_case_s)
    if not cases:
        raise UsageError("the sweep has no cases")
    refuse_cpu_clock_on_gpu(config.clock, cases)
    if any(case.model for case in cases):  # a user's model: built and run once on a tiny batch, before anything
        from .plugin import check_all

        check_all(cases)
    if args.dry_run:
        from .headroom import memory_shortfall

        too_big = 0
        for case in cases:  # the memory check the run makes before it builds a case
            shortfall = memory_shortfall(case)
            too_big += bool(shortfall)
            print(f"{case.case_id}  {case.label}" + (f"  (would be skipped: {shortfall})" if shortfall else ""))
        print(f"{len(cases)} cases (dry run: nothing measured" + (f"; {too_big} over the memory available)"
                                                               if too_big else ")"))
        return 0
    claim_run_dir(out_dir, resume=bool(args.resume), otherwise=f"use --resume {out_dir} or another --out")
    print(f"mlpbench: {len(cases)} cases ({preset_name}) -> {out_dir}", file=sys.stderr)
    warning = busy_warning()
    if warning:
        print(f"mlpbench: warning: {warning}", file=sys.stderr)
    try:
        writer = run_sweep(cases, out_dir, config, preset=preset_name, resume=bool(args.resume),
                           progress=not args.no_progress, skip_slow_dtypes=skip_slow_dtypes, max_run_s=max_run_s,
                           meta_extra=meta_extra)
    except KeyboardInterrupt:
        print(f"\nmlpbench: interrupted; finished cases are saved in {out_dir} "
              f"(continue with: mlpbench run --resume {out_dir})", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not args.no_show:
        from .report.markdown import format_summary

        print(format_summary(load_run(out_dir).summary))
    statuses = [Status(r["status"]) for r in writer.summary if r["phase"] == "step"]
    failed = sum(1 for s in statuses if s.failed)
    skipped = statuses.count(Status.SKIPPED)
    print(f"mlpbench: run folder {out_dir} ({len(writer.done_ids)} cases, {skipped} skipped, {failed} failed)")
    return 0


def refuse_cpu_clock_on_gpu(clock: str, cases) -> None:
    """``--clock cpu`` times CPU work: a CUDA case in the sweep is a one-line refusal, before anything is measured."""
    gpu = next((c for c in cases if c.device != "cpu"), None)
    if clock == "cpu" and gpu is not None:
        raise UsageError(f"--clock cpu times CPU work, but {gpu.label} runs on {gpu.device} (timed with CUDA events); "
                         "measure it with --clock wall")


def add_show_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", type=Path, nargs="?", help="run folder (default: the latest under results/runs)")
    p.add_argument("--all-phases", action="store_true", help="one row per phase, not only the whole step")


def _cmd_show(args) -> int:
    from .report.markdown import format_summary
    from .runs import RunKind, latest_run, load_run

    try:
        run = load_run(args.run or latest_run())
    except FileNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if run.kind is RunKind.DDP:  # per-rank rows: the scaling table says what they mean
        from .report.scaling import format_scaling

        print(format_scaling(run.summary, run.samples))
        return 0
    if run.kind is RunKind.LOADER:  # input-pipeline rows: the loader table says what they mean
        from .report.loader import format_loader

        print(format_loader(run.summary))
        return 0
    print(format_summary(run.summary, all_phases=args.all_phases))
    return 0


# --------------------------------------------------------------------------- main


EVERY_COMMAND = "*"  # build_parser's default: every sub-command with its flags


def build_parser(command: str | None = EVERY_COMMAND) -> argparse.ArgumentParser:
    """The parser of every sub-command; only ``command``'s flags are added (every command's by default).

    A command's flags live in its own module, whose imports (torch, pandas, scipy) take seconds: ``mlpbench
    --help`` (``command=None``) imports none of them, and ``mlpbench report ...`` only the report's.
    """
    parser = _Parser(prog="mlpbench", description="Benchmark and profile MLP training steps (CPU and CUDA).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    wanted = lambda name: command in (name, EVERY_COMMAND)  # noqa: E731
    run = sub.add_parser("run", help="run a sweep: a sweep file, a preset, or the case flags' own grid")
    if wanted("run"):
        add_run_arguments(run)
    show = sub.add_parser("show", help="print a run's summary as a table")
    if wanted("show"):
        add_show_arguments(show)
    for name, (module, help_text) in EXTERNAL_COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text)
        if wanted(name):
            importlib.import_module(module).add_arguments(command_parser)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The sub-command ``argv`` names: its first word that is not an option (``mlpbench`` itself has only -h)."""
    return next((word for word in argv if not word.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    with sigterm_as_interrupt():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser(_command_in(argv))
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return EXIT_USAGE
        if args.command == "run":
            return _cmd_run(args)
        if args.command == "show":
            return _cmd_show(args)
        return importlib.import_module(EXTERNAL_COMMANDS[args.command][0]).command(args)
    except (UsageError, ValueError) as exc:
        print(f"mlpbench: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\nmlpbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ModuleNotFoundError as exc:  # a package this python lacks (not one of ours): the environment, not a bug
        if (exc.name or "").split(".")[0] in ("bench", "mlp"):
            return _internal_error(exc)
        print(f"mlpbench: error: {sys.executable} lacks the package {exc.name!r}; run with a python that has "
              f"the project's packages (make targets: PY={_venv_python()}) or install them there "
              "(pip install -c constraints.txt -e .)", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line; MLPBENCH_DEBUG=1 shows the traceback
        return _internal_error(exc)


def _internal_error(exc: Exception) -> int:
    if os.environ.get("MLPBENCH_DEBUG"):
        raise exc
    print(f"mlpbench: internal error: {type(exc).__name__}: {exc} (MLPBENCH_DEBUG=1 for the traceback)",
          file=sys.stderr)
    return 1


def _venv_python() -> str:
    """The checkout's own venv python where there is one (``make venv``), else the path it would have."""
    venv = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
    return str(venv) if venv.is_file() else ".venv/bin/python"


if __name__ == "__main__":
    sys.exit(main())
