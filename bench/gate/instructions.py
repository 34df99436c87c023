"""The gate's third layer: instructions per training step and phase, counted under Valgrind's Callgrind.

``--against REF`` counts REF (its temporary worktree) and the working tree on this
machine in the same run: one Valgrind process imports torch once, then forks one child per
tree, both counting at once (one per core), each every gate case (``bench.gate.instructions_worker``). Counts are nearly
deterministic, so a small increase is visible where wall-clock sees only noise; but
they depend on the CPU (Valgrind has no AVX-512 and hides what it lacks, so oneDNN/MKL
take other paths than natively) and on the torch build. Counts are therefore never
stored and compared later: there is no instruction baseline file, only A and B counted
side by side.

Verdict per case and phase: a regression when B/A - 1 exceeds ``THRESHOLD``, which was
set from the measured A/A spread (docs/perf-gate.md). On a regression the report lists
the functions whose exclusive counts grew most (B - A, as ``CallgrindStats.delta``),
from ``callgrind_annotate`` read into torch.utils.benchmark's ``FunctionCounts``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import instructions_worker
from ..errors import EnvironmentProblem

WORKER = Path(instructions_worker.__file__).resolve()
PHASES = instructions_worker.PHASES
VALGRIND_TOOLS = ("valgrind", "callgrind_annotate")
# A regression: B - A above both THRESHOLD x A and MIN_INCREASE instructions per step. Both are
# twice the worst A/A spread measured here, rounded up (docs/perf-gate.md; 12 process pairs x 4 cases
# x 4 phases): |B - A| at most 8,645 instructions per step (bf16 case, step), so MIN_INCREASE =
# 18,000; |B/A - 1| at most 0.065% among regions of 10 M instructions per step or more (w256 Adam,
# step), so THRESHOLD = 0.13%. The A/A noise is additive (a few thousand instructions per region
# whatever its size), so for the gate's cases the floor decides.
THRESHOLD = 0.0013
MIN_INCREASE = 18_000
TOP_FUNCTIONS = 8  # functions listed per regressed case and phase (the full delta is in callgrind's files)
LAYER_TIMEOUT_S = 3600.0  # the Valgrind process, all cases of both trees (measured: minutes; see docs)
STDERR_TAIL_CHARS = 800
CALLGRIND_OUT = "callgrind.out"  # callgrind.out.PID per process; Callgrind numbers its dumps .1, .2, ...


@dataclass(frozen=True)
class InstructionPlan:
    steps: int = 3  # steps per measured region, averaged (counts repeat to ~0.03%: few are enough)
    warmup_steps: int = 5  # before counting: the first steps create optimiser state and pick kernels
    repeats: int = 1  # regions per case and phase in one process (the campaign uses more)

    def __post_init__(self) -> None:
        from ..errors import UsageError

        if self.steps < 1 or self.warmup_steps < 1 or self.repeats < 1:
            raise UsageError("--instr-steps, --instr-warmup and --instr-repeats must be >= 1")


# --------------------------------------------------------------------------- Valgrind


def require_valgrind() -> None:
    """Valgrind's Callgrind and its two helper scripts on PATH, else a one-line environment error (exit 2)."""
    missing = [tool for tool in VALGRIND_TOOLS if shutil.which(tool) is None]
    if missing:
        raise EnvironmentProblem(f"the instruction layer needs Valgrind, but {', '.join(missing)} is not on PATH "
                                 "(Debian/Ubuntu: apt-get install valgrind)")


def read_total(path: Path) -> int:
    """Instructions (event Ir) in one Callgrind dump: its ``totals:`` line (``summary:`` in older files)."""
    found = None
    with open(path) as f:
        for line in f:
            if line.startswith("totals:"):
                return int(line.split()[1])
            if line.startswith("summary:"):
                found = int(line.split()[1])
    if found is None:
        raise EnvironmentProblem(f"{path}: no totals in this Callgrind file")
    return found


_FUNCTION_LINE = re.compile(r"^\s*([0-9,]+)\s+(?:\([^)]*\)\s+)?(.+:.+)$")
_TOTAL_LINE = re.compile(r"^\s*([0-9,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS")


