"""Where the gate's measurements run: a worker per source tree, and REF checked out in a temporary worktree.

``--against REF`` compares REF (side A) with the working tree (side B) in one
run. Each side is a ``bench.gate.worker`` process whose ``PYTHONPATH`` is its
tree; the coordinator alternates their timed blocks A/B, B/A, A/B, ... so slow
drift of the machine (another job starting, thermal state) lands on both sides
alike and the first-mover effect of a switch cancels. The worktree and the
processes are removed on every exit: success, failure, Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from . import worker
from ..errors import ONE_LINE_CHARS, EnvironmentProblem, UsageError, sigterm_as_interrupt

WORKER = Path(worker.__file__).resolve()
SETUP_TIMEOUT_S = 600.0  # import torch + build + warm up a few cases on a loaded 2-core box
REQUEST_TIMEOUT_S = 300.0  # one timed block or one counting pass
QUIT_TIMEOUT_S = 10.0
MAX_BLOCK_ITERS = 100_000
STDERR_TAIL_CHARS = 2000


@dataclass(frozen=True)
class TimingPlan:
    rounds: int = 20  # timed blocks per case and side
    block_s: float = 0.1  # a block is at least this long (dwarfs timer resolution and dispatch jitter)
    warmup_s: float = 0.3  # per case and side, before any block

    def __post_init__(self) -> None:
        if self.rounds < 1 or not self.block_s > 0 or self.warmup_s < 0:
            raise UsageError("--rounds must be >= 1, --block-s > 0 and --warmup-s >= 0")


class Worker(Protocol):
    name: str

    def send(self, request: dict[str, Any]) -> None: ...

    def receive(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


def request(worker: Worker, message: dict[str, Any]) -> dict[str, Any]:
    worker.send(message)
    return worker.receive()


# --------------------------------------------------------------------------- workers


class InProcessWorker:
    """The working tree measured in this process (``--baseline`` and ``--write-baseline``)."""

    def __init__(self, name: str = "B"):
        self.name = name
        self._state: dict[str, Any] = {}
        self._reply: dict[str, Any] | None = None

    def send(self, message: dict[str, Any]) -> None:
        # through JSON, as over a pipe, so both kinds of worker answer alike (string keys and all)
        self._reply = json.loads(json.dumps(worker.handle(self._state, json.loads(json.dumps(message)))))

    def receive(self) -> dict[str, Any]:
        reply, self._reply = self._reply, None
        return _checked(self.name, reply)

    def close(self) -> None:
        self._state.clear()


def shared_cpu() -> str:
    """One CPU for both sides' workers.

    Left to the scheduler, each worker tends to stay on the core it last ran on; when
    another job loads one core more than the other, that becomes a steady bias between
    the sides that no amount of interleaving removes. Pinned to the same core, A and B
    see the same neighbours. (The timed cases run one torch thread, so one core is enough.)
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return str(cpus[-1]) if cpus else ""


