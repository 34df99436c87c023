"""Round 3's interleaved campaign: what ``compare --confirm`` finds where two stored runs cannot tell.

    python tools/experiments/noise_eval/confirm_campaign.py --dir results/noise-eval/round3 [--ab 8] [--aa 4] [--loaded 2]
                                                  [--rounds 20]

Between two separate `quick` runs the cases' noise is far above 10% (results.md), so ``compare`` calls the
injected +10% cases inconclusive and names ``compare --confirm``: A's and B's configuration re-measured
interleaved in one process (``bench.commands.compare.interleaved``: two workers pinned to the same CPUs, as many as the
runs' threads, 20 blocks a side, paired bootstrap interval, 5% minimum effect). This measures that instrument on
the same trees as the chain (collect.py's snapshot of this tree, and its copy with the spin injected):

* ``ab`` sessions: A's tree against B's, on the 8 injected cases and 8 untouched ones (detection, and false
  alarms on the untouched);
* ``aa`` sessions: A's tree against itself on the same 16 cases (false alarms);
* ``loaded`` sessions: ``ab`` under collect.py's competing load (inconclusive allowed, wrong not).

Each session appends its 16 verdicts to ``confirm.jsonl`` in DIR (a second call with the same ``--rounds``
continues); analyse.py scores it. ``--rounds N`` (``compare --confirm-rounds``) measures N blocks a side instead of
20; its sessions are kinds of their own (``ab-quiet-r80``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HERE = REPO / "results/noise-eval"  # the data this script reads and writes (results/ holds data only)
sys.path.insert(0, str(REPO))

from tools.experiments.noise_eval import analyse  # noqa: E402
from tools.experiments.noise_eval import collect  # noqa: E402
from bench.commands import compare as confirm

UNTOUCHED = 8  # untouched cases per session, every other eager family case that carries no spin


def campaign_cases(summary):
    """The 8 injected cases and 8 untouched eager family cases of a quick run, in measurement order."""
    steps = summary[summary["phase"] == "step"].drop_duplicates("case_id")
    family = steps[(steps["network"] == "uniform") & (steps["compile"] == "none")]
    marks = [analyse.is_injected({"kind": "ab", "injection": collect.CHAIN_INJECTION_NAME}, r)
             for _, r in family.iterrows()]
    injected = family[marks]
    untouched = family[[not m for m in marks]].iloc[::2].head(UNTOUCHED)
    chosen = family[family["case_id"].isin(set(injected["case_id"]) | set(untouched["case_id"]))]
    return chosen, set(injected["case_id"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, required=True, help="round 3's folder (runs/, runs.jsonl)")
    parser.add_argument("--ab", type=int, default=8, help="quiet A/B sessions (default 8)")
    parser.add_argument("--aa", type=int, default=4, help="quiet A/A sessions (default 4)")
    parser.add_argument("--loaded", type=int, default=2, help="A/B sessions under the competing load (default 2)")
    parser.add_argument("--rounds", type=int, default=confirm.CONFIRM_ROUNDS,
                        help=f"interleaved blocks a side (default {confirm.CONFIRM_ROUNDS})")
    args = parser.parse_args()
    runs = [json.loads(line) for line in (args.dir / "runs.jsonl").read_text().splitlines() if line.strip()]
    first = next(r for r in runs if r["side"] == "A" and r["condition"] == "quiet")
    summary = analyse.load(args.dir / "runs" / first["folder"]).summary
    chosen, injected = campaign_cases(summary)
    rows = [confirm.case_row(summary, cid) for cid in chosen["case_id"]]
    threads = confirm.threads_used(summary, chosen["case_id"])
    ledger = args.dir / "confirm.jsonl"
    earlier = [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()] if ledger.exists() else []
    done = sum(r.get("rounds", confirm.CONFIRM_ROUNDS) == args.rounds for r in earlier)
    suffix = "" if args.rounds == confirm.CONFIRM_ROUNDS else f"-r{args.rounds}"
    plan = (["ab-quiet", "aa-quiet"] * max(args.ab, args.aa))
    plan = [k for i, k in enumerate(plan) if (k == "ab-quiet" and i // 2 < args.ab) or
            (k == "aa-quiet" and i // 2 < args.aa)] + ["ab-loaded"] * args.loaded
    with tempfile.TemporaryDirectory(prefix="noise-confirm-") as tmp:
        trees = {"A": collect.tree_copy(Path(tmp) / "A", False),
                 "B": collect.tree_copy(Path(tmp) / "B", True, chain=True)}
        for session in range(done, len(plan)):
            kind = plan[session] + suffix
            load = collect.start_load() if "loaded" in kind else None
            try:
                if load is not None:
                    time.sleep(3)
                before, started = collect.loadavg(), time.time()
                results = confirm.interleaved(rows, rows, trees["A"], trees["B" if kind.startswith("ab") else "A"],
                                              threads, args.rounds)
            finally:
                collect.stop_load(load)
            record = {"session": session, "kind": kind, "threads": threads, "rounds": args.rounds, "load_before": before,
                      "load_after": collect.loadavg(), "wall_s": round(time.time() - started, 1),
                      "cases": [{"case_id": cid, "case": label, "injected": cid in injected and kind.startswith("ab"),
                                 "ratio": r.ratio, "ci_low": r.ci_low, "ci_high": r.ci_high,
                                 "word": confirm.confirm_word(r.verdict.gate_word, r.ci_low, r.ci_high)}
                                for cid, label, r in zip(chosen["case_id"], chosen["label"], results)]}
            with open(ledger, "a") as f:
                f.write(json.dumps(record) + "\n")
            words = [c["word"].split()[0] for c in record["cases"]]
            print(f"session {session} {kind}: {record['wall_s']} s, load {record['load_after'][0]:.2f}: "
                  + ", ".join(f"{w} {words.count(w)}" for w in sorted(set(words))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
