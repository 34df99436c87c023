"""``mlpbench compare`` and its ``--confirm``: re-measure the cases two runs disagree on, A and B interleaved.

Two stored runs were made at different times; what the machine did in between is in every ratio.
``--confirm`` takes the cases whose ratio moved (a verdict, or a ratio beyond ``bench.analysis.noise.MIN_EFFECT``)
and measures them again now, A's and B's configuration in one run with the gate's interleaved A/B
machinery (``bench.gate.ab``: one worker per side, pinned to one shared CPU, blocks alternating AB, BA,
...; ``bench.analysis.interleaved``: the paired bootstrap interval and the 5% minimum effect), so the drift of
the machine lands on both sides alike.

Where the sides come from:

* both runs recorded the commit this tree is at (a clean tree): both configurations are built from
  this tree;
* A recorded another commit and B this tree's: A is built from that commit, checked out in a
  temporary worktree (``bench.gate.ab.worktree``), B from this tree: the code is compared, as
  ``mlpbench check --against`` does;
* otherwise nothing can rebuild what the runs measured, and the answer says so in one line; except that
  when every case is a user's model (``--model``), both sides run this tree's mlpbench, and it is said.

A user's model is rebuilt as each run recorded it (``bench.runs.recipe``): A's from the copy of its source in
A's run folder, B's from B's, each worker in its run's working folder, so a relative ``models/x.py:f`` never
resolves in the mlpbench tree or in the folder ``compare`` runs in. Each rebuilt model's source hash must equal
the one its run recorded (``SideModels.check``), or that side is refused in one line. The cases under test (a
change named, or exact work that moved: ``bench.report.change``) are re-measured first, moved or not.
"""

from __future__ import annotations

import argparse
import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..analysis import noise
from ..errors import UsageError, sigterm_as_interrupt
from ..report import compare_flags

if TYPE_CHECKING:  # pandas and the comparison load when the command runs: `compare --help` needs neither
    import pandas as pd

MAX_CASES = compare_flags.DEFAULT_CASES  # re-measured per call, largest |log ratio| first
CONFIRM_ROUNDS = compare_flags.DEFAULT_ROUNDS  # interleaved blocks per case and side, at least
# Blocks a side in all, shared by the cases re-measured: one or two cases (a user's edited model, say) get more
# each, for little time (most of a call is starting the workers). On the loaded 2-core AMD EPYC an edit with +20%
# work read slower 2 times in 4 at 20 blocks (intervals +-15-30% at load 3.3-5.2); results/yourchange-eval.
CONFIRM_BLOCK_BUDGET = compare_flags.BLOCK_BUDGET
CONFIRM_BLOCK_S = 0.1
CONFIRM_WARMUP_S = 0.3
# The clock is the runs' own (``mlpbench run --clock``): a run on the CPU clock is confirmed on it. On the loaded
# 2-core EPYC (load 3.3-5.2) wall-clock blocks gave an edit with +20% work intervals of +-15-30% even at 60 blocks a
# side, so it read slower 2 times in 4 (results/yourchange-eval); compare's advice says so (change.CPU_CLOCK_ADVICE).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    compare_flags.add_arguments(parser)


def command(args: argparse.Namespace) -> int:
    from ..report import compare as report_compare

    limit = getattr(args, "confirm_cases", MAX_CASES)
    rounds = getattr(args, "confirm_rounds", None)
    adaptive = Adaptive(getattr(args, "precision", compare_flags.DEFAULT_PRECISION),
                        getattr(args, "max_confirm_s", compare_flags.DEFAULT_MAX_CONFIRM_S))
    return report_compare.command(args, confirm=lambda a, b, table: confirm_lines(a, b, table, limit, rounds,
                                                                                  adaptive))


@dataclass(frozen=True)
class Adaptive:
    """``--confirm``'s adaptive rounds: until each interval is within ``precision`` of its ratio, or ``max_s`` ends."""

    precision: float = compare_flags.DEFAULT_PRECISION
    max_s: float = compare_flags.DEFAULT_MAX_CONFIRM_S


