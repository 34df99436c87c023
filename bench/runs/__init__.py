"""The run record: one owner for the format of a run folder (``results/runs/<run-id>/``).

A run folder holds ``summary.csv`` (one row per case x phase), ``samples.csv`` (every raw
block sample) and ``meta.json`` (``RunMeta``). This package is the only code that writes
(``RunWriter``) or reads (``load_run``) them; see docs/design.md, "The run record".
No torch: readers stay cheap.
"""

from .columns import (
    CASE_COLUMNS,
    ID_COLUMNS,
    LEADING_COLUMNS,
    RANK_COLUMN,
    REQUIRED_SAMPLE_COLUMNS,
    REQUIRED_SUMMARY_COLUMNS,
    SAMPLE_COLUMNS,
    STATUS_COLUMNS,
    fill_later_columns,
    leading_first,
    samples_frame,
    summary_frame,
    user_model_rows,
)
from .folder import (
    LOCK_FILE,
    META_JSON,
    RUNS_DIR,
    SAMPLES_CSV,
    SUMMARY_CSV,
    FolderBusy,
    FolderLock,
    is_run_dir,
    latest_run,
    new_run_dir,
    prepare_run_dir,
    write_atomic,
    write_json,
    write_table,
)
from .outputs import OutputRefused, claim_run_dir, database_file, is_sqlite, output_file, output_folder
from .meta import CRASH_LIMIT, MetaError, RunMeta
from .reader import DamagedRun, Run, load_run, read_meta, read_table
from .status import DONE_STATUSES, RunKind, Status
from .writer import CRASHED_REASON, RunWriter, write_meta
from ..model.case_fields import LATER_DEFAULTS, PARALLEL_DEFAULTS

__all__ = [
    "CASE_COLUMNS", "CRASHED_REASON", "CRASH_LIMIT", "DONE_STATUSES", "DamagedRun", "FolderBusy", "FolderLock",
    "ID_COLUMNS", "LATER_DEFAULTS", "LEADING_COLUMNS", "LOCK_FILE", "META_JSON", "MetaError", "OutputRefused",
    "PARALLEL_DEFAULTS", "RANK_COLUMN", "REQUIRED_SAMPLE_COLUMNS", "REQUIRED_SUMMARY_COLUMNS", "RUNS_DIR", "Run",
    "RunKind", "RunMeta", "RunWriter", "SAMPLES_CSV", "SAMPLE_COLUMNS", "STATUS_COLUMNS", "SUMMARY_CSV", "Status",
    "claim_run_dir", "database_file", "fill_later_columns", "is_run_dir", "is_sqlite", "latest_run", "leading_first",
    "load_run", "new_run_dir", "output_file", "output_folder", "prepare_run_dir", "read_meta", "read_table",
    "samples_frame", "summary_frame", "write_atomic", "write_json", "write_meta", "write_table",
]
