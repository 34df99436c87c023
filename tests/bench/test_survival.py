"""Runs that survive what kills a process: real processes killed with SIGKILL and SIGTERM, a second
writer, a case bigger than memory, an allocation that fails on the CPU, bad feature counts."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mlp
from bench.engine import runner
from bench import runs
from bench.case.cases import Case
from bench.cli import main as cli_main
from bench.errors import EXIT_INTERRUPTED, EXIT_USAGE
from bench.case.headroom import GIB, needed_bytes
from bench.instruments.timing import TimingConfig

REPO = Path(__file__).resolve().parents[2]
FAST = TimingConfig(repeats=3, warmup_s=0.0, min_block_s=0.002)
WAIT_S = 240  # a loaded 2-core machine: torch import, the ceiling, then the case


def _mlpbench(*args: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "bench", *args], cwd=REPO, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def _meta(folder: Path) -> dict:
    return json.loads((folder / runs.META_JSON).read_text())  # written atomically: always whole


def _wait_in_flight(folder: Path, proc: subprocess.Popen, case: Case, log: Path) -> dict:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited {proc.returncode} before measuring: {log.read_text()[-2000:]}"
        meta = _meta(folder) if (folder / runs.META_JSON).is_file() else {}
        flight = meta.get("in_flight") or {}
        if flight.get("pid") == proc.pid:  # this process's mark (a killed one's mark stays behind)
            assert flight["case_id"] == case.case_id, flight
            return meta
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no case in flight after {WAIT_S} s: {log.read_text()[-2000:]}")


@pytest.mark.e2e  # two killed processes and a resume: ~35 s on 2 cores; `make test-e2e` (its own .ci/run step) runs it
def test_kill_9_twice_in_one_case_then_resume_records_it_crashed_and_goes_on(tmp_path, capsys):
    """SIGTERM is Ctrl-C; a second writer is refused; two SIGKILLs in one case make it `crashed`, not a loop."""
    slow, fast = Case(width=64, depth=1, batch=8), Case(width=32, depth=1, batch=8)
    out, log = tmp_path / "run", tmp_path / "log.txt"
    flags = ["--width", "64,32", "--depth", "1", "--batch", "8", "--no-progress", "--no-show", "--max-case-s", "inf"]
    slow_timing = ["--min-time-s", "600", "--warmup-s", "0"]  # the first case would measure for 10 minutes

    first = _mlpbench("run", *flags, *slow_timing, "--out", str(out), log=log)
    meta = _wait_in_flight(out, first, slow, log)
    assert meta["crashes"] == {}
    # another process (this one) that wants to write the folder is refused in one line, and changes nothing
    code = cli_main(["run", "--resume", str(out), "--no-progress", "--no-show"])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mlpbench: error:")]
    assert code == EXIT_USAGE and errors == [f"mlpbench: error: {out} is being written by another process "
                                             f"(pid {first.pid}); wait for it to finish or choose another --out"]
    # SIGTERM (a CI runner's cancel) is handled like Ctrl-C: exit 130, interrupted, the mark withdrawn
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=WAIT_S) == EXIT_INTERRUPTED, log.read_text()[-2000:]
    meta = _meta(out)
    assert meta["interrupted"] is True and "in_flight" not in meta and meta["crashes"] == {}
    assert "interrupted" in log.read_text()

    for deaths in (1, 2):  # resume, die mid-case (SIGKILL: nothing to catch), twice
        proc = _mlpbench("run", "--resume", str(out), *slow_timing, "--no-progress", "--no-show", log=log)
        meta = _wait_in_flight(out, proc, slow, log)
        assert meta["crashes"] == ({} if deaths == 1 else {slow.case_id: 1})
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=WAIT_S) == -signal.SIGKILL
        assert _meta(out)["in_flight"]["case_id"] == slow.case_id  # the mark survives the death

    # the run's own --min-time-s 600 holds on resume unless a flag overrides it
    last = _mlpbench("run", "--resume", str(out), "--repeats", "3", "--warmup-s", "0", "--min-time-s", "0",
                     "--no-progress", "--no-show", log=log)
    assert last.wait(timeout=WAIT_S) == 0, log.read_text()[-2000:]
    run = runs.load_run(out)
    steps = run.summary[run.summary["phase"] == "step"].set_index("case_id")
    assert steps.loc[slow.case_id, "status"] == "crashed"
    assert steps.loc[slow.case_id, "reason"] == "the process died while measuring it, twice"
    assert steps.loc[fast.case_id, "status"] == "ok"
    assert run.meta.crashes == {slow.case_id: 2} and run.meta.in_flight is None
    assert "1 failed" in log.read_text().splitlines()[-1]


def test_an_interrupted_case_is_not_counted_as_a_crash(tmp_path):
    cases = [Case(width=16, depth=1, batch=4), Case(width=24, depth=1, batch=4)]

    def interrupted(case, config, **progress):
        meta = runs.read_meta(tmp_path / "run" / runs.META_JSON)
        assert meta.in_flight == {"case_id": case.case_id, "label": case.label, "pid": os.getpid()}  # marked first
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        runner.run_sweep(cases, tmp_path / "run", FAST, progress=False, measure_fn=interrupted)
    meta = runs.read_meta(tmp_path / "run" / runs.META_JSON)
    assert meta.in_flight is None and meta.crashes == {} and meta.interrupted
    writer = runs.RunWriter(tmp_path / "run", runs.RunMeta(), resume=True)
    writer.close()
    assert writer.meta.crashes == {}


# --------------------------------------------------------------------------- memory


def _mem_available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    pytest.skip("no MemAvailable in /proc/meminfo")


def test_a_case_bigger_than_memory_is_skipped_before_it_is_built(monkeypatch):
    available = _mem_available_bytes()
    width = int((available / 4) ** 0.5) + 1  # one width x width fp32 weight alone is more than is available
    case = Case(width=width, depth=1, batch=8)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the case was built")

    monkeypatch.setattr(runner, "measure", must_not_run)
    m = runner.safe_measure(case, FAST)
    assert m.status == "skipped" and m.reason.startswith("needs ") and "available (CPU MemAvailable)" in m.reason
    needed_gib, available_gib = map(float, re.match(r"needs ([\d.]+) GiB, ([\d.]+) GiB available", m.reason).groups())
    weights = 2 * width * width  # depth 1: in -> width -> out, both width x width
    assert needed_gib >= round(2 * weights * 4 / GIB, 1)  # at least the parameters and their gradients
    assert abs(available_gib - available / GIB) < 0.1 * available / GIB + 0.2


@pytest.mark.cuda
def test_a_cuda_case_bigger_than_free_gpu_memory_is_skipped(monkeypatch):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    free_bytes = torch.cuda.mem_get_info()[0]
    case = Case(width=int((free_bytes / 4) ** 0.5) + 1, depth=1, batch=8, device="cuda")

    def must_not_run(*args, **kwargs):
        raise AssertionError("the case was built")

    monkeypatch.setattr(runner, "measure", must_not_run)
    m = runner.safe_measure(case, FAST)
    assert m.status == "skipped" and "available (CUDA free memory)" in m.reason, m.reason


def test_the_analytic_total_is_taken_on_the_meta_device_without_allocating():
    case = Case(width=96, depth=2, batch=16, optimizer="adam", dtype="bf16")
    model = case.build_model()  # a real model: mlp.memory over real tensors is the reference
    real = mlp.memory(model, case.batch, case.input_shape, case.loss, case.optimizer, case.dtype).total_bytes
    assert needed_bytes(case) == real
    huge = Case(width=1_000_000, depth=4, batch=8)  # 4 TB of weights: only shapes are made
    assert needed_bytes(huge) > 4 * 10**12


def test_a_small_case_is_measured(tmp_path):
    m = runner.safe_measure(Case(width=16, depth=1, batch=4), FAST)
    assert m.status == "ok", m.reason


def test_a_cpu_allocation_failure_is_oom():
    try:
        torch.empty(2**62, dtype=torch.uint8)  # 4 EiB: the CPU allocator refuses it at once
    except RuntimeError as exc:
        cpu_failure = exc
    else:
        pytest.skip("this allocator accepted 4 EiB")
    assert runner.failure_status(cpu_failure) is runs.Status.OOM
    assert runner.failure_status(MemoryError()) is runs.Status.OOM
    try:
        torch.ones(2, 3) @ torch.ones(2, 3)
    except RuntimeError as exc:
        assert runner.failure_status(exc) is runs.Status.ERROR


@pytest.mark.e2e  # a child process runs into its address-space limit: ~17 s; `make test-e2e` (its own .ci/run step) runs it
def test_a_case_over_an_address_space_limit_is_recorded_oom(tmp_path):
    """End to end: the allocation really fails (RLIMIT_AS), the row says oom, the next case is measured."""
    out = tmp_path / "run"
    code = f"""
import resource, sys
import torch, bench.cli
size = int(open("/proc/self/status").read().split("VmSize:")[1].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (size + 2 * 2**30, resource.RLIM_INFINITY))
sys.exit(bench.cli.main(["run", "--width", "24000,16", "--depth", "1", "--batch", "4", "--repeats", "3",
                         "--warmup-s", "0", "--no-progress", "--no-show", "--out", {str(out)!r}]))
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = runs.load_run(out).summary.query("phase == 'step'").set_index("width")
    if steps.loc[24000, "status"] == "skipped":  # less than ~4.3 GiB available on this machine right now
        pytest.skip(steps.loc[24000, "reason"])
    assert steps.loc[24000, "status"] == "oom" and "can't allocate memory" in steps.loc[24000, "reason"]
    assert steps.loc[16, "status"] == "ok"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("flag", ["--in-features", "--out-features"])
def test_zero_features_are_rejected_like_width_zero(tmp_path, capsys, flag):
    out = tmp_path / "out"
    code = cli_main(["run", flag, "8,0", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1 and f"{flag} must be >= 1" in err, err
    assert not out.exists()
