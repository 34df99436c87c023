"""What runs under Valgrind for the gate's instruction layer: every side's cases, one Valgrind process for all.

``bench.gate.instructions`` starts this file once as
``valgrind --tool=callgrind --instr-atstart=no --collect-atstart=no --callgrind-out-file=DIR/callgrind.out.%p
... python instructions_worker.py LAUNCH`` and the process:

1. imports torch and the heavy third-party modules a gate step pulls in (``PREIMPORT``: dynamo with
   sympy, pandas, triton), uninstrumented: the slowest part under Valgrind (about 43 s of CPU on a
   2-core AMD EPYC, and 13 s more for the rest), paid once instead of once per side;
2. forks one child per side (REF and this tree: they run at once, one per core). A child takes its
   tree's folder and ``PYTHONPATH`` (REF's temporary worktree or the working tree), so ``mlp``,
   ``bench.case.cases`` and ``build_step`` come from the tree under test, builds each case, warms it up
   (still uninstrumented), and just before the first counted region switches Callgrind's
   instrumentation on for itself with the client request ``CALLGRIND_START_INSTRUMENTATION``
   (``client_request``; its reply also proves it runs under Callgrind); then it counts each phase with
   collection switched on only around the measured calls, by torch's own client requests
   (``torch._C._valgrind_toggle`` / ``_valgrind_toggle_and_dump_stats``, as ``torch.utils.benchmark``'s
   ``collect_callgrind`` does). Every measured region ends in a dump, so Callgrind writes one numbered
   file per (variant, case, phase, repeat), ``callgrind.out.PID.N`` with the child's PID; the child
   writes the list of what each dump holds, and its PID, to its side's manifest and leaves with
   ``os._exit`` (the interpreter's teardown would otherwise run instrumented).

Nothing of a tree is imported before the fork, and both children start from the same parent state.
With ``"fork": false`` in LAUNCH (one side only) the process counts that side itself, as the layer did
before it forked: the tests' reference for what forking may change.

Like ``worker.py``, the measured code comes from the tree under test and the measuring code (this file,
``worker.py`` beside it, loaded by path) from the tree running the gate. So this file imports no
``bench`` module at the top.

LAUNCH (JSON): ``{"sides": [{"side": "A", "cwd": folder, "pythonpath": "...", "spec": path, "log": path}],
"fork": true}``. A side's SPEC (JSON): ``{"cases": [Case rows], "variants": ["none", "extra-op", ...],
"steps": N, "warmup_steps": W, "repeats": R, "manifest": path}``. A variant is an injected regression of
``worker.INJECTIONS`` (``none``: the clean case); the head side of a campaign counts several in one
process.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import importlib.util
import json
import mmap
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PHASES = ("forward", "backward", "optimizer", "step")  # backward = loss + backward, as in mlp.TrainStep
SEED = 1234  # weights and batches: the same on both sides
# Imported before the fork (each if installed): what a gate step's code pulls in besides torch, measured
# under Valgrind as 13 s of CPU per side for a one-case suite (the tree's timing module -> pandas; the
# optimiser and mlp -> torch._dynamo with sympy, flop_counter, triton). Third-party only: no tree's module.
PREIMPORT = ("torch._dynamo", "torch.utils.flop_counter", "torch.optim", "pandas", "triton")
# Valgrind's client requests (valgrind.h, callgrind.h): the request code, and a default that only a
# process not under Callgrind returns.
RUNNING_ON_VALGRIND = 0x1001
CALLGRIND_START_INSTRUMENTATION = 0x43540004  # VG_USERREQ_TOOL_BASE('C', 'T') + 4
NOT_HANDLED = 0x5EB0
STARTED = time.perf_counter()  # this file's import, just after the interpreter's start under Valgrind
BEFORE_FORK: dict[str, float] = {}  # the parent's CPU and wall seconds until the fork (children inherit it)
# x86-64: rax = &args[0], rdx = default, Valgrind's special-instruction preamble (rdi rotated by 128 bits
# in all: a no-op natively), then "xchg rbx, rbx", the request; the reply comes back in rdx.
REQUEST_CODE = bytes.fromhex("4889f8" "4889f2" "48c1c703" "48c1c70d" "48c1c73d" "48c1c733" "4887db" "4889d0" "c3")


def _gate_worker():
    """``worker.py`` beside this file, the measuring tree's (injections, step building), loaded by path."""
    key = "_mlpbench_instrument_gate_worker"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / "worker.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def client_request(code: int, default: int, *args: int) -> int:
    """One Valgrind client request (as ``VALGRIND_DO_CLIENT_REQUEST_EXPR``); ``default`` when not under Valgrind."""
    if len(args) > 5:
        raise ValueError("a client request takes at most 5 arguments")
    call = _request_function()
    words = (ctypes.c_uint64 * 6)(code, *args, *[0] * (5 - len(args)))
    return call(ctypes.addressof(words), default)


