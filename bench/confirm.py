"""``mlpbench compare`` and its ``--confirm``: re-measure the cases two runs disagree on, A and B interleaved.

Two stored runs were made at different times; what the machine did in between is in every ratio.
``--confirm`` takes the cases whose ratio moved (a verdict, or a ratio beyond ``bench.noise.MIN_EFFECT``)
and measures them again now, A's and B's configuration in one run with the gate's interleaved A/B
machinery (``bench.gate.ab``: one worker per side, pinned to one shared CPU, blocks alternating AB, BA,
...; ``bench.gate.stats``: the paired bootstrap interval and the 5% minimum effect), so the drift of
the machine lands on both sides alike.

Where the sides come from:

* both runs recorded the commit this tree is at (a clean tree): both configurations are built from
  this tree;
* A recorded another commit and B this tree's: A is built from that commit, checked out in a
  temporary worktree (``bench.gate.ab.worktree``), B from this tree: the code is compared, as
  ``mlpbench check --against`` does;
* otherwise nothing can rebuild what the runs measured, and the answer says so in one line.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import noise
from .errors import UsageError, sigterm_as_interrupt
from .report import compare_flags

if TYPE_CHECKING:  # pandas and the comparison load when the command runs: `compare --help` needs neither
    import pandas as pd

MAX_CASES = compare_flags.DEFAULT_CASES  # re-measured per call, largest |log ratio| first
CONFIRM_ROUNDS = compare_flags.DEFAULT_ROUNDS  # interleaved blocks per case and side
CONFIRM_BLOCK_S = 0.1
CONFIRM_WARMUP_S = 0.3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    compare_flags.add_arguments(parser)


def command(args: argparse.Namespace) -> int:
    from .report import compare as report_compare

    limit = getattr(args, "confirm_cases", MAX_CASES)
    rounds = getattr(args, "confirm_rounds", CONFIRM_ROUNDS)
    return report_compare.command(args, confirm=lambda a, b, table: confirm_lines(a, b, table, limit, rounds))


def cases_to_confirm(table: pd.DataFrame, limit: int = MAX_CASES) -> pd.DataFrame:
    """The step rows that moved: a verdict, or a ratio (raw or against the run factor) beyond the minimum effect,
    the ``limit`` largest moves; ``limit`` 0: every step row, moved or not, the largest moves first."""
    step = table[table["phase"] == "step"]
    if limit == 0:
        order = step["ratio"].map(lambda r: -abs(math.log(r)) if r > 0 else 0.0).sort_values().index
        return step.loc[order]
    big = math.log1p(noise.MIN_EFFECT)
    moved = step[(step["verdict"] != noise.Verdict.INCONCLUSIVE.value)
                 | (step["ratio"].map(lambda r: abs(math.log(r)) if r > 0 else 0.0) >= big)
                 | (step["relative"].map(lambda r: abs(math.log(r)) if r > 0 else 0.0) >= big)]
    order = moved["ratio"].map(lambda r: -abs(math.log(r)) if r > 0 else 0.0).sort_values().index
    return moved.loc[order].head(limit)


def confirm_lines(run_a, run_b, table: pd.DataFrame, limit: int = MAX_CASES,
                  rounds: int = CONFIRM_ROUNDS) -> list[str]:
    """The ``--confirm`` section: which cases, built from where, and the interleaved verdict of each (``limit``:
    ``--confirm-cases``; ``rounds``: ``--confirm-rounds``, blocks a side)."""
    chosen = cases_to_confirm(table, limit)
    if not len(chosen):
        return [f"Confirm: no case moved by {noise.MIN_EFFECT:.0%} or more (raw or against the run-level factor); "
                "nothing to re-measure."]
    try:
        trees, how = sides(run_a, run_b)
    except UsageError as exc:
        return [f"Confirm: not re-measured: {exc}"]
    rows_a = [case_row(run_a.summary, cid) for cid in chosen["case_id"]]
    rows_b = [case_row(run_b.summary, _b_case_id(table, cid)) for cid in chosen["case_id"]]
    with trees as (tree_a, tree_b):
        threads = max(threads_used(run_a.summary, chosen["case_id"]),
                      threads_used(run_b.summary, [_b_case_id(table, c) for c in chosen["case_id"]]))
        results = interleaved(rows_a, rows_b, tree_a, tree_b, threads, rounds)
    lines = [f"Confirm ({how}): {len(chosen)} case(s) re-measured now, A and B interleaved on the same "
             f"{threads} CPU(s) ({rounds} blocks a side, paired {results[0].confidence:.0%} interval, "
             f"minimum effect {results[0].min_effect:.0%}):", ""]
    rows = [{"case": label, "stored B/A": f"{stored:.3f}", "interleaved B/A": f"{r.ratio:.3f}",
             "interval": f"[{r.ci_low:.3f}, {r.ci_high:.3f}]",
             "now": confirm_word(r.verdict.value, r.ci_low, r.ci_high)}
            for label, stored, r in zip(chosen["case"], chosen["ratio"], results)]
    from .format import table as format_table

    return lines + [format_table(rows, "github", empty="")]


def confirm_word(gate_verdict: str, ci_low: float = 0.0, ci_high: float = math.inf) -> str:
    """The gate's verdict in compare's words; a pass is "unchanged" only when its interval is within 5% of 1."""
    if gate_verdict in ("regression", "improvement"):
        return "slower" if gate_verdict == "regression" else "faster"
    bound = 1 + noise.MIN_EFFECT
    return (f"unchanged (within {noise.MIN_EFFECT:.0%})" if 1 / bound <= ci_low and ci_high <= bound
            else "inconclusive (the interval holds 1)" if ci_low <= 1 <= ci_high
            else f"changed by less than {noise.MIN_EFFECT:.0%}")


def interleaved(rows_a: Sequence[dict], rows_b: Sequence[dict], tree_a: Path, tree_b: Path,
                threads: int = 1, rounds: int = CONFIRM_ROUNDS) -> list:
    """Each case's A row measured from ``tree_a`` and B row from ``tree_b``, interleaved; gate comparisons.
    Both workers are pinned to the same ``threads`` CPUs, and a case that ran at torch's default thread count
    (``threads`` 0) runs at that many there: what the stored runs measured, not one thread squeezed onto one
    CPU. ``rounds``: blocks per case and side (the interval narrows as its square root)."""
    from .gate import ab
    from .gate.stats import compare_samples

    plan = ab.TimingPlan(rounds, CONFIRM_BLOCK_S, CONFIRM_WARMUP_S)
    cpus = ab.shared_cpu(threads)
    timed = list(range(len(rows_a)))
    with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        workers = {"A": ab.ProcessWorker("A", tree_a, cpus), "B": ab.ProcessWorker("B", tree_b, cpus)}
        for w in workers.values():
            stack.callback(w.close)
        for name, rows in (("A", rows_a), ("B", rows_b)):
            cases = [{**r, "threads": r.get("threads") or threads} for r in rows]
            workers[name].send({"cmd": "setup", "cases": cases, "warmup_s": plan.warmup_s, "inject": "none"})
        replies = {name: w.receive() for name, w in workers.items()}
        for name, reply in replies.items():
            reply.update(ab.request(workers[name], {"cmd": "warmup", "cases": timed}))
        iters = ab.block_iters(replies, timed, plan)
        samples = ab.interleaved_samples(workers, timed, iters, plan)
    return [compare_samples(samples["A"][i], samples["B"][i], paired=True) for i in timed]


def sides(run_a, run_b) -> tuple[contextlib.AbstractContextManager, str]:
    """(a context giving (tree_a, tree_b), how they were chosen); UsageError when this tree cannot build them."""
    from .env import git_commit
    from .gate import ab

    here = ab.tree_root()
    now = git_commit(here)
    commit_a, commit_b = (str(run.meta.env.get("git_commit") or "unknown") for run in (run_a, run_b))
    if now.endswith("-dirty") or now == "unknown":
        raise UsageError(f"this tree is at {now}: commit first, so that what is re-measured is a known commit")
    if commit_b != now:
        raise UsageError(f"B was measured at commit {commit_b[:12]}, this tree is at {now[:12]}: check out B's "
                         "commit (or use `mlpbench check --against REF`)")
    if commit_a == now:
        return _fixed(here, here), "both configurations built from this tree"
    if commit_a.endswith("-dirty") or commit_a == "unknown":
        raise UsageError(f"A was measured at {commit_a}, which no checkout can rebuild")
    return _worktree_and(here, commit_a), f"A built from commit {commit_a[:12]} in a worktree, B from this tree"


@contextlib.contextmanager
def _fixed(tree_a: Path, tree_b: Path) -> Iterator[tuple[Path, Path]]:
    yield tree_a, tree_b


@contextlib.contextmanager
def _worktree_and(here: Path, commit: str) -> Iterator[tuple[Path, Path]]:
    from .gate import ab

    with ab.worktree(here, commit) as tree_a:
        yield tree_a, here


def threads_used(summary: pd.DataFrame, case_ids: Sequence[str]) -> int:
    """The most torch threads the stored run timed these cases at (its ``torch_threads``; 1 when not recorded)."""
    rows = summary[summary["case_id"].isin(list(case_ids)) & (summary["phase"] == "step")]
    counts = [int(x) for x in rows["torch_threads"].dropna()] if "torch_threads" in rows else []
    counts += [int(x) for x in rows["threads"].dropna() if int(x) > 0] if "threads" in rows else []
    return max(counts, default=1)


def case_row(summary: pd.DataFrame, case_id: str) -> dict:
    from .runs import CASE_COLUMNS

    row = summary[(summary["case_id"] == case_id) & (summary["phase"] == "step")].iloc[0]
    return {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in CASE_COLUMNS if k in row}


def _b_case_id(table: pd.DataFrame, case_id_a: str) -> str:
    return str(table.loc[table["case_id"] == case_id_a, "case_id_b"].iloc[0])
