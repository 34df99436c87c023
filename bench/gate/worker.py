"""The gate's measuring instrument: builds the gate suite from one source tree, counts and times it.

``mlpbench check --against REF`` runs one of these per tree (REF's temporary
worktree and the working tree), each in its own process with ``PYTHONPATH``
pointing at that tree, and drives them over JSON lines on stdin/stdout. The
measured code (``mlp``, ``bench.case.cases``, ``bench.instruments.timing.build_step``) comes from
the tree under test; the measuring code (this file, ``counters.py`` beside it and the
timing primitives of ``bench/instruments/clocks.py``, the engine's own) comes from the tree that
runs the gate, so both sides are measured the same way. That is why this file imports
no ``bench`` module: it loads its instruments by path, under a private package name
(``INSTRUMENTS``), whatever tree ``bench`` itself is. The same ``Suite`` runs
in-process for ``--baseline``.

Protocol: one JSON object per line each way. Requests ``{"cmd": "setup" | "warmup"
| "counters" | "time" | "quit", ...}``; replies ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}``.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH_DIR = HERE.parent  # the measuring tree's bench/, loaded as the package INSTRUMENTS
INSTRUMENTS = "_mlpbench_instruments"
WARMUP_MIN_STEPS = 3  # JIT-free eager warm-up: allocator and oneDNN/cuBLAS heuristics settle in a few steps
LEAD_STEPS = 2  # untimed steps before each block: the rebuilt step's first one is cold (new memory, caches)
# Every timed block runs on a freshly built step and batch pool, in fresh memory (the old ones
# stay alive until the end, so the allocator cannot hand the same pages back). Where tensors
# land in memory moves a step's time by several per cent, and within one process it stays put:
# in A/A runs the FashionMNIST case showed steady per-process biases up to +-12%, and rebuilding
# it 12 times in one process gave medians from 4.7 to 6.4 ms. Rebuilding per block turns that
# bias into noise that the paired test sees and that averages out over the rounds.
BUILD_SEED = 1234  # weights and batches of round r come from seed BUILD_SEED + r on both sides
INJECTIONS = ("none", "extra-op", "flops+10", "flops+25", "python-2us", "foreach-optim")
# python-2us: iterations of an empty pure-Python loop that, with the wrapper around forward,
# take about 2 us natively here (Xeon 2.5 GHz, Python 3.11: 320 gave 2.30 us with timeit, so 280)
PYTHON_OVERHEAD_ITERS = 280
CPUS_ENV = "MLPBENCH_GATE_CPUS"  # comma-separated CPU ids the worker pins itself to


# --------------------------------------------------------------------------- injected regressions


def inject_case(case, inject: str):
    """The case a ``flops+N`` regression would measure: matmul FLOPs N% larger.

    Uniform MLPs (FLOPs ~ width^2) get width x sqrt(1+N/100), rounded; the named
    networks have a fixed shape, so their batch (FLOPs ~ batch) grows by N%, rounded.
    The exact ratio after rounding is reported by ``mlp.flops``, not assumed.
    """
    if not inject.startswith("flops+"):
        return case
    factor = 1 + int(inject.removeprefix("flops+")) / 100
    if case.network == "uniform":
        return dataclasses.replace(case, width=round(case.width * math.sqrt(factor)))
    return dataclasses.replace(case, batch=round(case.batch * factor))


def inject_step(step, inject: str) -> None:
    """Change a built step the way a careless edit might.

    ``extra-op``: a redundant ``* 1.0`` on the model output, as a refactor might leave behind:
    one more elementwise ATen op in forward and inference, and one more in backward (its gradient).
    ``python-2us``: pure-Python work (no torch call) before every forward, about 2 us natively.
    ``foreach-optim``: the optimiser rebuilt with ``foreach=True`` where it was fused.
    """
    if inject == "extra-op":
        step.model.register_forward_hook(lambda module, inputs, output: output * 1.0)
    elif inject == "python-2us":
        forward = step.forward

        def slower_forward(x):
            for _ in range(PYTHON_OVERHEAD_ITERS):
                pass
            return forward(x)

        step.forward = slower_forward
    elif inject == "foreach-optim":
        _unfuse_optimizer(step)


def _unfuse_optimizer(step) -> None:
    """The same optimiser class and hyper-parameters, foreach instead of fused (from torch's own defaults)."""
    optimizer = step.optimizer
    if not optimizer.defaults.get("fused"):
        raise ValueError("foreach-optim needs a fused optimiser to start from; this step's is not fused")
    settings = {**optimizer.defaults, "fused": False, "foreach": True}
    step.optimizer = type(optimizer)(step.model.parameters(), **settings)


# --------------------------------------------------------------------------- the suite of one tree


class Suite:
    """The gate's cases built from the importable tree: steps, batches, warm-up, counters, timed blocks."""

    def __init__(self, case_rows: list[dict[str, Any]], inject: str = "none", warmup_s: float = 0.3):
        import torch

        Case = tree_module("case.cases", "cases").Case
        if inject not in INJECTIONS:
            raise ValueError(f"unknown injected regression {inject!r}; valid: {', '.join(INJECTIONS)}")
        self.torch = torch
        self.clocks = _load_instrument("instruments.clocks")
        self.inject = inject
        self.warmup_s = warmup_s
        self.cases = [inject_case(Case.from_row(row), inject) for row in case_rows]
        self.steps: list = [None] * len(self.cases)
        self.pools: list = [None] * len(self.cases)
        self._retired: list = []  # earlier builds, kept alive so that each build gets fresh memory
        for index in range(len(self.cases)):
            self.rebuild(index, BUILD_SEED)
        self._counters = _load_instrument("instruments.counters")

    def rebuild(self, index: int, seed: int) -> None:
        """A new step (weights from ``seed``) and batch pool for case ``index``, in fresh memory."""
        torch, case = self.torch, self.cases[index]
        if self.steps[index] is not None:
            self._retired.append((self.steps[index], self.pools[index]))
        self.steps[index], self.pools[index] = case_step(case, self.inject, seed)

    def info(self) -> dict[str, Any]:
        import mlp

        sources = [model_source(c) for c in self.cases]
        return {"mlp_file": str(Path(mlp.__file__).resolve()), "torch": self.torch.__version__,
                "labels": [c.label for c in self.cases], "case_ids": [c.case_id for c in self.cases],
                "model_files": [f for f, _ in sources], "model_shas": [sha for _, sha in sources],
                "step_matmul_flops": [_step_flops(step.model, c) for step, c in zip(self.steps, self.cases)]}

    def counters(self) -> list[dict[str, Any]]:
        out = []
        for step, case, pool in zip(self.steps, self.cases, self.pools):
            with case_precision(case):
                out.append(self._counters.count_step(step, case, pool[0]).to_dict())
        return out

    def warm_up(self, index: int) -> float:
        """Steps until ``warmup_s`` has passed (and at least a few); returns the last seconds per step."""
        spent, count, per_step_s = 0.0, 0, math.nan
        while count < WARMUP_MIN_STEPS or spent < self.warmup_s:
            per_step_s = self.time_block(index, 1, lead_steps=0)
            spent, count = spent + per_step_s, count + 1
        return per_step_s

    def time_block(self, index: int, iters: int, lead_steps: int = LEAD_STEPS, cpu_time: bool = False) -> float:
        """Mean seconds per whole training step over ``iters`` steps, nothing else inside the loop; ``cpu_time``: the
        thread's CPU seconds where the case runs one torch thread on the CPU (``clocks.ThreadCpuClock``)."""
        clocks, step, pool = self.clocks, self.steps[index], self.pools[index]
        case = self.cases[index]

        def train_step(i: int) -> None:
            step.step(*pool[i % clocks.BATCH_POOL])

        with clocks.torch_threads(case.threads), case_precision(case):
            for i in range(lead_steps):
                train_step(i)
            return clocks.time_block(train_step, iters, clocks.clock_for(self.torch.device(case.device), cpu_time))


def case_step(case, inject: str, seed: int) -> tuple[Any, list]:
    """The case's step (weights from ``seed``, ``inject`` applied) and its batch pool (from ``seed``, stored as
    the step reads them), built the way ``mlpbench run`` builds them (``build_step``: the optimiser's
    ``optimizer_args`` and every step knob). A compiled case starts from a clean dynamo cache, as the runner's
    ``case_context`` does: without a reset, a rebuilt step past dynamo's recompile limit would run eager."""
    import torch

    if getattr(case, "compiled", False):
        torch._dynamo.reset()
    torch.manual_seed(seed)
    step = build_step(case)
    inject_step(step, inject)
    gen = torch.Generator().manual_seed(seed)
    prepare = getattr(step, "prepare", lambda x, y: (x, y))  # older trees' steps read the batch as drawn
    pool = [prepare(*case.make_batch(gen)) for _ in range(_load_instrument("instruments.clocks").BATCH_POOL)]
    return step, pool


def build_step(case):
    """The tree's own ``bench.instruments.timing.build_step`` when it has one, else the plain ``mlp.TrainStep``."""
    try:
        tree_build_step = tree_module("instruments.timing", "timing").build_step
    except (ImportError, AttributeError):
        import mlp

        return mlp.TrainStep(case.build_model(), loss=case.loss, optimizer=case.optimizer, precision=case.dtype,
                             device=case.device)
    return tree_build_step(case)


def case_precision(case):
    """The case's matmul precision (tf32 allows TF32 matmuls) for the block, as the runner sets it; nothing in
    trees whose ``mlp`` has no ``matmul_precision``."""
    import contextlib

    import mlp

    if not hasattr(mlp, "matmul_precision"):
        return contextlib.nullcontext()
    return mlp.matmul_precision(mlp.Precision(case.dtype))


def model_source(case) -> tuple[str, str]:
    """(file, source hash) of a user's model case (``--model``), ("", "") for a built-in network: the
    coordinator checks that each side measured its own checkout's model."""
    if not getattr(case, "model", ""):
        return "", ""
    import inspect

    plugin = tree_module("case.plugin", "plugin")
    factory = plugin.resolve(case.model)
    try:
        source = inspect.getsourcefile(factory.target) or ""
    except TypeError:
        source = ""
    return (str(Path(source).resolve()) if source else ""), factory.source_sha


def _step_flops(model, case) -> int:
    """Matmul FLOPs of one step: a user's model counted (``FlopCounterMode``), as its run counted them; the formula
    (``mlp.flops``) knows only the built-in layer sequences, and refuses a nested ``nn.Sequential``."""
    import mlp

    if not getattr(case, "model", ""):
        return mlp.flops(model, case.batch, case.loss, case.optimizer).step_matmul

    def built(device):
        import torch

        with torch.device(device):
            return case.build_model()

    return mlp.count_flops(built, case.batch, case.input_shape, case.io_features[1], case.loss).step_matmul


def tree_module(name: str, before_the_move: str):
    """``bench.<name>`` of the tree under test, or ``bench.<before_the_move>`` in a tree from before issue 48's move
    (``check --against`` a ref of either layout): the new path first, then the old one."""
    try:
        return importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"bench.{name}", f"bench.{name.rsplit('.', 1)[0]}"):
            raise
        return importlib.import_module(f"bench.{before_the_move}")


