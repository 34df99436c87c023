"""``mlpbench ddp``: data-parallel scaling measured with torchrun and DistributedDataParallel.

Per invocation:

1. the one-process reference, measured here in this process by the worker's own code: the same
   case without DDP, with the same torch thread count as each parallel rank, so efficiency compares
   like with like (and it costs no extra launch);
2. one torchrun launch (``python -m torch.distributed.run ... -m bench.ddp.worker``): N ranks
   measure weak scaling (batch per rank fixed), strong scaling (global batch fixed, B/N per rank)
   and any ``--bucket-cap-mb`` sweep, case after case.

Rank 0 gathers every rank's samples after each case and appends them to ``ddp_parts.jsonl``; this
command rewrites samples.csv / summary.csv / meta.json atomically after each launch. A launch that
fails (a rank dies, the rendezvous times out, the wall-clock limit passes) ends the run with one
line and a non-zero exit; what was measured is kept. Bad input exits 2 before anything starts.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import EXIT_INTERRUPTED, UsageError, first_line
from .case_flags import add_case_arguments, case_overrides, comma_list
from ..instruments.processes import run_bounded

DDP_DEFAULT_BUCKET_CAP_MB = 25.0  # DistributedDataParallel's documented default bucket_cap_mb
LAUNCH_TIMEOUT_S = 900  # one torchrun launch; a hung rendezvous or collective ends here at the latest
COLLECTIVE_TIMEOUT_S = 300  # process-group timeout: a collective waiting this long for a dead peer fails
MONITOR_INTERVAL_S = "0.5"  # torchrun polls its workers this often: a dead rank ends the launch quickly
KILL_GRACE_S = 10  # after SIGTERM to the launcher's process group, SIGKILL follows this much later
PARTS, PLAN = "ddp_parts.jsonl", "ddp_plan.json"
EXIT_FAILED = 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_case_arguments(parser)
    g = parser.add_argument_group("data parallelism")
    g.add_argument("--nproc", type=int, required=True, help="processes (ranks) per node")
    g.add_argument("--backend", default="gloo", help="gloo (CPU) | nccl (CUDA)")
    g.add_argument("--scaling", default="weak,strong", metavar="LIST", help="weak,strong (default both)")
    g.add_argument("--bucket-cap-mb", metavar="LIST", help="DDP bucket sizes in MB; weak and strong use the "
                   f"first, the others add weak cases (default {DDP_DEFAULT_BUCKET_CAP_MB:g}, DDP's own)")
    g.add_argument("--master-port", type=int, help="rendezvous port on this machine (default: a free one)")
    m = parser.add_argument_group("several machines (passed to torchrun; untested across machines here)")
    m.add_argument("--nnodes", type=int, default=1)
    m.add_argument("--node-rank", type=int, default=0)
    m.add_argument("--rdzv-endpoint", help="HOST:PORT of the rendezvous (on the first machine)")
    m.add_argument("--rdzv-id", default="mlpbench-ddp", help="job id shared by every machine")
    m.add_argument("--rdzv-backend", default="c10d")
    m.add_argument("--rdzv-timeout-s", type=int, help="give up when not every machine joined within this")
    parser.add_argument("--out", type=Path, help="run folder (default: results/runs/<run-id>-ddp/)")
    parser.add_argument("--repeats", type=int, help="samples per phase (default 12)")
    parser.add_argument("--warmup-s", type=float, help="warm-up budget per case (default 0.25)")
    parser.add_argument("--timeout-s", type=float, default=LAUNCH_TIMEOUT_S, help="wall-clock limit per launch")
    parser.add_argument("--no-report", action="store_true", help="do not write report.md and the scaling figure")


# --------------------------------------------------------------------------- input -> cases


def _check_backend(backend: str, nproc: int, device: str | None) -> str:
    """The device the backend needs; a backend this machine lacks is bad input."""
    import torch
    import torch.distributed as dist

    from ..case.cases import Backend

    try:
        kind = Backend(backend)
    except ValueError:
        raise UsageError(f"--backend: unknown {backend!r}; valid: gloo, nccl") from None
    if kind is Backend.NONE:
        raise UsageError("--backend: 'none' is the one-process reference, measured anyway; choose gloo or nccl")
    want = "cuda" if kind is Backend.NCCL else "cpu"
    if device not in (None, want):
        raise UsageError(f"--backend {backend} runs on --device {want}, not {device}")
    if kind is Backend.NCCL:
        if not torch.cuda.is_available() or not dist.is_nccl_available():
            raise UsageError("--backend nccl needs CUDA and an NCCL build of torch; this machine has neither "
                             "(use --backend gloo)")
        if nproc > torch.cuda.device_count():
            raise UsageError(f"--nproc {nproc} with nccl needs {nproc} GPUs; this machine has "
                             f"{torch.cuda.device_count()}")
    elif not dist.is_gloo_available():
        raise UsageError("--backend gloo: this torch build has no gloo")
    return want


def _check_port(port: int) -> None:
    if not 0 < port < 65536:
        raise UsageError(f"--master-port {port}: not a port number")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("", port))
        except OSError as exc:
            reason = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be bound ({exc.strerror})"
            raise UsageError(f"--master-port {port} {reason}; choose another or leave it out") from None


def plan_cases(args: argparse.Namespace) -> list:
    """The one-process references and the data-parallel cases, in launch order."""
    from ..case.cases import Scaling, Sweep

    if args.nproc < 1:
        raise UsageError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nnodes < 1 or not 0 <= args.node_rank < args.nnodes:
        raise UsageError(f"--nnodes {args.nnodes} / --node-rank {args.node_rank}: need 0 <= node-rank < nnodes")
    if args.nnodes > 1 and not args.rdzv_endpoint:
        raise UsageError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (the first machine's address)")
    world = args.nproc * args.nnodes
    if world < 2:
        raise UsageError("data parallelism needs at least 2 processes in all (--nproc 2, or --nnodes 2)")
    overrides = case_overrides(args, user_model=False)
    device = _check_backend(args.backend, args.nproc, (overrides.pop("device", None) or (None,))[0])
    scalings = [Scaling(s) if s in ("weak", "strong") else _bad("--scaling", s, "weak, strong")
                for s in comma_list(args.scaling, str, "scaling")]
    buckets = _bucket_list(args.bucket_cap_mb)
    threads = max(1, (os.cpu_count() or 1) // args.nproc)
    base = Sweep("ddp", ({"device": (device,), "threads": (threads,)},)).cases(overrides)
    out: dict = {}
    for case in base:
        if case.compile != "none":
            raise UsageError("--compile: ddp measures eager steps (DDP with torch.compile is not measured yet)")
        if case.cuda_graph != "none" or case.epilogue != "none":
            raise UsageError("--cuda-graph / --epilogue: ddp measures the step through DistributedDataParallel's "
                             "forward, which neither a captured step nor the fused epilogue goes through")
        out.setdefault(case, None)  # the one-process reference (weak and strong alike: batch B in one process)
        ddp = case.with_(world_size=world, backend=args.backend, bucket_cap_mb=buckets[0])
        for scaling in scalings:
            if scaling is Scaling.STRONG and case.batch % world:
                raise UsageError(f"strong scaling splits --batch {case.batch} over {world} processes: "
                                 "it must divide evenly (or use --scaling weak)")
            batch = case.batch // world if scaling is Scaling.STRONG else case.batch
            out.setdefault(ddp.with_(scaling=scaling.value, batch=batch), None)
        for mb in buckets[1:]:
            out.setdefault(ddp.with_(scaling=Scaling.WEAK.value, bucket_cap_mb=mb), None)
    return list(out)


def _bad(flag: str, value: str, valid: str):
    raise UsageError(f"{flag}: unknown {value!r}; valid: {valid}")


def _bucket_list(text: str | None) -> list[float]:
    if text is None:
        return [DDP_DEFAULT_BUCKET_CAP_MB]
    try:
        values = [float(v) for v in comma_list(text, str, "bucket-cap-mb")]
    except ValueError:
        raise UsageError(f"--bucket-cap-mb: {text!r} is not a list of numbers") from None
    if any(not v > 0 for v in values):
        raise UsageError(f"--bucket-cap-mb: sizes must be > 0 MB, got {text!r}")
    return values


# --------------------------------------------------------------------------- torchrun


def rendezvous(args: argparse.Namespace) -> tuple[str, ...]:
    """torchrun's rendezvous options: a free local port, a given one, or the machines' shared endpoint."""
    if args.nnodes > 1:
        parallel = ("--nnodes", str(args.nnodes), "--node-rank", str(args.node_rank), "--rdzv-backend",
                    args.rdzv_backend, "--rdzv-endpoint", args.rdzv_endpoint, "--rdzv-id", args.rdzv_id)
        if args.rdzv_timeout_s:
            parallel += ("--rdzv-conf", f"join_timeout={args.rdzv_timeout_s}")
    elif args.master_port:
        parallel = ("--nnodes", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{args.master_port}")
    else:
        parallel = ("--standalone",)
    return parallel


def torchrun_command(nproc: int, rdzv: tuple[str, ...], plan: Path) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--max-restarts", "0", "--monitor-interval", MONITOR_INTERVAL_S, *rdzv,
            "-m", "bench.ddp.worker", "--plan", str(plan)]


def run_launch(command: list[str], log: Path, env: dict, timeout_s: float) -> tuple[int, str]:
    """Run torchrun in its own process group; (exit code, one-line reason when it failed)."""
    with open(log, "a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        rc = run_bounded(command, out, timeout_s, env, grace_s=KILL_GRACE_S)
    if rc is None:
        return 124, f"the launch passed its {timeout_s:g} s limit (a hung rendezvous or collective); stopped"
    return rc, ("" if rc == 0 else _failure_line(log, rc))


def _failure_line(log: Path, rc: int) -> str:
    """One line naming the root cause, not its echoes.

    When one rank fails, its peers fail too (a broken connection in the next collective) and
    torchrun stops the rest with SIGTERM, so neither the peers' messages nor torchrun's "first
    observed failure" reliably name the rank that started it. In order: a rank killed by a
    signal other than SIGTERM (no message of its own: the OOM killer, a segfault); else the
    earliest message a rank wrote; else torchrun's own diagnosis.
    """
    lines = log.read_text(errors="replace").splitlines()
    killed = _signal_deaths(lines)
    if killed:
        return f"rank {killed[0][0]} died ({killed[0][1]})"
    messages = sorted(_rank_messages(lines))
    if messages:
        return messages[0][1]
    if any("RendezvousTimeoutError" in line for line in lines):
        return f"the rendezvous timed out: not every machine joined (see {log})"
    return f"torchrun exited with code {rc} (see {log})"


def _rank_messages(lines: list[str]) -> list[tuple[float, str]]:
    """(time, 'rank R: Error: text') of every worker's one-line message."""
    from ..ddp.worker import ERROR_MARKER

    out = []
    for line in lines:
        if ERROR_MARKER in line:
            stamp, _, text = line.split(ERROR_MARKER, 1)[1].strip().partition(" ")
            try:
                out.append((float(stamp), text))
            except ValueError:
                continue
    return out


