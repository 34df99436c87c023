"""``mlpbench check``: the performance regression gate.

Layer 1, exact counters (``bench.instruments.counters``): ATen ops, matmul FLOPs, fresh
bytes and host syncs per phase, parameters, analytic FLOPs and memory (plus
kernels and peak memory on CUDA). Deterministic, so compared with ``==``; any
increase fails the gate.

Layer 2, timing of the whole training step (``bench.analysis.interleaved``): a case
regresses only when it is at least ``--min-effect`` slower *and* significantly
so. ``--against REF`` measures REF and the working tree interleaved in one run
(``bench.gate.ab``), which cancels machine drift: use it in CI. ``--baseline``
compares with samples recorded earlier on this machine: drift between then and
now is not cancelled, so prefer ``--against``.

``--suite FILE`` gates a user's cases instead of mlpbench's own (a sweep file, as for ``mlpbench run``;
``bench.gate.suite``): there ``--against REF`` is a commit of the user's repository, the one that holds FILE.

Exit codes: 0 pass, 1 regression, 2 usage or environment error (a baseline from
another torch build, device or host, said in one line).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import EnvironmentProblem, UsageError

BASELINE_FORMAT = "mlpbench-gate-baseline/1"
LAYERS = ("counters", "timing", "instructions")  # instructions: opt-in, needs Valgrind and --against
ENV_MISMATCH = ("error", "skip")
# One torch thread in the timed cases: on a 2-core box shared with other jobs, two
# OpenMP threads spin and wait for each other and a step's time spreads over 10x
# (teaching net, batch 64: 9.6-90 ms with 2 threads, 2.5-3.3 ms with 1, same minute).
GATE_THREADS = 1


@dataclass(frozen=True)
class SuiteCase:
    row: dict[str, Any]  # Case.to_row()
    timed: bool  # also in the timing layer (counters are cheap, time is not)


def gate_suite(device: str = "cpu") -> list[SuiteCase]:
    """The classic networks and two uniform MLPs: every loss, three optimisers, fp32 and bf16 autocast.

    Small enough for CI on 2 cores: counting all four takes a few seconds; the three
    timed cases take 2.5-12 ms per step on one thread here.
    """
    from ..case.cases import Case

    def case(timed: bool, **fields) -> SuiteCase:
        return SuiteCase(Case(device=device, threads=GATE_THREADS, **fields).to_row(), timed)

    return [
        case(True, network="teaching", batch=64),  # MSE + SGD, dispatch-bound
        case(True, network="fashion_mnist", batch=64),  # cross-entropy + SGD, matmul-bound
        case(True, width=256, depth=2, batch=64, activation="gelu", optimizer="adam"),
        case(False, width=128, depth=2, batch=32, optimizer="sgd_momentum", dtype="bf16"),  # autocast casts
    ]


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class GateOptions:
    suite: Path | None  # a user's sweep file (None: mlpbench's own gate_suite)
    baseline: Path | None
    write_baseline: Path | None
    against: str | None
    layers: frozenset[str]
    device: str | None  # None: cpu for the built-in suite, the file's own devices for --suite
    plan: Any  # ab.TimingPlan
    min_effect: float
    alpha: float
    advisory: bool
    inject: str
    pin: bool
    instr_plan: Any  # instructions.InstructionPlan
    on_env_mismatch: str
    markdown_out: Path | None
    json_out: Path | None
    github_comment: Path | None = None  # --github-summary: the pull-request comment body (bench.gate.github)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", type=Path, metavar="FILE",
                        help="gate the cases of this sweep file (the format of `mlpbench run FILE.toml`) instead of "
                             "mlpbench's own; --against REF is then a commit of the git repository holding FILE")
    what = parser.add_argument_group("what to compare (one of)")
    what.add_argument("--baseline", type=Path, metavar="FILE", help="compare with a committed baseline")
    what.add_argument("--against", metavar="REF", help="compare the working tree with git REF, interleaved in one run "
                      "(timing, and counters unless --baseline is given)")
    what.add_argument("--write-baseline", type=Path, metavar="FILE", help="measure and (re)write a baseline")
    how = parser.add_argument_group("how")
    how.add_argument("--layers", default="counters,timing",
                     help="comma list of counters, timing, instructions (default: counters,timing)")
    how.add_argument("--device", help="device of the gate suite (default: cpu; with --suite, the file's)")
    add_measure_arguments(how)
    how.add_argument("--timing-advisory", action="store_true", help="print timing verdicts, never fail on them")
    how.add_argument("--on-env-mismatch", default="error", choices=ENV_MISMATCH,
                     help="baseline from another torch build/device/host: error (exit 2, default) or skip that layer")
    how.add_argument("--inject-regression", default="none", metavar="KIND",
                     help="measure the working tree with a known synthetic regression (extra-op, flops+10, flops+25, "
                          "python-2us, foreach-optim) to check that the gate catches it; the instruction layer alone "
                          "takes a comma list (B then counts the clean tree and each)")
    out = parser.add_argument_group("output")
    out.add_argument("--markdown", type=Path, metavar="FILE", help="also write the Markdown report here")
    out.add_argument("--json", type=Path, metavar="FILE", help="also write the full result as JSON")
    from ..gate.github import DEFAULT_COMMENT

    out.add_argument("--github-summary", type=Path, nargs="?", const=Path(DEFAULT_COMMENT), metavar="FILE",
                     help="for GitHub Actions: append the report to $GITHUB_STEP_SUMMARY when set, and write a "
                          f"pull-request comment body (at most 65,536 characters) to FILE (default {DEFAULT_COMMENT}); "
                          "docs/ci/github-actions.yml posts it")


def add_measure_arguments(group) -> None:
    """How each layer measures: the timing plan and verdict, pinning, the instruction plan (check and bisect)."""
    group.add_argument("--rounds", type=int,
                       help="a fixed number of timed blocks per case and side (default: adaptive rounds when A and B "
                            "are interleaved, see --precision; 20 against a stored baseline)")
    group.add_argument("--precision", type=float, default=0.05, metavar="P",
                       help="interleaved A/B: add rounds until each case's interval is within P of its ratio "
                            "(default 0.05), a group-sequential design whose error rate holds however many rounds it "
                            "takes (docs/perf-gate.md, 'Adaptive rounds'), or until --max-timing-s ends")
    group.add_argument("--max-timing-s", type=float, default=120.0, metavar="SECONDS",
                       help="time budget of the adaptive rounds, all timed cases together (default 120)")
    group.add_argument("--block-s", type=float, default=0.1, help="seconds per timed block (default 0.1)")
    group.add_argument("--warmup-s", type=float, default=0.3, help="warm-up per case and side (default 0.3)")
    group.add_argument("--min-effect", type=float, help="smallest slowdown that counts, as a fraction (default 0.05)")
    group.add_argument("--alpha", type=float, help="1 - confidence of the interval that must exclude 1 (default 0.01)")
    group.add_argument("--no-pin", action="store_true", help="do not pin both sides' workers to one shared CPU")
    group.add_argument("--instr-steps", type=int, default=3, help="instruction layer: steps per counted region")
    group.add_argument("--instr-warmup", type=int, default=5, help="instruction layer: warm-up steps per case")
    group.add_argument("--instr-repeats", type=int, default=1, help="instruction layer: regions per case and phase")


def measure_options(args: argparse.Namespace) -> tuple[Any, float, float, Any]:
    """``add_measure_arguments``' flags, checked: (``ab.TimingPlan``, min effect, alpha,
    ``instructions.InstructionPlan``)."""
    from ..gate.ab import ADAPTIVE_MAX_ROUNDS, TimingPlan
    from ..gate.instructions import InstructionPlan
    from ..analysis.interleaved import ALPHA, MIN_EFFECT

    min_effect = MIN_EFFECT if args.min_effect is None else args.min_effect
    alpha = ALPHA if args.alpha is None else args.alpha
    if not (0 <= min_effect < 1 and 0 < alpha < 1):
        raise UsageError("--min-effect must be in [0, 1) and --alpha in (0, 1)")
    if args.rounds is None and not (0 < args.precision < 1):
        raise UsageError(f"--precision must be a fraction in (0, 1), such as 0.05; got {args.precision}")
    plan = (TimingPlan(args.rounds, args.block_s, args.warmup_s) if args.rounds is not None else
            TimingPlan(ADAPTIVE_MAX_ROUNDS, args.block_s, args.warmup_s, precision=args.precision,
                       max_s=args.max_timing_s))
    return plan, min_effect, alpha, InstructionPlan(args.instr_steps, args.instr_warmup, args.instr_repeats)


def parse_options(args: argparse.Namespace) -> GateOptions:
    from ..gate.worker import INJECTIONS

    modes = [m for m in (args.baseline, args.against, args.write_baseline) if m is not None]
    if not modes:
        raise UsageError("say what to compare: --baseline FILE, --against REF, or --write-baseline FILE")
    if args.write_baseline and (args.baseline or args.against):
        raise UsageError("--write-baseline measures this tree only; do not combine it with --baseline/--against")
    layers = frozenset(t.strip() for t in args.layers.split(","))
    if not layers or not layers <= set(LAYERS):
        raise UsageError(f"--layers {args.layers!r}: valid: {', '.join(LAYERS)} (comma-separated)")
    injections = [t.strip() for t in args.inject_regression.split(",")]
    if not set(injections) <= set(INJECTIONS):
        raise UsageError(f"--inject-regression {args.inject_regression!r}: valid: {', '.join(INJECTIONS)}")
    if len(injections) > 1 and layers != {"instructions"}:
        raise UsageError("several --inject-regression kinds are for --layers instructions alone")
    if "instructions" in layers and not args.against:
        raise UsageError("the instruction layer counts base and head in one run: give --against REF "
                         "(counts depend on the CPU and torch build, so no stored baseline is read)")
    if args.write_baseline and args.inject_regression != "none":
        raise UsageError("a baseline is never written with an injected regression")
    if args.device not in (None, "cpu", "cuda"):
        raise UsageError(f"--device {args.device!r}: valid: cpu, cuda")
    plan, min_effect, alpha, instr_plan = measure_options(args)
    if args.against is None and plan.precision:  # one side measured now, against stored samples: a fixed count
        plan = plan.fixed()
    from ..runs import output_file

    for flag, path in (("--markdown", args.markdown), ("--json", args.json), ("--write-baseline", args.write_baseline),
                       ("--github-summary", args.github_summary)):
        if path is not None:
            output_file(path, flag, protected=[args.baseline] if args.baseline else [])
    return GateOptions(args.suite, args.baseline, args.write_baseline, args.against, layers, args.device,
                       plan, min_effect, alpha, args.timing_advisory, args.inject_regression, not args.no_pin,
                       instr_plan, args.on_env_mismatch,
                       args.markdown, args.json, args.github_summary)


# --------------------------------------------------------------------------- entry point


def command(args: argparse.Namespace) -> int:
    opts = parse_options(args)
    if opts.write_baseline:
        return write_baseline(opts)
    return check(opts)


def write_baseline(opts: GateOptions) -> int:
    """Measure this tree's suite (counters, and timing samples for the timed cases) and write the file."""
    from ..gate import ab
    from ..instruments.env import fingerprint
    from ..runs import write_json

    suite, user = _suite(opts, None)
    _require_devices(suite)
    rows, timed = [s.row for s in suite], _timed_indices(suite, opts)
    with ab.workers_for(None, user_repo=user.root if user else None) as workers:
        replies = ab.setup(workers, rows, timed, opts.plan)
        counters = ab.request(workers["B"], {"cmd": "counters"})["counters"] if "counters" in opts.layers else None
        iters = ab.block_iters(replies, timed, opts.plan)
        samples = ab.interleaved_samples(workers, timed, iters, opts.plan)["B"]
    info = replies["B"]["info"]
    cases = [{"case": row, "case_id": info["case_ids"][i], "label": info["labels"][i], "timed": i in timed,
              "counters": counters[i] if counters else None,
              "timing": {"iters_per_block": iters[i], "samples_s": samples[i]} if i in timed else None}
             for i, row in enumerate(rows)]
    write_json(opts.write_baseline, {
        "format": BASELINE_FORMAT, "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "env": fingerprint(), "counter_env": counter_env(rows[0]["device"]), "timing_plan": asdict(opts.plan),
        **({"suite": user.relative_path} if user else {}), "cases": cases})
    print(f"mlpbench check: wrote {opts.write_baseline} ({len(cases)} cases; counters"
          f"{'' if counters else ' not'} recorded; {len(timed)} timed x {opts.plan.rounds} blocks)")
    return 0


