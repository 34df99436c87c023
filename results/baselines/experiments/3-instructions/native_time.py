"""Native seconds per whole training step of each gate case, with the gate's own block timer (gate.worker.Suite)."""
import json, os, statistics, sys, time
sys.path.insert(0, os.getcwd())
from bench.gate import gate_suite
from bench.gate.worker import Suite
rows = [s.row for s in gate_suite()]
suite = Suite(rows, warmup_s=0.3)
out = []
for i, row in enumerate(rows):
    per = suite.warm_up(i)
    iters = max(1, int(0.1 / per))
    blocks = [suite.time_block(i, iters) for _ in range(15)]
    out.append({"label": suite.cases[i].label, "iters_per_block": iters, "median_s": statistics.median(blocks),
                "min_s": min(blocks), "max_s": max(blocks), "blocks_s": blocks})
    print(f"{suite.cases[i].label}: median {statistics.median(blocks)*1e3:.3f} ms, min {min(blocks)*1e3:.3f} ms", flush=True)
print(json.dumps({"load": os.getloadavg(), "cases": out}), file=open(sys.argv[1], "w"))
