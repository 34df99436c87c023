"""``mlpbench bisect GOOD BAD``: the first commit at which the gate fails, by halving GOOD..BAD.

Each step is a gate run: the commit under test (side B) against GOOD (side A), the same cases each time, the
exact layers first: counters, then instructions, then timing, as many as ``--layer`` names; a step stops at the
first layer that fails. A commit that fails is bad, one that passes good; one that cannot be built or measured
(a worker that cannot import the code or build a case at that commit) is skipped, as ``git bisect run``'s exit
125: never called bad.

The repository is the user's, the one holding ``--suite FILE`` (the cases are the file's as it is now, in every
step), or else mlpbench's own checkout (its gate suite, or the case flags' grid).

Why not ``git bisect run``: it moves the checkout it runs in (the user's working tree, or, for mlpbench's
own history, the code running the bisection) and keeps its state in that repository's refs; one step per
process would also start GOOD's worker again each time. Here GOOD and the commit under test are two
temporary worktrees, the user's checkout is never touched, GOOD's worker is started once (its counters are
exact, so they are counted once), and each step's figures are kept. The commit to test is git's own choice:
``git rev-list --bisect-all`` ranks the candidates as ``git bisect`` does (merges included); a skipped commit
gives way to the next in that ranking.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvironmentProblem, UsageError, first_line
from ..gate.bisect_report import BAD, GOOD, SKIP, BisectResult, Step, render, steps_needed

LAYER_ORDER = ("counters", "instructions", "timing")  # exact layers first
DEFAULT_LAYER = "counters"
NO_SEARCH = "--no-search"
# bisect's own flags (dest -> flag), repeated in each step's command to measure it again
MEASURE_DESTS = ("rounds", "precision", "max_timing_s", "block_s", "warmup_s", "min_effect", "alpha", "no_pin",
                 "instr_steps", "instr_warmup", "instr_repeats")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .case_flags import add_case_arguments
    from .check import add_measure_arguments

    parser.add_argument("good", metavar="GOOD", help="a commit where the gate passes")
    parser.add_argument("bad", metavar="BAD", help="a later commit where it fails (a descendant of GOOD)")
    parser.add_argument("--suite", type=Path, metavar="FILE",
                        help="bisect the git repository holding this sweep file, gating its cases (as `mlpbench "
                             "check --suite`); without it: mlpbench's own checkout, its gate suite or the case flags")
    how = parser.add_argument_group("how each step is gated")
    how.add_argument("--layer", default=DEFAULT_LAYER,
                     help="comma list of counters, instructions, timing (default: counters); each step runs them "
                          "in that order, exact layers first, and stops at the first that fails")
    add_measure_arguments(how)
    add_case_arguments(parser)
    out = parser.add_argument_group("output")
    out.add_argument(NO_SEARCH, action="store_true",
                     help="measure BAD against GOOD once and stop (the command printed to reproduce a step)")
    out.add_argument("--markdown", type=Path, metavar="FILE", help="also write the Markdown report here")
    out.add_argument("--json", type=Path, metavar="FILE", help="also write every step's figures and gate report")


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class BisectPlan:
    repo: Path  # the repository bisected
    user_repo: Path | None  # --suite: the user's repository (== repo); None: mlpbench's own
    rows: list[dict]  # Case.to_row() of each case
    timed: list[int]  # the cases the timing layer times (all of a user's suite; the gate suite's timed ones)
    labels: list[tuple[str, str]]
    layers: tuple[str, ...]  # in LAYER_ORDER
    gate: object  # command.GateOptions: the timing plan, verdict rule, pinning and instruction plan
    flags: str  # the flags that repeat this bisection's cases and layers, for each step's command


def plan_from(args: argparse.Namespace) -> BisectPlan:
    from ..gate import ab
    from .check import GATE_THREADS, GateOptions, SuiteCase, case_labels, measure_options

    layers = tuple(t.strip() for t in args.layer.split(","))
    if not layers or not set(layers) <= set(LAYER_ORDER):
        raise UsageError(f"--layer {args.layer!r}: valid: {', '.join(LAYER_ORDER)} (comma-separated)")
    layers = tuple(layer for layer in LAYER_ORDER if layer in layers)
    timing_plan, min_effect, alpha, instr_plan = measure_options(args)
    if "instructions" in layers:
        from ..gate.instructions import require_valgrind

        require_valgrind()
    overrides = _case_overrides(args)
    if args.suite is not None:
        from ..gate import suite as user_suite

        devices = overrides.pop("device", (None,))
        if overrides or len(devices) > 1:
            raise UsageError("--suite FILE holds the cases: give no case flags with it (but one --device)")
        user = user_suite.load(args.suite, against=None, device=devices[0], threads=GATE_THREADS)
        if user.repo is None:
            raise UsageError(f"--suite {args.suite} is not in a git repository: bisect searches its commits")
        repo, user_repo, suite = user.repo, user.repo, [SuiteCase(c.to_row(), True) for c in user.cases]
    else:
        repo, user_repo = ab.repo_root(ab.tree_root()), None
        if repo is None or repo != ab.tree_root().resolve():
            raise UsageError(f"mlpbench at {ab.tree_root()} is not a git checkout: bisect your own repository "
                             "with --suite FILE")
        suite = _own_suite(overrides)
    from ..case.cases import Case

    devices = {Case.from_row(s.row).device for s in suite}
    if "cuda" in devices:
        import torch

        if not torch.cuda.is_available():
            raise UsageError("the cases are on cuda but CUDA is not available on this machine")
    gate = GateOptions(args.suite, None, None, None, frozenset(layers), None, timing_plan, min_effect, alpha,
                       False, "none", not args.no_pin, instr_plan, "error", None, None)
    timed = [i for i, s in enumerate(suite) if s.timed] if "timing" in layers else []
    return BisectPlan(repo, user_repo, [s.row for s in suite], timed, case_labels(suite, None), layers, gate,
                      _flags_text(args, layers))


def _case_overrides(args: argparse.Namespace) -> dict[str, tuple]:
    from .case_flags import case_overrides

    return case_overrides(args, user_model=False) if args.suite is None else case_overrides(args)


def _own_suite(overrides: dict[str, tuple]) -> list:
    """mlpbench's gate suite, or the case flags' grid over the Case defaults (on cpu unless --device says)."""
    from .check import GATE_THREADS, SuiteCase, gate_suite

    if not overrides:
        return gate_suite("cpu")
    if set(overrides) == {"device"} and len(overrides["device"]) == 1:
        return gate_suite(overrides["device"][0])
    from ..case.cases import Sweep

    try:
        cases = Sweep("bisect", ({},)).cases({"device": ("cpu",), **overrides})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return [SuiteCase((c.with_(threads=GATE_THREADS) if c.threads == 0 else c).to_row(), True) for c in cases]


def _flags_text(args: argparse.Namespace, layers: tuple[str, ...]) -> str:
    """The flags given, as a command line: each step's command repeats them."""
    from .case_flags import CASE_FLAGS

    defaults = vars(_parser().parse_args(["GOOD", "BAD"]))
    words = ["--suite", str(args.suite)] if args.suite is not None else []
    if layers != (DEFAULT_LAYER,):
        words += ["--layer", ",".join(layers)]
    for dest in (*MEASURE_DESTS, *(f.replace("-", "_") for f in CASE_FLAGS)):
        value = getattr(args, dest, None)
        if value is None or value == defaults.get(dest):
            continue
        flag = "--" + dest.replace("_", "-")
        words += [flag] if value is True else [flag, str(value)]
    return " ".join(shlex.quote(w) for w in words)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    add_arguments(parser)
    return parser