def check(opts: GateOptions) -> int:
    from ..gate import ab
    from ..gate.report import GateReport, emit, render_markdown

    started = time.perf_counter()
    baseline = load_baseline(opts.baseline) if opts.baseline else None
    suite, user = _suite(opts, baseline)
    _require_devices(suite)
    user_repo = user.root if user else None
    report = GateReport(title=_title(opts, suite[0].row["device"], user), timing_advisory=opts.advisory)
    counters_on, timing_on = _layers_to_run(opts, baseline, report)
    rows, timed = [s.row for s in suite], (_timed_indices(suite, opts) if timing_on else [])
    labels, replies = case_labels(suite, baseline), None
    if counters_on or timing_on:
        with ab.workers_for(opts.against, pin=opts.pin, user_repo=user_repo) as workers:
            replies = ab.setup(workers, rows, timed, opts.plan, opts.inject)
            if counters_on:
                report.counters_against = f"baseline {opts.baseline}" if baseline else opts.against
                report.counters = _counter_layer(workers, baseline, labels)
            if timing_on:
                timing_baseline = None if opts.against else baseline  # --against wins: same-run A/B
                report.timing_against = opts.against or f"baseline {opts.baseline}"
                report.timing = timing_layer(workers, replies, timing_baseline, labels, timed, opts)
                if timing_baseline is not None:
                    report.notes += between_run_check(report.timing, timing_baseline)
        report.notes += _injection_notes(opts, suite, replies)
        if user:
            from ..gate.suite import source_notes

            report.notes += source_notes(user.cases, replies)
    if "instructions" in opts.layers:
        from ..gate.instructions import run_layer

        report.instructions = run_layer(opts.against, rows, labels, opts.inject.split(","), opts.instr_plan,
                                        user_repo)
    report.wall_s = time.perf_counter() - started
    text = render_markdown(report)
    emit(text, opts.markdown_out, opts.json_out, {**report.to_dict(), "injected": opts.inject})
    if opts.github_comment:
        from ..gate.github import write_outputs

        for line in write_outputs(text, opts.github_comment):
            print(f"mlpbench check: {line}", file=sys.stderr)
    return report.exit_code


