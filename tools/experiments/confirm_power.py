"""Issue 49's evaluation of ``--confirm``: power and false alarms of adaptive interleaved rounds on the CPU clock.

    python -m tools.experiments.confirm_power --minutes 15 --out results/confirm-power

Each session is one call of ``bench.commands.compare.interleaved`` (what ``compare --confirm`` runs after choosing the cases):
two workers of this tree, pinned to one shared core, three one-thread cases (uniform w512 d2 b128 fp32, SGD, MSE),
timed on the CPU clock in adaptive rounds (``--precision`` 5%, a time budget), A and B interleaved:

* A/A: the same case on both sides (a false alarm: called slower or faster);
* +5% and +10%: B's width grown as the gate's ``flops+N`` injection grows it (``bench.gate.worker.inject_case``:
  matmul FLOPs x (w'/512)^2; a hit: called slower).

Sessions alternate between two conditions: the machine as found (shared with whatever else runs on it, its load
average recorded), and the same plus two competing one-thread processes (pure-Python spin loops this script
starts and stops). Every session is a line of ``sessions.jsonl``; ``results.md`` counts them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

CASE = {"network": "uniform", "width": 512, "depth": 2, "batch": 128, "dtype": "fp32", "threads": 1,
        "device": "cpu", "optimizer": "sgd", "loss": "mse"}
ARMS = (("A/A", "none"), ("+5%", "flops+5"), ("+10%", "flops+10"))
CONDITIONS = ("as found", "two competing one-thread processes")
SPIN = "while True:\n    pass\n"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def rows() -> tuple[list[dict], list[dict], list[float]]:
    """A's and B's case rows and each arm's matmul-FLOPs ratio B/A (a hand count: width squared)."""
    from bench.case.cases import Case
    from bench.gate.worker import inject_case

    base = Case.from_row(CASE)
    b_cases = [inject_case(base, inject) for _, inject in ARMS]
    return ([base.to_row() for _ in ARMS], [c.to_row() for c in b_cases],
            [(c.width / base.width) ** 2 for c in b_cases])


def session(condition: str, max_s: float, precision: float) -> dict:
    from bench.commands import compare as confirm
    from bench.gate import ab

    rows_a, rows_b, work = rows()
    spinners = ([subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(2)]
                if condition == CONDITIONS[1] else [])
    try:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        here = ab.tree_root()
        results = confirm.interleaved(rows_a, rows_b, here, here, threads=1, rounds=None, clock="cpu",
                                      adaptive=confirm.Adaptive(precision, max_s))
        spent = time.perf_counter() - start
    finally:
        for p in spinners:  # only the processes started here, by their own handles
            p.kill()
            p.wait()
    return {"condition": condition, "load_1m_start": load, "load_1m_end": os.getloadavg()[0], "seconds": spent,
            "arms": [{"arm": arm, "work_ratio": w, "ratio": r.ratio, "ci_low": r.ci_low, "ci_high": r.ci_high,
                      "rounds": r.n_b, "verdict": r.verdict.value}
                     for (arm, _), w, r in zip(ARMS, work, results)]}


def wilson(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p = hits / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summary(sessions: list[dict]) -> list[str]:
    lines = ["| condition | arm | sessions | called | rate (95% Wilson) | median rounds a side | median B/A |",
             "|---|---|---|---|---|---|---|"]
    for condition in CONDITIONS:
        for arm, _ in ARMS:
            rs = [a for s in sessions if s["condition"] == condition for a in s["arms"] if a["arm"] == arm]
            if not rs:
                continue
            word = ("regression", "improvement") if arm == "A/A" else ("regression",)
            hits = sum(r["verdict"] in word for r in rs)
            lo, hi = wilson(hits, len(rs))
            rounds = sorted(r["rounds"] for r in rs)[len(rs) // 2]
            ratio = sorted(r["ratio"] for r in rs)[len(rs) // 2]
            lines.append(f"| {condition} | {arm} | {len(rs)} | {hits} | {hits / len(rs):.0%} ({lo:.0%}-{hi:.0%}) "
                         f"| {rounds} | {ratio:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=15.0, help="stop starting sessions after this long")
    parser.add_argument("--max-confirm-s", type=float, default=45.0, help="each session's adaptive-rounds budget")
    parser.add_argument("--precision", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=Path("results/confirm-power"))
    parser.add_argument("--summarize", action="store_true", help="only rewrite results.md from sessions.jsonl")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "sessions.jsonl"
    if not args.summarize:
        end = time.monotonic() + args.minutes * 60
        k = sum(1 for _ in log.open()) if log.exists() else 0
        while time.monotonic() < end:
            record = session(CONDITIONS[k % 2], args.max_confirm_s, args.precision)
            with log.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
            k += 1
    sessions = [json.loads(line) for line in log.open()]
    loads = [s["load_1m_start"] for s in sessions] + [s["load_1m_end"] for s in sessions]
    text = [f"# `--confirm` power and false alarms (issue 49)", "",
            f"CPU: {cpu_model()}, {os.cpu_count()} CPUs; Python {platform.python_version()}; load average (1 min) "
            f"{min(loads):.1f}-{max(loads):.1f} while it ran (other engineers' jobs shared the machine).", "",
            "Command (the sessions of every invocation append to sessions.jsonl): `python -m "
            f"tools.experiments.confirm_power --minutes M --max-confirm-s {args.max_confirm_s:g} --out {args.out}`",
            "",
            f"Each session: three one-thread cases (uniform w512 d2 b128 fp32) A and B interleaved on one pinned core, "
            f"CPU clock, adaptive rounds to {args.precision:.0%} precision within {args.max_confirm_s:g} s, 99% "
            "repeated confidence intervals (Lan-DeMets Pocock-type), minimum effect 5%. 'called': slower (a hit) for "
            "+5%/+10%; slower or faster (a false alarm) for A/A. +5%/+10% are matmul FLOPs (the gate's flops+N "
            "injection: width 525 and 537); 'median B/A' is the step time the sessions measured.", "",
            *summary(sessions), ""]
    (args.out / "results.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