# --------------------------------------------------------------------------- the search


Measure = Callable[[str], Step]


def search(repo: Path, good: str, bad: str, measure: Measure, result: BisectResult) -> BisectResult:
    """Halve GOOD..BAD until one commit is left: the first bad commit (``result`` filled in and returned).

    Each round measures git's best candidate (``git rev-list --bisect-all``) that was not skipped; a good one
    joins the good side, a bad one becomes the new BAD, a skipped one is set aside. BAD itself is measured only
    when the search ends on it: a BAD that passes means there is nothing to find.
    """
    from ..gate.ab import git

    goods, skipped, bad_measured = [good], set(), False
    while True:
        candidates = git(repo, "rev-list", bad, "--not", *goods).split()  # newest first; BAD among them
        ranked = [line.split()[0] for line in git(repo, "rev-list", "--bisect-all", bad, "--not", *goods).splitlines()]
        order = [sha for sha in ranked if sha != bad and sha not in skipped]
        if not order:
            break
        step = measure(order[0])
        result.steps.append(step)
        if step.verdict == GOOD:
            goods.append(step.sha)
        elif step.verdict == BAD:
            bad, bad_measured = step.sha, True
        else:
            skipped.add(step.sha)
        _progress(step, len(set(git(repo, "rev-list", bad, "--not", *goods).split()) - skipped - {bad}))
    if not bad_measured:
        step = measure(bad)
        result.steps.append(step)
        _progress(step, 0)
        if step.verdict != BAD:
            result.conclusion = (f"BAD ({bad[:12]}) passes the gate against GOOD: nothing to find."
                                 if step.verdict == GOOD else
                                 f"BAD ({bad[:12]}) could not be measured ({step.reason}): no verdict.")
            return result
    left = [sha for sha in reversed(candidates) if sha in skipped]
    if left:
        result.could_be = left + [bad]
        result.conclusion = (f"{len(left)} skipped commit(s) lie just before {bad[:12]}, the oldest bad commit "
                             f"measured: any of the {len(result.could_be)} below may be the first bad one.")
        return result
    result.first_bad = bad
    result.first_bad_subject = git(repo, "log", "-1", "--format=%s", bad)
    result.conclusion = (f"First bad commit: `{bad}` ({result.first_bad_subject}), found in {len(result.steps)} "
                         f"steps among {result.commits} commits.")
    return result