def _title(opts: GateOptions, device: str, user=None) -> str:
    parts = [f"suite {opts.suite}"] if opts.suite else []
    if opts.baseline:
        parts.append(f"baseline {opts.baseline}")
    if opts.against:
        parts.append(f"against {opts.against}" + (f" of {user.repo}" if user and user.repo else ""))
    if opts.inject != "none":
        parts.append(f"injected regression: {opts.inject}")
    return " · ".join(parts + [f"device {device}"])


def _layers_to_run(opts: GateOptions, baseline: dict | None, report) -> tuple[bool, bool]:
    """Which layers run; an environment mismatch with the baseline is an error or, if asked, a skip."""
    counters_on = "counters" in opts.layers
    timing_on = "timing" in opts.layers
    if baseline is None:
        return counters_on, timing_on
    if counters_on:
        problem = _mismatch(baseline["counter_env"], counter_env(baseline["cases"][0]["case"]["device"]), "counters")
        if problem:
            counters_on = _skip_or_raise(opts, problem)
            report.counters_skipped = problem
    if timing_on and not opts.against:
        if not any(c["timing"] for c in baseline["cases"]):
            raise UsageError(f"{opts.baseline} holds no timing samples; use --against REF or --layers counters")
        from ..instruments.env import COMPARABILITY_KEYS, fingerprint

        now = fingerprint()
        problem = _mismatch({k: baseline["env"].get(k) for k in COMPARABILITY_KEYS},
                            {k: now.get(k) for k in COMPARABILITY_KEYS}, "timings")
        if problem:
            timing_on = _skip_or_raise(opts, problem + "; --against REF compares in one run instead")
            report.timing_skipped = problem
    return counters_on, timing_on


