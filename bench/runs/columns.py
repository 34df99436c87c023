"""The columns of a run folder's tables, derived from the case's fields (``bench.model.case_fields``).

summary.csv: one row per case x phase (x rank for a data-parallel run). Its leading columns
are fixed: the case's fields in order (so any row re-runs exactly), then its identity, then
its status. Everything after them is whatever the measuring code put in the row, in the
order it put it there: a new measured column is one new key in the row its producer
builds (``bench.engine.runner.summary_rows``, ``bench.ddp.merge.summary_rows``); readers of older
runs find it absent and print a blank (``bench.format``). A new case field is one field in
``bench.model.case_fields.CaseFields``; a run written before it existed reads back its default.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from ..model.case_fields import BUILT_IN_FIELDS, CASE_FIELD_NAMES, FIELD_TYPES, LATER_DEFAULTS

CASE_COLUMNS = CASE_FIELD_NAMES
ID_COLUMNS = ("case_id", "label", "phase")
RANK_COLUMN = "rank"  # data-parallel runs: a rank number, or 'all' for the job's step (the slowest rank)
STATUS_COLUMNS = ("status", "reason")
LEADING_COLUMNS = (*CASE_COLUMNS, *ID_COLUMNS, RANK_COLUMN, *STATUS_COLUMNS)
# Older runs lack the case fields added later: they read back as those fields' defaults.
REQUIRED_SUMMARY_COLUMNS = (*(c for c in CASE_COLUMNS if c not in LATER_DEFAULTS), *ID_COLUMNS, *STATUS_COLUMNS)

# The statistics of a measured row (``bench.analysis.stats.Summary.as_dict(unit="_s")``): numbers, or blank where not measured.
STAT_COLUMNS = ("n", "median_s", "iqr_s", "min_s", "max_s", "mean_s", "ci_low_s", "ci_high_s")
KEY_COLUMNS = ("case_id", "phase", RANK_COLUMN)  # one row per key: a case x phase (x rank)

SAMPLE_COLUMNS = ("case_id", "phase", "sample", "seconds", "iters_per_block")  # + rank in a data-parallel run
REQUIRED_SAMPLE_COLUMNS = ("case_id", "phase", "seconds")


def leading_first(columns: Iterable[str], leading: Sequence[str] = LEADING_COLUMNS) -> list[str]:
    """``columns`` with the leading ones first, in their fixed order; the rest keep their order."""
    columns = list(dict.fromkeys(columns))
    return [c for c in leading if c in columns] + [c for c in columns if c not in leading]


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    """The summary table of ``rows``; with no rows yet it still has its header, so it reads back."""
    if not rows:
        return pd.DataFrame(columns=[c for c in LEADING_COLUMNS if c != RANK_COLUMN])
    frame = pd.DataFrame(rows)
    return frame[leading_first(frame.columns)]


def samples_frame(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    frame = pd.DataFrame(rows)
    return frame[leading_first(frame.columns, SAMPLE_COLUMNS)]


def missing_columns(frame: pd.DataFrame, required: Sequence[str]) -> list[str]:
    return [c for c in required if c not in frame.columns]


def fill_later_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Add the case fields an older run lacks, at their defaults (in their place among the leading columns);
    the text fields whose default is "" (a user's model), and the built-in nets' text fields a user's model's row
    leaves empty, read back as "", not NaN."""
    text = [c for c, v in LATER_DEFAULTS.items() if v == ""] + [c for c in BUILT_IN_FIELDS if FIELD_TYPES[c] is str]
    empty = [c for c in text if c in frame.columns and frame[c].isna().any()]  # a user's model's empty net fields
    if empty:  # a CSV reads an empty text cell back as NaN; grouping and joining on a case field want ""
        frame = frame.assign(**{c: frame[c].astype(object).where(frame[c].notna(), "").astype(str) for c in empty})
    absent = {c: v for c, v in LATER_DEFAULTS.items() if c not in frame.columns}
    if not absent:
        return frame
    frame = frame.assign(**absent)
    return frame[leading_first(frame.columns)]


def user_model_rows(frame: pd.DataFrame) -> pd.Series | bool:
    """Which rows measure a user's model (``--model``): a non-empty ``model`` cell; False without the column. A run
    with no user model reads the column back as all-NaN floats, so it is cast to object before its blanks fill."""
    if "model" not in frame.columns:
        return False
    return frame["model"].astype(object).fillna("").astype(str).ne("")