def _load_instrument(name: str):
    """``bench.<name>`` of the measuring tree, loaded by path (``bench`` itself may be the other tree's)."""
    if INSTRUMENTS not in sys.modules:
        spec = importlib.util.spec_from_file_location(INSTRUMENTS, BENCH_DIR / "__init__.py",
                                                      submodule_search_locations=[str(BENCH_DIR)])
        package = importlib.util.module_from_spec(spec)
        sys.modules[INSTRUMENTS] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"{INSTRUMENTS}.{name}")


# --------------------------------------------------------------------------- requests


def handle(state: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    """Answer one request; ``state`` holds the suite between requests."""
    cmd = request.get("cmd")
    if cmd == "setup":
        suite = Suite(request["cases"], request.get("inject", "none"), request.get("warmup_s", 0.3))
        state["suite"] = suite
        return {"ok": True, "info": suite.info()}
    suite: Suite = state["suite"]
    if cmd == "warmup":
        return {"ok": True, "per_step_s": {i: suite.warm_up(i) for i in request["cases"]}}
    if cmd == "counters":
        return {"ok": True, "counters": suite.counters()}
    if cmd == "time":
        if "rebuild_seed" in request:
            suite.rebuild(request["case"], request["rebuild_seed"])
        return {"ok": True, "samples_s": [suite.time_block(request["case"], request["iters"],
                                                           cpu_time=request.get("clock") == "cpu")]}
    raise ValueError(f"unknown request {cmd!r}")


def serve(inp, out) -> None:
    state: dict[str, Any] = {}
    for line in inp:
        request = json.loads(line)
        if request.get("cmd") == "quit":
            return
        try:
            reply = handle(state, request)
        except Exception as exc:  # noqa: BLE001 - the coordinator reports it as one line
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()
        if not reply["ok"]:
            return


def _protocol_stdout():
    """Keep the real stdout for replies; anything else printed (by torch, by the tree) goes to stderr."""
    proto = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    return proto


def _pin_cpus() -> None:
    """Run on the CPUs the coordinator chose (before torch starts threads, so they inherit them)."""
    cpus = os.environ.get(CPUS_ENV)
    if cpus and hasattr(os, "sched_setaffinity"):  # no affinity call (macOS, Windows): run unpinned
        try:
            os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
        except OSError as exc:  # a CPU this process may not use (a container's cpuset): unpinned, said on stderr
            print(f"mlpbench gate worker: not pinned to CPUs {cpus}: {exc}", file=sys.stderr)


if __name__ == "__main__":
    # Run as a script: sys.path[0] is this folder, whose module names (stats, report, ...) would
    # shadow other modules and hide the tree under test. Drop it; PYTHONPATH names the tree.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    _pin_cpus()
    serve(sys.stdin, _protocol_stdout())
