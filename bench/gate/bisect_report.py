"""What ``mlpbench bisect`` found: its steps, the first bad commit, and how it reads as Markdown.

Takes results only; measures nothing. Each step holds the gate report of one commit against GOOD
(``bench.gate.report.GateReport``), its verdict (good, bad, or skip: the commit could not be measured) and
the command that measures that commit again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..format import ms
from .report import GateReport, render_markdown
from ..analysis.verdict import Verdict

GOOD, BAD, SKIP = "good", "bad", "skip"
MAX_FIGURES = 4  # changed counters shown per case and step; the whole gate report of each step is in --json
EXIT_FOUND, EXIT_NOT_FOUND = 0, 1


@dataclass(frozen=True)
class Step:
    number: int  # 1, 2, ...: the order measured
    sha: str
    subject: str
    verdict: str  # GOOD, BAD or SKIP
    reason: str  # SKIP: why the commit could not be measured
    report: GateReport | None  # None when skipped before any layer finished
    command: str  # measures this commit against GOOD again
    wall_s: float


@dataclass
class BisectResult:
    repo: str
    good: str  # full sha
    bad: str  # full sha, as given
    layers: tuple[str, ...]  # in the order each step runs them (exact layers first)
    commits: int  # commits in GOOD..BAD (BAD included): what a search by hand would walk
    steps: list[Step] = field(default_factory=list)
    first_bad: str | None = None  # the first bad commit, when one is named
    first_bad_subject: str = ""
    could_be: list[str] = field(default_factory=list)  # skipped commits leave several: oldest first, bad last
    conclusion: str = ""  # one line
    wall_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_FOUND if self.first_bad else EXIT_NOT_FOUND

    @property
    def measured(self) -> int:
        """Steps that gave a verdict (a skipped commit costs time, but no halving)."""
        return sum(s.verdict != SKIP for s in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {"repo": self.repo, "good": self.good, "bad": self.bad, "layers": list(self.layers),
                "commits": self.commits, "first_bad": self.first_bad, "first_bad_subject": self.first_bad_subject,
                "could_be": self.could_be, "conclusion": self.conclusion, "exit_code": self.exit_code,
                "wall_s": self.wall_s,
                "steps": [{"step": s.number, "sha": s.sha, "subject": s.subject, "verdict": s.verdict,
                           "reason": s.reason, "figures": figures(s), "command": s.command, "wall_s": s.wall_s,
                           "gate": s.report.to_dict() if s.report else None} for s in self.steps]}


def steps_needed(commits: int) -> int:
    """Measurements a halving search needs to tell which of ``commits`` is the first bad one, BAD trusted
    (one more when the answer is BAD itself, which is then measured)."""
    return math.ceil(math.log2(commits)) if commits > 1 else 0


# --------------------------------------------------------------------------- figures


def figures(step: Step) -> list[str]:
    """What each layer measured at this commit against GOOD, one short line per changed or timed figure."""
    if step.report is None:
        return [step.reason] if step.reason else []
    report, out = step.report, []
    for result in report.counters or []:
        if not result.changes:
            continue
        shown = [f"{c.metric} {_count(c.before)} → {_count(c.after)}" for c in result.changes[:MAX_FIGURES]]
        more = len(result.changes) - len(shown)
        out.append(f"{result.label}: {'; '.join(shown)}" + (f"; {more} more changed counters" if more else ""))
    if report.counters is not None and not out:
        out.append(f"all {sum(r.n_metrics for r in report.counters)} counters identical")
    if report.instructions:
        rows = [r for r in report.instructions.results if r.regressed or r.phase == "step"]
        out += [f"{r.label} {r.phase}: instructions B/A {r.ratio:.4f}" + (" (more)" if r.regressed else "")
                for r in rows]
    for result in report.timing or []:
        c = result.comparison
        out.append(f"{result.label}: {ms(c.median_a_s)} → {ms(c.median_b_s)} ms, B/A {c.ratio:.3f} "
                   f"[{c.ci_low:.3f}, {c.ci_high:.3f}]" + (" slower" if c.verdict is Verdict.SLOWER else ""))
    if step.reason:
        out.append(step.reason)
    return out


def _count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


# --------------------------------------------------------------------------- markdown


def render(result: BisectResult) -> str:
    short = result.first_bad[:12] if result.first_bad else ""
    head = (f"first bad commit {short} ({result.first_bad_subject})" if result.first_bad
            else f"one of {len(result.could_be)} commits" if result.could_be else "no first bad commit")
    lines = [f"## mlpbench bisect: {head}", "",
             f"_{result.repo} · GOOD {result.good[:12]} · BAD {result.bad[:12]} · {result.commits} commits after "
             f"GOOD · {_layers(result.layers)} · {len(result.steps)} steps (a halving search needs about "
             f"{steps_needed(result.commits)}) · {result.wall_s:.0f} s_", "",
             "| step | commit | subject | verdict | figures against GOOD |", "|---:|---|---|---|---|"]
    for step in result.steps:
        cells = "<br>".join(_cell(f) for f in figures(step)) or "—"
        verdict = {BAD: "**bad**", SKIP: "skipped"}.get(step.verdict, step.verdict)
        lines.append(f"| {step.number} | `{step.sha[:12]}` | {_cell(step.subject)} | {verdict} | {cells} |")
    lines += ["", result.conclusion, ""]
    if result.could_be:
        lines += ["The first bad commit is one of (skipped commits could not be measured):",
                  *[f"- `{sha}`" for sha in result.could_be], ""]
    lines += ["To measure a step's commit again (the same cases and layers, against GOOD):", ""]
    lines += [f"- step {s.number}, `{s.sha[:12]}`: `{s.command}`" for s in result.steps]
    bad_step = next((s for s in result.steps if s.sha == result.first_bad and s.report), None)
    if bad_step is not None:
        lines += ["", f"### The first bad commit's gate report (A = GOOD, B = {result.first_bad[:12]})", "",
                  render_markdown(bad_step.report).split("\n", 2)[-1].rstrip()]
    return "\n".join(lines).rstrip() + "\n"


def _layers(layers: tuple[str, ...]) -> str:
    if len(layers) == 1:
        return f"layer {layers[0]}"
    return f"layers {', '.join(layers)} (in this order; a step stops at the first that fails)"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
