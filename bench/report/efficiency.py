"""Data-parallel scaling arithmetic from result tables (no torch): efficiency against one process, communication share.

* Weak scaling (batch per rank fixed at B): N ranks process N*B examples per step, one process B;
  efficiency = throughput_N / (N * throughput_1) = t_1 / t_N.
* Strong scaling (global batch fixed at B, B/N per rank): efficiency = t_1 / (N * t_N).
* Communication share of the DDP step = (t_sync - t_nosync) / t_sync: the part of the step that the
  gradient all-reduce adds and backward does not hide (``no_sync()`` skips the all-reduce only).

t are medians of the job's step (``rank = all``, the per-round slowest rank). Intervals are the
percentile bootstrap of the ratio of medians over the raw block samples (``bench.compare``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..analysis.stats import COMPARE_CI_LEVEL, COMPARE_RESAMPLES, ratio_of_medians_ci
from ..runs import CASE_COLUMNS, PARALLEL_DEFAULTS, Status

ALL_RANKS = "all"  # bench.ddp.merge writes it; reporting reads the table, not the measuring wing
STEP, NOSYNC = "step", "step_nosync"
STRONG = "strong"


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


def efficiency(reference_s: Sequence[float], parallel_s: Sequence[float], world_size: int,
               scaling: str) -> Interval:
    """Weak: t_1 / t_N; strong: t_1 / (N t_N); with the bootstrap interval of the ratio of medians."""
    ratio = _ratio_of_medians(parallel_s, reference_s)  # median(reference) / median(parallel)
    per_rank = 1.0 / world_size if scaling == STRONG else 1.0
    return Interval(ratio.value * per_rank, ratio.low * per_rank, ratio.high * per_rank)


def communication_share(sync_s: Sequence[float], nosync_s: Sequence[float]) -> Interval:
    """(t_sync - t_nosync) / t_sync = 1 - median(nosync)/median(sync)."""
    ratio = _ratio_of_medians(sync_s, nosync_s)
    return Interval(1.0 - ratio.value, 1.0 - ratio.high, 1.0 - ratio.low)


def _ratio_of_medians(a_s: Sequence[float], b_s: Sequence[float]) -> Interval:
    """median(B) / median(A) with the unpaired bootstrap interval that ``mlpbench compare`` uses (bench.analysis.stats)."""
    low, high = ratio_of_medians_ci(a_s, b_s, level=COMPARE_CI_LEVEL, resamples=COMPARE_RESAMPLES)
    return Interval(float(np.median(b_s) / np.median(a_s)), low, high)


def reference_batch(batch_per_rank: int, world_size: int, scaling: str) -> int:
    """The one-process batch a case is compared with: the per-rank batch (weak) or the global one (strong)."""
    return batch_per_rank * world_size if scaling == STRONG else batch_per_rank


def _series(samples: pd.DataFrame, case_id: str, phase: str, rank: str = ALL_RANKS) -> list[float]:
    rows = samples[(samples["case_id"] == case_id) & (samples["phase"] == phase)
                   & (samples["rank"].astype(str) == rank)]
    return rows["seconds"].tolist()


def _reference_id(steps: pd.DataFrame, row: pd.Series) -> str | None:
    keys = [f for f in CASE_COLUMNS if f not in PARALLEL_DEFAULTS and f != "batch"]
    match = steps[(steps["world_size"] == 1) & (steps["batch"] == reference_batch(
        int(row["batch"]), int(row["world_size"]), row["scaling"]))]
    for key in keys:
        match = match[match[key] == row[key]]
    return match["case_id"].iloc[0] if len(match) else None


def scaling_table(summary: pd.DataFrame, samples: pd.DataFrame) -> pd.DataFrame:
    """One row per data-parallel case (and its one-process reference): step times, throughput, efficiency."""
    steps = summary[(summary["phase"] == STEP) & (summary["rank"].astype(str) == ALL_RANKS)
                    & (summary["status"] == Status.OK)]
    rows = []
    for _, row in steps[steps["world_size"] > 1].iterrows():
        ref_id = _reference_id(steps, row)
        per_rank = summary[(summary["case_id"] == row["case_id"]) & (summary["phase"] == STEP)
                           & (summary["rank"].astype(str) != ALL_RANKS)]
        out = {"label": row["label"], "network": row["network"], "width": row["width"], "depth": row["depth"],
               "scaling": row["scaling"], "world_size": int(row["world_size"]), "backend": row["backend"],
               "bucket_cap_mb": row["bucket_cap_mb"], "batch_per_rank": int(row["batch"]),
               "global_batch": int(row["batch"]) * int(row["world_size"]), "threads": row["torch_threads"],
               "step_s": row["median_s"], "samples_per_s": row["samples_per_s"],
               "rank_step_s": dict(zip(per_rank["rank"].astype(str), per_rank["median_s"]))}
        share = communication_share(_series(samples, row["case_id"], STEP), _series(samples, row["case_id"], NOSYNC))
        out.update(comm_share=share.value, comm_low=share.low, comm_high=share.high)
        if ref_id is not None:
            ref = steps[steps["case_id"] == ref_id].iloc[0]
            eff = efficiency(_series(samples, ref_id, STEP), _series(samples, row["case_id"], STEP),
                             int(row["world_size"]), row["scaling"])
            out.update(reference_batch=int(ref["batch"]), reference_step_s=ref["median_s"],
                       reference_samples_per_s=ref["samples_per_s"], efficiency=eff.value,
                       efficiency_low=eff.low, efficiency_high=eff.high)
        rows.append(out)
    return pd.DataFrame(rows)
