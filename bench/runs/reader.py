"""The one reader of run folders, used by report, compare, show and --resume.

A damaged file (summary.csv cut mid-line, meta.json that is not JSON, a missing column, a
``median_s`` of ``abc``, an unknown status, a measured time of zero) is a ``DamagedRun``: a usage
error whose one line names the file, the line and the fault. Every command that reads a run
reads it here, so a value no writer writes stops at the door instead of deep in a report.
Nothing is written while reading, so a damaged folder is left exactly as it was found.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..model.case_fields import BUILT_IN_FIELDS, FIELD_TYPES
from ..errors import UsageError, first_line
from .columns import (KEY_COLUMNS, REQUIRED_SAMPLE_COLUMNS, REQUIRED_SUMMARY_COLUMNS, STAT_COLUMNS,
                      fill_later_columns, missing_columns, user_model_rows)
from .folder import META_JSON, SAMPLES_CSV, SUMMARY_CSV, is_run_dir
from .meta import MetaError, RunMeta
from .status import RunKind, Status

# Runs whose samples are means over timed blocks (at least ``min_block_s`` each): a time of 0 is never measured.
# A loader run's per-step wait or copy may be 0 on a coarse clock.
BLOCK_TIMED = (RunKind.SWEEP, RunKind.DDP)


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
    meta = read_meta(path / META_JSON)
    positive = meta.kind in BLOCK_TIMED
    summary = check_summary(path / SUMMARY_CSV, read_table(path / SUMMARY_CSV, REQUIRED_SUMMARY_COLUMNS), positive)
    samples_path = path / SAMPLES_CSV
    samples = read_table(samples_path, REQUIRED_SAMPLE_COLUMNS) if samples_path.exists() else pd.DataFrame()
    if len(samples):
        samples = _numbers(samples_path, samples, ("seconds",), blank=False, positive=positive)
    return Run(path, fill_later_columns(summary), samples, meta)


def check_summary(path: Path, frame: pd.DataFrame, positive: bool = True) -> pd.DataFrame:
    """The summary's values as the writer writes them: known statuses, one row per key, typed case fields,
    numeric statistics, and a measured (``ok``) row with a median time (> 0 where ``positive``)."""
    unknown = ~frame["status"].isin([s.value for s in Status])
    if unknown.any():
        _fault(path, frame, unknown, "status", f"valid: {', '.join(s.value for s in Status)}")
    blank = frame["case_id"].isna() | (frame["case_id"].astype(str).str.strip() == "")
    if blank.any():
        _fault(path, frame, blank, "case_id", "every row names its case")
    keys = [c for c in KEY_COLUMNS if c in frame.columns]
    repeated = frame.duplicated(keys, keep="first")
    if repeated.any():
        _fault(path, frame, repeated, "case_id", f"a second row of the same {' x '.join(keys)}")
    # a user's model's row leaves the built-in nets' fields empty where its factory does not take them
    user = user_model_rows(frame)
    for column, kind in FIELD_TYPES.items():
        if column in frame.columns and kind is not str:
            frame = _numbers(path, frame, (column,), blank=user if column in BUILT_IN_FIELDS else False,
                             whole=kind is int)
    frame = _numbers(path, frame, [c for c in STAT_COLUMNS if c in frame.columns])
    if "median_s" in frame.columns:
        ok = frame["status"] == Status.OK.value
        bad = ok & ~(frame["median_s"] > 0 if positive else frame["median_s"] >= 0)
        if bad.any():
            _fault(path, frame, bad, "median_s", "a measured (ok) row needs a time" + (" > 0" if positive else ""))
    return frame


def _numbers(path: Path, frame: pd.DataFrame, columns, *, blank: bool | pd.Series = True, positive: bool = False,
             whole: bool = False) -> pd.DataFrame:
    """``columns`` as numbers (ints where ``whole``): finite, >= 0 (> 0 where ``positive``), blank where ``blank``
    (a bool, or per row)."""
    for column in columns:
        values = pd.to_numeric(frame[column], errors="coerce")
        given = frame[column].notna()
        bad = (given & values.isna()) | (~given & ~blank if isinstance(blank, pd.Series) else ~given & (not blank))
        bad |= values.notna() & ~(np.isfinite(values) & ((values > 0) if positive else (values >= 0)))
        if whole:
            bad |= values.notna() & (values != values.round())
        if bad.any():
            limit = "a whole number" if whole else "a number" + (" > 0" if positive else " >= 0")
            _fault(path, frame, bad, column, f"expected {limit}")
        frame = frame.assign(**{column: values.astype("int64") if whole and not values.isna().any() else values})
    return frame


def _fault(path: Path, frame: pd.DataFrame, bad: pd.Series, column: str, why: str):
    row = int(bad.to_numpy().nonzero()[0][0])
    value = frame[column].iloc[row]
    shown = repr(value) if isinstance(value, str) else "blank" if pd.isna(value) else f"{float(value):g}"
    raise DamagedRun(f"{path}: line {row + 2}: {column} {shown} ({why})")


def read_meta(path: Path) -> RunMeta:
    """meta.json of a run folder (a default RunMeta when the folder has none)."""
    if not path.exists():
        return RunMeta()
    if not path.is_file():
        raise DamagedRun(f"{path}: not a file")
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
    except OSError as exc:
        raise DamagedRun(f"{path}: cannot be read ({exc.strerror or exc})") from None
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
