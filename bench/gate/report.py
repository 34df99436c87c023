"""What one gate run found, its exit code, and how it reads as Markdown (a CI job summary).

Takes results only; measures nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..format import ms
from ..instruments.counters import Change
from ..analysis.interleaved import TimingComparison
from ..analysis.verdict import Verdict

EXIT_PASS, EXIT_REGRESSION, EXIT_ENVIRONMENT = 0, 1, 2
MAX_OP_LINES = 12  # per case; the full operator lists are in --json


@dataclass(frozen=True)
class CounterResult:
    label: str
    case_id: str
    changes: list[Change]
    op_changes: list[tuple[str, str, int, int]]  # (phase, operator, before, after)
    n_metrics: int

    @property
    def regressed(self) -> bool:
        return any(c.is_regression for c in self.changes)


@dataclass(frozen=True)
class TimingResult:
    label: str  # as measured on side B (an injected flops+N case has its own shape)
    case_id: str
    iters_per_block: int
    comparison: TimingComparison
    samples_a_s: list[float] = field(default_factory=list)  # in round order: A[r] and B[r] ran back to back
    samples_b_s: list[float] = field(default_factory=list)


@dataclass
class GateReport:
    title: str  # e.g. "against HEAD (1a2b3c4)" or "baseline results/baselines/cpu-gate.json"
    counters_against: str = ""
    counters: list[CounterResult] | None = None  # None: layer not run
    counters_skipped: str = ""  # why the layer was skipped (environment mismatch with --on-env-mismatch skip)
    timing_against: str = ""
    timing: list[TimingResult] | None = None
    timing_skipped: str = ""
    timing_advisory: bool = False
    instructions: Any = None  # instructions.InstructionLayer; None: layer not run
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def counter_regressions(self) -> int:
        return sum(r.regressed for r in self.counters or [])

    @property
    def timing_regressions(self) -> int:
        return sum(r.comparison.verdict is Verdict.SLOWER for r in self.timing or [])

    @property
    def instruction_regressions(self) -> int:
        return self.instructions.regressions if self.instructions else 0

    @property
    def exit_code(self) -> int:
        failing = self.counter_regressions + (0 if self.timing_advisory else self.timing_regressions)
        failing += self.instruction_regressions
        return EXIT_REGRESSION if failing else EXIT_PASS

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title, "exit_code": self.exit_code, "wall_s": self.wall_s,
            "counter_regressions": self.counter_regressions, "timing_regressions": self.timing_regressions,
            "timing_advisory": self.timing_advisory, "counters_skipped": self.counters_skipped,
            "timing_skipped": self.timing_skipped, "notes": self.notes,
            "instruction_regressions": self.instruction_regressions,
            "instructions": self.instructions.to_dict() if self.instructions else None,
            "counters": None if self.counters is None else [
                {"label": r.label, "case_id": r.case_id, "regressed": r.regressed, "n_metrics": r.n_metrics,
                 "changes": [{"metric": c.metric, "before": c.before, "after": c.after, "kind": c.kind}
                             for c in r.changes],
                 "op_changes": [list(o) for o in r.op_changes]} for r in self.counters],
            "timing": None if self.timing is None else [
                {"label": r.label, "case_id": r.case_id, "iters_per_block": r.iters_per_block,
                 **r.comparison.as_dict(), "samples_a_s": r.samples_a_s, "samples_b_s": r.samples_b_s}
                for r in self.timing],
        }


# --------------------------------------------------------------------------- markdown


def render_markdown(report: GateReport) -> str:
    lines = [f"## mlpbench perf gate: {_headline(report)}", "", f"_{report.title} · {report.wall_s:.0f} s_", ""]
    lines += _counter_section(report) + _timing_section(report)
    if report.instructions:
        from .instructions import render

        lines += render(report.instructions)
    lines += [f"- {note}" for note in report.notes]
    return "\n".join(lines).rstrip() + "\n"


def _headline(report: GateReport) -> str:
    parts = []
    if report.counter_regressions:
        parts.append(f"{report.counter_regressions} case(s) with more work per step")
    if report.instruction_regressions:
        parts.append(f"{report.instruction_regressions} case phase(s) with more instructions per step")
    if report.timing_regressions:
        parts.append(f"{report.timing_regressions} slower case(s)" + (" (advisory)" if report.timing_advisory else ""))
    verdict = "FAIL" if report.exit_code else "PASS"
    return verdict + (f" ({'; '.join(parts)})" if parts else "")


def _counter_section(report: GateReport) -> list[str]:
    head = [f"### Layer 1: exact counters{_vs(report.counters_against)}", ""]
    if report.counters_skipped:
        return head + [f"Skipped: {report.counters_skipped}", ""]
    if report.counters is None:
        return []
    changed = [r for r in report.counters if r.changes]
    if not changed:
        total = sum(r.n_metrics for r in report.counters)
        return head + [f"All {total} counters of {len(report.counters)} cases are identical.", ""]
    rows = ["| case | counter | before | after | change | verdict |", "|---|---|---:|---:|---:|---|"]
    for result in changed:
        rows += [f"| {result.label} | {c.metric} | {_int(c.before)} | {_int(c.after)} | {_delta(c)} | "
                 f"{_change_verdict(c)} |" for c in result.changes]
    ops = []
    for result in changed:
        shown = result.op_changes[:MAX_OP_LINES]
        ops += [f"- {result.label}, {phase}: `{op}` {before} → {after}" for phase, op, before, after in shown]
        if len(result.op_changes) > MAX_OP_LINES:
            ops.append(f"- {result.label}: {len(result.op_changes) - MAX_OP_LINES} more operator changes")
    tail = ["", "Operators whose call count changed:", *ops] if ops else []
    return head + rows + tail + [""]


def _timing_section(report: GateReport) -> list[str]:
    advisory = " (advisory: never fails the gate)" if report.timing_advisory else ""
    head = [f"### Layer 2: timing of the whole training step{_vs(report.timing_against)}{advisory}", ""]
    if report.timing_skipped:
        return head + [f"Skipped: {report.timing_skipped}", ""]
    if report.timing is None:
        return []
    if not report.timing:
        return head + ["No timed cases.", ""]
    first = report.timing[0].comparison
    rows = [f"| case | A median | B median | B/A | {first.confidence:.0%} CI | MW p (B slower) | n A/B | verdict |",
            "|---|---:|---:|---:|---|---:|---|---|"]
    for r in report.timing:
        c = r.comparison
        rows.append(f"| {r.label} | {ms(c.median_a_s)} ms | {ms(c.median_b_s)} ms | {c.ratio:.3f} | "
                    f"[{c.ci_low:.3f}, {c.ci_high:.3f}] | {c.p_slower:.2g} | {c.n_a}/{c.n_b} | "
                    f"{_timing_verdict(c.verdict)} |")
    rule = (f"Regression: B/A ≥ {1 + first.min_effect:.2f} and the {first.confidence:.0%} bootstrap interval of the "
            f"ratio of medians above 1{' (blocks resampled in A/B pairs)' if first.paired else ''}; "
            "the Mann-Whitney p is shown for reference.")
    return head + rows + ["", rule, ""]


def _vs(against: str) -> str:
    return f" (A = {against}, B = this tree)" if against else ""


def _int(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def _delta(change: Change) -> str:
    if change.before is None or change.after is None:
        return change.kind
    diff = change.after - change.before
    pct = f" ({diff / change.before:+.1%})" if change.before else ""
    return f"{diff:+,}{pct}"


def _change_verdict(change: Change) -> str:
    return {"increase": "**regression**", "decrease": "improvement"}.get(change.kind, change.kind)


def _timing_verdict(verdict: Verdict) -> str:
    return {Verdict.SLOWER: "**regression**", Verdict.FASTER: "faster"}.get(verdict, "pass")



def emit(text: str, markdown_out: Path | None, json_out: Path | None, payload: dict[str, Any]) -> None:
    """Print a gate's (or bisect's) Markdown, and write the ``--markdown`` and ``--json`` files asked for."""
    print(text)
    if markdown_out:
        markdown_out.write_text(text)
    if json_out:
        json_out.write_text(json.dumps(payload, indent=2) + "\n")