def _mismatch(recorded: dict, current: dict, what: str) -> str:
    differ = [k for k in sorted(set(recorded) | set(current)) if recorded.get(k) != current.get(k)]
    if not differ:
        return ""
    was = ", ".join(f"{k} {recorded.get(k)}" for k in differ)
    now = ", ".join(f"{k} {current.get(k)}" for k in differ)
    return (f"the baseline's {what} were recorded with {was}; this is {now}: not comparable "
            f"(rewrite the baseline here with `make baseline` if that is intended)")


def _skip_or_raise(opts: GateOptions, problem: str) -> bool:
    if opts.on_env_mismatch == "skip":
        print(f"mlpbench check: skipped: {problem}")
        return False
    raise EnvironmentProblem(problem)


def counter_env(device: str) -> dict[str, Any]:
    """What exact counters depend on: the torch build (its decompositions and kernels) and the device."""
    import torch

    cuda = device == "cuda"
    return {"torch": torch.__version__, "device": device, "cuda": torch.version.cuda if cuda else None,
            "device_name": torch.cuda.get_device_name() if cuda else None}


def _require_devices(suite: list[SuiteCase]) -> None:
    import torch

    if any(s.row["device"] == "cuda" for s in suite) and not torch.cuda.is_available():
        raise UsageError("the gate suite is on cuda but CUDA is not available on this machine")


