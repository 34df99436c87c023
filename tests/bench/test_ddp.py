"""`mlpbench ddp`: 2 CPU processes on gloo over loopback, bounded; gradients against one process.

Every launch here has a wall-clock limit (the subprocess timeout and the command's own
--timeout-s), so a hung rendezvous fails the test instead of hanging it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
from dataclasses import fields

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bench.case.cases import Case
from bench.cli import main
from bench.ddp.merge import ALL_RANKS
from bench.ddp.worker import FAULT_ENV, build_ddp_step

LAUNCH_LIMIT_S = 120  # a whole `mlpbench ddp` here takes ~10-25 s on 2 busy cores
FAST = ["--repeats", "3", "--warmup-s", "0.02", "--timeout-s", "90", "--no-report"]
TINY = ["--network", "teaching", "--batch", "8"]


def _mlpbench(args: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", "ddp", *args], capture_output=True, text=True,
                          timeout=LAUNCH_LIMIT_S, env={**os.environ, **env})


# --------------------------------------------------------------------------- bad input: exit 2, nothing runs


@pytest.mark.parametrize("args, message", [
    (["--nproc", "0"], "--nproc must be >= 1"),
    (["--nproc", "2", "--batch", "63"], "must divide evenly"),
    (["--nproc", "2", "--backend", "mpi"], "unknown 'mpi'"),
    (["--nproc", "2", "--bucket-cap-mb", "1,x"], "not a list of numbers"),
    (["--nproc", "2", "--nnodes", "2"], "--rdzv-endpoint"),
    (["--nproc", "2", "--epilogue", "fused"], "--epilogue"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, capsys, tmp_path) -> None:
    assert main(["ddp", *args, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_nccl_without_cuda_is_exit_2(capsys) -> None:
    assert main(["ddp", "--nproc", "2", "--backend", "nccl"]) == 2
    assert "nccl needs CUDA" in capsys.readouterr().err


def test_port_in_use_is_exit_2(capsys, tmp_path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["ddp", "--nproc", "2", "--master-port", str(port), "--out", str(tmp_path / "r")]) == 2
    assert f"--master-port {port} is in use" in capsys.readouterr().err


def test_plain_cases_keep_their_ids() -> None:
    """The new fields at their defaults leave case_id as it was (the hash of the 13 original fields)."""
    case = Case(network="fashion_mnist", batch=64, threads=1)
    original = [f.name for f in fields(Case)][:13]
    text = "|".join(f"{name}={getattr(case, name)}" for name in original)
    assert case.case_id == hashlib.sha1(text.encode()).hexdigest()[:12]
    assert case.with_(world_size=2, backend="gloo", scaling="weak", bucket_cap_mb=25).case_id != case.case_id
    assert Case.from_row({k: v for k, v in case.to_row().items() if k in original}) == case


# --------------------------------------------------------------------------- gradients: DDP vs one process


def _grad_rank(rank: int, init_file: str, out: str, case_row: dict, x: torch.Tensor, y: torch.Tensor) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        case = Case.from_row(case_row)
        step = build_ddp_step(case, torch.device("cpu"))
        half = len(x) // 2
        shard = slice(rank * half, (rank + 1) * half)
        step.loss_backward(step.forward(x[shard]), y[shard])
        if rank == 0:
            torch.save([p.grad for p in step.model.parameters()], out)
    finally:
        dist.destroy_process_group()


def test_ddp_gradient_is_the_full_batch_gradient(tmp_path) -> None:
    """Two ranks at batch 8 each: DDP's averaged gradient equals one process's gradient of the batch of 16."""
    case = Case(network="teaching", batch=8, threads=1, world_size=2, backend="gloo", scaling="strong",
                bucket_cap_mb=0.001)  # a tiny bucket: several all-reduces, not one
    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(16, 3, generator=gen), torch.randn(16, 1, generator=gen)
    out = tmp_path / "grads.pt"
    mp.start_processes(_grad_rank, args=(str(tmp_path / "init"), str(out), case.to_row(), x, y), nprocs=2,
                       start_method="spawn", join=True)
    torch.manual_seed(0)  # the same initial weights build_ddp_step uses
    reference = case.with_(world_size=1, backend="none", scaling="none", bucket_cap_mb=0).build_model()
    torch.nn.functional.mse_loss(reference(x), y).backward()
    for ours, theirs in zip(torch.load(out), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs.grad, rtol=1e-5, atol=1e-6)


def test_a_ddp_step_takes_the_optimizer_args_and_the_parameter_dtype(tmp_path) -> None:
    """As the one-process reference does (build_step): --optimizer-args and --param-dtype compute reach the step."""
    case = Case(width=16, depth=1, batch=4, threads=1, world_size=2, backend="gloo", scaling="weak",
                optimizer="adamw", optimizer_args="lr=0.0005,weight_decay=0.2", dtype="bf16", param_dtype="compute")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    try:
        step = build_ddp_step(case, torch.device("cpu"))
        group = step.optimizer.param_groups[0]
        assert isinstance(step.optimizer, torch.optim.AdamW) and (group["lr"], group["weight_decay"]) == (0.0005, 0.2)
        assert {p.dtype for p in step.model.parameters()} == {torch.bfloat16}
        assert isinstance(step.forward_model, torch.nn.parallel.DistributedDataParallel)
        step.step(*step.prepare(*case.make_batch()))
        assert all(p.grad is None or p.grad.dtype == torch.bfloat16 for p in step.model.parameters())
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- end to end on gloo


@pytest.mark.e2e  # a real torchrun launch of two ranks (~25 s on 2 cores); `make test-e2e` runs it
def test_two_processes_on_gloo_write_a_run_folder_and_a_scaling_report(tmp_path) -> None:
    run = tmp_path / "run"
    done = _mlpbench(["--nproc", "2", *TINY, "--bucket-cap-mb", "25,0.001", *FAST, "--out", str(run)])
    assert done.returncode == 0, done.stderr[-2000:]
    summary = pd.read_csv(run / "summary.csv", dtype={"rank": str})
    samples = pd.read_csv(run / "samples.csv", dtype={"rank": str})
    ddp = summary[summary["world_size"] == 2]
    assert set(ddp["scaling"]) == {"weak", "strong"} and set(ddp["backend"]) == {"gloo"}
    assert set(ddp["bucket_cap_mb"]) == {25.0, 0.001}
    assert set(ddp["rank"]) == {"0", "1", ALL_RANKS} and set(ddp["phase"]) >= {"step", "step_nosync", "backward"}
    assert set(ddp[ddp["scaling"] == "strong"]["batch"]) == {4}
    reference = summary[summary["world_size"] == 1]
    assert set(reference["batch"]) == {8} and set(reference["backend"]) == {"none"}
    # 'all' is each round's slowest rank, recomputed here from the raw per-rank samples
    steps = samples[samples["phase"] == "step"].pivot_table(index=["case_id", "sample"], columns="rank",
                                                            values="seconds")
    two = steps.dropna(subset=["1"])
    pd.testing.assert_series_equal(two[ALL_RANKS], two[["0", "1"]].max(axis=1), check_names=False)
    # `mlpbench report` on the run draws the scaling figure and the table
    assert main(["report", str(run)]) == 0
    text = (run / "report.md").read_text()
    assert "plots/scaling.png" in text and "efficiency" in text and (run / "plots" / "scaling.png").stat().st_size
    assert "torch thread(s) per process" in text
    assert main(["show", str(run)]) == 0 and main(["compare", str(run), str(run)]) == 2


@pytest.mark.e2e  # two torchrun launches, one rank failing: ~12 s each; `make test-e2e` (its own .ci/run step) runs it
@pytest.mark.parametrize("fault, message", [
    ("1:1", "rank 1: RuntimeError: injected fault"),  # rank 1 raises before the second case
    ("1:1:kill", "rank 1 died (Signal 9 (SIGKILL)"),  # ... or is killed, leaving no message of its own
])
def test_a_rank_that_dies_ends_the_run_and_keeps_what_was_measured(fault, message, tmp_path) -> None:
    run = tmp_path / "run"
    done = _mlpbench(["--nproc", "2", *TINY, "--scaling", "weak", "--bucket-cap-mb", "25,1", *FAST,
                      "--out", str(run)], **{FAULT_ENV: fault})
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert message in last and str(run) in last
    summary = pd.read_csv(run / "summary.csv", dtype={"rank": str})
    status = summary.drop_duplicates("case_id").set_index("bucket_cap_mb")["status"]
    assert status[25.0] == "ok" and status[1.0] == "error"  # the first ddp case survived, the second is a row
    assert (summary[summary["world_size"] == 1]["status"] == "ok").all()


@pytest.mark.e2e  # a rendezvous waits out its timeout: ~10 s; `make test-e2e` (its own .ci/run step) runs it
def test_a_rendezvous_that_times_out_ends_the_run_and_keeps_the_reference(tmp_path) -> None:
    """Two machines announced, one comes: torchrun's rendezvous gives up after --rdzv-timeout-s."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = tmp_path / "run"
    done = _mlpbench(["--nproc", "1", "--nnodes", "2", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-timeout-s",
                      "2", *TINY, "--scaling", "weak", *FAST, "--out", str(run)])
    assert done.returncode == 1
    assert "the rendezvous timed out" in done.stderr.strip().splitlines()[-1]
    summary = pd.read_csv(run / "summary.csv", dtype={"rank": str})
    assert set(summary[summary["world_size"] == 1]["status"]) == {"ok"}
    assert set(summary[summary["world_size"] == 2]["status"]) == {"error"}


