"""Loader measurements -> the run folder's tables (samples.csv, summary.csv), in ``mlpbench run``'s long format.

summary.csv has one row per case x phase: ``step`` (step-only, resident batches, blocks) and the loop's
``wait``, ``copy``, ``compute``, ``iteration`` (one sample per step). Every row of a case also carries the
case-level columns: ``epoch_samples_per_s`` (end to end: the measured steps' examples over the loop's wall
time), ``step_only_samples_per_s`` (batch / median step-only block), ``loader_share`` (the loop's total
wait over its wall time), ``copy_share``, ``compute_share``, ``first_batch_s``, ``loop_wall_s``,
``loop_examples``, ``steps``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..runs import samples_frame, summary_frame
from ..analysis.stats import summarize
from .measure import STEP_ONLY


def step_only_samples_per_s(m) -> float:
    values = m.samples.get(STEP_ONLY, [])
    return m.lcase.case.batch / float(np.median(values)) if values else math.nan


def _share(m, phase: str) -> float:
    return float(np.sum(m.samples[phase])) / m.loop_wall_s if m.loop_wall_s > 0 else math.nan


def case_columns(m) -> dict:
    base = {**m.lcase.to_row(), "case_id": m.lcase.case_id, "label": m.lcase.label, "status": m.status,
            "reason": m.reason}
    if m.status != "ok":
        return base
    return {**base, "epoch_samples_per_s": m.epoch_samples_per_s, "step_only_samples_per_s": step_only_samples_per_s(m),
            "loader_share": _share(m, "wait"), "copy_share": _share(m, "copy"), "compute_share": _share(m, "compute"),
            "first_batch_s": m.first_batch_s, "loop_wall_s": m.loop_wall_s, "loop_examples": m.loop_examples,
            "steps": len(m.samples["iteration"]), "optimizer_impl": m.optimizer_impl,
            "torch_threads": m.torch_threads, "measure_s": m.measure_s}


def summary_rows(m) -> list[dict]:
    base = case_columns(m)
    if m.status != "ok":
        return [{**base, "phase": STEP_ONLY}]
    rows = []
    for phase, values in m.samples.items():
        s = summarize(values)
        per_s = {STEP_ONLY: base["step_only_samples_per_s"], "iteration": base["epoch_samples_per_s"]}.get(phase, math.nan)
        rows.append({**base, "phase": phase, **s.as_dict(unit="_s"),
                     "iters_per_block": m.step_only_iters if phase == STEP_ONLY else 1, "samples_per_s": per_s})
    return rows


def sample_rows(m) -> list[dict]:
    return [{"case_id": m.lcase.case_id, "phase": phase, "sample": i, "seconds": value,
             "iters_per_block": m.step_only_iters if phase == STEP_ONLY else 1}
            for phase, values in m.samples.items() for i, value in enumerate(values)]


def tables(results: list) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(samples, summary) frames, in the run record's column order (``bench.runs.columns``)."""
    return (samples_frame([row for m in results for row in sample_rows(m)]),
            summary_frame([row for m in results for row in summary_rows(m)]))