def _progress(step: Step, left: int) -> None:
    what = f"skipped: {step.reason}" if step.verdict == SKIP else step.verdict
    print(f"mlpbench bisect: step {step.number}: {step.sha[:12]} {what} ({step.wall_s:.0f} s; "
          f"{left} untested commit(s) left before the oldest bad one)", file=sys.stderr)


# --------------------------------------------------------------------------- one step: a gate run


@contextlib.contextmanager
def gate_steps(plan: BisectPlan, good: str) -> Iterator[Measure]:
    """``measure(sha) -> Step``: the gate of commit ``sha`` against GOOD, in two temporary worktrees.

    GOOD's worker starts once and counts once; each step checks its commit out in the second worktree and
    starts a worker there. GOOD that cannot be measured ends the bisection (an ``EnvironmentProblem``).
    """
    from ..errors import sigterm_as_interrupt
    from ..gate import ab

    counted = [layer for layer in ("counters", "timing") if layer in plan.layers]
    cpus = ab.shared_cpu() if plan.gate.pin else ""
    with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        good_tree = ab.side_tree(stack.enter_context(ab.worktree(plan.repo, good)), plan.user_repo)
        head = stack.enter_context(ab.worktree(plan.repo, good))
        a_worker, a_reply, a_counters = None, None, None
        if counted:
            a_worker = ab.ProcessWorker("A", good_tree, cpus)
            stack.callback(a_worker.close)
            try:
                a_reply = ab.setup({"A": a_worker}, plan.rows, plan.timed, plan.gate.plan)["A"]
                if "counters" in plan.layers:
                    a_counters = ab.request(a_worker, {"cmd": "counters"})["counters"]
            except EnvironmentProblem as exc:
                raise EnvironmentProblem(f"GOOD ({good[:12]}) cannot be measured, so nothing can be compared "
                                         f"with it: {first_line(exc)}") from None

        numbers = iter(range(1, 1 << 30))

        def measure(sha: str) -> Step:
            from ..gate.report import GateReport

            started = time.perf_counter()
            ab.git(head, "checkout", "--detach", "--force", "--quiet", sha)
            report, reason = GateReport(title=f"{sha[:12]} against GOOD {good[:12]}"), ""
            try:
                with contextlib.ExitStack() as step_stack:
                    workers, replies = {}, {}
                    if counted:
                        b_tree = ab.side_tree(head, plan.user_repo)
                        workers = {"A": a_worker, "B": step_stack.enter_context(_closing(
                            ab.ProcessWorker("B", b_tree, cpus)))}
                        replies = {"A": a_reply, **ab.setup({"B": workers["B"]}, plan.rows, plan.timed,
                                                            plan.gate.plan)}
                        ab.check_imports("B", b_tree, replies["B"]["info"], {"A": good_tree, "B": b_tree})
                    _run_layers(plan, good, head, report, workers, replies, a_counters)
            except EnvironmentProblem as exc:
                reason = first_line(exc)
            verdict = SKIP if reason else (BAD if report.exit_code else GOOD)
            return Step(next(numbers), sha, ab.git(plan.repo, "log", "-1", "--format=%s", sha), verdict, reason,
                        None if reason else report, step_command(plan, good, sha),
                        time.perf_counter() - started)

        yield measure


