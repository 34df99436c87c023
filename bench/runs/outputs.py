"""The one guard for every output path a user names: nothing measured is ever written over.

Every command that writes a path from its command line (``--out``, ``--markdown``, ``--json``,
``--archive``, ``--db``, ``--write-baseline``) asks here first, before it measures or writes
anything. Refused, each as one line naming the path and the flag (a ``UsageError``, exit code 2):

- a file inside a run folder (a folder holding ``summary.csv`` or ``meta.json``), and the names
  of its record (``summary.csv``, ``samples.csv``, ``meta.json``, its lock) even where absent: a
  Markdown comparison written there would make the run unreadable;
- a SQLite database (a measurement history) or a path the command protects (the gate's baseline);
- a folder where a file is due, a file where a folder is due, a path below a file;
- for a new run folder, a folder that already holds files.

A command's own derived outputs in a run folder (``report.md`` and ``plots/`` of ``mlpbench
report RUN``) are not files given to this guard: the command names the folder, not them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..errors import UsageError
from .folder import LOCK_FILE, META_JSON, SAMPLES_CSV, SUMMARY_CSV, prepare_run_dir

RECORD_FILES = (SUMMARY_CSV, SAMPLES_CSV, META_JSON, LOCK_FILE)  # what --resume and every reader rely on
SQLITE_HEADER = b"SQLite format 3\x00"  # the first 16 bytes of every SQLite database file


class OutputRefused(UsageError):
    """An output path that would overwrite something measured, or cannot be the file or folder asked for."""


def run_folder_of(path: Path) -> Path | None:
    """The run folder that holds ``path`` as one of its files, or None."""
    parent = Path(path).parent
    return parent if (parent / SUMMARY_CSV).is_file() or (parent / META_JSON).is_file() else None


def is_sqlite(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def _below_a_file(path: Path, flag: str) -> None:
    for ancestor in Path(path).parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise OutputRefused(f"{flag} {path}: {ancestor} is a file, not a folder")
            return


def output_file(path: str | Path, flag: str, *, protected: Iterable[str | Path] = ()) -> Path:
    """``path`` as a file the command may write (replace or append), or ``OutputRefused``."""
    path = Path(path)
    if path.is_dir():
        raise OutputRefused(f"{flag} {path} is a folder; {flag} takes a file")
    _below_a_file(path, flag)
    folder = run_folder_of(path)
    if folder is not None and (path.name in RECORD_FILES or path.exists()):
        raise OutputRefused(f"{flag} {path} is a file of the run folder {folder}, which nothing but its run "
                            "writes; choose a path outside it")
    if any(path.resolve() == Path(p).resolve() for p in protected):
        raise OutputRefused(f"{flag} {path} is also this command's input; choose another file")
    if path.is_file() and is_sqlite(path):
        raise OutputRefused(f"{flag} {path} is a SQLite database (a measurement history); choose another file")
    return path


def output_folder(path: str | Path, flag: str, *, new: bool = False, otherwise: str = "choose another --out") -> Path:
    """``path`` as a folder the command may write into; ``new=True``: a new run folder (no files in it yet)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputRefused(f"{flag} {path} is a file; {flag} takes a folder")
    _below_a_file(path, flag)
    if new and path.is_dir() and any(path.iterdir()):
        raise OutputRefused(f"{path} exists and is not empty; {otherwise}")
    return path


def database_file(path: str | Path, flag: str = "--db") -> Path:
    """A SQLite history file: never a run folder's file, never a folder."""
    path = Path(path)
    if path.is_dir():
        raise OutputRefused(f"{flag} {path} is a folder; {flag} takes a database file")
    folder = run_folder_of(path)
    if folder is not None and (path.name in RECORD_FILES or (path.exists() and not is_sqlite(path))):
        raise OutputRefused(f"{flag} {path} is a file of the run folder {folder}, not a history database")
    _below_a_file(path, flag)
    return path


def claim_run_dir(path: str | Path, *, resume: bool = False, otherwise: str = "choose another --out",
                  flag: str = "--out") -> None:
    """A folder about to be measured into: ``output_folder`` (a new one unless resumed) that can be written,
    or ``OutputRefused``, before anything is measured."""
    path = output_folder(path, flag, new=not resume, otherwise=otherwise)
    try:
        prepare_run_dir(path)
    except OSError as exc:
        raise OutputRefused(f"cannot write the run folder {path}: {exc.strerror or exc}") from None
