"""``mlpbench run``: run a sweep (a sweep file, a preset, or the case flags' own grid) into a run folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import EXIT_INTERRUPTED, UsageError
from .case_flags import add_case_arguments, case_overrides, seconds_budget

DEFAULT_PRESET = "quick"
CUSTOM_PRESET = "custom"  # a sweep defined by the case flags alone


def resolve_cases(sweep, overrides: dict[str, tuple]):
    """The cases of ``sweep`` (a ``bench.case.cases.Sweep``) with CLI overrides; `device` defaults to every
    available device where the sweep says so (``all_devices``)."""
    from ..case.cases import available_devices

    if "device" not in overrides and sweep.all_devices:
        overrides = {**overrides, "device": available_devices()}
    return sweep.cases(overrides)


def _sweep_of(args, overrides: dict[str, tuple]):
    """A sweep file, a preset, or else the case flags' own grid over the Case defaults (``--width 256,512``
    is two cases); no flags at all mean the ``quick`` preset."""
    from ..case.cases import Sweep, preset, sweep_from_file

    if args.sweep is not None and args.preset is not None:
        raise UsageError(f"give a sweep file or --preset, not both (got {args.sweep} and --preset {args.preset})")
    if args.sweep is not None:
        return sweep_from_file(args.sweep)
    if args.preset is not None:
        return preset(args.preset)
    return Sweep(CUSTOM_PRESET, ({},)) if overrides else preset(DEFAULT_PRESET)


# TimingConfig fields a flag, a sweep file or a resumed run sets
BUDGET_FLAGS = ("repeats", "min_time_s", "warmup_s", "processes")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..model.sweep_file import preset_names

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
                   help="measure each compiled case in K processes, pyperf's method (bench.engine.process_samples): "
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


def command(args) -> int:
    from ..case.cases import CUSTOM_MAX_CASE_S, PRESETS
    from ..instruments.env import busy_warning
    from ..engine.runner import run_sweep
    from ..runs import Status, claim_run_dir, load_run, new_run_dir
    from ..instruments.timing import TimingConfig

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
        from ..engine.resume import refuse_new_plan, resume_plan

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
        from ..case.plugin import check_all

        check_all(cases)
    if args.dry_run:
        from ..case.headroom import memory_shortfall

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
        from ..report.markdown import format_summary

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
