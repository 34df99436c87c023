"""What each rank runs under torchrun: the training step wrapped in DistributedDataParallel, timed.

Launched as ``python -m torch.distributed.run ... -m bench.ddp.worker --plan PLAN``. The plan (JSON,
written by ``mlpbench ddp``) lists the cases; a rank measures those whose ``world_size`` is the
launch's world size. ``measure_reference`` times the one-process cases with the same code in the
calling process (``mlpbench ddp`` itself), with no process group. The protocol is ``bench.instruments.timing``'s (first step apart, warm-up until steady,
blocks, rounds, raw samples), with one difference that collectives force: every rank must run the
same number of iterations, so block times are agreed (all-reduce MAX) before they set a count.

Per round: the synchronised DDP step, the same step under ``no_sync()`` (no gradient all-reduce:
the difference is the communication the step does not hide), and an instrumented block of the
forward / loss+backward / optimiser phases. A world of one is the plain process reference: no
DDP, the step ``mlpbench run`` times.

After each case, rank 0 gathers every rank's samples and appends one JSON line to the plan's parts
file, so a rank that dies later loses only the case in flight.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import mlp

from ..case.cases import Case
from ..instruments.clocks import BATCH_POOL, clock_for, time_block
from ..errors import first_line
from ..model.phases import Phase
from ..instruments.timing import TimingConfig, build_step, calibrate_iters, case_context, time_phases, warm_up

NOSYNC_PHASE = "step_nosync"  # the DDP step under no_sync(): no gradient all-reduce
FAULT_ENV = "MLPBENCH_DDP_FAULT"  # test hook "RANK:CASE_INDEX[:kill]": that rank raises (or is killed) before that case
ERROR_MARKER = "mlpbench-ddp-error:"  # the one line the launcher looks for in the log
DATA_SEED = 1000  # + rank: every rank draws its own batches, as a sharded dataset would give it


def rank_and_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside it."""
    env = os.environ
    return int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0))


def device_for(case: Case, local_rank: int) -> torch.device:
    if case.device == "cuda":
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def build_ddp_step(case: Case, device: torch.device) -> mlp.TrainStep:
    """The case's TrainStep; with a process group, its forward goes through DistributedDataParallel.

    The optimiser holds the module's own parameters (DDP wraps the module in place), so the step is
    the same object ``bench.instruments.timing`` times, with DDP's all-reduce hooked into backward.
    """
    if case.world_size == 1:
        return build_step(case)
    torch.manual_seed(0)  # same start on every rank (DDP also broadcasts rank 0's weights)
    knobs = case.knobs  # the one-process reference's (build_step); the command refuses those DDP cannot take
    compute = case.precision.autocast_dtype if knobs.param_dtype is mlp.ParamDtype.COMPUTE else None
    model = case.build_model().to(device, dtype=compute)  # in its dtype before DDP builds its buckets
    bucket = {"bucket_cap_mb": case.bucket_cap_mb} if case.bucket_cap_mb > 0 else {}
    ids = [device.index] if device.type == "cuda" else None
    wrapped = DistributedDataParallel(model, device_ids=ids, **bucket)
    return mlp.TrainStep(model, loss=case.loss, optimizer=case.optimizer, precision=case.precision, device=device,
                         compiled_model=wrapped, optimizer_options=case.optimizer_options, knobs=knobs)


def _agree(value: float, device: torch.device) -> float:
    """The slowest rank's value: every rank then takes the same decisions (block counts, iterations)."""
    if not dist.is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return float(tensor.item())


def measure_rank(case: Case, config: TimingConfig, rank: int, device: torch.device) -> dict:
    """This rank's raw samples for one case (seconds per iteration, per phase)."""
    wall_start = time.perf_counter()
    with case_context(case):
        step = build_ddp_step(case, device)
        clock = clock_for(device)
        gen = torch.Generator().manual_seed(DATA_SEED + rank)
        pool = [case.make_batch(gen) for _ in range(BATCH_POOL)]
        wrapped = step.forward_model if isinstance(step.forward_model, DistributedDataParallel) else None
        agree = lambda v: _agree(v, device)  # noqa: E731

        def train_step(i: int):
            step.step(*pool[i % BATCH_POOL])

        def nosync_step(i: int):
            with wrapped.no_sync():
                step.step(*pool[i % BATCH_POOL])

        first_step_s = time_block(train_step, 1, clock)
        per_iter = warm_up(train_step, clock, config, agree=agree)
        if wrapped is not None:
            warm_up(nosync_step, clock, config, budget_s=config.warmup_s / 2, agree=agree)
        iters = calibrate_iters(per_iter, config)  # the same on every rank: per_iter was agreed
        samples: dict[str, list[float]] = {Phase.STEP.value: []}
        for _ in range(config.repeats):
            samples[Phase.STEP.value].append(time_block(train_step, iters, clock))
            if wrapped is not None:
                samples.setdefault(NOSYNC_PHASE, []).append(time_block(nosync_step, iters, clock))
            for phase, value in time_phases(step, pool, iters, clock, lambda: None).items():
                samples.setdefault(phase.value, []).append(value)
        return {"rank": rank, "hostname": socket.gethostname(), "samples": samples, "iters_per_block": iters,
                "first_step_s": first_step_s, "torch_threads": torch.get_num_threads(),
                "optimizer_impl": step.optimizer_impl, "measure_s": time.perf_counter() - wall_start}


def _gather(record: dict, world: int) -> list[dict] | None:
    out = [None] * world if dist.get_rank() == 0 else None
    dist.gather_object(record, out, dst=0)
    return out


def _append_line(path: Path, record: dict) -> None:
    """One JSON line per case, flushed to disk before the next case starts."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _maybe_fault(rank: int, index: int) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if spec == f"{rank}:{index}:kill":  # dies as the OOM killer would take it: no Python exception, no message
        os.kill(os.getpid(), signal.SIGKILL)
    if spec == f"{rank}:{index}":
        raise RuntimeError(f"injected fault ({FAULT_ENV}={spec})")


def measure_reference(case: Case, config: TimingConfig, parts: Path) -> None:
    """The one-process reference, in the calling process: no process group, no DDP."""
    record = measure_rank(case, config, 0, device_for(case, 0))
    _append_line(parts, {"case": case.to_row(), "case_id": case.case_id, "ranks": [record]})


def run(plan: dict) -> None:
    rank, world, local_rank = rank_and_world()
    config = TimingConfig(**plan["timing"])
    cases = [Case.from_row(row) for row in plan["cases"] if int(row["world_size"]) == world]
    parts = Path(plan["parts"])
    dist.init_process_group(cases[0].backend, timeout=dt.timedelta(seconds=plan["collective_timeout_s"]))
    try:
        for index, case in enumerate(cases):
            _maybe_fault(rank, index)
            records = _gather(measure_rank(case, config, rank, device_for(case, local_rank)), world)
            if rank == 0:
                _append_line(parts, {"case": case.to_row(), "case_id": case.case_id, "ranks": records})
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.ddp.worker")
    parser.add_argument("--plan", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        run(json.loads(args.plan.read_text()))
    except Exception as exc:  # noqa: BLE001 - one line for the launcher, then fail this rank
        rank = rank_and_world()[0]
        text = first_line(exc)
        # the time orders the ranks' messages: the first is the cause, the later ones its echoes
        print(f"{ERROR_MARKER} {time.time():.6f} rank {rank}: {type(exc).__name__}: {text}", file=sys.stderr,
              flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