class ProcessWorker:
    """A ``bench.gate.worker`` process importing ``mlp`` and ``bench`` from ``tree``; JSON lines on its pipes."""

    def __init__(self, name: str, tree: Path, cpus: str = ""):
        self.name = name
        self.tree = tree
        self._stderr = tempfile.TemporaryFile(mode="w+")
        env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONUNBUFFERED": "1", worker.CPUS_ENV: cpus}
        self._timeout_s = SETUP_TIMEOUT_S
        self._proc = subprocess.Popen([sys.executable, str(WORKER)], cwd=tree, env=env, text=True,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)

    def send(self, message: dict[str, Any]) -> None:
        self._timeout_s = SETUP_TIMEOUT_S if message.get("cmd") == "setup" else REQUEST_TIMEOUT_S
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            raise EnvironmentProblem(self._died("stopped before the request")) from None

    def receive(self) -> dict[str, Any]:
        ready, _, _ = select.select([self._proc.stdout], [], [], self._timeout_s)
        if not ready:
            raise EnvironmentProblem(f"side {self.name} ({self.tree}) did not answer within {self._timeout_s:.0f} s")
        line = self._proc.stdout.readline()
        if not line:
            raise EnvironmentProblem(self._died("exited"))
        return _checked(self.name, json.loads(line))

    def _died(self, what: str) -> str:
        self._proc.poll()
        self._stderr.seek(0)
        tail = " ".join(self._stderr.read()[-STDERR_TAIL_CHARS:].split())
        return f"side {self.name} worker {what} (exit code {self._proc.returncode}): {tail or 'no output'}"

    def close(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                self._proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self._proc.stdin.flush()
            try:
                self._proc.wait(QUIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout, self._stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.close()


def _checked(name: str, reply: dict[str, Any] | None) -> dict[str, Any]:
    if not reply or not reply.get("ok"):
        raise EnvironmentProblem(f"side {name} could not measure: {(reply or {}).get('error', 'no reply')}")
    return reply


# --------------------------------------------------------------------------- git


def tree_root() -> Path:
    """The source tree this ``bench`` was imported from (the working tree under test)."""
    return Path(__file__).resolve().parents[2]


def _git(repo: Path, *args: str) -> str:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EnvironmentProblem(f"git {args[0]} failed: {exc}") from None
    if done.returncode != 0:
        reason = f"git {' '.join(args)}: {done.stderr.strip().splitlines()[-1:] or ['failed']}"
        raise EnvironmentProblem(reason[:ONE_LINE_CHARS])
    return done.stdout.strip()


def resolve_ref(repo: Path, ref: str) -> str:
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except EnvironmentProblem:
        raise UsageError(f"--against {ref!r}: not a commit in {repo}") from None


@contextlib.contextmanager
def worktree(repo: Path, ref: str) -> Iterator[Path]:
    """REF checked out (detached) in a temporary folder; removed again however the block ends."""
    sha = resolve_ref(repo, ref)
    parent = Path(tempfile.mkdtemp(prefix="mlpbench-gate-"))
    path = parent / "tree"
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", str(path), sha)
        yield path
    finally:
        with contextlib.suppress(EnvironmentProblem):
            _git(repo, "worktree", "remove", "--force", str(path))
        shutil.rmtree(parent, ignore_errors=True)
        with contextlib.suppress(EnvironmentProblem):
            _git(repo, "worktree", "prune")


@contextlib.contextmanager
def workers_for(against: str | None, pin: bool = True) -> Iterator[dict[str, Worker]]:
    """``{"A": REF's worker, "B": working tree's}`` for ``--against``, else ``{"B": in-process}``."""
    opened: dict[str, Worker] = {}
    with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        if against is None:
            opened["B"] = InProcessWorker("B")
        else:
            ref_tree = stack.enter_context(worktree(tree_root(), against))
            cpus = shared_cpu() if pin else ""
            opened["A"] = ProcessWorker("A", ref_tree, cpus)
            opened["B"] = ProcessWorker("B", tree_root(), cpus)
        try:
            yield opened
        finally:
            for worker in opened.values():
                worker.close()


# --------------------------------------------------------------------------- the schedule


def setup(workers: Mapping[str, Worker], case_rows: list[dict], timed: Sequence[int], plan: TimingPlan,
          inject: str = "none") -> dict[str, dict[str, Any]]:
    """Build the suite on every side at once (B alone gets ``inject``), then warm up the timed cases one
    side after the other, so neither side's warm-up estimate is slowed by the other's.

    Returns each side's ``info`` and ``per_step_s`` (seconds per step at the end of warm-up).
    """
    for name, worker in workers.items():
        worker.send({"cmd": "setup", "cases": case_rows, "warmup_s": plan.warmup_s,
                     "inject": inject if name == "B" else "none"})
    replies = {name: worker.receive() for name, worker in workers.items()}
    for name, reply in replies.items():
        _check_tree(name, workers[name], reply["info"])
        reply.update(request(workers[name], {"cmd": "warmup", "cases": list(timed)}))
    return replies


def _check_tree(name: str, worker: Worker, info: dict[str, Any]) -> None:
    tree = getattr(worker, "tree", None)
    if tree is not None and not Path(info["mlp_file"]).is_relative_to(Path(tree).resolve()):
        raise EnvironmentProblem(f"side {name} imported mlp from {info['mlp_file']}, not from {tree}")


def block_iters(setup_replies: Mapping[str, dict[str, Any]], timed: Sequence[int], plan: TimingPlan) -> dict[int, int]:
    """Steps per block, the same on both sides: enough for ``block_s`` at the faster warm-up estimate."""
    out = {}
    for index in timed:
        per_step_s = min(reply["per_step_s"][str(index)] for reply in setup_replies.values())
        out[index] = max(1, min(MAX_BLOCK_ITERS, math.ceil(plan.block_s / per_step_s))) if per_step_s > 0 else 1
    return out


def interleaved_samples(workers: Mapping[str, Worker], timed: Sequence[int], iters: Mapping[int, int],
                        plan: TimingPlan) -> dict[str, dict[int, list[float]]]:
    """``rounds`` blocks per case and side; within a round the side order alternates (AB, BA, AB, ...).

    Each block runs on a step rebuilt in fresh memory from the round's seed, the same seed on both
    sides (see ``worker.BUILD_SEED``).
    """
    names = sorted(workers)
    samples: dict[str, dict[int, list[float]]] = {n: {i: [] for i in timed} for n in names}
    for r in range(plan.rounds):
        for index in timed:
            for name in (names if r % 2 == 0 else names[::-1]):
                reply = request(workers[name], {"cmd": "time", "case": index, "iters": iters[index],
                                                "rebuild_seed": worker.BUILD_SEED + 1 + r})
                samples[name][index] += reply["samples_s"]
    return samples
