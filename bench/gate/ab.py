"""Where the gate's measurements run: a worker per source tree, and REF checked out in a temporary worktree.

``--against REF`` compares REF (side A) with the working tree (side B) in one
run. Each side is a ``bench.gate.worker`` process whose ``PYTHONPATH`` is its
tree; the coordinator alternates their timed blocks A/B, B/A, A/B, ... so slow
drift of the machine (another job starting, thermal state) lands on both sides
alike and the first-mover effect of a switch cancels. The worktree and the
processes are removed on every exit: success, failure, Ctrl-C or SIGTERM.

With ``--suite FILE`` (a user's cases), REF is a commit of the git repository that
holds FILE: both sides run this mlpbench, each in its own checkout of the user's
repository (``Tree``), so side A measures the model source at REF and side B the
working tree's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
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


ADAPTIVE_MAX_ROUNDS = 200  # adaptive rounds: at most this many blocks per case and side (the design's max_rounds)
DEFAULT_PRECISION = 0.05  # --precision: stop adding rounds once the interval's ends are within 5% of the ratio
DEFAULT_MAX_TIMING_S = 120.0  # --max-timing-s: or once this much time has gone into the timed rounds


@dataclass(frozen=True)
class TimingPlan:
    rounds: int = 20  # timed blocks per case and side; adaptive (precision > 0): at most this many
    block_s: float = 0.1  # a block is at least this long (dwarfs timer resolution and dispatch jitter)
    warmup_s: float = 0.3  # per case and side, before any block
    clock: str = "wall"  # "cpu": a CPU case's blocks in its CPU time (clocks.cpu_clock), as the runs measured
    precision: float = 0.0  # > 0: adaptive rounds (bench.analysis.sequential) until the interval is this narrow
    max_s: float = math.inf  # adaptive rounds: stop at the first look after this many seconds of rounds

    def __post_init__(self) -> None:
        if self.rounds < 1 or not self.block_s > 0 or self.warmup_s < 0:
            raise UsageError("--rounds must be >= 1, --block-s > 0 and --warmup-s >= 0")
        if not (0 <= self.precision < 1) or not self.max_s > 0:
            raise UsageError("--precision must be a fraction in [0, 1) and the time budget > 0 seconds")

    def fixed(self, rounds: int = 20) -> "TimingPlan":
        """This plan with a fixed count of rounds (one side measured now against stored samples: nothing to pair)."""
        return dataclasses.replace(self, rounds=rounds, precision=0.0, max_s=math.inf)

    def sequential(self, alpha: float):
        """The group-sequential design of adaptive rounds (``bench.analysis.sequential.Design``), or None (fixed)."""
        if not self.precision:
            return None
        from ..analysis.sequential import Design

        return Design(alpha=alpha, max_rounds=self.rounds, precision=self.precision,
                      first_look=min(Design.first_look, self.rounds))


@dataclass(frozen=True)
class Tree:
    """What one side's worker imports, and the folder it runs in.

    Without ``--suite``: one of mlpbench's own trees (REF's worktree, or the working tree) is both the code
    and the folder. With ``--suite``: mlpbench's code is the same installed package on both sides (``code``),
    and ``user`` is the user's repository (REF's worktree of it, or the working tree): the worker runs there,
    so a case's relative ``PATH.py:FACTORY`` (spelled from the repository root) and a ``MODULE:FACTORY`` resolve
    inside that side's checkout; it is on ``PYTHONPATH`` after the code.
    """

    code: Path
    user: Path | None = None
    models: tuple[Path, ...] = ()  # compare --confirm: a run's copies of its models' modules, imported first

    @property
    def cwd(self) -> Path:
        return self.user or self.code

    def env(self, **extra: str) -> dict[str, str]:
        paths = [str(p) for p in self.models] + [str(self.code)] + ([str(self.user)] if self.user is not None else [])
        return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1", **extra}


def as_tree(tree: "Tree | Path") -> Tree:
    return tree if isinstance(tree, Tree) else Tree(Path(tree))


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

    def __init__(self, name: str = "B", cwd: Path | None = None):
        self.name = name
        self.cwd = cwd  # --suite: the user's repository, where its cases' model paths resolve
        self._state: dict[str, Any] = {}
        self._reply: dict[str, Any] | None = None

    def send(self, message: dict[str, Any]) -> None:
        # through JSON, as over a pipe, so both kinds of worker answer alike (string keys and all)
        with _working_folder(self.cwd):
            reply = worker.handle(self._state, json.loads(json.dumps(message)))
        self._reply = json.loads(json.dumps(reply))

    def receive(self) -> dict[str, Any]:
        reply, self._reply = self._reply, None
        return _checked(self.name, reply)

    def close(self) -> None:
        self._state.clear()


@contextlib.contextmanager
def _working_folder(path: Path | None) -> Iterator[None]:
    """``path`` as the cwd for the block (nothing when None); the old cwd back however it ends."""
    if path is None:
        yield
        return
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def shared_cpu(count: int = 1) -> str:
    """``count`` CPUs (one by default), the same for both sides' workers, comma-separated.

    Left to the scheduler, each worker tends to stay on the core it last ran on; when
    another job loads one core more than the other, that becomes a steady bias between
    the sides that no amount of interleaving removes. Pinned to the same cores, A and B
    see the same neighbours. (The gate's timed cases run one torch thread, so one core is
    enough; ``compare --confirm`` re-measures a run's cases at the threads that run used.)
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    return ",".join(str(c) for c in cpus[-max(1, count):]) if cpus else ""


class ProcessWorker:
    """A ``bench.gate.worker`` process importing ``mlp`` and ``bench`` from ``tree`` (a ``Tree``, or a folder that
    is both its code and its cwd); JSON lines on its pipes."""

    def __init__(self, name: str, tree: Tree | Path, cpus: str = ""):
        self.name = name
        self.tree = as_tree(tree)
        self._stderr = tempfile.TemporaryFile(mode="w+")
        env = self.tree.env(**{worker.CPUS_ENV: cpus})
        self._timeout_s = SETUP_TIMEOUT_S
        self._proc = subprocess.Popen([sys.executable, str(WORKER)], cwd=self.tree.cwd, env=env, text=True,
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
            raise EnvironmentProblem(f"side {self.name} ({self.tree.cwd}) did not answer within {self._timeout_s:.0f} s")
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


def git(repo: Path, *args: str) -> str:
    """``git -C repo ARGS``'s stdout; a failure is one line (``EnvironmentProblem``)."""
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
        return git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except EnvironmentProblem:
        raise UsageError(f"--against {ref!r}: not a commit in {repo}") from None


@contextlib.contextmanager
def worktree(repo: Path, ref: str) -> Iterator[Path]:
    """REF checked out (detached) in a temporary folder; removed again however the block ends."""
    sha = resolve_ref(repo, ref)
    parent = Path(tempfile.mkdtemp(prefix="mlpbench-gate-"))
    path = parent / "tree"
    try:
        git(repo, "worktree", "add", "--detach", "--quiet", str(path), sha)
        yield path
    finally:
        with contextlib.suppress(EnvironmentProblem):
            git(repo, "worktree", "remove", "--force", str(path))
        shutil.rmtree(parent, ignore_errors=True)
        with contextlib.suppress(EnvironmentProblem):
            git(repo, "worktree", "prune")


def repo_root(path: Path) -> Path | None:
    """The git repository that holds ``path`` (``git rev-parse --show-toplevel``), or None outside any."""
    folder = Path(path).resolve()
    folder = folder if folder.is_dir() else folder.parent
    try:
        return Path(git(folder, "rev-parse", "--show-toplevel")).resolve()
    except EnvironmentProblem:
        return None


def file_at(repo: Path, ref: str, path: Path) -> bool:
    """Whether ``path`` (inside ``repo``) exists in commit ``ref``."""
    sha = resolve_ref(repo, ref)
    relative = Path(path).resolve().relative_to(repo).as_posix()
    try:
        git(repo, "cat-file", "-e", f"{sha}:{relative}")
    except EnvironmentProblem:
        return False
    return True


@contextlib.contextmanager
def sides(against: str, user_repo: Path | None = None, head: Path | None = None) -> Iterator[dict[str, Tree]]:
    """``{"A": REF's tree, "B": the working tree}``: REF of mlpbench's own tree, or, given ``user_repo``
    (``--suite``), REF of the user's repository with this mlpbench on both sides. ``head``: B is this checkout
    of the same repository instead of the working tree (``mlpbench bisect``'s commit under test). The worktree
    is removed however the block ends."""
    with worktree(user_repo or tree_root(), against) as ref_tree:
        yield {"A": side_tree(ref_tree, user_repo), "B": side_tree(head or user_repo or tree_root(), user_repo)}


def side_tree(checkout: Path, user_repo: Path | None) -> Tree:
    """A checkout as one side's ``Tree``: mlpbench's own (its code), or the user's (run with this mlpbench)."""
    return Tree(Path(checkout)) if user_repo is None else Tree(tree_root(), Path(checkout))


def check_imports(name: str, tree: Tree, info: Mapping[str, Any], trees: Mapping[str, Tree]) -> None:
    """Each side measured its own tree's code: ``mlp`` from ``tree.code``, and (``--suite``) no case's model
    from another side's checkout (REF's side importing the working tree's model would compare it with itself)."""
    if not Path(info["mlp_file"]).is_relative_to(tree.code.resolve()):
        raise EnvironmentProblem(f"side {name} imported mlp from {info['mlp_file']}, not from {tree.code}")
    others = [t.user.resolve() for n, t in trees.items() if n != name and t.user is not None]
    for label, source in zip(info.get("labels", []), info.get("model_files") or []):
        if source and any(Path(source).is_relative_to(other) for other in others):
            raise EnvironmentProblem(f"side {name} imported the model of {label} from {source}, "
                                     f"not from {tree.user}")


@contextlib.contextmanager
def workers_for(against: str | None, pin: bool = True, user_repo: Path | None = None
                ) -> Iterator[dict[str, Worker]]:
    """``{"A": REF's worker, "B": working tree's}`` for ``--against``, else ``{"B": in-process}``.

    ``user_repo`` (``--suite``): REF is a commit of the user's repository, and the workers run in its checkouts.
    """
    opened: dict[str, Worker] = {}
    with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
        if against is None:
            opened["B"] = InProcessWorker("B", user_repo)
        else:
            trees = stack.enter_context(sides(against, user_repo))
            cpus = shared_cpu() if pin else ""
            opened["A"] = ProcessWorker("A", trees["A"], cpus)
            opened["B"] = ProcessWorker("B", trees["B"], cpus)
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
    trees = {name: w.tree for name, w in workers.items() if isinstance(getattr(w, "tree", None), Tree)}
    for name, reply in replies.items():
        if name in trees:
            check_imports(name, trees[name], reply["info"], trees)
        reply.update(request(workers[name], {"cmd": "warmup", "cases": list(timed)}))
    return replies


def block_iters(setup_replies: Mapping[str, dict[str, Any]], timed: Sequence[int], plan: TimingPlan) -> dict[int, int]:
    """Steps per block, the same on both sides: enough for ``block_s`` at the faster warm-up estimate."""
    out = {}
    for index in timed:
        per_step_s = min(reply["per_step_s"][str(index)] for reply in setup_replies.values())
        out[index] = max(1, min(MAX_BLOCK_ITERS, math.ceil(plan.block_s / per_step_s))) if per_step_s > 0 else 1
    return out


def interleaved_samples(workers: Mapping[str, Worker], timed: Sequence[int], iters: Mapping[int, int],
                        plan: TimingPlan, alpha: float = 0.01,
                        clock=time.monotonic) -> dict[str, dict[int, list[float]]]:
    """``rounds`` blocks per case and side; within a round the side order alternates (AB, BA, AB, ...).

    Adaptive (``plan.precision``, two sides): at each look of the design (``plan.sequential(alpha)``) a case whose
    interval is within the precision stops, and all stop at the first look after ``plan.max_s`` seconds; each case
    ends at a look, where its repeated confidence interval holds. Each block runs on a step rebuilt in fresh
    memory from the round's seed, the same seed on both sides (see ``worker.BUILD_SEED``).
    """
    names = sorted(workers)
    samples: dict[str, dict[int, list[float]]] = {n: {i: [] for i in timed} for n in names}
    design = plan.sequential(alpha) if len(names) == 2 else None
    active, start = list(timed), clock()
    for r in range(plan.rounds):
        if not active:
            break
        if design is not None and design.is_look(r):
            active = [i for i in active
                      if not design.precise(design.interval(samples[names[0]][i], samples[names[1]][i]))]
            if clock() - start >= plan.max_s:
                break
        for index in active:
            for name in (names if r % 2 == 0 else names[::-1]):
                reply = request(workers[name], {"cmd": "time", "case": index, "iters": iters[index],
                                                "rebuild_seed": worker.BUILD_SEED + 1 + r,
                                                **({"clock": plan.clock} if plan.clock != "wall" else {})})
                samples[name][index] += reply["samples_s"]
    return samples
