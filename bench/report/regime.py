"""Regime per case: overhead-bound, memory-bound or compute-bound, decided from the measured data.

The label is the dominant term of the case's speed of light (``sol_bound`` in the summary,
``bench.limits.speed_of_light``: matmul FLOPs / the matmul ceiling, bytes / the bandwidth ceiling,
ATen ops x the dispatch floor, all measured in the same run); ``SOL_RULE`` says so in the
report. Runs without those limits (older runs) fall back to the alpha rule below, which
every run also keeps as a cross-check (``regime_alpha``); the report lists the cases where
the two disagree.

The alpha rule reads three measured signals per case from the summary table:

* ``alpha``: how the whole-step median grows with the batch. Between this case and the
  next larger batch measured for the same configuration (every other Case field equal;
  the next smaller one for the largest batch): ``alpha = log(t2 / t1) / log(b2 / b1)``.
  Doubling the batch multiplies the step time by ``2 ** alpha``: 0 means a fixed cost,
  1 means time proportional to the work.
* ``mfu``: achieved matmul FLOP/s over the matmul ceiling measured on the same device,
  in the same run, for the same dtype.
* the per-phase split: the optimiser's share of the phase sum, how far its time is above
  the fastest optimiser phase on the same device (the per-call floor), and the rate at which it
  streams parameters, gradients and optimiser state (bytes from the analytic memory columns).

The rule (first match wins) is ``RULE`` below; reports print it verbatim.
"""

from __future__ import annotations

import enum
import math

import numpy as np
import pandas as pd

from ..format import number as _fmt
from ..model.phases import TRAINING_PHASE_NAMES
from ..runs import Status
from .tables import identity_columns

COMPUTE_MFU = 0.5  # matmuls at half the device's own best matmul rate: arithmetic is the limit
OVERHEAD_ALPHA = 0.5  # doubling the batch adds < 41% (2**0.5): over half the step is a fixed cost
OPTIMIZER_SHARE = 0.5  # the optimiser's batch-independent pass is most of the step ...
FLOOR_MULTIPLE = 2.0  # ... takes over twice the cheapest optimiser call (it does more than dispatch) ...
STREAM_FRACTION = 0.5  # ... and streams its state at over half the best rate any optimiser reached on the device
TRAINING_PHASES = TRAINING_PHASE_NAMES


class Regime(str, enum.Enum):
    OVERHEAD = "overhead-bound"
    MEMORY = "memory-bound"
    COMPUTE = "compute-bound"
    INPUT = "input-bound"  # the loop waits for its data (bench/report/loader.py; never from a step-only sweep)


SOL_RULE = """\
Each case is labelled by the dominant term of its speed of light, the least time the three limits
measured in the same run allow for its whole training step:

    floor = max(matmul FLOPs / matmul ceiling, bytes moved / bandwidth ceiling) + ATen ops x dispatch floor

**compute-bound** when the matmul term is the largest of the three, **memory-bound** when the bytes
term is, **overhead-bound** when the dispatch term is. "% of speed of light" is floor / measured step
time (100% = at the limit). The alpha rule below is kept as a cross-check; where the two disagree the
case is listed after the table."""

RULE = f"""\
Cross-check (and the label of runs without the limits): each case is labelled from three measured
signals (first match wins):

1. **compute-bound** if MFU >= {COMPUTE_MFU:.0%}: the step's matmuls run at over half the rate of the
   device's best large matmul measured in the same run, so more FLOPs cost proportionally more time.
2. **memory-bound** if the optimiser phase is >= {OPTIMIZER_SHARE:.0%} of the phase sum, takes
   >= {FLOOR_MULTIPLE:g}x the fastest optimiser phase on the same device, and streams parameters, gradients
   and optimiser state at >= {STREAM_FRACTION:.0%} of the best rate any optimiser phase reached on that device:
   the batch-independent pass over the model's state dominates and is paced by bytes, not arithmetic
   (a slow optimiser that moves few bytes is overhead or noise, not bandwidth).
3. **overhead-bound** if alpha < {OVERHEAD_ALPHA:g}, where alpha = log(t2/t1) / log(b2/b1) is how the step
   time grows from this batch size to the next larger one measured for the same configuration (for
   the largest batch: from the next smaller one): doubling the batch adds less than {2 ** OVERHEAD_ALPHA - 1:.0%} to the step, so a fixed per-step cost
   (Python, operator dispatch, kernel launches, thread wake-up) is more than half of it and larger
   batches are nearly free. Where only one batch size was measured for a configuration, alpha is
   borrowed (median) from the configurations at the same batch size that differ from it in exactly one
   field and have alpha (marked "borrowed"); with none, the case is overhead-bound if its step takes
   < {FLOOR_MULTIPLE:g}x the fastest step on the same device.
4. **memory-bound** otherwise: time grows with the batch while the matmuls stay below
   {COMPUTE_MFU:.0%} of the ceiling, so moving activations and elementwise work set the pace.

The thresholds are round numbers, not fitted: a case near one (alpha ~ {OVERHEAD_ALPHA:g}, MFU ~ {COMPUTE_MFU:.0%})
is between regimes, and on a noisy machine alpha carries the step-time noise of two cases
(marked "(noisy)" when either median has IQR > 10% of it)."""