def _signal_deaths(lines: list[str]) -> list[tuple[str, str]]:
    """(rank, 'Signal 9 (SIGKILL) ...') from torchrun's failure report, leaving out its own SIGTERMs."""
    deaths, rank = [], "?"
    for line in lines:
        key, _, value = line.strip().partition(":")
        key, value = key.strip(), value.strip()
        if key == "rank":
            rank = value.split()[0]
        elif key == "traceback" and value.startswith("Signal") and "SIGTERM" not in value:
            deaths.append((rank, value))
    return deaths


def launch_env(threads: int, single_node: bool) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}  # torchrun would otherwise force 1 with a warning
    if single_node:
        env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback: one machine needs no network interface
    return env


# --------------------------------------------------------------------------- the command


def command(args: argparse.Namespace) -> int:
    from ..runs import RunWriter, claim_run_dir, new_run_dir, write_json
    from ..instruments.timing import TimingConfig

    cases = plan_cases(args)
    if args.master_port and args.nnodes == 1:
        _check_port(args.master_port)
    try:
        config = TimingConfig(**{k: v for k, v in (("repeats", args.repeats), ("warmup_s", args.warmup_s))
                                 if v is not None})
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.timeout_s <= 0:
        raise UsageError(f"--timeout-s must be > 0, got {args.timeout_s}")
    out_dir = args.out or new_run_dir(preset="ddp")
    claim_run_dir(out_dir)
    world = args.nproc * args.nnodes
    plan = {"cases": [c.to_row() for c in cases], "timing": asdict(config), "parts": str((out_dir / PARTS).resolve()),
            "collective_timeout_s": COLLECTIVE_TIMEOUT_S}
    with RunWriter(out_dir, _meta(args, cases, config, cases[0].threads)) as writer:
        write_json(out_dir / PLAN, plan)
        return _run(args, cases, config, writer, world)


