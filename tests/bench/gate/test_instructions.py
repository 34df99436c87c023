"""The instruction layer: Callgrind files read against Valgrind's own tools, a real A/B count with an
injected regression, the verdict rule, the new injections, and Valgrind missing (exit 2, one line).

One real two-process Valgrind run (the smallest case, a few steps: about a minute or two on this
2-core machine), marked slow; everything else runs in seconds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.gate import instructions as gi
from bench.gate import worker as gate_worker
from bench.case.cases import Case
from bench.cli import main

REPO = Path(__file__).resolve().parents[3]  # tests/bench/gate/ -> the repository
HAVE_VALGRIND = all(shutil.which(t) for t in gi.VALGRIND_TOOLS)
needs_valgrind = pytest.mark.skipif(not HAVE_VALGRIND, reason="Valgrind (valgrind, callgrind_*) is not installed")


@pytest.fixture(scope="module")
def callgrind_file(tmp_path_factory) -> Path:
    """A real callgrind.out of a small program, counted from the start."""
    out = tmp_path_factory.mktemp("cg") / "callgrind.out"
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "ls", "/"], check=True,
                   capture_output=True, timeout=120)
    return out


def _annotate(path: Path) -> str:
    return subprocess.run(["callgrind_annotate", "--inclusive=no", "--threshold=100", str(path)], check=True,
                          capture_output=True, text=True).stdout


@needs_valgrind
def test_read_total_matches_callgrind_annotate(callgrind_file: Path) -> None:
    import re

    match = re.search(r"^\s*([0-9,]+)\s+(?:\([^)]*\)\s+)?PROGRAM TOTALS", _annotate(callgrind_file), re.M)
    assert match, "callgrind_annotate printed no PROGRAM TOTALS"
    assert gi.read_total(callgrind_file) == int(match.group(1).replace(",", "")) > 10_000


@needs_valgrind
def test_function_counts_add_up_to_the_total(callgrind_file: Path) -> None:
    counts = gi.function_counts([callgrind_file])
    assert counts.sum() == gi.read_total(callgrind_file)  # --threshold=100: every function is listed
    assert len(counts) > 20 and all(":" in fn for _, fn in counts)
    doubled = gi.function_counts([callgrind_file, callgrind_file])  # dumps add up, as per-step regions do
    assert doubled.sum() == 2 * counts.sum()
    assert (doubled - counts).sum() == counts.sum()  # the delta torch's CallgrindStats.delta would give


def test_client_requests_are_a_no_op_natively() -> None:
    """valgrind.h: natively the special instructions do nothing and the request returns its default."""
    from bench.gate import instructions_worker as iw

    assert iw.client_request(iw.RUNNING_ON_VALGRIND, 0) == 0
    assert iw.client_request(iw.CALLGRIND_START_INSTRUMENTATION, 12345, 1, 2, 3, 4, 5) == 12345
    with pytest.raises(RuntimeError, match="not running under callgrind"):
        iw.instrument_on()


# Under Callgrind with instrumentation off: a forked child's collected region counts nothing until that child
# switches instrumentation on; Callgrind's own files (one per PID, numbered dumps) are the reference.
_CHILDREN = """
import os, sys
from bench.gate import instructions_worker as iw
TOGGLE, DUMP = 0x43540002, 0x43540000  # callgrind.h: CALLGRIND_TOGGLE_COLLECT, CALLGRIND_DUMP_STATS
assert iw.client_request(iw.RUNNING_ON_VALGRIND, 0) == 1
kids = []
for switch in (False, True):
    pid = os.fork()
    if pid == 0:
        if switch:
            iw.instrument_on()
        iw.client_request(TOGGLE, 0)
        total = sum(range(20000))
        iw.client_request(TOGGLE, 0)
        iw.client_request(DUMP, 0)
        print(switch, os.getpid(), flush=True)
        os._exit(0)
    kids.append(pid)
