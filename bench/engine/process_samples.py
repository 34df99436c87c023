"""Sampling across processes (pyperf's method): a case whose spread lies between processes measured in k of them.

A compiled case varies 0.45x-3.2x between processes on the 2-core AMD EPYC (issue 49: each process compiles its own
graph, and where its tensors land moves a step's time and stays put within the process). Samples from one process
see none of that spread, so their interval is far too narrow, and two stored runs disagree beyond it (6 of round
3's 15 remaining false alarms were that one compiled case). pyperf's answer: spawn k worker processes and take
samples from each. Here the run's own process measures the case as always, and ``processes - 1`` children
(``python -m bench.engine.process_samples``, this tree's bench) measure it again with the same timing configuration; their
samples join the run's, each sample row names its process, and the summary row records the spread of the
per-process medians (``between_process_cv``), which ``compare`` adds to the case's noise (``bench.analysis.noise``).

Bounded: a child gets ``CHILD_TIMEOUT_FACTOR`` times the first process's measuring time (at least
``MIN_CHILD_TIMEOUT_S``), and a child that fails or runs out of time is left out, said in ``process_note``.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

CHILD_TIMEOUT_FACTOR = 3.0
MIN_CHILD_TIMEOUT_S = 120.0  # a child imports torch and, for a compiled case, compiles (~25 s cold, loaded box)
MARKER = "MLPBENCH_PROCESS_SAMPLES "
STDERR_TAIL_CHARS = 300


def sampled_across(case) -> bool:
    """Whether ``case``'s spread lies between processes: a compiled case (each process compiles its own graph). An
    eager case's per-process bias is turned into within-run noise by the interleaved rounds already."""
    return bool(getattr(case, "compiled", False))


def processes_for(case, config) -> int:
    """How many processes measure ``case``: ``config.processes`` (``--processes``) where ``sampled_across``, else 1."""
    return config.processes if sampled_across(case) else 1


def add_process_samples(m, config, count: int) -> None:
    """Measure ``m.case`` in ``count - 1`` more processes and add their samples to ``m`` (its own are process 0)."""
    from ..model.phases import Phase

    m.sample_process = {p: [0] * len(v) for p, v in m.samples.items()}
    per_process = [{p: list(v) for p, v in m.samples.items()}]
    notes = []
    timeout = max(MIN_CHILD_TIMEOUT_S, CHILD_TIMEOUT_FACTOR * m.measure_s)
    for index in range(1, count):
        reply, note = _child(m.case, config, timeout)
        if reply is None:
            notes.append(f"process {index}: {note}")
            continue
        got = {Phase(p): v for p, v in reply["samples"].items()}
        if set(got) != set(m.samples):
            notes.append(f"process {index}: measured phases {sorted(p.value for p in got)}, not the first's")
            continue
        number = len(per_process)
        per_process.append(got)
        for phase, values in got.items():
            m.samples[phase] += values
            m.sample_process[phase] += [number] * len(values)
        for clock, phases in m.clock_samples.items():
            for phase in phases:
                phases[phase] += reply["clock_samples"].get(clock, {}).get(phase.value, [math.nan] * len(got[phase]))
    m.processes = len(per_process)
    m.process_spread = {p: spread([process[p] for process in per_process]) for p in m.samples}
    m.process_note = "; ".join(notes)


def spread(samples_by_process: list[list[float]]) -> float:
    """Between-process spread: the standard deviation of the log of each process's median, as a fraction (NaN with
    fewer than two processes)."""
    import numpy as np

    medians = [float(np.median(s)) for s in samples_by_process if len(s)]
    if len(medians) < 2 or min(medians) <= 0:
        return math.nan
    return math.expm1(float(np.std(np.log(medians), ddof=1)))


def _child(case, config, timeout_s: float) -> tuple[dict | None, str]:
    """One child's reply, or (None, why not)."""
    request = json.dumps({"case": case.to_row(), "config": asdict(replace(config, processes=1))})  # no grandchildren
    root = Path(__file__).resolve().parents[2]  # the checkout holding bench/
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    try:
        done = subprocess.run([sys.executable, "-m", "bench.engine.process_samples"], input=request, capture_output=True,
                              text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        return None, f"no answer within {timeout_s:.0f} s"
    lines = [line for line in done.stdout.splitlines() if line.startswith(MARKER)]
    if done.returncode != 0 or not lines:
        tail = " ".join(done.stderr[-STDERR_TAIL_CHARS:].split())
        return None, f"exit code {done.returncode}: {tail or 'no output'}"
    reply = json.loads(lines[-1][len(MARKER):])
    if reply["status"] != "ok":
        return None, f"{reply['status']}: {reply['reason']}"
    return reply, ""


def serve() -> None:
    """The child: one case and timing configuration on stdin, its samples on stdout after ``MARKER``."""
    from ..case.cases import Case
    from ..instruments.timing import TimingConfig, measure

    request = json.loads(sys.stdin.read())
    m = measure(Case.from_row(request["case"]), TimingConfig(**request["config"]))
    reply = {"status": m.status.value, "reason": m.reason,
             "samples": {p.value: v for p, v in m.samples.items()},
             "clock_samples": {c: {p.value: v for p, v in phases.items()} for c, phases in m.clock_samples.items()}}
    print(MARKER + json.dumps(reply), flush=True)


if __name__ == "__main__":
    serve()
