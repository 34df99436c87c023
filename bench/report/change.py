"""What changed between two runs, beside how long they took: the change under test, and the work it does.

* **The change under test.** Two runs of the same user's model whose source (``model_source_sha``), model
  arguments or mlpbench commit differ are paired, and the difference is named: ``model source 3f2a1b2c.. ->
  9c1b4d5e..``, ``model args hidden=250 -> hidden=300``, ``mlpbench commit 78cd158a.. -> 1a2b3c4d..``. It is what
  ``compare`` judges, not a reason to refuse the pair.
* **Work per step, exact.** The exact counters a run records per case (matmul FLOPs, elementwise FLOPs, bytes,
  ATen ops, parameters: ``bench.case.accounting`` and ``bench.instruments.counters``) repeat exactly on the same code and
  torch build: a change in one is a definite finding, with no noise model, beside the timing verdict (``work per
  step +20.0%, exact``). A counter a run left empty (a user's model has no elementwise count) is not compared.

Reporting only: this module reads the joined result rows (``_a``/``_b`` columns), never measuring code.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

SHA_SHOWN = 8  # hex digits of a source hash or commit shown in a change
# The exact counters of a summary row, in the order a change is told; the first is "work per step".
COUNTERS = (("matmul_flops", "matmul FLOPs"), ("elementwise_flops", "elementwise FLOPs"),
            ("traffic_bytes", "bytes"), ("aten_ops", "ATen ops"), ("parameters", "parameters"))
SOURCE, ARGS = "model_source_sha", "model_args"


class Work:
    MORE = "more work"
    LESS = "less work"
    SAME = "same work"
    MIXED = "mixed work"
    UNCOUNTED = "not counted"


@dataclass(frozen=True)
class CounterChange:
    name: str
    a: float
    b: float

    @property
    def relative(self) -> float:
        return self.b / self.a - 1 if self.a else math.inf

    def text(self) -> str:
        size = f"{self.relative:+.1%}" if math.isfinite(self.relative) else "from 0"
        return f"{self.name} {size} ({self.a:,.0f} -> {self.b:,.0f})"


@dataclass(frozen=True)
class WorkVerdict:
    """The exact counters of one case in A and in B: ``verdict`` one of ``Work``, ``changes`` the ones that moved."""

    verdict: str
    changes: tuple[CounterChange, ...]
    compared: tuple[str, ...]  # the counters both runs recorded

    @property
    def short(self) -> str:
        """The table cell: ``+20.0% (exact)`` (the first counter that moved), ``same (exact)``, or empty."""
        if self.verdict == Work.UNCOUNTED:
            return ""
        if not self.changes:
            return "same (exact)"
        first = self.changes[0]
        size = f"{first.relative:+.1%}" if math.isfinite(first.relative) else "new"
        return f"{size} {first.name} (exact)"

    @property
    def sentence(self) -> str:
        """``work per step +20.0%, exact: matmul FLOPs +20.0% (...), parameters +19.9% (...)``."""
        if self.verdict == Work.UNCOUNTED:
            return "work not counted in both runs"
        if not self.changes:
            return f"same work per step, exact ({', '.join(self.compared)} equal)"
        head = self.changes[0]
        size = f"{head.relative:+.1%}" if math.isfinite(head.relative) else "from nothing"
        return f"work per step {size}, exact: " + ", ".join(c.text() for c in self.changes)


def number(value) -> float:
    """A table cell as a float; NaN where it is blank, absent or not a number."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return math.nan
    return x


def work(row: Mapping) -> WorkVerdict:
    """The work verdict of one joined row (``<counter>_a`` and ``<counter>_b``)."""
    changes, compared = [], []
    for column, name in COUNTERS:
        a, b = number(row.get(f"{column}_a")), number(row.get(f"{column}_b"))
        if not (math.isfinite(a) and math.isfinite(b)):
            continue
        compared.append(name)
        if a != b:
            changes.append(CounterChange(name, a, b))
    if not compared:
        return WorkVerdict(Work.UNCOUNTED, (), ())
    signs = {c.b > c.a for c in changes}
    verdict = (Work.SAME if not changes else Work.MIXED if len(signs) > 1
               else Work.MORE if signs == {True} else Work.LESS)
    return WorkVerdict(verdict, tuple(changes), tuple(compared))