def _suite(opts: GateOptions, baseline: dict | None) -> tuple[list[SuiteCase], Any]:
    """The cases to gate, and the user's suite (``bench.gate.suite.UserSuite``) when ``--suite`` names one.

    A baseline's own cases win (a changed suite never silently compares other cases); with ``--suite`` the
    file's cases must be the baseline's. Every case of a suite file is timed.
    """
    if opts.suite is None:
        return (_baseline_suite(baseline) if baseline else gate_suite(opts.device or "cpu")), None
    from ..gate import suite as user_suite

    user = user_suite.load(opts.suite, against=opts.against, device=opts.device, threads=GATE_THREADS)
    if baseline is not None:
        user_suite.check_against_baseline(user, baseline, opts.baseline)
        return _baseline_suite(baseline), user
    return [SuiteCase(case.to_row(), True) for case in user.cases], user


def _timed_indices(suite: list[SuiteCase], opts: GateOptions) -> list[int]:
    return [i for i, s in enumerate(suite) if s.timed] if "timing" in opts.layers else []


# --------------------------------------------------------------------------- the layers


def _counter_layer(workers, baseline: dict | None, labels: list[tuple[str, str]]) -> list:
    from ..gate import ab

    after = ab.request(workers["B"], {"cmd": "counters"})["counters"]
    if baseline is not None:
        before = [c["counters"] for c in baseline["cases"]]
        if any(b is None for b in before):
            raise UsageError("the baseline holds no counters; rewrite it with `make baseline`")
    else:
        before = ab.request(workers["A"], {"cmd": "counters"})["counters"]
    return counter_results(before, after, labels)


def counter_results(before: list[dict], after: list[dict], labels: list[tuple[str, str]]) -> list:
    """Each case's counters, A's (``before``, as the workers send them) against B's: ``report.CounterResult``s."""
    from ..instruments.counters import CaseCounters, compare, op_changes
    from ..gate.report import CounterResult

    results = []
    for (label, case_id), old, new in zip(labels, before, after):
        old_c, new_c = CaseCounters.from_dict(old), CaseCounters.from_dict(new)
        results.append(CounterResult(label, case_id, compare(old_c, new_c), op_changes(old_c, new_c),
                                     len(new_c.metrics())))
    return results


