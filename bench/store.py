"""Moved to ``bench.runs`` (the run record). This shim re-exports the old names for branches written
against it; import ``bench.runs`` in new code. It holds no logic and goes once every branch is merged.
"""

from .runs import (  # noqa: F401 - re-exports
    CASE_COLUMNS,
    META_JSON,
    PARALLEL_DEFAULTS,
    RUNS_DIR,
    SAMPLES_CSV,
    SUMMARY_CSV,
    Run,
    is_run_dir,
    latest_run,
    load_run,
    new_run_dir,
    prepare_run_dir,
    write_atomic,
    write_json as write_meta,
    write_table,
)