assert all(os.waitstatus_to_exitcode(os.waitpid(k, 0)[1]) == 0 for k in kids)
"""


@needs_valgrind
def test_instrumentation_is_switched_on_per_forked_child(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out.%p"
    done = subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
                           "--vgdb=no", f"--callgrind-out-file={out}", sys.executable, "-c", _CHILDREN],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    pids = dict(line.split() for line in done.stdout.splitlines())
    off, on = (gi.read_total(tmp_path / f"callgrind.out.{pids[k]}.1") for k in ("False", "True"))
    assert off == 0
    assert on > 20000 * 10  # a pure-Python sum of 20,000 ints: tens of instructions per iteration


def test_the_rule_needs_both_the_relative_and_the_absolute_margin() -> None:
    big = 100_000_000
    assert not gi.is_regression(1_000_000, 1_000_000 + gi.MIN_INCREASE)  # at the floor: not above it
    assert gi.is_regression(1_000_000, 1_000_000 + gi.MIN_INCREASE + 1) == (gi.MIN_INCREASE + 1 > gi.THRESHOLD * 1e6)
    assert not gi.is_regression(big, big + 0.999 * gi.THRESHOLD * big)
    assert gi.is_regression(big, big * (1 + 2 * gi.THRESHOLD) + gi.MIN_INCREASE)
    assert not gi.is_regression(big, big - 10 * gi.MIN_INCREASE)  # fewer instructions is never a regression


def test_foreach_injection_keeps_the_optimiser_and_its_numbers() -> None:
    """fused -> foreach: same class and hyper-parameters; one step updates the weights as the fused one does."""
    case = Case(width=16, depth=1, batch=4, optimizer="adam", threads=1)
    torch.manual_seed(0)
    fused = gate_worker.build_step(case)
    torch.manual_seed(0)
    foreach = gate_worker.build_step(case)
    gate_worker.inject_step(foreach, "foreach-optim")
    assert fused.optimizer.defaults["fused"] and type(foreach.optimizer) is type(fused.optimizer)
    assert foreach.optimizer.defaults["foreach"] and not foreach.optimizer.defaults["fused"]
    assert foreach.optimizer.defaults["lr"] == fused.optimizer.defaults["lr"]
    x, y = case.make_batch(torch.Generator().manual_seed(1))
    fused.step(x, y)
    foreach.step(x, y)
    for a, b in zip(fused.model.parameters(), foreach.model.parameters()):
        torch.testing.assert_close(a, b)


def test_python_overhead_injection_adds_python_only() -> None:
    """The same torch ops (profiler's list) and the same output: the added work is pure Python."""
    from collections import Counter

    case = Case(width=16, depth=1, batch=4, threads=1)
    step = gate_worker.build_step(case)
    x, _ = case.make_batch(torch.Generator().manual_seed(1))
    step.forward(x)  # first call: lazy initialisation

    def ops() -> tuple[Counter, torch.Tensor]:
        with torch.profiler.profile() as prof:
            out = step.forward(x)
        return Counter(e.name for e in prof.events()), out

    clean_ops, before = ops()
    gate_worker.inject_step(step, "python-2us")
    injected_ops, after = ops()
    torch.testing.assert_close(before, after)
    assert injected_ops == clean_ops and clean_ops


# --------------------------------------------------------------------------- CLI edges


def test_instructions_need_against(capsys) -> None:
    assert main(["check", "--layers", "instructions", "--baseline", "results/baselines/cpu-gate.json"]) == 2
    assert "--against" in capsys.readouterr().err


def test_several_injections_only_for_the_instruction_layer(capsys) -> None:
    assert main(["check", "--against", "HEAD", "--layers", "timing", "--inject-regression", "extra-op,flops+10"]) == 2
    assert "instructions alone" in capsys.readouterr().err


def test_valgrind_absent_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """PATH without Valgrind (git kept): one line on stderr, exit 2, and no worktree left behind."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git"))
    before = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    done = subprocess.run([sys.executable, "-m", "bench", "check", "--layers", "instructions", "--against", "HEAD"],
                          cwd=REPO, env={**os.environ, "PATH": str(bin_dir)}, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "valgrind" in done.stderr.lower()
    assert "apt-get install valgrind" in done.stderr
    after = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    assert after == before


# --------------------------------------------------------------------------- one real A/B count


@pytest.mark.slow
@pytest.mark.e2e  # ~200 s under Callgrind: its own .ci/run step, not `make test`
@needs_valgrind
def test_real_count_passes_a_a_and_fails_an_injected_extra_op(tmp_path: Path) -> None:
    """Both sides are this tree (A/A) and B also counts `extra-op`: A/A passes, the extra op is a regression
    whose growth shows up in the functions, and the report's exit code is 1 only because of it."""
    from bench.gate.report import GateReport

    case = Case(width=16, depth=1, batch=4, threads=1)
    plan = gi.InstructionPlan(steps=2, warmup_steps=2, repeats=1)
    counted = gi.count_trees({"A": (REPO, ["none"]), "B": (REPO, ["none", "extra-op"])}, [case.to_row()], plan,
                             tmp_path)
    results = gi.compare(counted["A"], counted["B"], [(case.label, case.case_id)], ["none", "extra-op"])
    a_a = [r for r in results if r.variant == "none"]
    injected = {r.phase: r for r in results if r.variant == "extra-op"}
    assert len(a_a) == 4 and not any(r.regressed for r in a_a)
    assert all(abs(r.increase) <= gi.MIN_INCREASE for r in a_a), [(r.phase, r.a_per_step, r.b_per_step) for r in a_a]
    for phase in ("forward", "step"):  # one more mul forward (its gradient backward is smaller than the floor)
        assert injected[phase].regressed, injected[phase]
        grown = sum(c for c, _ in injected[phase].top_growth)
        assert 0 < grown and injected[phase].top_growth[0][0] > 0
    assert injected["backward"].increase > 0
    assert not injected["optimizer"].regressed  # the optimiser does the same work
    # the whole step grows by the same order as forward + backward (measured: 34 k against 46 k for this
    # case; the phase regions each carry their own entry and exit, the step region one)
    parts = injected["forward"].increase + injected["backward"].increase
    assert 0.5 * parts < injected["step"].increase < 1.5 * parts
    layer = gi.InstructionLayer(results, "HEAD", plan, "cpu", torch.__version__, 1.0, {}, {})
    assert GateReport(title="t", instructions=layer).exit_code == 1
    clean = gi.InstructionLayer(a_a, "HEAD", plan, "cpu", torch.__version__, 1.0, {}, {})
    assert GateReport(title="t", instructions=clean).exit_code == 0
    assert "Layer 3" in "\n".join(gi.render(layer)) and "**regression**" in "\n".join(gi.render(layer))


@pytest.mark.slow
@pytest.mark.e2e  # three Valgrind'd children plus one Valgrind process more: minutes on a loaded 2-core machine
@needs_valgrind
def test_forked_sides_count_what_a_process_of_their_own_counts(tmp_path: Path) -> None:
    """The speed-up (one ``import torch`` under Valgrind, sides forked from it) against the reference, each side
    in a Valgrind process of its own: every case and phase agrees within the A/A floor the verdict allows
    (MIN_INCREASE); and two sides forked for the same tree count exactly the same (measured: identical in every
    phase, where separate processes differ by hundreds of instructions per step)."""
    case = Case(width=16, depth=1, batch=4, threads=1)
    plan = gi.InstructionPlan(steps=2, warmup_steps=2, repeats=1)
    rows, labels = [case.to_row()], [(case.label, case.case_id)]
    forked = gi.count_trees({"A": (REPO, ["none"]), "B": (REPO, ["none"])}, rows, plan, tmp_path / "forked")
    alone = gi.count_trees({"A": (REPO, ["none"])}, rows, plan, tmp_path / "alone", fork=False)
    assert forked["A"].prefix != forked["B"].prefix != alone["A"].prefix  # three processes, three PIDs
    for phase in gi.PHASES:
        reference = alone["A"].per_step("none", 0, phase)[0]
        a, b = forked["A"].per_step("none", 0, phase)[0], forked["B"].per_step("none", 0, phase)[0]
        print(f"{phase}: alone {reference:,.0f}, forked A {a:,.0f}, forked B {b:,.0f}")
        assert reference > 10_000
        assert abs(a - reference) <= gi.MIN_INCREASE and abs(b - reference) <= gi.MIN_INCREASE, phase
        assert a == b, phase
    assert forked["A"].totals == forked["B"].totals
    cpu = forked["A"].cpu_s
    assert cpu["before_fork"] > 0 and cpu["side"] > 0 and forked["B"].cpu_s["before_fork"] == cpu["before_fork"]