@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL with 2 ranks needs 2 CUDA devices")
def test_two_processes_on_nccl(tmp_path) -> None:
    run = tmp_path / "run"
    done = _mlpbench(["--nproc", "2", "--backend", "nccl", *TINY, *FAST, "--out", str(run)])
    assert done.returncode == 0, done.stderr[-2000:]
    summary = pd.read_csv(run / "summary.csv", dtype={"rank": str})
    assert set(summary[summary["world_size"] == 2]["device"]) == {"cuda"}


# --------------------------------------------------------------------------- arithmetic (no processes)


def test_efficiency_follows_the_throughput_definitions() -> None:
    """Weak: throughput_N / (N x throughput_1) with N*B examples per step; strong: global batch B in both."""
    from bench.report.efficiency import communication_share, efficiency

    batch, n = 64, 2
    t1, tn = [2e-3, 2.1e-3, 1.9e-3], [3.2e-3, 3.0e-3, 3.1e-3]  # medians 2.0 ms and 3.1 ms
    weak = efficiency(t1, tn, n, "weak")
    assert weak.value == pytest.approx((n * batch / 3.1e-3) / (n * batch / 2.0e-3))
    strong = efficiency(t1, tn, n, "strong")
    assert strong.value == pytest.approx((batch / 3.1e-3) / (n * batch / 2.0e-3))
    assert weak.low <= weak.value <= weak.high
    share = communication_share([4e-3, 4.2e-3, 3.8e-3], [3e-3, 3.1e-3, 2.9e-3])
    assert share.value == pytest.approx((4e-3 - 3e-3) / 4e-3) and share.low <= share.value <= share.high