# Build-location prefixes and library names out of function names, as CallgrindStats.as_standardized
# does: shorter report lines, and the same function under two build paths still cancels in B - A.
STANDARDIZE = ((r"^.+/(Python|Objects|Modules|Include)/", r"\1/"), (r"^.+build/\.\./", "build/../"),
               (r"\s\[.+\]$", ""))


def function_counts(paths: Sequence[Path]):
    """Exclusive instructions per function over several dumps, as torch.utils.benchmark's ``FunctionCounts``."""
    from torch.utils.benchmark.utils.valgrind_wrapper.timer_interface import FunctionCounts

    total = FunctionCounts((), inclusive=False)
    for path in paths:
        done = subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(path)],
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise EnvironmentProblem(f"callgrind_annotate {path}: {done.stderr.strip()[-200:]}")
        total = total + parse_annotate(done.stdout)
    for pattern, replacement in STANDARDIZE:
        total = total.transform(lambda fn, p=pattern, r=replacement: re.sub(p, r, fn))
    return total


def parse_annotate(text: str):
    """``callgrind_annotate --inclusive=no`` output -> ``FunctionCounts`` (the way torch's own parser reads it)."""
    from torch.utils.benchmark.utils.valgrind_wrapper.timer_interface import FunctionCount, FunctionCounts

    counts: dict[str, int] = {}
    program_total = None
    for line in text.splitlines():
        if program_total is None:
            match = _TOTAL_LINE.match(line)
            if match:
                program_total = int(match.group(1).replace(",", ""))
            continue
        match = _FUNCTION_LINE.match(line)
        if match and "file:function" not in line:
            counts[match.group(2).strip()] = counts.get(match.group(2).strip(), 0) + int(match.group(1).replace(",", ""))
    if program_total is None:
        raise EnvironmentProblem("callgrind_annotate printed no PROGRAM TOTALS")
    return FunctionCounts(tuple(sorted((FunctionCount(c, f) for f, c in counts.items() if c), reverse=True)),
                          inclusive=False)


# --------------------------------------------------------------------------- one tree's counts


@dataclass(frozen=True)
class TreeCounts:
    """What one side counted: each dump's instructions and what it held."""

    side: str
    folder: Path
    dumps: list[dict[str, Any]]  # manifest entries, in dump order; dump i is {prefix}.{i+1}
    totals: list[int]
    case_times: list[dict[str, Any]]
    wall_s: float
    prefix: Path  # the side's Callgrind files: callgrind.out.PID (PID of its process), numbered .1, .2, ...
    cpu_s: dict[str, float] = field(default_factory=dict)  # "side": its own CPU seconds, "before_fork": the
    # shared process's until the fork (import torch and PREIMPORT, once for both sides), "before_fork_wall"

    def per_step(self, variant: str, case: int, phase: str) -> list[float]:
        """Instructions per step, one value per repeat."""
        sums: dict[int, list[int]] = {}
        for dump, total in zip(self.dumps, self.totals):
            if (dump["variant"], dump["case"], dump["phase"]) == (variant, case, phase):
                acc = sums.setdefault(dump["repeat"], [0, 0])
                acc[0] += total
                acc[1] += dump["steps"]
        return [acc[0] / acc[1] for _, acc in sorted(sums.items())]

    def files(self, variant: str, case: int, phase: str, repeat: int = 0) -> list[Path]:
        return [Path(f"{self.prefix}.{i + 1}") for i, d in enumerate(self.dumps)
                if (d["variant"], d["case"], d["phase"], d["repeat"]) == (variant, case, phase, repeat)]

    def steps(self, variant: str, case: int, phase: str) -> int:
        return sum(d["steps"] for d in self.dumps
                   if (d["variant"], d["case"], d["phase"], d["repeat"]) == (variant, case, phase, 0))


