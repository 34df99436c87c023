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

# The measured columns of a summary row, declared once by their producer (issue 48). A producer that writes a
# column declared nowhere fails tests/bench/test_declared_columns.py, which runs the producers. Three producers
# declare theirs beside themselves, in modules this torch-free one may not import: GPU telemetry
# (``bench.instruments.telemetry.COLUMNS``), numerics (``bench.instruments.numerics.COLUMNS``) and each limit's
# ``LimitTable.columns`` (``bench.runs.limit_tables``). docs/results.md says what each one means.
MEASURED_COLUMNS: dict[str, tuple[str, ...]] = {
    # bench.analysis.stats.Summary.as_dict(unit="_s"), then the engine's per-phase figures
    "statistics": (*STAT_COLUMNS, "iqr_rel", "noisy", "iters_per_block", "samples_per_s"),
    # bench.case.accounting.columns: exact counts and the analytic memory (mem_* of mlp.accounting.MEMORY_KEYS)
    "accounting": ("flops_source", "matmul_flops", "elementwise_flops", "traffic_bytes", "parameters",
                   "mem_parameters_bytes", "mem_gradients_bytes", "mem_optimizer_state_bytes",
                   "mem_saved_activations_bytes", "mem_cast_weights_bytes", "mem_data_bytes", "mem_loss_saved_bytes",
                   "mem_unsaved_output_bytes", "mem_autocast_cache_bytes", "mem_widest_pair_bytes", "mem_total_bytes",
                   "mem_phase_peak_bytes", "model_source_sha", "accounting_note", "model_linears",
                   "model_in_features", "model_out_features", "model_input_shape"),
    # bench.engine.runner.summary_rows: rates against the datasheet, memory and compile as measured, the budget
    "engine": ("tflops", "peak_tflops", "mfu_peak", "peak_mem_bytes", "harness_mem_bytes", "first_inference_s",
               "compile_s", "compile_graphs", "graph_breaks", "recompiles", "phase_sum_gap", "untimed_phases",
               "optimizer_impl", "torch_threads", "first_step_s", "measure_s", "predicted_measure_s",
               "steady_measure_s", "numerics_s"),
    # --processes K (bench.engine.process_samples): the spread between processes
    "processes": ("processes", "between_process_cv", "process_note"),
    # the speed-of-light floor (bench.limits.speed_of_light) and the eager op count it charges
    "speed of light": ("aten_ops", "sol_compute_s", "sol_memory_s", "sol_overhead_s", "sol_s", "sol_fraction",
                       "sol_bound"),
    # a data-parallel run (bench.ddp.merge.summary_rows): the rank is a leading column
    "data parallel": ("global_batch", "hostnames"),
}

SAMPLE_COLUMNS = ("case_id", "phase", "sample", "seconds", "iters_per_block")  # + rank in a data-parallel run
# samples.csv's other columns: a data-parallel run's rank; each block on both clocks (bench.engine.runner.sample_rows:
# wall_s, cpu_s); the process that took it under --processes K
SAMPLE_EXTRA_COLUMNS = (RANK_COLUMN, "wall_s", "cpu_s", "process")
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
