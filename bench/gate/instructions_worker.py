"""What runs under Valgrind for the gate's instruction layer: every case of one tree, in one process.

``bench.gate.instructions`` starts this file as
``valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no ... python instructions_worker.py SPEC``
with ``PYTHONPATH`` pointing at the tree under test (REF's temporary worktree or the
working tree). ``import torch`` runs uninstrumented (about 17 s here instead of ~50 s), and
so do the first case's build and warm-up; just before the first counted region the worker
switches instrumentation on with ``callgrind_control -i on`` (which also proves it runs under
Callgrind); it then builds each further case, warms it up, and counts each phase
with collection switched on only around the measured calls, by torch's own client
requests (``torch._C._valgrind_toggle`` / ``_valgrind_toggle_and_dump_stats``, as
``torch.utils.benchmark``'s ``collect_callgrind`` does). Every measured region ends in
a dump, so Callgrind writes one numbered file per (variant, case, phase, repeat); the
worker writes the list of what each dump holds to the manifest named in SPEC.

Like ``worker.py``, the measured code (``mlp``, ``bench.case.cases``, ``build_step``) comes
from the tree under test and the measuring code (this file, ``worker.py`` beside
it, loaded by path) from the tree running the gate. So this file imports no ``bench``
module at the top.

SPEC (JSON): ``{"cases": [Case rows], "variants": ["none", "extra-op", ...], "steps": N,
"warmup_steps": W, "repeats": R, "manifest": path}``. A variant is an injected
regression of ``worker.INJECTIONS`` (``none``: the clean case); the head side of a
campaign counts several in one process.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PHASES = ("forward", "backward", "optimizer", "step")  # backward = loss + backward, as in mlp.TrainStep
SEED = 1234  # weights and batches: the same on both sides


def _gate_worker():
    """``worker.py`` beside this file, the measuring tree's (injections, step building), loaded by path."""
    key = "_mlpbench_instrument_gate_worker"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / "worker.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def instrument_on() -> None:
    """Switch Callgrind's instrumentation on for this process; fails unless it runs under Callgrind."""
    done = subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True, text=True,
                          timeout=120)
    if done.returncode != 0 or "OK" not in done.stdout:
        raise RuntimeError(f"not running under callgrind (callgrind_control -i on: {done.stdout.strip()[-200:]})")


class Counter:
    """Counts one built case: collection on only around the measured calls, one dump per region.

    ``phases()``: ``steps`` training steps with forward, loss+backward and the optimiser each
    in its own region (3 x ``steps`` dumps, summed by the coordinator); ``whole_steps()``:
    ``steps`` steps in one region (one dump). Two passes, not four, because under Valgrind
    the uncollected steps cost as much time as the collected ones.
    """

    def __init__(self, torch, step, pool: list, steps: int):
        self.torch, self.step, self.pool, self.steps = torch, step, pool, steps
        self._on = torch._C._valgrind_toggle
        self._off_and_dump = torch._C._valgrind_toggle_and_dump_stats

    def phases(self, dumped: Callable[[str], None]) -> None:
        step, pool, on, off = self.step, self.pool, self._on, self._off_and_dump
        with _no_gc():
            for i in range(self.steps):
                x, y = pool[i % len(pool)]
                on()
                out = step.forward(x)
                off()
                dumped("forward")
                on()
                step.loss_backward(out, y)
                off()
                dumped("backward")
                del out
                on()
                step.optimizer_step()
                off()
                dumped("optimizer")

    def whole_steps(self, dumped: Callable[[str], None]) -> None:
        step, pool = self.step, self.pool
        with _no_gc():
            self._on()
            for i in range(self.steps):
                step.step(*pool[i % len(pool)])
            self._off_and_dump()
        dumped("step")


@contextlib.contextmanager
def _no_gc():
    """A garbage collection inside a region would land on one side only (timeit disables it too)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def count_all(spec: dict[str, Any], dumped: Callable[[dict[str, Any]], None],
              timed: Callable[[dict[str, Any]], None], instrument: Callable[[], None] = lambda: None) -> None:
    """Every variant x case x repeat x phase of SPEC; ``dumped`` hears of each dump in order,
    ``timed`` of each case's wall time under Valgrind (build, warm-up and counting). ``instrument`` is
    called before each case's first counted region (``main``: the first call switches instrumentation on)."""
    import torch
    Case = _gate_worker().tree_module("case.cases", "cases").Case  # the tree under test's, either layout

    worker = _gate_worker()
    torch.set_num_threads(1)
    for variant in spec["variants"]:
        for index, row in enumerate(spec["cases"]):
            started = time.perf_counter()
            case = worker.inject_case(Case.from_row(row), variant)
            step, pool = worker.case_step(case, variant, SEED)  # as the timing worker builds it
            with worker.case_precision(case):
                for i in range(spec["warmup_steps"]):
                    step.step(*pool[i % len(pool)])
                instrument()
                counter = Counter(torch, step, pool, spec["steps"])
                for repeat in range(spec["repeats"]):
                    def region(phase: str, repeat: int = repeat) -> None:
                        steps = spec["steps"] if phase == "step" else 1
                        dumped({"variant": variant, "case": index, "label": case.label, "phase": phase,
                                "repeat": repeat, "steps": steps})

                    counter.phases(region)
                    counter.whole_steps(region)
            timed({"variant": variant, "case": index, "wall_s": time.perf_counter() - started})


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    import torch  # uninstrumented: the slowest part under Valgrind

    switched: list[bool] = []

    def instrument() -> None:
        # On just before the first counted region: imports, the first build and its warm-up steps run
        # uninstrumented too (Ir counts only what runs inside the collected regions, so they are unchanged;
        # on a loaded 2-core box this start-up took most of a one-case layer's minutes).
        if not switched:
            instrument_on()
            switched.append(True)

    dumps: list[dict[str, Any]] = []
    case_times: list[dict[str, Any]] = []
    count_all(spec, dumps.append, case_times.append, instrument)
    Case = _gate_worker().tree_module("case.cases", "cases").Case  # the tree under test's, either layout

    cases = [Case.from_row(row) for row in spec["cases"]]
    info = {"torch": torch.__version__, "mlp_file": str(Path(sys.modules["mlp"].__file__).resolve()),
            "labels": [c.label for c in cases], "model_files": [_gate_worker().model_source(c)[0] for c in cases],
            "dumps": dumps, "case_times": case_times}
    tmp = Path(spec["manifest"] + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(spec["manifest"])
    return 0


if __name__ == "__main__":
    # As in worker.py: this folder's module names would shadow the standard library and the tree under test.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    sys.exit(main(sys.argv[1]))