def _spec(folder: Path, rows: list[dict], variants: list[str], plan: InstructionPlan) -> Path:
    spec = folder / "spec.json"
    spec.write_text(json.dumps({"cases": rows, "variants": variants, "steps": plan.steps,
                                "warmup_steps": plan.warmup_steps, "repeats": plan.repeats,
                                "manifest": str(folder / "manifest.json")}))
    return spec


def _launch(workdir: Path, name: str, sides: list[dict[str, str]], fork: bool) -> subprocess.Popen:
    """One Valgrind process counting ``sides`` (forked children, or itself for one side); its own session,
    so that a timeout can end its children too. Nothing of a tree is on its path until a side takes it."""
    launch = workdir / f"launch-{name}.json"
    launch.write_text(json.dumps({"sides": sides, "fork": fork}))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")  # libgomp reads its thread count when it loads
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no", "--vgdb=no",
               f"--callgrind-out-file={workdir / CALLGRIND_OUT}.%p", sys.executable, str(WORKER), str(launch)]
    log = open(workdir / f"valgrind-{name}.log", "w")
    try:
        return subprocess.Popen(command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
    finally:
        log.close()


def count_trees(sides: dict[str, tuple[Any, list[str]]], rows: list[dict], plan: InstructionPlan,
                workdir: Path, timeout_s: float = LAYER_TIMEOUT_S, fork: bool = True) -> dict[str, TreeCounts]:
    """Every side (``{side: (tree, variants)}``, a tree an ``ab.Tree`` or a folder that is both its code and its
    cwd) counted at once, one per core: by default children forked from one Valgrind process after its
    ``import torch`` (paid once); ``fork=False``: one Valgrind process per side (the tests' reference)."""
    from .ab import as_tree

    require_valgrind()
    started = time.perf_counter()
    trees = {side: as_tree(tree) for side, (tree, _) in sides.items()}
    entries = {}
    for side, (_, variants) in sides.items():
        folder = workdir / side
        folder.mkdir(parents=True)
        entries[side] = {"side": side, "cwd": str(trees[side].cwd), "pythonpath": trees[side].env()["PYTHONPATH"],
                         "spec": str(_spec(folder, rows, variants, plan)), "log": str(folder / "worker.log")}
    groups = {"all": list(entries)} if fork else {side: [side] for side in entries}
    procs = []
    try:
        for name, members in groups.items():
            procs.append((_launch(workdir, name, [entries[s] for s in members], fork), name))
        codes = {}
        for proc, name in procs:
            left_s = max(1.0, timeout_s - (time.perf_counter() - started))
            try:
                codes[name] = proc.wait(left_s)
            except subprocess.TimeoutExpired:
                raise EnvironmentProblem(f"Valgrind did not finish counting {', '.join(groups[name])} "
                                         f"within {timeout_s:.0f} s") from None
        wall_s = time.perf_counter() - started
        return {side: _read_side(side, workdir, trees, codes[name], wall_s)
                for name, members in groups.items() for side in members}
    finally:
        for proc, _ in procs:
            _end_session(proc)


def _end_session(proc: subprocess.Popen) -> None:
    """The Valgrind process and its forked children, if any is left (a timeout, an interrupt)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _read_side(side: str, workdir: Path, trees: dict, code: int, wall_s: float) -> TreeCounts:
    from .ab import check_imports

    folder = workdir / side
    manifest = folder / "manifest.json"
    if code != 0 or not manifest.exists():
        logs = [folder / "worker.log"] + sorted(workdir.glob("valgrind-*.log"))
        text = "\n".join(p.read_text(errors="replace") for p in logs if p.exists())
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("==")]
        tail = " ".join(" ".join(lines[-6:]).split())[-STDERR_TAIL_CHARS:]
        raise EnvironmentProblem(f"side {side}: the Valgrind worker failed (exit {code}): {tail or 'no output'}")
    info = json.loads(manifest.read_text())
    check_imports(side, trees[side], info, trees)
    prefix = workdir / f"{CALLGRIND_OUT}.{info['pid']}"
    totals = [read_total(Path(f"{prefix}.{i + 1}")) for i in range(len(info["dumps"]))]
    before = info.get("before_fork") or {}
    cpu_s = {"side": info["cpu_s"], "before_fork": before.get("cpu_s", 0.0), "before_fork_wall": before.get("wall_s", 0.0)}
    return TreeCounts(side, folder, info["dumps"], totals, info["case_times"], wall_s, prefix, cpu_s)


# --------------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class InstructionResult:
    label: str  # as A counts it
    case_id: str
    variant: str  # what B carried: "none", or an injected regression
    phase: str
    a_per_step: list[float]  # one value per repeat
    b_per_step: list[float]
    top_growth: list[tuple[int, str]] = field(default_factory=list)  # (instructions per step, function), B - A

    @property
    def ratio(self) -> float:
        return statistics.fmean(self.b_per_step) / statistics.fmean(self.a_per_step)

    @property
    def increase(self) -> float:
        """Instructions per step B - A (means over repeats)."""
        return statistics.fmean(self.b_per_step) - statistics.fmean(self.a_per_step)

    @property
    def regressed(self) -> bool:
        return is_regression(statistics.fmean(self.a_per_step), statistics.fmean(self.b_per_step))

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "case_id": self.case_id, "variant": self.variant, "phase": self.phase,
                "a_per_step": self.a_per_step, "b_per_step": self.b_per_step, "ratio": self.ratio,
                "increase": self.increase, "regressed": self.regressed,
                "top_growth": [list(t) for t in self.top_growth]}


def is_regression(a_per_step: float, b_per_step: float) -> bool:
    """The verdict: more instructions per step than the A/A spread allows (see THRESHOLD)."""
    return b_per_step - a_per_step > max(THRESHOLD * a_per_step, MIN_INCREASE)


def compare(a: TreeCounts, b: TreeCounts, labels: list[tuple[str, str]],
            variants: Iterable[str]) -> list[InstructionResult]:
    """Every case and phase of every variant B counted, against A's clean counts; growth for regressions."""
    results = []
    for variant in variants:
        for index, (label, case_id) in enumerate(labels):
            for phase in PHASES:
                result = InstructionResult(label, case_id, variant, phase, a.per_step("none", index, phase),
                                           b.per_step(variant, index, phase))
                if result.regressed:
                    result = _with_growth(result, a, b, index)
                results.append(result)
    return results


def _with_growth(result: InstructionResult, a: TreeCounts, b: TreeCounts, index: int) -> InstructionResult:
    before = function_counts(a.files("none", index, result.phase))
    after = function_counts(b.files(result.variant, index, result.phase))
    steps = b.steps(result.variant, index, result.phase)
    grown = [(round(c / steps), fn) for c, fn in (after - before) if c > 0][:TOP_FUNCTIONS]
    return InstructionResult(**{**result.__dict__, "top_growth": grown})


# --------------------------------------------------------------------------- the layer


@dataclass
class InstructionLayer:
    results: list[InstructionResult]
    against: str
    plan: InstructionPlan
    cpu_model: str
    torch: str
    wall_s: float
    side_wall_s: dict[str, float]
    case_times: dict[str, list[dict[str, Any]]]
    side_cpu_s: dict[str, dict[str, float]] = field(default_factory=dict)  # TreeCounts.cpu_s per side

    @property
    def regressions(self) -> int:
        return sum(r.regressed for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"against": self.against, "plan": self.plan.__dict__, "cpu_model": self.cpu_model,
                "torch": self.torch, "wall_s": self.wall_s, "side_wall_s": self.side_wall_s,
                "case_times": self.case_times, "side_cpu_s": self.side_cpu_s, "threshold": THRESHOLD,
                "min_increase": MIN_INCREASE,
                "rows": [r.to_dict() for r in self.results]}


def run_layer(against: str, rows: list[dict], labels: list[tuple[str, str]], injections: Sequence[str],
              plan: InstructionPlan, user_repo: Path | None = None, head: Path | None = None) -> InstructionLayer:
    """REF (side A, clean) and this tree (side B) counted at once.

    B counts ``injections[0]`` when one is given ("none": the clean tree); given several (a
    campaign), B counts the clean tree and each of them in its one process. ``user_repo`` (``--suite``):
    REF and the working tree are the user's repository's, counted with this mlpbench on both sides. ``head``:
    B counts this checkout instead of the working tree (``mlpbench bisect``).
    """
    import torch

    from ..instruments.env import cpu_model
    from . import ab

    require_valgrind()
    started = time.perf_counter()
    b_variants = ["none"] + [v for v in injections if v != "none"] if len(injections) > 1 else list(injections)
    with ab.sigterm_as_interrupt(), ab.sides(against, user_repo, head) as trees, _workdir() as workdir:
        counted = count_trees({"A": (trees["A"], ["none"]), "B": (trees["B"], b_variants)}, rows, plan, workdir)
        results = compare(counted["A"], counted["B"], labels, b_variants)
    return InstructionLayer(results, against, plan, cpu_model(), torch.__version__, time.perf_counter() - started,
                            {s: c.wall_s for s, c in counted.items()}, {s: c.case_times for s, c in counted.items()},
                            {s: c.cpu_s for s, c in counted.items()})


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="mlpbench-callgrind-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- report


def render(layer: InstructionLayer) -> list[str]:
    """The Markdown section: one row per case and phase (only regressions and step rows when all pass)."""
    head = [f"### Layer 3: instructions per step under Callgrind (A = {layer.against}, B = this tree)", ""]
    rows = ["| case | B carries | phase | A instr/step | B instr/step | B - A | B/A - 1 | verdict |",
            "|---|---|---|---:|---:|---:|---:|---|"]
    for r in layer.results:
        verdict = "**regression**" if r.regressed else "pass"
        rows.append(f"| {r.label} | {r.variant} | {r.phase} | {statistics.fmean(r.a_per_step):,.0f} | "
                    f"{statistics.fmean(r.b_per_step):,.0f} | {r.increase:+,.0f} | {r.ratio - 1:+.3%} | {verdict} |")
    rule = (f"Regression: B - A above {THRESHOLD:.2%} of A and above {MIN_INCREASE:,} instructions per step "
            "(set from the measured A/A spread, docs/perf-gate.md). "
            f"{layer.plan.steps} steps per region after {layer.plan.warmup_steps} warm-up steps, one torch "
            f"thread; {layer.cpu_model}, torch {layer.torch}; both trees counted in this run "
            f"({layer.wall_s:.0f} s).")
    growth = []
    for r in layer.results:
        if r.top_growth:
            growth += [f"- {r.label}, {r.phase} (B carries {r.variant}): functions whose instructions per step grew "
                       "most (B - A):"]
            growth += [f"  - {count:+,} `{fn}`" for count, fn in r.top_growth]
    return head + rows + ["", rule, ""] + (growth + [""] if growth else [])


def summarize_runs(reports: list[dict]) -> list[str]:
    """Campaign summary: per variant, case and phase, how often it was flagged and the spread of B/A - 1."""
    cells: dict[tuple[str, str, str], list[dict]] = {}
    for report in reports:
        for row in (report.get("instructions") or {}).get("rows", []):
            cells.setdefault((row["variant"], row["label"], row["phase"]), []).append(row)
    lines = []
    for (variant, label, phase), rows in cells.items():
        diffs = [r["ratio"] - 1 for r in rows]
        flagged = sum(is_regression(statistics.fmean(r["a_per_step"]), statistics.fmean(r["b_per_step"]))
                      for r in rows)  # the rule as it is now, on the raw counts
        increases = [statistics.fmean(r["b_per_step"]) - statistics.fmean(r["a_per_step"]) for r in rows]
        lines.append(f"  {variant:14s} {label[:34]:34s} {phase:9s}: flagged {flagged}/{len(rows)}; B/A-1 median "
                     f"{statistics.median(diffs):+.4%} (min {min(diffs):+.4%}, max {max(diffs):+.4%}); "
                     f"B-A {min(increases):+,.0f} .. {max(increases):+,.0f}")
    return lines