def cases_to_confirm(table: pd.DataFrame, limit: int = MAX_CASES) -> pd.DataFrame:
    """The step rows that moved: a verdict, or a ratio (raw or against the run factor) beyond the minimum effect,
    the ``limit`` largest moves; ``limit`` 0: every step row, moved or not, the largest moves first."""
    from ..report.compare import changed

    step = table[table["phase"] == "step"]
    under_test = changed(step)
    size = step["ratio"].map(lambda r: abs(math.log(r)) if r > 0 else 0.0)
    order = (-size - under_test.astype(float) * 1e9).sort_values(kind="stable").index  # the change under test first
    if limit == 0:
        return step.loc[order]
    big = math.log1p(noise.MIN_EFFECT)
    moved = (under_test | (step["verdict"] != noise.Verdict.INCONCLUSIVE.value) | (size >= big)
             | (step["relative"].map(lambda r: abs(math.log(r)) if r > 0 else 0.0) >= big))
    return step.loc[[i for i in order if moved[i]]].head(limit)


def confirm_lines(run_a, run_b, table: pd.DataFrame, limit: int = MAX_CASES,
                  rounds: int | None = None, adaptive: Adaptive = Adaptive()) -> list[str]:
    """The ``--confirm`` section: which cases, built from where, and the interleaved verdict of each (``limit``:
    ``--confirm-cases``; ``rounds``: ``--confirm-rounds``, a fixed count of blocks a side; None: ``adaptive``
    rounds). The blocks are timed on the clock the runs were (compare has refused two runs on different clocks)."""
    chosen = cases_to_confirm(table, limit)
    if not len(chosen):
        return [f"Confirm: no case moved by {noise.MIN_EFFECT:.0%} or more (raw or against the run-level factor); "
                "nothing to re-measure."]
    from ..report.compare import run_clock

    clock = run_clock(run_a)
    if rounds is not None:
        rounds = max(rounds, CONFIRM_BLOCK_BUDGET // len(chosen))
    ids_a = list(chosen["case_id"])
    ids_b = [_b_case_id(table, cid) for cid in ids_a]
    try:
        model_a = side_models("A", run_a, ids_a)
        model_b = side_models("B", run_b, ids_b)
        trees, how = code_trees(run_a, run_b, users_only=all(model_a.expected) and all(model_b.expected))
    except UsageError as exc:
        return [f"Confirm: not re-measured: {exc}"]
    with trees as (code_a, code_b):
        threads = max(threads_used(run_a.summary, ids_a), threads_used(run_b.summary, ids_b))
        try:
            results = interleaved(model_a.rows, model_b.rows, model_a.tree(code_a), model_b.tree(code_b), threads,
                                  rounds, (model_a, model_b), clock=clock, adaptive=adaptive)
        except UsageError as exc:
            return [f"Confirm: not re-measured: {exc}"]
    how_many = (f"{rounds} blocks a side, paired {results[0].confidence:.0%} interval" if rounds is not None else
                f"adaptive rounds until each interval is within {adaptive.precision:.0%} of its ratio or "
                f"{adaptive.max_s:g} s have passed; {results[0].confidence:.0%} repeated confidence intervals of a "
                "group-sequential design (Lan-DeMets Pocock-type spending), valid at whichever round it stopped")
    lines = [f"Confirm ({how}): {len(chosen)} case(s) re-measured now, A and B interleaved on the same "
             f"{threads} CPU(s), timed on the {clock} clock ({how_many}, minimum effect "
             f"{results[0].min_effect:.0%}):", *model_a.notes, *model_b.notes, ""]
    rows = [{"case": label, "stored B/A": f"{stored:.3f}", "interleaved B/A": f"{r.ratio:.3f}",
             "interval": f"[{r.ci_low:.3f}, {r.ci_high:.3f}]", "blocks a side": r.n_b,
             "now": confirm_word(r.verdict.value, r.ci_low, r.ci_high)}
            for label, stored, r in zip(chosen["case"], chosen["ratio"], results)]
    from ..format import table as format_table

    return lines + [format_table(rows, "github", empty="")]


def confirm_word(gate_verdict: str, ci_low: float = 0.0, ci_high: float = math.inf) -> str:
    """The gate's verdict in compare's words; a pass is "unchanged" only when its interval is within 5% of 1."""
    if gate_verdict in ("regression", "improvement"):
        return "slower" if gate_verdict == "regression" else "faster"
    bound = 1 + noise.MIN_EFFECT
    return (f"unchanged (within {noise.MIN_EFFECT:.0%})" if 1 / bound <= ci_low and ci_high <= bound
            else "inconclusive (the interval holds 1)" if ci_low <= 1 <= ci_high
            else f"changed by less than {noise.MIN_EFFECT:.0%}")


def interleaved(rows_a: Sequence[dict], rows_b: Sequence[dict], tree_a, tree_b,
                threads: int = 1, rounds: int | None = CONFIRM_ROUNDS, models: Sequence["SideModels"] = (),
                clock: str = "wall", adaptive: Adaptive = Adaptive()) -> list:
    """Each case's A row measured from ``tree_a`` and B row from ``tree_b`` (a ``bench.gate.ab.Tree`` or a folder),
    interleaved; gate comparisons. Both workers are pinned to the same ``threads`` CPUs (one-thread cases: one
    core), and a case that ran at torch's default thread count (``threads`` 0) runs at that many there: what the
    stored runs measured, not one thread squeezed onto one CPU. ``rounds``: blocks per case and side (the interval
    narrows as its square root); None: ``adaptive`` rounds (``bench.analysis.sequential``), at most
    ``ab.ADAPTIVE_MAX_ROUNDS``. ``clock``: "wall" or "cpu" (``clocks.cpu_clock``). ``models``: each side's
    ``SideModels``, whose recorded source hashes the rebuilt models must have."""
    from ..gate import ab
    from ..analysis.interleaved import ALPHA, compare_interleaved

    plan = (ab.TimingPlan(rounds, CONFIRM_BLOCK_S, CONFIRM_WARMUP_S, clock) if rounds is not None else
            ab.TimingPlan(ab.ADAPTIVE_MAX_ROUNDS, CONFIRM_BLOCK_S, CONFIRM_WARMUP_S, clock, adaptive.precision,
                          adaptive.max_s))
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
        for side, reply in zip(models, (replies["A"], replies["B"])):
            side.check(reply["info"])
        for name, reply in replies.items():
            reply.update(ab.request(workers[name], {"cmd": "warmup", "cases": timed}))
        iters = ab.block_iters(replies, timed, plan)
        samples = ab.interleaved_samples(workers, timed, iters, plan, ALPHA)
    return [compare_interleaved(samples["A"][i], samples["B"][i], plan.sequential(ALPHA)) for i in timed]


def code_trees(run_a, run_b, users_only: bool) -> tuple[contextlib.AbstractContextManager, str]:
    """``sides``; where it cannot rebuild the runs' mlpbench and every case is a user's model (``users_only``),
    this tree's mlpbench on both sides, said so: the models, rebuilt as each run recorded them, are what differs."""
    from ..instruments.env import git_commit
    from ..gate import ab

    try:
        return sides(run_a, run_b)
    except UsageError as exc:
        if not users_only:
            raise
        here = ab.tree_root()
        commit = git_commit(here)
        return _fixed(here, here), (f"each side's model as its run recorded it, both measured with this tree's "
                                    f"mlpbench, {commit[:12]}{'-dirty' if commit.endswith('-dirty') else ''}, "
                                    f"not the runs' own ({str(exc).split(':')[0]})")


@dataclass
class SideModels:
    """One side's cases as its run recorded them: each user's model rebuilt from the run's copy of its source
    (``bench.runs.recipe``), with the run's working folder as the worker's, and the source hash it must have."""

    side: str
    rows: list[dict]
    expected: list[str]  # each row's recorded model_source_sha; "" for a built-in net
    labels: list[str]
    cwd: Path | None = None
    copies: list[Path] = field(default_factory=list)  # module copies, first on the worker's PYTHONPATH
    notes: list[str] = field(default_factory=list)

    def tree(self, code: Path):
        from ..gate.ab import Tree

        return Tree(Path(code), self.cwd, tuple(self.copies))

    def check(self, info: dict) -> None:
        """The rebuilt models are the recorded ones (their source hashes), or a one-line ``UsageError``."""
        for label, want, got in zip(self.labels, self.expected, info.get("model_shas") or []):
            self._same(label, want, got)

    def check_file(self, label: str, path: Path, want: str) -> None:
        """Before any worker starts: a model file rebuilt without a copy must still hash to what its run measured."""
        if not want:
            return
        if not path.is_file():
            raise UsageError(f"side {self.side}'s model {label}: its run kept no copy of the source, and there is no "
                             f"file {path} any more")
        from ..case.plugin import file_sha

        self._same(label, want, file_sha(str(path)))

    def _same(self, label: str, want: str, got: str) -> None:
        if want and got != want:
            raise UsageError(f"side {self.side} rebuilt {label} from source {got[:8]}.., but its run measured "
                             f"{want[:8]}..: the run folder keeps no copy of that source (a run made before "
                             "mlpbench kept one), and the file has changed since")


def side_models(side: str, run, case_ids: Sequence[str]) -> SideModels:
    """``SideModels`` of ``run`` for these cases; ``UsageError`` naming a model no other process can rebuild."""
    from ..case.plugin import is_path
    from ..runs.recipe import Kind, RecipeBook

    book = RecipeBook.of(run.meta)
    out = SideModels(side, [], [], [])
    for case_id in case_ids:
        row = case_row(run.summary, case_id)
        step = run.summary[(run.summary["case_id"] == case_id) & (run.summary["phase"] == "step")].iloc[0]
        sha = step.get("model_source_sha")
        out.expected.append(str(sha) if row.get("model") and isinstance(sha, str) else "")
        out.labels.append(str(step["label"]))
        name = str(row.get("model") or "")
        recipe = book.get(name) if name else None
        if recipe is not None and recipe.kind == Kind.NONE:
            raise UsageError(f"side {side}'s model {name}: {recipe.why}")
        if recipe is not None and recipe.cwd and Path(recipe.cwd).is_dir():
            out.cwd = out.cwd or Path(recipe.cwd)
        if recipe is not None and recipe.copied(run.path):
            root = recipe.copy_root(run.path)
            if recipe.kind == Kind.FILE:
                row["model"] = f"{root / recipe.files[0]}:{recipe.attr}"
            elif root not in out.copies:
                out.copies.append(root)
            how = f"from its run's copy of its source ({recipe.source_sha[:8]}..)"
        elif name and is_path(name.rpartition(":")[0]):
            base = Path(recipe.cwd) if recipe is not None and recipe.cwd else Path.cwd()
            where, _, attr = name.rpartition(":")
            path = base / where
            row["model"] = f"{path}:{attr}"
            out.check_file(out.labels[-1], path, out.expected[-1])
            how = (f"from {path} as it is now (its run kept no copy of the source; "
                   + ("found in its recorded working folder)" if recipe is not None else "nor its working folder)"))
        else:
            how = "imported as it is now (its run kept no copy of the source)" if name else ""
        note = f"Side {side}: {name} {how}" + (f", working folder {out.cwd}" if out.cwd else "")
        if name and note not in out.notes:
            out.notes.append(note)
        out.rows.append(row)
    return out


def sides(run_a, run_b) -> tuple[contextlib.AbstractContextManager, str]:
    """(a context giving (tree_a, tree_b), how they were chosen); UsageError when this tree cannot build them."""
    from ..instruments.env import git_commit
    from ..gate import ab

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
    from ..gate import ab

    with ab.worktree(here, commit) as tree_a:
        yield tree_a, here


def threads_used(summary: pd.DataFrame, case_ids: Sequence[str]) -> int:
    """The most torch threads the stored run timed these cases at (its ``torch_threads``; 1 when not recorded)."""
    rows = summary[summary["case_id"].isin(list(case_ids)) & (summary["phase"] == "step")]
    counts = [int(x) for x in rows["torch_threads"].dropna()] if "torch_threads" in rows else []
    counts += [int(x) for x in rows["threads"].dropna() if int(x) > 0] if "threads" in rows else []
    return max(counts, default=1)


def case_row(summary: pd.DataFrame, case_id: str) -> dict:
    from ..runs import CASE_COLUMNS

    row = summary[(summary["case_id"] == case_id) & (summary["phase"] == "step")].iloc[0]
    return {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in CASE_COLUMNS if k in row}


def _b_case_id(table: pd.DataFrame, case_id_a: str) -> str:
    return str(table.loc[table["case_id"] == case_id_a, "case_id_b"].iloc[0])