_REQUEST: list = []  # the executable page and the function on it, made once


def _request_function():
    if not _REQUEST:
        if sys.platform != "linux" or os.uname().machine != "x86_64":
            raise RuntimeError("the instruction layer's client requests are written for Linux on x86-64")
        page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        page.write(REQUEST_CODE)
        address = ctypes.addressof(ctypes.c_char.from_buffer(page))
        _REQUEST.extend([page, ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p, ctypes.c_uint64)(address)])
    return _REQUEST[1]


def instrument_on() -> None:
    """Switch Callgrind's instrumentation on for this process only; fails unless it runs under Callgrind
    (Callgrind answers 0; natively, or under another tool, the request returns its default)."""
    if client_request(CALLGRIND_START_INSTRUMENTATION, NOT_HANDLED) != 0:
        raise RuntimeError("not running under callgrind (CALLGRIND_START_INSTRUMENTATION was not handled)")


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


def count_side(side: dict[str, str]) -> None:
    """One side in this process: its tree on the path and as the folder, every case counted, its manifest."""
    os.chdir(side["cwd"])
    os.environ["PYTHONPATH"] = side["pythonpath"]
    sys.path[:0] = [p for p in side["pythonpath"].split(os.pathsep) if p]
    importlib.invalidate_caches()
    spec = json.loads(Path(side["spec"]).read_text())
    import torch

    switched: list[bool] = []

    def instrument() -> None:
        # On just before the first counted region: imports, the first build and its warm-up steps run
        # uninstrumented too (Ir counts only what runs inside the collected regions, so they are unchanged).
        if not switched:
            instrument_on()
            switched.append(True)

    started = time.perf_counter()
    dumps: list[dict[str, Any]] = []
    case_times: list[dict[str, Any]] = []
    count_all(spec, dumps.append, case_times.append, instrument)
    Case = _gate_worker().tree_module("case.cases", "cases").Case  # the tree under test's, either layout

    cases = [Case.from_row(row) for row in spec["cases"]]
    info = {"torch": torch.__version__, "mlp_file": str(Path(sys.modules["mlp"].__file__).resolve()),
            "labels": [c.label for c in cases], "model_files": [_gate_worker().model_source(c)[0] for c in cases],
            "dumps": dumps, "case_times": case_times, "pid": os.getpid(), "side_s": time.perf_counter() - started,
            "cpu_s": time.process_time(), "before_fork": BEFORE_FORK}  # cpu_s: since the fork (or the start)
    tmp = Path(spec["manifest"] + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(spec["manifest"])


def _child(side: dict[str, str]) -> None:
    """A forked side: its own log, its count, and ``os._exit`` (never back into the parent's code)."""
    code = 1
    try:
        log = os.open(side["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        sys.stdout = os.fdopen(1, "w", buffering=1)
        sys.stderr = os.fdopen(2, "w", buffering=1)
        count_side(side)
        code = 0
    except BaseException:  # noqa: BLE001 - a child must leave by os._exit whatever happened
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def main(launch_path: str) -> int:
    launch = json.loads(Path(launch_path).read_text())
    sides = launch["sides"]
    import torch  # noqa: F401 - uninstrumented, once: the slowest part under Valgrind

    for name in PREIMPORT:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    if client_request(RUNNING_ON_VALGRIND, 0) == 0:
        raise RuntimeError("not running under Valgrind")
    BEFORE_FORK.update(cpu_s=time.process_time(), wall_s=time.perf_counter() - STARTED)
    if not launch.get("fork", True):
        if len(sides) != 1:
            raise RuntimeError("without fork a worker counts one side")
        count_side(sides[0])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # the interpreter's teardown would run instrumented
    sys.stdout.flush()
    sys.stderr.flush()
    children = []
    for side in sides:
        pid = os.fork()
        if pid == 0:
            _child(side)
        children.append(pid)
    failed = 0
    for pid in children:
        _, status = os.waitpid(pid, 0)
        failed += os.waitstatus_to_exitcode(status) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    # As in worker.py: this folder's module names would shadow the standard library and the tree under test.
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
    code = main(sys.argv[1])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # torch's teardown under Valgrind costs seconds and measures nothing
