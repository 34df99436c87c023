"""Rank 0's records (one JSON line per case, every rank's samples) -> the run folder's tables.

The tables keep ``mlpbench run``'s long format with one more column, ``rank``: each rank's own
samples and statistics, plus ``rank = all``, the per-round maximum over ranks. The job advances at
its slowest rank, so ``all`` is the step the data-parallel job takes; a world of one has ``all``
equal to rank 0.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..case.cases import Case
from ..runs import RANK_COLUMN, Status, samples_frame, summary_frame
from ..analysis.stats import summarize

ALL_RANKS = "all"


def read_parts(path: Path) -> list[dict]:
    """Every complete line; a line cut short by a dying process is dropped, not fatal."""
    if not Path(path).is_file():
        return []
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _rank_samples(record: dict) -> dict[str, dict[str, list[float]]]:
    """{rank: {phase: samples}} with the 'all' series (per-round max over ranks) added."""
    per_rank = {str(r["rank"]): r["samples"] for r in record["ranks"]}
    phases = next(iter(per_rank.values())).keys()
    per_rank[ALL_RANKS] = {p: np.max([s[p] for s in per_rank.values()], axis=0).tolist() for p in phases}
    return per_rank


def sample_rows(record: dict) -> list[dict]:
    iters = record["ranks"][0]["iters_per_block"]
    return [{"case_id": record["case_id"], "phase": phase, "sample": i, "seconds": value, "iters_per_block": iters,
             "rank": rank}
            for rank, phases in _rank_samples(record).items() for phase, values in phases.items()
            for i, value in enumerate(values)]


def summary_rows(record: dict) -> list[dict]:
    """One row per phase x rank (and 'all'): the case's fields, statistics, samples/s of that rank or the job."""
    case = Case.from_row(record["case"])
    first = record["ranks"][0]
    base = {**case.to_row(), "case_id": case.case_id, "label": case.label, "status": Status.OK.value, "reason": ""}
    rows = []
    for rank, phases in _rank_samples(record).items():
        examples = case.batch * (case.world_size if rank == ALL_RANKS else 1)
        for phase, values in phases.items():
            s = summarize(values)
            rows.append({**base, "phase": phase, "rank": rank, **s.as_dict(unit="_s"),
                         "iters_per_block": first["iters_per_block"],
                         "samples_per_s": examples / s.median if s.median > 0 else math.nan,
                         "global_batch": case.batch * case.world_size,
                         "first_step_s": max(r["first_step_s"] for r in record["ranks"]),
                         "optimizer_impl": first["optimizer_impl"], "torch_threads": first["torch_threads"],
                         "hostnames": ",".join(sorted({r["hostname"] for r in record["ranks"]})),
                         "measure_s": max(r["measure_s"] for r in record["ranks"])})
    return rows


def failed_row(case: Case, status: Status, reason: str) -> dict:
    return {**case.to_row(), "case_id": case.case_id, "label": case.label, "status": Status(status).value,
            "reason": reason, "phase": "step", RANK_COLUMN: ALL_RANKS}


def tables(records: list[dict], failed: list[dict]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(samples, summary) frames, in the run record's column order (``bench.runs.columns``)."""
    return (samples_frame([row for r in records for row in sample_rows(r)]),
            summary_frame([row for r in records for row in summary_rows(r)] + failed))