def timing_layer(workers, replies, baseline: dict | None, labels: list[tuple[str, str]], timed: list[int],
                  opts: GateOptions) -> list:
    from ..gate import ab
    from ..gate.report import TimingResult
    from ..analysis.interleaved import compare_interleaved, compare_samples

    if baseline is None:  # A and B interleaved in this run (``--against``, or ``mlpbench bisect``'s steps)
        iters = ab.block_iters(replies, timed, opts.plan)
        samples = ab.interleaved_samples(workers, timed, iters, opts.plan, opts.alpha)
        before, after = samples["A"], samples["B"]
    else:
        iters = {i: baseline["cases"][i]["timing"]["iters_per_block"] for i in timed}
        before = {i: baseline["cases"][i]["timing"]["samples_s"] for i in timed}
        after = ab.interleaved_samples(workers, timed, iters, opts.plan)["B"]
    design = opts.plan.sequential(opts.alpha) if baseline is None else None
    return [TimingResult(labels[i][0], labels[i][1], iters[i],
                         compare_interleaved(before[i], after[i], design, opts.min_effect, opts.alpha)
                         if baseline is None else compare_samples(before[i], after[i], opts.min_effect, opts.alpha),
                         before[i], after[i])
            for i in timed]


def between_run_check(timing: list, baseline: dict) -> list[str]:
    """``--baseline`` timing compares two runs made at different times: a regression or improvement stands only
    where it survives the between-run noise model (``bench.analysis.noise``: the machine states, the run-level factor of
    the timed cases, the prior case noise with so few cases). The others become a pass, said in a note each."""
    import dataclasses
    import math
    from statistics import NormalDist

    from ..analysis import noise
    from ..instruments.env import fingerprint
    from ..analysis.interleaved import Verdict

    then, now = noise.machine_state({"env": baseline.get("env") or {}}), noise.machine_state({"env": fingerprint()})
    blocking = [d for d in noise.state_differences(then, now) if d.decisive]
    factor = noise.common_factor([math.log(r.comparison.ratio) for r in timing if r.comparison.ratio > 0])
    notes = []
    for index, result in enumerate(timing):
        c = result.comparison
        if c.verdict is Verdict.PASS:
            continue
        z = NormalDist().inv_cdf(0.5 + c.confidence / 2)
        judged = noise.case_verdict(c.ratio, c.ci_low, c.ci_high, factor, blocking, ci_z=z)
        if judged.verdict is noise.Verdict.INCONCLUSIVE:
            timing[index] = dataclasses.replace(result, comparison=dataclasses.replace(c, verdict=Verdict.PASS))
            notes.append(f"{result.label}: {c.verdict.value} against the baseline, but between runs it is "
                         f"inconclusive: {judged.reason} (use --against REF: interleaved in one run)")
    return notes


def case_labels(suite: list[SuiteCase], baseline: dict | None) -> list[tuple[str, str]]:
    """(label, case_id) of each suite case as A measures it (an injected flops+N case on B has another shape)."""
    if baseline is not None:
        return [(c["label"], c["case_id"]) for c in baseline["cases"]]
    from ..case.cases import Case

    return [(case.label, case.case_id) for case in (Case.from_row(s.row) for s in suite)]


def _injection_notes(opts: GateOptions, suite: list[SuiteCase], replies: dict | None) -> list[str]:
    if opts.inject == "none" or not replies:
        return []
    from ..engine.budget import step_matmul_flops
    from ..case.cases import Case
    from ..gate.worker import inject_case

    notes = [f"B carries an injected regression, `{opts.inject}` (see docs/perf-gate.md)."]
    if opts.inject.startswith("flops+"):
        b_flops = replies["B"]["info"]["step_matmul_flops"]
        for s, after in zip(suite, b_flops):
            case = Case.from_row(s.row)
            before = step_matmul_flops(case)
            notes.append(f"{case.label} → {inject_case(case, opts.inject).label}: step matmul FLOPs "
                         f"{before:,} → {after:,} (x{after / before:.4f})")
    return notes


# --------------------------------------------------------------------------- baseline file


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UsageError(f"no baseline at {path} (write one with `make baseline`)") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: unreadable baseline ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise UsageError(f"{path}: not a gate baseline of format {BASELINE_FORMAT}")
    return data


def _baseline_suite(baseline: dict[str, Any]) -> list[SuiteCase]:
    """The baseline's own cases, so a changed suite in the code never silently compares different cases."""
    return [SuiteCase(c["case"], bool(c["timed"])) for c in baseline["cases"]]
