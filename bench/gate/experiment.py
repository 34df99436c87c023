"""Measure the gate itself: false alarms (A/A) and power (a known injected regression), by running it N times.

Each run is a fresh ``mlpbench check`` process, exactly as CI would start it, so
the figures include everything a real run meets (start-up, warm-up, other jobs
on the machine). One JSON line per run goes to ``--out``; the summary is printed
and can be re-printed from the file with ``--summarize``.

    python -m bench.gate.experiment --runs 20 --out aa.jsonl -- --against HEAD --layers timing
    python -m bench.gate.experiment --runs 20 --out p25.jsonl -- --against HEAD --layers timing \\
        --inject-regression flops+25

Run it from a clean checkout: with ``--against HEAD`` and no local changes, the
two sides are the same code (A/A), and any failure is a false alarm.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from .ab import tree_root


def run_once(gate_args: list[str]) -> dict:
    """One gate run in its own process: exit code, wall time seen from outside, and its JSON report."""
    with tempfile.TemporaryDirectory(prefix="mlpbench-gate-exp-") as tmp:
        report_path = Path(tmp) / "report.json"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "bench", "check", *gate_args, "--json", str(report_path)],
                              cwd=tree_root(), capture_output=True, text=True)
        wall_s = time.perf_counter() - start
        report = json.loads(report_path.read_text()) if report_path.exists() else None
    return {"exit_code": done.returncode, "wall_s": wall_s, "args": gate_args, "report": report,
            "stderr_tail": done.stderr[-500:] if done.returncode not in (0, 1) else ""}


def summarize(runs: list[dict]) -> str:
    codes = Counter(r["exit_code"] for r in runs)
    walls = [r["wall_s"] for r in runs]
    lines = [f"runs: {len(runs)}; exit 0: {codes.get(0, 0)}, exit 1 (regression): {codes.get(1, 0)}, "
             f"other: {sum(n for c, n in codes.items() if c not in (0, 1))}",
             f"wall per run: min {min(walls):.1f} s, median {statistics.median(walls):.1f} s, max {max(walls):.1f} s"]
    per_case: dict[str, list[dict]] = {}
    counter_fails = 0
    for run in runs:
        report = run["report"] or {}
        counter_fails += bool(report.get("counter_regressions"))
        for row in report.get("timing") or []:
            per_case.setdefault(row["label"], []).append(row)
    if any((r["report"] or {}).get("counters") is not None for r in runs):
        lines.append(f"runs whose counter layer failed: {counter_fails}")
    for label, rows in per_case.items():
        flagged = sum(r["verdict"] == "regression" for r in rows)
        ratios = [r["ratio"] for r in rows]
        lines.append(f"  {label}: timing regression in {flagged}/{len(rows)} runs; ratio B/A median "
                     f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f})")
    timing_fails = sum(bool((r["report"] or {}).get("timing_regressions")) for r in runs)
    if per_case:
        lines.append(f"runs with at least one timing regression: {timing_fails}/{len(runs)}")
    if any((r["report"] or {}).get("instructions") for r in runs):
        from .instructions import summarize_runs

        lines += ["instruction layer, per variant B carried, case and phase:"]
        lines += summarize_runs([r["report"] for r in runs if r["report"]])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gate.experiment", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", type=Path, help="append one JSON line per run here")
    parser.add_argument("--summarize", type=Path, metavar="FILE", help="only print the summary of FILE")
    parser.add_argument("gate_args", nargs=argparse.REMAINDER, help="-- then the arguments of `mlpbench check`")
    args = parser.parse_args(argv)
    if args.summarize:
        print(summarize([json.loads(line) for line in args.summarize.read_text().splitlines() if line.strip()]))
        return 0
    gate_args = args.gate_args[1:] if args.gate_args[:1] == ["--"] else args.gate_args
    runs = []
    for i in range(args.runs):
        run = run_once(gate_args)
        runs.append(run)
        if args.out:
            with args.out.open("a") as f:
                f.write(json.dumps(run) + "\n")
        print(f"run {i + 1}/{args.runs}: exit {run['exit_code']} in {run['wall_s']:.1f} s {run['stderr_tail']}",
              file=sys.stderr, flush=True)
    print(summarize(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
