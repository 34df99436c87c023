"""The one reader of run folders, used by report, compare, show and --resume.

A damaged file (summary.csv cut mid-line, meta.json that is not JSON, a missing column) is a
``DamagedRun``: a usage error whose one line names the file and the fault. Nothing is
written while reading, so a damaged folder is left exactly as it was found.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import UsageError, first_line
from .columns import REQUIRED_SAMPLE_COLUMNS, REQUIRED_SUMMARY_COLUMNS, fill_later_columns, missing_columns
from .folder import META_JSON, SAMPLES_CSV, SUMMARY_CSV, is_run_dir
from .meta import MetaError, RunMeta
from .status import RunKind


class DamagedRun(UsageError):
    """A run file that cannot be read as written: reported as ``<file>: <fault>``, exit code 2."""


@dataclass
class Run:
    """A run folder read back: the summary (one row per case x phase), raw samples and metadata."""

    path: Path
    summary: pd.DataFrame
    samples: pd.DataFrame
    meta: RunMeta

    @property
    def kind(self) -> RunKind:
        return self.meta.kind


def load_run(path: str | Path) -> Run:
    """Read a run folder; FileNotFoundError when there is none, DamagedRun when a file is damaged."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no run folder at {path}")
    if not is_run_dir(path):
        raise FileNotFoundError(f"{path} is not a run folder (no {SUMMARY_CSV})")
    summary = fill_later_columns(read_table(path / SUMMARY_CSV, REQUIRED_SUMMARY_COLUMNS))
    samples_path = path / SAMPLES_CSV
    samples = read_table(samples_path, REQUIRED_SAMPLE_COLUMNS) if samples_path.is_file() else pd.DataFrame()
    return Run(path, summary, samples, read_meta(path / META_JSON))


def read_meta(path: Path) -> RunMeta:
    """meta.json of a run folder (a default RunMeta when the folder has none)."""
    if not path.is_file():
        return RunMeta()
    try:
        return RunMeta.from_json(path.read_text())
    except (MetaError, UnicodeDecodeError) as exc:
        raise DamagedRun(f"{path}: {exc}") from None


def read_table(path: Path, required) -> pd.DataFrame:
    """A CSV table written by the writer: complete lines, as many fields as the header, the required columns."""
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise DamagedRun(f"{path}: not a text file") from None
    if not text.strip():
        raise DamagedRun(f"{path}: empty (not even a header line)")
    if not text.endswith("\n"):
        raise DamagedRun(f"{path}: cut short, its last line is incomplete")
    lines = csv.reader(io.StringIO(text))
    header = next(lines)
    for number, fields_ in enumerate(lines, start=2):
        if len(fields_) != len(header):
            raise DamagedRun(f"{path}: line {number} has {len(fields_)} fields, the header {len(header)}")
    try:
        frame = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, ValueError) as exc:
        raise DamagedRun(f"{path}: not a readable CSV table ({first_line(exc)})") from None
    missing = missing_columns(frame, required)
    if missing:
        raise DamagedRun(f"{path}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return frame