def _run(args: argparse.Namespace, cases: list, config, writer, world: int) -> int:
    out_dir, meta = writer.out_dir, writer.meta
    print(f"mlpbench: ddp, {len(cases)} cases, {world} processes x {cases[0].threads} threads ({args.backend}) "
          f"-> {out_dir}", file=sys.stderr)
    from ..instruments.env import busy_warning

    warning = busy_warning()
    if warning:
        print(f"mlpbench: warning: {warning}", file=sys.stderr)
    started = time.perf_counter()
    try:
        failure = _measure_references(cases, config, out_dir, args.node_rank)
        _write(writer, cases, failure, started)
        if not failure:
            cmd = torchrun_command(args.nproc, rendezvous(args), out_dir / PLAN)
            t0 = time.perf_counter()
            rc, failure = run_launch(cmd, out_dir / "torchrun.log", launch_env(cases[0].threads, args.nnodes == 1),
                                     args.timeout_s)
            meta.ddp["launch"] = {"command": " ".join(cmd), "exit_code": rc, "wall_s": time.perf_counter() - t0,
                                  "failure": failure}
            _write(writer, cases, failure, started)
    except KeyboardInterrupt:
        meta.interrupted = True
        _write(writer, cases, "interrupted (Ctrl-C or SIGTERM)", started)
        print(f"\nmlpbench: interrupted; what was measured is in {out_dir}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return _finish(out_dir, failure, args.no_report)


def _measure_references(cases: list, config, out_dir: Path, node_rank: int) -> str:
    """The one-process cases, here (on the first machine only); a failure is the one-line reason."""
    from ..ddp.worker import measure_reference

    if node_rank != 0:
        return ""
    for case in (c for c in cases if c.world_size == 1):
        try:
            measure_reference(case, config, out_dir / PARTS)
        except Exception as exc:  # noqa: BLE001 - the reference failing is data, like a rank dying
            return f"one-process reference {case.label}: {type(exc).__name__}: {first_line(exc)}"
    return ""


def _meta(args: argparse.Namespace, cases: list, config, threads: int):
    from ..instruments.env import fingerprint, load_average
    from ..runs import RunKind, RunMeta

    return RunMeta(kind=RunKind.DDP, preset="ddp", env=fingerprint(), timing_config=asdict(config),
                   n_cases=len(cases), cases=[c.to_row() for c in cases], load_average_1m_start=load_average(),
                   ddp={"nproc_per_node": args.nproc, "nnodes": args.nnodes, "node_rank": args.node_rank,
                        "backend": args.backend, "threads_per_process": threads,
                        "reference": "the same case in one process without DDP, with the same torch threads per "
                                     "process, measured by the same code in the same invocation, before the launch"})


def _write(writer, cases: list, failure: str, started: float) -> None:
    """Rewrite the run folder from rank 0's records; cases without a record get a status row."""
    from ..instruments.env import load_average
    from ..runs import Status
    from ..ddp.merge import failed_row, read_parts, tables

    records = read_parts(writer.out_dir / PARTS)
    done = {r["case_id"] for r in records}
    missing = [c for c in cases if c.case_id not in done] if failure else []
    failed = [failed_row(case, Status.ERROR, failure) if i == 0 else
              failed_row(case, Status.SKIPPED, "not measured: the run ended at an earlier failure")
              for i, case in enumerate(missing)]
    samples, summary = tables(records, failed)
    writer.meta.run_s = time.perf_counter() - started
    writer.meta.load_average_1m_end = load_average()
    writer.set_tables(summary, samples)
    writer.flush()


def _finish(out_dir: Path, failure: str, no_report: bool) -> int:
    from ..report.scaling import format_scaling, write_scaling_report
    from ..runs import load_run

    run = load_run(out_dir)
    if len(run.samples):
        print(format_scaling(run.summary, run.samples))
    if not no_report:
        report = write_scaling_report([run], out_dir)
        print(f"mlpbench: report {report.path}", file=sys.stderr)
    if failure:
        print(f"mlpbench: ddp failed: {failure}; what was measured is kept in {out_dir}", file=sys.stderr)
        return EXIT_FAILED
    print(f"mlpbench: run folder {out_dir}")
    return 0