def _short(value: object) -> str:
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    return f"{text[:SHA_SHOWN]}.." if len(text) > SHA_SHOWN else text


def case_change(row: Mapping) -> str:
    """The change under test in one joined row: its model source and model args, A -> B ("" when the same)."""
    parts = []
    a, b = row.get(f"{SOURCE}_a"), row.get(f"{SOURCE}_b")
    if _short(a) and _short(b) and str(a) != str(b):
        parts.append(f"model source {_short(a)} -> {_short(b)}")
    a, b = row.get(f"{ARGS}_a"), row.get(f"{ARGS}_b")
    if a is not None and b is not None and str(a) != str(b):
        parts.append(f"model args {a or '(none)'} -> {b or '(none)'}")
    return "; ".join(parts)


def run_change(env_a: Mapping, env_b: Mapping) -> str:
    """The mlpbench commit each run recorded, when they differ (``mlpbench commit 78cd158a.. -> 1a2b3c4d..``)."""
    a, b = str(env_a.get("git_commit") or "unknown"), str(env_b.get("git_commit") or "unknown")
    if a == b:
        return ""
    return f"mlpbench commit {_short(a)}{'-dirty' if a.endswith('-dirty') else ''} -> " \
           f"{_short(b)}{'-dirty' if b.endswith('-dirty') else ''}"


def change_lines(table, env_a: Mapping, env_b: Mapping) -> list[str]:
    """``Change under test: ...`` (one line per distinct change, with the cases it covers), or nothing."""
    lines = []
    by_change: dict[str, list[str]] = {}
    if len(table) and "change" in table:
        for label, text in zip(table["case"], table["change"]):
            if text:
                by_change.setdefault(text, []).append(label)
    for text, labels in by_change.items():
        lines.append(f"Change under test: {text} ({len(set(labels))} case(s): {', '.join(dict.fromkeys(labels))})")
    version = run_change(env_a, env_b)
    if version:
        lines.append(f"Change under test: {version} (every case)")
    return lines


def work_lines(table) -> list[str]:
    """``Work (exact counters, ...)``: one line per case whose work changed, or one line saying none did."""
    if not len(table) or "work_verdict" not in table:
        return []
    step = table[table["phase"] == "step"] if "phase" in table else table
    counted = step[step["work_verdict"] != Work.UNCOUNTED]
    if not len(counted):
        return ["Work per step: not counted in both runs (no exact counters to compare)."]
    moved = counted[counted["work_verdict"] != Work.SAME]
    if not len(moved):
        return [f"Work per step (exact counters, no noise): the same in all {len(counted)} case(s): "
                f"{counted['work_detail'].iloc[0]}."]
    head = (f"Work per step (exact counters, no noise, beside the timing verdict): {len(moved)} of {len(counted)} "
            "case(s) changed:")
    return [head, *(f"- {r['case']}: {r['work_verdict']}: {r['work_detail']}" for _, r in moved.iterrows())]


# The measured gain of one thread and the CPU clock (issue 49's table: 40 blocks of 30 steps, w512 d2 b128 fp32, on a
# 2-core AMD EPYC; "under load": two competing one-thread processes). Quoted, not re-measured here.
CPU_CLOCK_ADVICE = ("On a shared machine, time one-thread cases on the CPU clock: `mlpbench run --threads 1 --clock "
                    "cpu` (both runs). Measured on a 2-core AMD EPYC under two competing one-thread processes "
                    "(w512 d2 b128 fp32): the robust CV of a step fell from 17.5% (wall clock) to 8.3% (the thread's "
                    "CPU time), and its median read 1.13x the quiet one instead of 1.62x; quiet, both clocks gave "
                    "5.7%.")


def decide_lines(path_a, path_b, sweep_file: str | None = None) -> list[str]:
    """The instruments that decide an inconclusive timing verdict, as commands to paste."""
    lines = [f"Decide the timing: `mlpbench compare {shlex.quote(str(path_a))} {shlex.quote(str(path_b))} --confirm` "
             "re-measures A's and B's models as each run recorded them, interleaved in one run"]
    if sweep_file:
        lines.append(f"or, with your model under git: `mlpbench check --suite {shlex.quote(str(sweep_file))} "
                     "--against HEAD` (A: your last commit, B: your working tree; exact counters and interleaved "
                     "timing)")
    return lines

