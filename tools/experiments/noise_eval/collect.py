"""Collect the run folders of the between-run noise evaluation (issue 41): A/A and A/B pairs of separate runs.

    python tools/experiments/noise_eval/collect.py [--pairs N] [--out DIR]

Each pair is two separate ``python -m bench run`` processes of the same fixed sweep (SWEEP below), one
after the other. Kinds of pair, in a fixed cycle (KINDS):

* ``aa-quiet``  both runs of this tree, no load of ours (the machine is shared: its load is recorded);
* ``ab-quiet``  A this tree, B a copy of it with an injected slowdown (INJECTION: the hidden layers of the
                width-1024 cases are built 1099 wide, +10.0% matmul FLOPs in those 4 of 12 cases);
* ``aa-loaded`` / ``ab-loaded``  the same with a competing load this script starts before A and stops
                after B (LOAD: one process multiplying 512x512 matrices on one thread, nonstop);
* ``aa-mixed``  A without, B with the competing load: two machine states that differ.

The side that runs first alternates between pairs (drift over the session must not always favour A).
``pairs.jsonl`` gets one line per finished pair (load before and after each run, wall time), so a stopped
collection leaves a usable partial evaluation; a second call continues after the last finished pair.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
HERE = REPO / "results/noise-eval"  # the data this script reads and writes (results/ holds data only)
SWEEP = ["--width", "256,512,1024", "--depth", "2", "--batch", "64,256", "--activation", "relu,gelu",
         "--threads", "1", "--no-progress", "--no-show"]
# The injected slowdown (round 2): a TIME cost, not FLOPs. Round 1 built the w1024 layers 1099 wide (+10.0%
# matmul FLOPs), which an interleaved run measured at -2%..+6% in time (dispatch dominates these shapes). Now
# B's MLP.forward spins the CPU (thread CPU time, so it stretches under contention like compute does) for 10%
# of the case's step median in the gelu cases, which alternate with relu cases in measurement order; the
# spins come from the quiet runs of round 1 (load 1.3-2.1, median of the cases' step medians). analyse.py
# measures the injected size with an interleaved A/B run before it counts detections.
INJECTION_NAME = "gelu-spin-10pct"
STEP_MEDIAN_S = {(256, 64): 1060.3e-6, (256, 256): 3464.0e-6, (512, 64): 3844.2e-6, (512, 256): 12401.9e-6,
                 (1024, 64): 15283.4e-6, (1024, 256): 48139.5e-6}  # gelu cases, round 1 quiet runs
INJECTION_ANCHOR = "    @property\n    def linears(self)"
INJECTION = (
    "    def forward(self, x):  # injected: noise-eval +10% time in the gelu cases\n"
    "        spin = NOISE_EVAL_SPIN_S.get((self.hidden[0] if self.hidden else 0, x.shape[0], self.activation))\n"
    "        if spin:\n"
    "            end = _noise_eval_clock() + spin\n"
    "            while _noise_eval_clock() < end:\n"
    "                pass\n"
    "        return super().forward(x)\n\n")
INJECTION_TABLE = ("\n\nfrom time import thread_time as _noise_eval_clock  # noqa: E402  (injected: noise-eval)\n"
                   "NOISE_EVAL_SPIN_S = " + repr({(w, b, "gelu"): round(0.10 * s, 7) for (w, b), s in
                                                    STEP_MEDIAN_S.items()}) + "\n")
# Round 3 (--chain, `--preset quick`, 31 cases at the default 2 threads): 8 of the 25 eager family cases, none
# two in a row in measurement order and none sharing its key with a compiled case, spin for 10% of their step
# median (the mean of two quiet calibration runs, 2026-12-03 02:53-02:56 UTC, load 0.2-1.7). The key is the
# hidden widths, the batch, the activation and whether bf16 autocast is on.
CHAIN_INJECTION_NAME = "quick-spin-10pct"
CHAIN_SPIN_S = {((128, 128), 16, "relu", True): 8.98e-05, ((128, 128), 1024, "relu", False): 0.0003168,
                ((512, 512), 16, "relu", True): 0.00021, ((512, 512), 1024, "relu", True): 0.0016272,
                ((1024, 1024), 16, "relu", True): 0.0003826, ((1024, 1024), 1024, "relu", False): 0.0108911,
                ((512, 512, 512, 512), 128, "relu", False): 0.0010226,
                ((512, 512), 128, "sigmoid", False): 0.0004221}
CHAIN_INJECTION = (
    "    def forward(self, x):  # injected: noise-eval +10% time in 8 quick cases\n"
    "        import torch as _t\n"
    "        spin = NOISE_EVAL_SPIN_S.get((self.hidden, x.shape[0], self.activation, _t.is_autocast_enabled('cpu')))\n"
    "        if spin:\n"
    "            end = _noise_eval_clock() + spin\n"
    "            while _noise_eval_clock() < end:\n"
    "                pass\n"
    "        return super().forward(x)\n\n")
CHAIN_INJECTION_TABLE = ("\n\nfrom time import thread_time as _noise_eval_clock  # noqa: E402  (injected: noise-eval)\n"
                         "NOISE_EVAL_SPIN_S = " + repr(CHAIN_SPIN_S) + "\n")
CHAIN_SWEEP = ["--preset", "quick", "--no-progress", "--no-show"]
KINDS = ("aa-quiet", "ab-quiet", "aa-loaded", "ab-quiet", "ab-loaded", "ab-quiet")  # round 2: A/B quiet for detection
LOAD_CODE = ("import numpy as np\n"
             "a = np.random.rand(512, 512).astype(np.float32)\n"
             "while True:\n    a = (a @ a) / 512.0\n")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def tree_copy(dest: Path, inject: bool, chain: bool = False) -> Path:
    """This tree's mlp/ and bench/ copied to ``dest`` (both sides measure a snapshot taken at the start, so
    editing the tree during a collection changes nothing), with the slowdown injected in mlp/models.py."""
    for name in ("mlp", "bench"):
        shutil.copytree(REPO / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    if not inject:
        return dest
    models = dest / "mlp" / "models.py"
    text = models.read_text()
    if text.count(INJECTION_ANCHOR) != 1:
        raise SystemExit(f"cannot inject: {INJECTION_ANCHOR!r} is not exactly once in mlp/models.py")
    body, table = (CHAIN_INJECTION, CHAIN_INJECTION_TABLE) if chain else (INJECTION, INJECTION_TABLE)
    models.write_text(text.replace(INJECTION_ANCHOR, body + INJECTION_ANCHOR) + table)
    return dest


def start_load() -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", LOAD_CODE], env=env)


def stop_load(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        proc.wait(10)


def one_run(tree: Path, out: Path, log: Path, sweep: list[str] = SWEEP) -> dict:
    before, started = loadavg(), time.time()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with open(log, "w") as f:
        rc = subprocess.call([sys.executable, "-m", "bench", "run", *sweep, "--out", str(out)], cwd=tree, env=env,
                             stdout=f, stderr=subprocess.STDOUT)
    return {"folder": out.name, "tree": tree.name, "rc": rc,
            "load_before": before, "load_after": loadavg(), "wall_s": round(time.time() - started, 1)}


def chain_pairs(index: int, runs: list[dict], condition: str, cpu: str, commit: str, first_pair: int) -> list[dict]:
    """The pairs the chain's run ``index`` completes: with the run before it (A/B: one side each tree) and with
    the run two before it (A/A: the same tree; B/B pairs are A/A pairs of the injected copy)."""
    pairs, run = [], runs[index]
    base = {"cpu_model": cpu, "commit": commit, "injection": CHAIN_INJECTION_NAME, "round": 3, "chain": True}
    if index >= 1 and runs[index - 1]["condition"] == condition:
        prev = runs[index - 1]
        sides = {prev["side"]: prev, run["side"]: run}
        pairs.append({**base, "kind": f"ab-{condition}", "first": prev["side"], "started": prev["started"],
                      "A": sides["A"], "B": sides["B"]})
    if index >= 2 and runs[index - 2]["condition"] == condition:
        prev = runs[index - 2]
        pairs.append({**base, "kind": f"aa-{condition}", "first": "A", "started": prev["started"],
                      "tree": run["side"], "A": prev, "B": run})
    for offset, pair in enumerate(pairs):
        pair["pair"] = first_pair + offset
    return pairs


def chain(args, cpu: str, commit: str) -> int:
    """Round 3: one chain of runs alternating A (this tree) and B (the injected copy), quiet runs first, then
    runs under the competing load; every run makes an A/B pair with the run before it and an A/A pair with the
    run two before it, so N runs give about N A/B and N A/A pairs for the time of N runs (the pairs share
    runs: they are not independent, said in README.md)."""
    quiet, loaded = (int(x) for x in args.chain.split(","))
    runs_dir, run_ledger, ledger = args.out / "runs", args.out / "runs.jsonl", args.out / "pairs.jsonl"
    runs_dir.mkdir(parents=True, exist_ok=True)
    runs = [json.loads(line) for line in run_ledger.read_text().splitlines()] if run_ledger.exists() else []
    n_pairs = len(ledger.read_text().splitlines()) if ledger.exists() else 0
    plan = ["quiet"] * quiet + ["loaded"] * loaded
    with tempfile.TemporaryDirectory(prefix="noise-eval-") as tmp:
        trees = {"A": tree_copy(Path(tmp) / "A", False), "B": tree_copy(Path(tmp) / "B", True, chain=True)}
        for index in range(len(runs), len(plan)):
            condition = plan[index]
            side = "AB"[index % 2] if condition == "quiet" else "AB"[(index - quiet) % 2]
            load = start_load() if condition == "loaded" else None
            try:
                if load is not None:
                    time.sleep(3)
                name = f"{index:03d}-chain-{condition}-{side}"
                started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                run = {**one_run(trees[side], runs_dir / name, runs_dir / f"{name}.log", CHAIN_SWEEP),
                       "side": side, "condition": condition, "index": index, "started": started}
            finally:
                stop_load(load)
            runs.append(run)
            with open(run_ledger, "a") as f:
                f.write(json.dumps(run) + "\n")
            new = chain_pairs(index, runs, condition, cpu, commit, n_pairs)
            n_pairs += len(new)
            with open(ledger, "a") as f:
                for pair in new:
                    f.write(json.dumps(pair) + "\n")
            print(f"run {index} {condition} {side}: {run['wall_s']} s rc {run['rc']}, load {loadavg()[0]:.2f}, "
                  f"{len(new)} pair(s)", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40, help="pairs to collect in all (default 40)")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for runs/ and pairs.jsonl (default: here)")
    parser.add_argument("--stop-at", default=None, metavar="HH:MM",
                        help="start no pair after this UTC time today (a collection that fits a session)")
    parser.add_argument("--chain", default=None, metavar="QUIET,LOADED",
                        help="round 3: a chain of QUIET then LOADED `--preset quick` runs alternating A and B")
    args = parser.parse_args()
    stop_at = None
    if args.stop_at:
        hours, minutes = (int(x) for x in args.stop_at.split(":"))
        now = time.gmtime()
        stop_at = time.mktime((now.tm_year, now.tm_mon, now.tm_mday, hours, minutes, 0, 0, 0, 0)) - time.timezone
    args.out = args.out.resolve()  # each run's process works in a tree copy: a relative --out would land there
    runs, ledger = args.out / "runs", args.out / "pairs.jsonl"
    runs.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in ledger.read_text().splitlines()] if ledger.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    if args.chain:
        return chain(args, cpu, commit)
    with tempfile.TemporaryDirectory(prefix="noise-eval-") as tmp:
        clean, injected = tree_copy(Path(tmp) / "A", False), tree_copy(Path(tmp) / "B", True)
        for index in range(len(done), args.pairs):
            if stop_at is not None and time.time() > stop_at:
                print(f"stopping before pair {index}: past --stop-at {args.stop_at} UTC", flush=True)
                break
            kind = KINDS[index % len(KINDS)]
            trees = {"A": clean, "B": injected if kind.startswith("ab") else clean}
            order = ("A", "B") if index % 2 == 0 else ("B", "A")
            record = {"pair": index, "kind": kind, "first": order[0], "cpu_model": cpu, "commit": commit,
                      "injection": INJECTION_NAME,
                      "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            load = start_load() if kind.endswith("loaded") else None
            try:
                for side in order:
                    if kind == "aa-mixed" and side == "B":
                        load = start_load()
                    elif kind == "aa-mixed":
                        stop_load(load)
                        load = None
                    if load is not None:
                        time.sleep(3)  # let the competing process reach its pace (and the load average move)
                    name = f"{index:03d}-{kind}-{side}"
                    record[side] = one_run(trees[side], runs / name, runs / f"{name}.log")
            finally:
                stop_load(load)
            with open(ledger, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(f"pair {index} {kind}: A {record['A']['wall_s']} s, B {record['B']['wall_s']} s, "
                  f"load {loadavg()[0]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
