"""Speed of light per case and phase: the least time the three measured limits allow, and which one binds.

    floor = max(matmul FLOPs / matmul ceiling, bytes moved / memory bandwidth) + ATen ops x dispatch floor

* the matmul ceiling: the same-run rate over the squares and the cases' own GEMMs (``bench.limits.ceiling``);
* the bandwidth: the same-run copy / triad rate on arrays past the last-level cache (``bench.limits.bandwidth``),
  or, for a phase whose tensors may all fit in that cache, the rate of a copy that stays in it
  (``memory_bytes_per_s``): a FashionMNIST step's 15 MB of traffic from 2.7 MB of weights never reaches
  DRAM, and charged at the DRAM's rate its SGD phase read 2x above its measured time;
* the dispatch floor: seconds per ATen op of a tiny eager step (``bench.limits.dispatch``);
* FLOPs from ``mlp.flops``, bytes from ``mlp.traffic`` (each operand read once, each result written
  once), ATen ops from the gate's counter.

Compute and memory overlap (a max); dispatch does not overlap them in an eager step (a sum).
The dominant term of the three names the regime. ``floor / measured`` is the "% of speed of
light": 100% is at the limit; above 100% a limit was under-measured or the model charged work
the step does not do. So a compiled (or graph-captured) step is charged no dispatch
(``charged_ops``): it dispatches far fewer ops than its eager count, and how many is not
counted. No torch: the report reads the same numbers back.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from ..format import missing
from ..model.case_fields import GRAPHS_OFF

# The most times mlp.traffic charges one tensor within a phase: a linear's grad_out is written, then read by the
# weight gradient, the input gradient and the bias's sum. So a phase's tensors take at least bytes / 4.
TOUCHES_PER_BYTE = 4


class Bound(str, enum.Enum):
    COMPUTE = "compute"
    MEMORY = "memory"
    OVERHEAD = "overhead"


@dataclass(frozen=True)
class Floor:
    compute_s: float
    memory_s: float
    overhead_s: float

    @property
    def time_s(self) -> float:
        return max(self.compute_s, self.memory_s) + self.overhead_s

    @property
    def bound(self) -> Bound:
        terms = {Bound.COMPUTE: self.compute_s, Bound.MEMORY: self.memory_s, Bound.OVERHEAD: self.overhead_s}
        return max(terms, key=terms.get)


def memory_bytes_per_s(bandwidth: dict, nbytes: float) -> float:
    """The rate a phase's bytes are charged at (``bandwidth``: a ``bench.limits.bandwidth.Bandwidth`` as a dict): the
    cache-resident copy's where the phase's tensors (at least ``nbytes / TOUCHES_PER_BYTE``) may all fit in the
    last-level caches, else the DRAM stream's. Either is the faster the bytes can have: the floor stays a bound."""
    dram = bandwidth.get("bytes_per_s", math.nan)
    cache = bandwidth.get("cache_bytes_per_s", math.nan)
    llc = bandwidth.get("cache_bytes") or 0
    if cache is not None and math.isfinite(cache) and nbytes is not None and nbytes / TOUCHES_PER_BYTE <= llc:
        return max(cache, dram) if math.isfinite(dram) else cache
    return dram


def _graph_on(value, eager: str) -> bool:
    """A graph knob's value away from its default (``GRAPHS_OFF``); missing (None, NaN, "": a run recorded before
    the knob) is off."""
    return not (missing(value) or value == "") and str(value) != eager


def charged_ops(row: dict) -> float:
    """The ATen ops the dispatch term charges a row: its eager count, or 0 where a compiled graph or a captured
    CUDA graph replaces the eager dispatch (the count would over-read the floor; a graph's own calls are not
    counted, so its overhead is left out rather than guessed)."""
    if any(_graph_on(row.get(name), eager) for name, eager in GRAPHS_OFF.items()):
        return 0.0
    return row.get("aten_ops", math.nan)


def floor(matmul_flops: float, nbytes: float, aten_ops: float, matmul_flops_per_s: float,
          bytes_per_s: float, seconds_per_op: float) -> Floor | None:
    """The three terms; None when a limit or a count is missing."""
    return floor_of({Bound.COMPUTE: divided(matmul_flops, matmul_flops_per_s),
                     Bound.MEMORY: divided(nbytes, bytes_per_s),
                     Bound.OVERHEAD: math.nan if aten_ops is None or seconds_per_op is None
                     else aten_ops * seconds_per_op})


def divided(amount: float, rate: float) -> float:
    """``amount / rate`` seconds; nan where either is missing or the rate is not positive (no bound known)."""
    if amount is None or rate is None or not math.isfinite(amount) or not math.isfinite(rate) or rate <= 0:
        return math.nan
    return amount / rate


def floor_of(terms: dict) -> Floor | None:
    """The floor from its terms' seconds (``{Bound: s}``: each limit's ``sol_seconds``, summed per term); None
    when a term is missing or not finite."""
    values = [terms.get(b) for b in Bound]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return Floor(*values)


def columns(f: Floor | None, measured_s: float) -> dict:
    """The summary columns of one row: the terms, the floor, its fraction of the measured time, the bound."""
    if f is None:
        return {"sol_compute_s": math.nan, "sol_memory_s": math.nan, "sol_overhead_s": math.nan, "sol_s": math.nan,
                "sol_fraction": math.nan, "sol_bound": ""}
    return {"sol_compute_s": f.compute_s, "sol_memory_s": f.memory_s, "sol_overhead_s": f.overhead_s,
            "sol_s": f.time_s, "sol_fraction": f.time_s / measured_s if measured_s > 0 else math.nan,
            "sol_bound": f.bound.value}