def _run_layers(plan: BisectPlan, good: str, head: Path, report, workers: dict, replies: dict,
                a_counters: list | None) -> None:
    """The layers of one step in ``plan.layers``' order (exact first), stopping at the first that fails."""
    from ..gate import ab
    from .check import counter_results, timing_layer

    for layer in plan.layers:
        if report.exit_code:
            return
        if layer == "counters":
            after = ab.request(workers["B"], {"cmd": "counters"})["counters"]
            report.counters = counter_results(a_counters, after, plan.labels)
        elif layer == "instructions":
            from ..gate.instructions import run_layer

            report.instructions = run_layer(good, plan.rows, plan.labels, ["none"], plan.gate.instr_plan,
                                            plan.user_repo, head=head)
        else:
            report.timing = timing_layer(workers, replies, None, plan.labels, plan.timed, plan.gate)


@contextlib.contextmanager
def _closing(worker):
    try:
        yield worker
    finally:
        worker.close()


def step_command(plan: BisectPlan, good: str, sha: str) -> str:
    """The command that measures ``sha`` against GOOD again, as the step did."""
    return " ".join(["mlpbench bisect", good[:12], sha[:12], plan.flags, NO_SEARCH]).replace("  ", " ")


# --------------------------------------------------------------------------- entry point


def command(args: argparse.Namespace) -> int:
    from ..runs import output_file
    from ..gate import ab

    for flag, path in (("--markdown", args.markdown), ("--json", args.json)):
        if path is not None:
            output_file(path, flag)
    plan = plan_from(args)
    good, bad = (_commit(plan.repo, ref, name) for ref, name in ((args.good, "GOOD"), (args.bad, "BAD")))
    if good == bad:
        raise UsageError(f"GOOD and BAD are the same commit ({good[:12]})")
    try:
        ab.git(plan.repo, "merge-base", "--is-ancestor", good, bad)
    except EnvironmentProblem:
        raise UsageError(f"GOOD {args.good} is not an ancestor of BAD {args.bad} in {plan.repo}") from None
    started = time.perf_counter()
    commits = len(ab.git(plan.repo, "rev-list", bad, "--not", good).split())
    result = BisectResult(str(plan.repo), good, bad, plan.layers, commits)
    if not args.no_search:
        print(f"mlpbench bisect: {commits} commits after GOOD in {plan.repo}; about {steps_needed(commits)} "
              f"steps, layers {', '.join(plan.layers)}", file=sys.stderr)
    with gate_steps(plan, good) as measure:
        if args.no_search:
            step = measure(bad)
            result.steps.append(step)
            result.conclusion = (f"{bad[:12]} is {step.verdict} against GOOD" +
                                 (f" ({step.reason})." if step.reason else "."))
            if step.verdict == BAD:
                result.first_bad, result.first_bad_subject = bad, step.subject
        else:
            search(plan.repo, good, bad, measure, result)
    result.wall_s = time.perf_counter() - started
    from ..gate.report import emit

    emit(render(result), args.markdown, args.json, result.to_dict())
    return result.exit_code


def _commit(repo: Path, ref: str, name: str) -> str:
    from ..gate.ab import git

    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except EnvironmentProblem:
        raise UsageError(f"{name} {ref!r}: not a commit in {repo}") from None
