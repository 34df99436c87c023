"""Score the collected pairs (collect.py) with the old verdict logic and the new one, on the same run folders.

    python tools/experiments/noise_eval/analyse.py [--dir DIR] [--confirm]

Per pair and case (the whole step's median; 12 cases a pair):

* ``compare``, before: main at 561afd2 called a case "B slower"/"B faster" when its 95% bootstrap interval
  of the ratio of medians excluded 1 (``Ratio.verdict``, kept as the ``within_run`` column);
  after: ``bench.report.compare.compare`` (``bench.analysis.noise``: faster, slower or inconclusive).
* ``history check``, the two runs of a pair added as two commits (issue 41's scenario): before, main's
  ``bench/history/detect.py`` (loaded from git, 561afd2); after, this tree's. A case is flagged when its
  step series has a flagged change point.
* ``history check`` over a longer series (``--series``): the A runs of the quiet pairs in time order as
  commits, then (A/B) the same with the B runs of the quiet A/B pairs appended.

An A/A case flagged slower or faster is a false alarm. In an A/B pair the injected cases (w1024, +10.0%
matmul FLOPs) are detections when slower and *wrong* when faster; the other 8 cases are untouched and
count as A/A comparisons. Writes ``results.md`` and ``results.json`` next to the runs; every number in
them is computed from the run folders listed in ``pairs.jsonl``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[3]
HERE = REPO / "results/noise-eval"  # the data this script reads and writes (results/ holds data only)
sys.path.insert(0, str(REPO))

from tools.experiments.noise_eval import collect  # noqa: E402  (the injections' tables)
from bench import runs as run_record  # noqa: E402
from bench.history import detect as new_detect  # noqa: E402
from bench.report import compare as new_compare  # noqa: E402

OLD_COMMIT = "561afd2"  # main before issue 41
INJECTED_WIDTH = 1024  # round 1 (no "injection" in pairs.jsonl): +10% matmul FLOPs in the w1024 cases


def is_injected(record: dict, row) -> bool:
    """Which cases of an A/B pair carry the injected slowdown (collect.py's injection of its round); ``row``: the
    case's summary row (its fields)."""
    if not record["kind"].startswith("ab"):
        return False
    if record.get("injection") == "gelu-spin-10pct":  # round 2: +10% step time by a CPU spin, gelu cases
        return str(row["activation"]) == "gelu"
    if record.get("injection") == "quick-spin-10pct":  # round 3: a CPU spin in 8 of the quick preset's cases
        if str(row["network"]) != "uniform" or str(row["compile"]) != "none":
            return False
        key = ((int(row["width"]),) * int(row["depth"]), int(row["batch"]), str(row["activation"]),
               str(row["dtype"]) == "bf16")
        return key in collect.CHAIN_SPIN_S
    return int(row["width"]) == INJECTED_WIDTH


SWEEPS = {"quick-spin-10pct": "31 cases of `--preset quick` (torch's default 2 threads; 8 injected)",
          None: "12 cases (w256/512/1024 d2 b64/256 relu/gelu fp32 eager, one thread)"}


def reason_kind(verdict: str, reason: str) -> str:
    """Why a comparison was inconclusive, in one word (the first words of bench.analysis.noise's reasons)."""
    if verdict != "inconclusive":
        return verdict
    for start, word in (("machine states differ", "machine"), ("a burst during", "burst"),
                        ("a stretch of", "stretch"), ("within noise", "noise")):
        if reason.startswith(start):
            return word
    return "other"


def old_detect():
    """main's change-point module at OLD_COMMIT, loaded from git (it imports numpy, scipy, ruptures only)."""
    text = subprocess.run(["git", "-C", str(REPO), "show", f"{OLD_COMMIT}:bench/history/detect.py"],
                          capture_output=True, text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_detect.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("old_detect", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_detect"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


class _Key:
    metric = "median_s"


class _Series:
    key = _Key()

    def __init__(self, values):
        self.values = tuple(values)
        self.commits = tuple(f"c{i}" for i in range(len(values)))


def history_flags(module, values: list[float], last: int = 10) -> bool:
    return bool(module.check_series(_Series(values), last).flagged)


def load(folder: Path):
    return run_record.load_run(folder)


def score_pair(record: dict, runs_dir: Path, old) -> list[dict]:
    a, b = load(runs_dir / record["A"]["folder"]), load(runs_dir / record["B"]["folder"])
    comparison = new_compare.compare(a, b)
    rows = []
    for _, r in comparison.table.iterrows():
        row_a = a.summary.loc[a.summary["case_id"] == r["case_id"]].iloc[0]
        injected = is_injected(record, row_a)
        pair_values = [r["median_a_s"], r["median_b_s"]]
        rows.append({"round": record.get("round", 1), "pair": record["pair"], "kind": record["kind"],
                     "why": reason_kind(r["verdict"], r["reason"]), "case": r["case"], "injected": injected,
                     "ratio": r["ratio"], "relative": r["relative"], "z": r["z"],
                     "old_compare": {"B slower": "slower", "B faster": "faster"}.get(r["within_run"], "inconclusive"),
                     "new_compare": r["verdict"],
                     "old_history": "flagged" if history_flags(old, pair_values) else "pass",
                     "new_history": "flagged" if history_flags(new_detect, pair_values) else "pass",
                     "load_a": _load(record["A"]), "load_b": _load(record["B"]),
                     "overall": comparison.overall.verdict.value,
                     "factor": comparison.factors["step"].factor, "case_noise": comparison.factors["step"].spread,
                     "blocking": "; ".join(d.text for d in comparison.blocking)})
    return rows


def _load(side: dict) -> float:
    return max(side["load_before"][0], side["load_after"][0])


def condition(kind: str) -> str:
    return kind.split("-", 1)[1]


def rates(rows: list[dict]) -> dict:
    """Per condition: A/A case comparisons (incl. untouched cases of A/B pairs) and injected cases."""
    out = {}
    groups = sorted({(r["round"], condition(r["kind"])) for r in rows})
    groups += [("all", c) for c in sorted({condition(r["kind"]) for r in rows})] if len({r["round"] for r in rows}) > 1 \
        else []
    for rnd, cond in groups:
        group = [r for r in rows if condition(r["kind"]) == cond and rnd in ("all", r["round"])]
        null = [r for r in group if not r["injected"]]
        null_aa = [r for r in null if r["kind"].startswith("aa")]
        inj = [r for r in group if r["injected"]]
        entry = {"pairs_aa": len({(r["round"], r["pair"]) for r in group if r["kind"].startswith("aa")}),
                 "pairs_ab": len({(r["round"], r["pair"]) for r in group if r["kind"].startswith("ab")})}
        for tool in ("old_compare", "new_compare"):
            entry[tool] = {
                "aa_cases": len(null_aa), "aa_false_alarms": sum(r[tool] != "inconclusive" for r in null_aa),
                "untouched_cases": len(null) - len(null_aa),
                "untouched_false_alarms": sum(r[tool] != "inconclusive" for r in null if r not in null_aa),
                "injected_cases": len(inj), "detected": sum(r[tool] == "slower" for r in inj),
                "wrong": sum(r[tool] == "faster" for r in inj),
                "inconclusive_aa": sum(r[tool] == "inconclusive" for r in null_aa),
                "inconclusive_injected": sum(r[tool] == "inconclusive" for r in inj)}
            if tool == "new_compare":
                entry[tool]["why_aa"] = {w: sum(r["why"] == w for r in null) for w in sorted({r["why"] for r in null})}
                entry[tool]["why_injected"] = {w: sum(r["why"] == w for r in inj) for w in sorted({r["why"] for r in inj})}
        for tool in ("old_history", "new_history"):
            entry[tool] = {"aa_cases": len(null_aa), "aa_false_alarms": sum(r[tool] == "flagged" for r in null_aa),
                           "injected_cases": len(inj), "detected": sum(r[tool] == "flagged" for r in inj)}
        out[f"round {rnd}, {cond}"] = entry
    return out


def series_check(records: list[dict], runs_dir: Path, old) -> dict:
    """History over many commits: the quiet pairs' A runs in time order (A/A), then their A/B B runs appended."""
    quiet = [r for r in records if r["kind"].endswith("quiet")]
    if quiet and quiet[0].get("chain"):  # round 3: the chain's quiet runs, each once (its pairs share them)
        chain = [json.loads(line) for line in (runs_dir.parent / "runs.jsonl").read_text().splitlines() if line]
        a_runs = [load(runs_dir / r["folder"]) for r in chain if r["condition"] == "quiet" and r["side"] == "A"]
        b_runs = [load(runs_dir / r["folder"]) for r in chain if r["condition"] == "quiet" and r["side"] == "B"]
    else:
        a_runs = [load(runs_dir / r["A"]["folder"]) for r in quiet]
        b_runs = [load(runs_dir / r["B"]["folder"]) for r in quiet if r["kind"].startswith("ab")]
    if len(a_runs) < 2:
        return {}
    step = lambda run: run.summary[(run.summary["phase"] == "step") & (run.summary["status"] == "ok")]  # noqa: E731
    out = {"a_runs": len(a_runs), "b_runs": len(b_runs), "cases": {}}
    ab = next((r for r in quiet if r["kind"].startswith("ab")), {"kind": "ab"})
    for _, row in step(a_runs[0]).iterrows():
        case_id, label = row["case_id"], row["label"]
        values = [float(step(r).set_index("case_id").loc[case_id, "median_s"]) for r in a_runs]
        after = [float(step(r).set_index("case_id").loc[case_id, "median_s"]) for r in b_runs]
        last = max(10, len(after))
        out["cases"][label] = {
            "injected": is_injected(ab, row),
            "aa_old": history_flags(old, values, last), "aa_new": history_flags(new_detect, values, last),
            "ab_old": history_flags(old, values + after, last) if after else None,
            "ab_new": history_flags(new_detect, values + after, last) if after else None}
    return out


def confirm_demo(records: list[dict], runs_dir: Path, rows: list[dict]) -> list[str]:
    """``compare --confirm``'s interleaved re-measurement on the first quiet A/A and A/B pairs."""
    from bench.commands import compare as confirm

    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        trees = {"A": collect.tree_copy(Path(tmp) / "A", False), "B": collect.tree_copy(Path(tmp) / "B", True)}
        for kind in ("aa-quiet", "ab-quiet"):
            record = next((r for r in records if r["kind"] == kind), None)
            if record is None:
                continue
            a, b = load(runs_dir / record["A"]["folder"]), load(runs_dir / record["B"]["folder"])
            table = new_compare.compare(a, b).table
            chosen = confirm.cases_to_confirm(table)
            if kind.startswith("ab"):  # and the injected cases, so that the demo shows the interleaved power too
                fields = a.summary.drop_duplicates("case_id").set_index("case_id")
                marks = [is_injected(record, fields.loc[c]) for c in table["case_id"]]
                injected = table[pd.Series(marks, index=table.index) & (table["phase"] == "step")]
                chosen = pd.concat([chosen, injected[~injected["case_id"].isin(chosen["case_id"])]])
            if not len(chosen):
                lines.append(f"- pair {record['pair']} ({kind}): no case moved by 5%; nothing to confirm")
                continue
            rows_a = [confirm.case_row(a.summary, cid) for cid in chosen["case_id"]]
            tree_b = trees["B"] if kind.startswith("ab") else trees["A"]
            results = confirm.interleaved(rows_a, rows_a, trees["A"], tree_b)
            lines.append(f"- pair {record['pair']} ({kind}), load {_loadavg():.1f} now:")
            for label, stored, verdict, res in zip(chosen["case"], chosen["ratio"], chosen["verdict"], results):
                lines.append(f"  - {label}: stored runs B/A {stored:.3f} ({verdict}); interleaved now "
                             f"{res.ratio:.3f} [{res.ci_low:.3f}, {res.ci_high:.3f}]: "
                             f"{confirm.confirm_word(res.verdict.gate_word, res.ci_low, res.ci_high)}")
    return lines


def confirm_campaign(folder: Path, records: list[dict], runs_dir: Path) -> tuple[list[str], dict]:
    """confirm_campaign.py's sessions (confirm.jsonl), scored; and how often ``--confirm``'s default choice (the 6
    largest moves between the stored runs) would have re-measured the injected cases of the quiet A/B pairs."""
    ledger = folder / "confirm.jsonl"
    if not ledger.exists():
        return [], {}
    from bench.commands import compare as confirm

    sessions = [json.loads(line) for line in ledger.read_text().splitlines() if line.strip()]
    rates_out, lines = {}, ["`compare --confirm` as the instrument (confirm_campaign.py: A's tree and B's re-measured "
                            "interleaved, two workers on the same CPUs, 20 blocks a side (`-rN`: N), paired 99% interval, 5% "
                            "minimum effect; each session 8 injected and 8 untouched cases; \"slower\" / \"faster\" "
                            "need the interval beyond 1 and the ratio beyond 5%):", "",
                            "| sessions | kind | load | interval half-width (median) | injected: slower (detected) | faster (wrong) | inconclusive or "
                            "within 5% | untouched / A/A: slower or faster (false alarms) | unchanged or inconclusive |",
                            "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
    for kind in sorted({s["kind"] for s in sessions}):
        group = [s for s in sessions if s["kind"] == kind]
        cases = [c for s in group for c in s["cases"]]
        inj, null = [c for c in cases if c["injected"]], [c for c in cases if not c["injected"]]
        word = lambda c: c["word"].split()[0]  # noqa: E731
        entry = {"sessions": len(group), "injected": len(inj), "detected": sum(word(c) == "slower" for c in inj),
                 "wrong": sum(word(c) == "faster" for c in inj), "null": len(null),
                 "false_alarms": sum(word(c) in ("slower", "faster") for c in null),
                 "injected_ratios": sorted(round(c["ratio"], 3) for c in inj),
                 "rounds": group[0].get("rounds", 20),
                 "halfwidth": statistics.median(math.expm1((math.log(c["ci_high"]) - math.log(c["ci_low"])) / 2)
                                                for c in cases)}
        if inj:
            entry["injected_mean"] = math.exp(statistics.fmean(math.log(c["ratio"]) for c in inj))
        rates_out[kind] = entry
        loads = [max(s["load_before"][0], s["load_after"][0]) for s in group]
        lines.append(f"| {len(group)} | {kind} | {min(loads):.1f}-{max(loads):.1f} | +-{entry['halfwidth']:.1%} | {_pct(entry['detected'], len(inj))} | "
                     f"{entry['wrong'] if inj else '-'} | {len(inj) - entry['detected'] - entry['wrong'] if inj else '-'} | "
                     f"{_pct(entry['false_alarms'], len(null))} | {len(null) - entry['false_alarms']} |")
    for kind, e in rates_out.items():
        if e["injected_ratios"]:
            lines.append(f"\nInjected cases' interleaved B/A, {kind} (geometric mean {e['injected_mean']:.3f}): "
                         + ", ".join(map(str, e["injected_ratios"])))
    chosen = total = 0
    for record in records:
        if record["kind"] != "ab-quiet":
            continue
        a, b = load(runs_dir / record["A"]["folder"]), load(runs_dir / record["B"]["folder"])
        table = new_compare.compare(a, b).table
        fields = a.summary.drop_duplicates("case_id").set_index("case_id")
        picked = set(confirm.cases_to_confirm(table)["case_id"])
        marks = [c for c in table["case_id"] if is_injected(record, fields.loc[c])]
        chosen, total = chosen + sum(c in picked for c in marks), total + len(marks)
    rates_out["default_choice"] = {"injected_chosen": chosen, "injected": total}
    lines.append(f"\n`--confirm`'s default choice (the {confirm.MAX_CASES} largest moves between the stored runs) "
                 f"held {_pct(chosen, total)} of the injected cases of the quiet A/B pairs: at this between-run noise "
                 "the largest moves are mostly noise, so `--confirm-cases 0` (every case) is the setting for a "
                 "change that may be 10%.")
    return lines, rates_out


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _pct(n: int, d: int) -> str:
    return f"{n}/{d} ({n / d:.1%})" if d else "-"


def render(records: list[dict], rows: list[dict], table: dict, series: dict, confirm_lines: list[str],
           campaign: list[str] = ()) -> str:
    loads = defaultdict(list)
    for r in records:
        for side in ("A", "B"):
            loads[f"round {r['round']} {r['kind']}"].append(_load(r[side]))
    cpu = records[0]["cpu_model"] if records else "?"
    lines = ["# Between-run noise evaluation: results (generated by analyse.py)", "",
             f"{len(records)} pairs of separate runs (rounds: " + ", ".join(f"{n}: {sum(r['round'] == n for r in records)} pairs"
             for n in sorted({r['round'] for r in records})) + "), "
             + "; ".join(sorted({SWEEPS.get(r.get("injection"), SWEEPS[None]) for r in records})) + f", CPU `{cpu}` "
             "(2 cores, shared). Load average (1 min, max of before/after each run) per "
             "kind: " + "; ".join(f"{k}: {min(v):.1f}-{max(v):.1f}" for k, v in sorted(loads.items())) + ".", "",
             "| condition | tool | A/A pairs | A/A case comparisons | false alarms | inconclusive (A/A) | "
             "untouched cases of A/B pairs: false alarms | injected +10% cases | detected | wrong (faster) | "
             "inconclusive (injected) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for cond, e in table.items():
        for tool in ("old_compare", "new_compare", "old_history", "new_history"):
            t = e[tool]
            if not t["aa_cases"] and not t["injected_cases"] and not t.get("untouched_cases"):
                continue
            name = {"old_compare": "compare, before", "new_compare": "compare, after",
                    "old_history": "history check (2 commits), before",
                    "new_history": "history check (2 commits), after"}[tool]
            lines.append(f"| {cond} | {name} | {e['pairs_aa']} | {t['aa_cases']} | "
                         f"{_pct(t['aa_false_alarms'], t['aa_cases'])} | "
                         f"{t.get('inconclusive_aa', '')} | "
                         f"{_pct(t['untouched_false_alarms'], t['untouched_cases']) if 'untouched_cases' in t else ''} | "
                         f"{t['injected_cases']} | {_pct(t['detected'], t['injected_cases'])} | {t.get('wrong', '')} | "
                         f"{t.get('inconclusive_injected', '')} |")
    lines += ["", "Why `compare, after` was inconclusive (machine: the machine states differ; noise: within the "
              "between-run noise; burst / stretch: withdrawn by the time-local checks), null cases (A/A and untouched) "
              "and injected cases:", "", "| condition | null cases | injected cases |", "|---|---|---|"]
    for cond, e in table.items():
        t = e["new_compare"]
        lines.append(f"| {cond} | {', '.join(f'{k} {v}' for k, v in t['why_aa'].items()) or '-'} | "
                     f"{', '.join(f'{k} {v}' for k, v in t['why_injected'].items()) or '-'} |")
    lines += ["", "Per pair: the loads, what blocked the comparison (machine states beyond tolerance), the run-level "
              "factor, the case noise around it (log units), and the injected cases' mean ratio over the factor:", "",
              "| pair | kind | load A | load B | blocked by | run-level factor | case noise | injected / factor |",
              "|---:|---|---:|---:|---|---:|---:|---:|"]
    for rnd, pair in sorted({(r["round"], r["pair"]) for r in rows}):
        group = [r for r in rows if r["pair"] == pair and r["round"] == rnd]
        inj = [r["ratio"] / r["factor"] for r in group if r["injected"]]
        first = group[0]
        lines.append(f"| {rnd}.{pair} | {first['kind']} | {first['load_a']:.1f} | {first['load_b']:.1f} | "
                     f"{first['blocking'] or '-'} | {first['factor']:.3f} | {first['case_noise']:.3f} | "
                     f"{(sum(inj) / len(inj)) if inj else float('nan'):.3f} |".replace("| nan |", "| - |"))
    if series:
        lines += ["", f"History over a longer series: the {series['a_runs']} quiet A runs in time order as commits "
                  f"(A/A), then {series['b_runs']} quiet A/B B runs appended (the step at the first B):", "",
                  "| case | injected | A/A flagged, before | after | A then B flagged, before | after |",
                  "|---|---|---|---|---|---|"]
        for label, c in series["cases"].items():
            lines.append(f"| {label} | {'yes' if c['injected'] else ''} | {c['aa_old']} | {c['aa_new']} | "
                         f"{c['ab_old']} | {c['ab_new']} |")
    if campaign:
        lines += ["", *campaign]
    if confirm_lines:
        lines += ["", "`compare --confirm`'s interleaved re-measurement (bench.commands.compare.interleaved, A's tree and B's "
                  "tree in two pinned workers):", "", *confirm_lines]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, action="append",
                        help="a collection (pairs.jsonl and runs/); repeat it to pool rounds (round 1, 2, ...)")
    parser.add_argument("--out", type=Path, help="where results.md/json go (default: the last --dir)")
    parser.add_argument("--confirm", action="store_true", help="also run the interleaved re-measurement demo")
    args = parser.parse_args()
    dirs = args.dir or [HERE]
    out = args.out or dirs[-1]
    records = []
    for number, folder in enumerate(dirs, 1):
        for line in (folder / "pairs.jsonl").read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                records.append({**record, "round": record.get("round", number), "runs_dir": str(folder / "runs")})
    old = old_detect()
    rows = [row for record in records for row in score_pair(record, Path(record["runs_dir"]), old)]
    table = rates(rows)
    last = [r for r in records if r["runs_dir"] == str(dirs[-1] / "runs")]  # the last --dir's pairs
    series = series_check(last, dirs[-1] / "runs", old)
    confirm_lines = confirm_demo(last, dirs[-1] / "runs", rows) if args.confirm else []
    args.dir = out
    campaign, campaign_rates = confirm_campaign(dirs[-1], last, dirs[-1] / "runs")
    text = render(records, rows, table, series, confirm_lines, campaign)
    (args.dir / "results.json").write_text(json.dumps({"pairs": len(records), "rates": table, "series": series,
                                                       "confirm_campaign": campaign_rates, "cases": rows},
                                                      indent=1, default=str) + "\n")
    (args.dir / "results.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
