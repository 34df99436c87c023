"""Tables of docs/perf-gate.md's instruction-layer section from the raw campaign runs (JSONL of bench.gate.experiment).

    python tables.py power.jsonl aa.jsonl within.json native.json   (from the repository root)

Verdicts are re-derived from the raw counts with the rule in bench.gate.instructions as it is now.
"""

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, ".")
from bench.gate.instructions import MIN_INCREASE, THRESHOLD, is_regression  # noqa: E402

PHASES = ("forward", "backward", "optimizer", "step")


def load(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def rows_of(runs, variant):
    out = []
    for run in runs:
        ins = run["report"]["instructions"]
        out.append([r for r in ins["rows"] if r["variant"] == variant])
    return out


def mean(xs):
    return statistics.fmean(xs)


def aa_table(runs):
    per = {}
    for rows in rows_of(runs, "none"):
        for r in rows:
            a, b = mean(r["a_per_step"]), mean(r["b_per_step"])
            per.setdefault((r["label"], r["phase"]), []).append((a, b))
    print(f"A/A process pairs: {len(runs)}")
    print("| case | phase | A instr/step (median) | max abs(B - A) | max abs(B/A - 1) | flagged |")
    print("|---|---|---:|---:|---:|---:|")
    worst_abs, worst_rel_big = 0, 0
    for (label, phase), pairs in per.items():
        diffs = [b - a for a, b in pairs]
        rels = [b / a - 1 for a, b in pairs]
        flagged = sum(is_regression(a, b) for a, b in pairs)
        med_a = statistics.median(a for a, _ in pairs)
        worst_abs = max(worst_abs, max(abs(d) for d in diffs))
        if med_a >= 1e7:
            worst_rel_big = max(worst_rel_big, max(abs(x) for x in rels))
        print(f"| {label} | {phase} | {med_a:,.0f} | {max(abs(d) for d in diffs):,.0f} | "
              f"{max(abs(x) for x in rels):.4%} | {flagged}/{len(pairs)} |")
    fails = sum(any(is_regression(mean(r["a_per_step"]), mean(r["b_per_step"])) for r in rows)
                for rows in rows_of(runs, "none"))
    print(f"\nworst abs {worst_abs:,.0f}; worst rel among regions >= 10M instr {worst_rel_big:.4%}; "
          f"pairs failing under the current rule: {fails}/{len(runs)}")


def power_table(runs, variants):
    print(f"\nPower, process pairs: {len(runs)}; rule: B - A > max({THRESHOLD:.2%} x A, {MIN_INCREASE:,})")
    print("| B carries | case | pairs flagged (any phase) | phases flagged | step B - A (median) | step B/A - 1 | forward B - A |")
    print("|---|---|---:|---|---:|---:|---:|")
    for variant in variants:
        per = {}
        runs_any = 0
        for rows in rows_of(runs, variant):
            runs_any += any(is_regression(mean(r["a_per_step"]), mean(r["b_per_step"])) for r in rows)
            for r in rows:
                per.setdefault(r["label"], {}).setdefault(r["phase"], []).append(r)
        for label, phases in per.items():
            n = len(phases["step"])
            flagged_any = sum(any(is_regression(mean(phases[p][i]["a_per_step"]), mean(phases[p][i]["b_per_step"]))
                                  for p in PHASES) for i in range(n))
            which = ", ".join(f"{p} {sum(is_regression(mean(r['a_per_step']), mean(r['b_per_step'])) for r in phases[p])}"
                              for p in PHASES)
            step = [mean(r["b_per_step"]) - mean(r["a_per_step"]) for r in phases["step"]]
            steprel = [r["ratio"] - 1 for r in phases["step"]]
            fwd = [mean(r["b_per_step"]) - mean(r["a_per_step"]) for r in phases["forward"]]
            print(f"| {variant} | {label} | {flagged_any}/{n} | {which} | {statistics.median(step):+,.0f} | "
                  f"{statistics.median(steprel):+.3%} | {statistics.median(fwd):+,.0f} |")
        print(f"| {variant} | **gate run fails** | **{runs_any}/{len(runs)}** | | | | |")


def times(runs):
    print("\nTime (s)")
    for run in runs:
        ins = run["report"]["instructions"]
        ct = {s: [(c["variant"], c["case"], round(c["wall_s"], 1)) for c in v] for s, v in ins["case_times"].items()}
        print(round(run["wall_s"]), {k: round(v) for k, v in ins["side_wall_s"].items()}, ct["A"])


def within(path):
    m = json.loads(Path(path).read_text())
    per = {}
    for d, t in zip(m["dumps"], m["totals"]):
        acc = per.setdefault((d["label"], d["phase"]), {}).setdefault(d["repeat"], [0, 0])
        acc[0] += t
        acc[1] += d["steps"]
    print("\nWithin one process (repeats of the same region after warm-up)")
    print("| case | phase | repeats | mean instr/step | max - min | (max - min) / mean |")
    print("|---|---|---:|---:|---:|---:|")
    for (label, phase), reps in per.items():
        vals = [a / n for a, n in reps.values()]
        print(f"| {label} | {phase} | {len(vals)} | {mean(vals):,.0f} | {max(vals) - min(vals):,.0f} | "
              f"{(max(vals) - min(vals)) / mean(vals):.4%} |")
    print("case times", m.get("case_times"))


if __name__ == "__main__":
    runs = load(sys.argv[1])
    aa_only = load(sys.argv[2])
    aa_table(runs + aa_only)
    power_table(runs, ["extra-op", "python-2us", "foreach-optim", "flops+10"])
    times(runs + aa_only)
    within(sys.argv[3])
    native = json.loads(Path(sys.argv[4]).read_text())
    step_instr = {}
    for rows in rows_of(runs + aa_only, "none"):
        for r in rows:
            if r["phase"] == "step":
                step_instr.setdefault(r["label"], []).extend(r["a_per_step"] + r["b_per_step"])
    print(f"\nNative (load {native['load'][0]:.1f})")
    print("| case | instructions per step (Callgrind, median) | native step time (median of 15 blocks) | M instructions per native ms |")
    print("|---|---:|---:|---:|")
    for c in native["cases"]:
        instr = statistics.median(step_instr[c["label"]])
        print(f"| {c['label']} | {instr:,.0f} | {c['median_s'] * 1e3:.3f} ms | {instr / (c['median_s'] * 1e3) / 1e6:.1f} |")