def platform_column(frame: pd.DataFrame) -> pd.Series:
    return frame["platform"] if "platform" in frame else frame["device"]


def batch_exponents(steps: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """alpha per step row (index aligned with ``steps``; NaN where only one batch was measured),
    and the index of the row it was measured against."""
    keys = identity_columns(["batch"])
    frame = steps.assign(_platform=platform_column(steps))
    alpha = pd.Series(np.nan, index=steps.index, dtype=float)
    partner = pd.Series(None, index=steps.index, dtype=object)
    for _, family in frame.groupby(["_platform"] + keys, sort=False):
        family = family.sort_values("batch")
        batches, times = family["batch"].to_numpy(float), family["median_s"].to_numpy(float)
        for i, index in enumerate(family.index):
            j = i + 1 if i + 1 < len(family) else i - 1
            if j >= 0 and batches[j] != batches[i]:
                alpha[index] = math.log(times[j] / times[i]) / math.log(batches[j] / batches[i])
                partner[index] = family.index[j]
    return alpha, partner


def borrow_exponents(steps: pd.DataFrame, alpha: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Fill unknown alpha from same-platform, same-batch configurations differing in exactly one field.

    Returns (alpha, borrowed) where ``borrowed`` names the differing field(s) for filled rows.
    """
    keys = identity_columns(["batch"])
    platforms = platform_column(steps)
    ident = {i: (platforms[i], steps.at[i, "batch"], tuple(steps.loc[i, keys])) for i in steps.index}
    known = [i for i in steps.index if not math.isnan(alpha[i])]
    filled, borrowed = alpha.copy(), pd.Series("", index=steps.index, dtype=object)
    for i in steps.index:
        if not math.isnan(alpha[i]):
            continue
        platform, batch, values = ident[i]
        donors, fields = [], set()
        for j in known:
            if ident[j][:2] != (platform, batch):
                continue
            differ = [k for k, a, b in zip(keys, values, ident[j][2]) if a != b]
            if len(differ) == 1:
                donors.append(alpha[j])
                fields.add(differ[0])
        if donors:
            filled[i] = float(np.median(donors))
            borrowed[i] = "/".join(sorted(fields))
    return filled, borrowed


def phase_medians(summary: pd.DataFrame) -> pd.DataFrame:
    """Training-phase medians in columns, one row per (platform, case_id)."""
    ok = summary[(summary["status"] == Status.OK) & summary["phase"].isin(TRAINING_PHASES)]
    ok = ok.assign(_platform=platform_column(ok))
    return ok.pivot_table(index=["_platform", "case_id"], columns="phase", values="median_s", aggfunc="first")


def optimizer_traffic_bytes(steps: pd.DataFrame) -> pd.Series:
    """Bytes one optimiser step must move at least: read parameters, gradients and state; write parameters and state."""
    return (2 * steps["mem_parameters_bytes"] + steps["mem_gradients_bytes"]
            + 2 * steps["mem_optimizer_state_bytes"]).astype(float)


SOL_REGIME = {"compute": Regime.COMPUTE, "memory": Regime.MEMORY, "overhead": Regime.OVERHEAD}


def classify(summary: pd.DataFrame) -> pd.DataFrame:
    """The step rows of ``summary`` (ok cases) with alpha, optimizer_share, regime, regime_alpha and why.

    ``regime`` is the speed of light's dominant term where the run measured the limits, else the
    alpha rule's label; ``regime_alpha`` is always the alpha rule's.
    """
    ok = summary[summary["status"] == Status.OK]
    steps = ok[ok["phase"] == "step"].copy()
    if not len(steps):
        return steps.assign(alpha=[], alpha_borrowed_from=[], alpha_noisy=[], optimizer_share=[], regime=[],
                            regime_alpha=[], regime_source=[], why=[])
    alpha, partner = batch_exponents(steps)
    steps["alpha"], steps["alpha_borrowed_from"] = borrow_exponents(steps, alpha)
    noisy = steps["noisy"].astype(str).eq("True") if "noisy" in steps else pd.Series(False, index=steps.index)
    steps["alpha_noisy"] = [bool(noisy[i] or (pd.notna(p) and noisy[p])) for i, p in partner.items()]
    phases = phase_medians(ok).reindex(columns=list(TRAINING_PHASES))
    keys = list(zip(platform_column(steps), steps["case_id"]))
    phases = phases.reindex(pd.MultiIndex.from_tuples(keys))
    optimizer_s = phases["optimizer"].to_numpy(float)
    steps["optimizer_s"] = optimizer_s
    steps["optimizer_share"] = optimizer_s / phases.sum(axis=1, min_count=1).to_numpy(float)
    platforms = platform_column(steps)
    steps["optimizer_floor_s"] = steps["optimizer_s"].groupby(platforms).transform("min")
    steps["optimizer_bytes_per_s"] = optimizer_traffic_bytes(steps) / steps["optimizer_s"]
    steps["best_optimizer_bytes_per_s"] = steps["optimizer_bytes_per_s"].groupby(platforms).transform("max")
    steps["step_floor_s"] = steps["median_s"].groupby(platforms).transform("min")
    decided = [_decide(row) for _, row in steps.iterrows()]
    steps["regime_alpha"] = [regime.value for regime, _ in decided]
    bound = steps["sol_bound"] if "sol_bound" in steps else pd.Series("", index=steps.index)
    sol = [SOL_REGIME.get(b).value if isinstance(b, str) and b in SOL_REGIME else None for b in bound]
    steps["regime"] = [s or a for s, a in zip(sol, steps["regime_alpha"])]
    steps["regime_source"] = ["speed of light" if s else "alpha rule" for s in sol]
    steps["why"] = [why + _sol_terms(row) for (_, why), (_, row) in zip(decided, steps.iterrows())]
    return steps


def disagreements(regimes: pd.DataFrame) -> pd.DataFrame:
    """Cases labelled by the speed of light whose alpha-rule label differs."""
    if not len(regimes) or "regime_source" not in regimes:
        return regimes.iloc[0:0]
    sol = regimes[regimes["regime_source"] == "speed of light"]
    return sol[sol["regime"] != sol["regime_alpha"]]


def _sol_terms(row: pd.Series) -> str:
    terms = [(name, row.get(f"sol_{name}_s", math.nan)) for name in ("compute", "memory", "overhead")]
    if any(not isinstance(v, float) or math.isnan(v) for _, v in terms):
        return ""
    return "; floor " + ", ".join(f"{name} {v * 1e3:.3g} ms" for name, v in terms) + \
        f", {_fmt(row.get('sol_fraction', math.nan), '.0%')} of speed of light"


def _decide(row: pd.Series) -> tuple[Regime, str]:
    mfu, alpha, share = row.get("mfu", math.nan), row["alpha"], row["optimizer_share"]
    borrowed = f" (borrowed across {row['alpha_borrowed_from']})" if row["alpha_borrowed_from"] else ""
    borrowed += " (noisy)" if row["alpha_noisy"] and not math.isnan(alpha) else ""
    signals = f"alpha {_fmt(alpha, '.2f')}{borrowed}, MFU {_fmt(mfu, '.1%')}, optimiser {_fmt(share, '.0%')}"
    if mfu >= COMPUTE_MFU:
        return Regime.COMPUTE, signals
    if (share >= OPTIMIZER_SHARE and row["optimizer_s"] >= FLOOR_MULTIPLE * row["optimizer_floor_s"]
            and row["optimizer_bytes_per_s"] >= STREAM_FRACTION * row["best_optimizer_bytes_per_s"]):
        return Regime.MEMORY, signals + ", optimiser streams state"
    if math.isnan(alpha):
        near_floor = row["median_s"] < FLOOR_MULTIPLE * row["step_floor_s"]
        return (Regime.OVERHEAD if near_floor else Regime.MEMORY), signals + " (no batch pair: floor test)"
    return (Regime.OVERHEAD if alpha < OVERHEAD_ALPHA else Regime.MEMORY), signals

