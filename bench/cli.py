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
    "profile": ("bench.profile.command", "profile one case: trace, top operators, FLOPs by module, memory"),
    "crosscheck": ("bench.crosscheck", "engine vs torch.utils.benchmark on three classic cases"),
    "ddp": ("bench.ddp.command", "data-parallel scaling with torchrun + DistributedDataParallel"),
    "loader": ("bench.loader.command", "the classic FashionMNIST loop end to end: DataLoader, copy, step"),
    "gpu-reference": ("bench.gpuref.command", "the GPU kit: every CUDA check and measurement, stage by stage, bounded"),
    "history": ("bench.history.command", "performance over commits: a history database and its change points"),
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage dump
        raise UsageError(message)


def resolve_cases(preset_name: str | None, overrides: dict[str, tuple]):
    """The cases of a preset with CLI overrides; `device` defaults to every available device.

    Without a preset, flags alone define one grid over the Case defaults (``--width 256,512``
    is two cases), and no flags at all mean the ``quick`` preset.
    """
    from .cases import Sweep, available_devices, preset

    if preset_name is None:
        sweep = Sweep(CUSTOM_PRESET, ({},)) if overrides else preset(DEFAULT_PRESET)
    else:
        sweep = preset(preset_name)
    if "device" not in overrides and sweep.all_devices:
        overrides = {**overrides, "device": available_devices()}
    return sweep.cases(overrides)


# --------------------------------------------------------------------------- run / show


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run a sweep (a preset with per-dimension overrides)")
    p.add_argument("--preset", help="smoke | quick | classic | full; the case flags then override its grids "
                                    "(default: quick, or only the case flags' own grid when any is given)")
    add_case_arguments(p)
    p.add_argument("--out", type=Path, help="run folder (default: results/runs/<run-id>/)")
    p.add_argument("--resume", type=Path, metavar="DIR", help="continue a run folder: measure only missing cases")
    p.add_argument("--dry-run", action="store_true", help="print the cases, measure nothing")
    p.add_argument("--list-presets", action="store_true", help="list the presets and exit")
    p.add_argument("--repeats", type=int, help="samples per phase (default 12)")
    p.add_argument("--min-time-s", type=float, help="measure each case for at least this long")
    p.add_argument("--warmup-s", type=float, help="warm-up budget per case (default 0.25)")
    p.add_argument("--max-case-s", metavar="SECONDS",
                   help="skip a case whose measuring time, predicted after its first step, exceeds this "
                        "(default per preset: quick 30, smoke 10, classic 30, full 120, flags alone 60; "
                        "'inf' for no limit)")
    p.add_argument("--max-run-s", metavar="SECONDS",
                   help="run budget: start a case only while the time left covers its prediction; the rest "
                        "become skipped rows ('run budget'). Default: no limit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-show", action="store_true", help="do not print the summary table at the end")


def _cmd_run(args) -> int:
    from .cases import CUSTOM_MAX_CASE_S, PRESETS, Case
    from .env import busy_warning
    from .runner import run_sweep
    from .runs import Status, claim_run_dir, load_run, new_run_dir
    from .timing import TimingConfig

    if args.list_presets:
        for name, sweep in PRESETS.items():
            print(f"{name:8s} {len(sweep.cases()):4d} cases/device  {sweep.description}")
        return 0
    config_args = {k: v for k, v in (("repeats", args.repeats), ("min_time_s", args.min_time_s),
                                     ("warmup_s", args.warmup_s)) if v is not None}
    max_case_s = seconds_budget(args.max_case_s, "max-case-s") if args.max_case_s is not None else None
    max_run_s = seconds_budget(args.max_run_s, "max-run-s") if args.max_run_s is not None else None
    try:
        TimingConfig(**config_args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.resume:
        try:
            run = load_run(args.resume)
        except FileNotFoundError as exc:
            raise UsageError(str(exc)) from None
        cases = [Case.from_row(row) for row in run.meta.cases]
        if not cases:
            raise UsageError(f"{args.resume}: meta.json lists no cases to resume")
        out_dir, preset_name = Path(args.resume), run.meta.preset
        skip_slow_dtypes = run.meta.skip_slow_dtypes
    else:
        overrides = case_overrides(args)
        cases = resolve_cases(args.preset, overrides)
        preset_name = args.preset or (CUSTOM_PRESET if overrides else DEFAULT_PRESET)
        out_dir = args.out or new_run_dir(preset=preset_name)
        # a preset skips the dtypes this device has no fast path for; dtypes the user named are measured
        skip_slow_dtypes = preset_name in PRESETS and "dtype" not in overrides
    if args.max_case_s is None:  # not given: the preset's default
        max_case_s = PRESETS[preset_name].max_case_s if preset_name in PRESETS else CUSTOM_MAX_CASE_S
    config = TimingConfig(**config_args, max_case_s=max_case_s)
    if not cases:
        raise UsageError("the sweep has no cases")
    if args.dry_run:
        for case in cases:
            print(f"{case.case_id}  {case.label}")
        print(f"{len(cases)} cases (dry run: nothing measured)")
        return 0
    claim_run_dir(out_dir, resume=bool(args.resume), otherwise=f"use --resume {out_dir} or another --out")
    print(f"mlpbench: {len(cases)} cases ({preset_name}) -> {out_dir}", file=sys.stderr)
    warning = busy_warning()
    if warning:
        print(f"mlpbench: warning: {warning}", file=sys.stderr)
    try:
        writer = run_sweep(cases, out_dir, config, preset=preset_name, resume=bool(args.resume),
                           progress=not args.no_progress, skip_slow_dtypes=skip_slow_dtypes, max_run_s=max_run_s)
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


def _add_show(sub) -> None:
    p = sub.add_parser("show", help="print a run's summary as a table")
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


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mlpbench", description="Benchmark and profile MLP training steps (CPU and CUDA).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    _add_run(sub)
    _add_show(sub)
    for name, (module, help_text) in EXTERNAL_COMMANDS.items():
        mod = importlib.import_module(module)
        if hasattr(mod, "add_arguments"):
            mod.add_arguments(sub.add_parser(name, help=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    with sigterm_as_interrupt():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    try:
        parser = build_parser()
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
    except Exception as exc:  # noqa: BLE001 - a bug still gets one line; MLPBENCH_DEBUG=1 shows the traceback
        if os.environ.get("MLPBENCH_DEBUG"):
            raise
        print(f"mlpbench: internal error: {type(exc).__name__}: {exc} (MLPBENCH_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
