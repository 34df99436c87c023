"""Issue 47's rates, measured: an edited model file called slower by `compare --confirm`, and an A/A pair of the same
file called changed (a false alarm), each out of N tries.

What it does, as a user would, with this checkout's mlpbench (`python -m bench`, PYTHONPATH = the checkout):

1. writes `models/edited.py` in a scratch project folder: a nested `nn.Sequential` (the issue's second failure),
   in 256 -> hidden -> out 256, batch 128, one thread;
2. measures three stored runs from that folder with a relative `--model models/edited.py:make` (the issue's
   third failure): A at hidden 800, B at hidden 960 (the file edited: exactly +20.0% matmul FLOPs per step),
   A2 at hidden 800 again (the same bytes as A);
3. from another working folder, N times each, alternating: `mlpbench compare A B --confirm` (a hit: the case
   called "slower") and `mlpbench compare A A2 --confirm --confirm-cases 0` (a false alarm: "slower" or "faster";
   `--confirm-cases 0` so that the A/A case is re-measured even when its stored ratio did not move);
4. writes results.json and results.md beside this file (the raw compare outputs in outputs/).

    PYTHONPATH=. python tools/experiments/yourchange_eval.py --trials 10     # 21 min at load 3-6 on the 2-core AMD EPYC
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "results/yourchange-eval"  # the data this script reads and writes (results/ holds data only)
MODEL = "models/edited.py:make"
SOURCE = """from torch import nn

HIDDEN = {hidden}


def make(in_features, out_features):
    return nn.Sequential(nn.Sequential(nn.Linear(in_features, HIDDEN), nn.ReLU()), nn.Linear(HIDDEN, out_features))
"""
HIDDEN_A, HIDDEN_B = 800, 960  # step matmul FLOPs are linear in the hidden width: +20.0% exactly
CASE = ["--in-features", "256", "--out-features", "256", "--batch", "128", "--threads", "1", "--repeats", "8"]


def mlpbench(args: list[str], cwd: Path) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "bench", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"mlpbench {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def measure(project: Path, hidden: int, out: Path) -> Path:
    (project / "models").mkdir(parents=True, exist_ok=True)
    (project / "models" / "edited.py").write_text(SOURCE.format(hidden=hidden))
    mlpbench(["run", "--model", MODEL, *CASE, "--out", str(out), "--no-progress", "--no-show"], project)
    return out


def confirm_row(text: str) -> dict:
    """The --confirm table's row of the model's case: stored and interleaved B/A, interval, the word."""
    section = text[text.index("Confirm ("):]
    row = next(line for line in section.splitlines() if line.startswith(f"| {MODEL}"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    low, high = (float(x) for x in re.findall(r"[\d.]+", cells[3]))
    return {"stored": float(cells[1]), "ratio": float(cells[2]), "low": low, "high": high, "now": cells[4]}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    started = time.time()
    scratch = Path(tempfile.mkdtemp(prefix="yourchange-eval-"))
    project, elsewhere, outputs = scratch / "project", scratch / "elsewhere", HERE / "outputs"
    elsewhere.mkdir(parents=True)
    outputs.mkdir(exist_ok=True)
    runs = {"A": measure(project, HIDDEN_A, scratch / "A"), "B": measure(project, HIDDEN_B, scratch / "B"),
            "A2": measure(project, HIDDEN_A, scratch / "A2")}
    stored = mlpbench(["compare", str(runs["A"]), str(runs["B"])], elsewhere)
    (outputs / "compare-A-B.md").write_text(stored)
    trials = []
    for trial in range(args.trials):
        for pair, extra in (("A-B", []), ("A-A2", ["--confirm-cases", "0"])):
            a, b = pair.split("-")
            load = os.getloadavg()[0]
            text = mlpbench(["compare", str(runs[a]), str(runs[b]), "--confirm", *extra], elsewhere)
            (outputs / f"confirm-{pair}-{trial + 1}.md").write_text(text)
            trials.append({"trial": trial + 1, "pair": pair, "load_1m": load, **confirm_row(text)})
            print(json.dumps(trials[-1]), flush=True)
    ab = [t for t in trials if t["pair"] == "A-B"]
    aa = [t for t in trials if t["pair"] == "A-A2"]
    result = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "cpu_model": cpu_model(),
        "cores": os.cpu_count(), "python": platform.python_version(), "minutes": (time.time() - started) / 60,
        "command": f"PYTHONPATH=. python tools/experiments/yourchange_eval.py --trials {args.trials}",
        "work_line": next((line for line in stored.splitlines() if "work per step" in line), ""),
        "change_line": next((line for line in stored.splitlines() if line.startswith("Change under test")), ""),
        "edited_called_slower": sum(t["now"] == "slower" for t in ab), "edited_tries": len(ab),
        "aa_false_alarms": sum(t["now"] in ("slower", "faster") for t in aa), "aa_tries": len(aa),
        "trials": trials,
    }
    (HERE / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# compare --confirm on an edited model file: {result['date']}", "",
             f"CPU: {result['cpu_model']} ({result['cores']} cores), Python {result['python']}; "
             f"{result['minutes']:.1f} min; `{result['command']}`", "",
             f"- {result['change_line']}", f"- {result['work_line'].lstrip('- ')}",
             f"- edited file (+20.0% work) called slower by --confirm: **{result['edited_called_slower']} of "
             f"{result['edited_tries']}**",
             f"- A/A (the same file twice) called changed by --confirm: **{result['aa_false_alarms']} of "
             f"{result['aa_tries']}**", "",
             "| trial | pair | load 1m | stored B/A | interleaved B/A | 99% interval | --confirm says |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {t['trial']} | {t['pair']} | {t['load_1m']:.1f} | {t['stored']:.3f} | {t['ratio']:.3f} | "
              f"[{t['low']:.3f}, {t['high']:.3f}] | {t['now']} |" for t in trials]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:8]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
