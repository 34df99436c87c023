"""A run folder on disk: its file names, atomic writes, and the lock a writing process holds.

Every write goes to a temporary file in the same folder and is renamed over the old one, so
a crash, Ctrl-C or SIGTERM leaves the previous complete file readable. A process that writes
a folder holds an exclusive ``flock`` on its ``.lock`` file; the kernel drops it when the
process dies, however it dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import tempfile
from pathlib import Path

from ..errors import UsageError

RUNS_DIR = Path("results/runs")
SAMPLES_CSV, SUMMARY_CSV, META_JSON = "samples.csv", "summary.csv", "meta.json"
LOCK_FILE = ".lock"


class FolderBusy(UsageError):
    """Another process is writing this run folder (exit code 2)."""


def new_run_dir(root: Path = RUNS_DIR, preset: str = "custom") -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(root) / f"{stamp}-{preset}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = Path(root) / f"{stamp}-{preset}-{suffix}"
    return path


def prepare_run_dir(path: Path) -> None:
    """Create ``path`` (and its parents) and prove that a file can be written in it; raises OSError.

    Called before anything is measured, so that an unwritable place is a usage error at
    once, not an error after the first case.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
        pass


def is_run_dir(path: Path) -> bool:
    return (Path(path) / SUMMARY_CSV).is_file()


def latest_run(root: Path = RUNS_DIR) -> Path:
    runs = sorted((p for p in Path(root).glob("*") if is_run_dir(p)), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"no runs under {root}: measure one first with `mlpbench run` "
                                f"(the quick preset; `make bench` in a checkout of mlpbench)")
    return runs[-1]


def _file_mode(path: Path) -> int:
    """The replaced file's mode, or a new file's (0666 less the umask), as ``open`` would give it."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _file_mode(path))  # mkstemp's 0600 would leave the run unreadable to a CI uploader or a team
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data) -> None:
    """Any JSON document (a baseline, a launch plan), atomically; meta.json goes through ``RunMeta``."""
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


class FolderLock:
    """An exclusive, non-blocking ``flock`` on ``<folder>/.lock``: one writing process per folder."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise FolderBusy(f"{self.path.parent} is being written by another process (pid {holder}); "
                             "wait for it to finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # the file stays (removing it would race with a process opening it)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def write_table(path: Path, frame) -> None:
    """A pandas table as CSV, atomically (the writer's tables; tests build damaged or edited runs with it)."""
    write_atomic(path, frame.to_csv(index=False))
