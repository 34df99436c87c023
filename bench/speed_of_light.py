"""Speed of light per case and phase: the least time the three measured limits allow, and which one binds.

    floor = max(matmul FLOPs / matmul ceiling, bytes moved / memory bandwidth) + ATen ops x dispatch floor

* the matmul ceiling: the same-run rate over the squares and the cases' own GEMMs (``bench.ceiling``);
* the bandwidth: the same-run copy / triad rate on arrays past the last-level cache (``bench.bandwidth``);
* the dispatch floor: seconds per ATen op of a tiny eager step (``bench.dispatch``);
* FLOPs from ``mlp.flops``, bytes from ``mlp.traffic`` (each operand read once, each result written
  once), ATen ops from the gate's counter.

Compute and memory overlap (a max); dispatch does not overlap them in an eager step (a sum).
The dominant term of the three names the regime. ``floor / measured`` is the "% of speed of
light": 100% is at the limit; a value above 100% means a limit was under-measured or the
model charges work the step does not do (a compiled step dispatches far fewer ops than the
eager count it is charged with). No torch: the report reads the same numbers back.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass


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


def floor(matmul_flops: float, nbytes: float, aten_ops: float, matmul_flops_per_s: float,
          bytes_per_s: float, seconds_per_op: float) -> Floor | None:
    """The three terms; None when a limit or a count is missing."""
    values = (matmul_flops, nbytes, aten_ops, matmul_flops_per_s, bytes_per_s, seconds_per_op)
    if any(v is None or not math.isfinite(v) for v in values) or matmul_flops_per_s <= 0 or bytes_per_s <= 0:
        return None
    return Floor(matmul_flops / matmul_flops_per_s, nbytes / bytes_per_s, aten_ops * seconds_per_op)


def columns(f: Floor | None, measured_s: float) -> dict:
    """The summary columns of one row: the terms, the floor, its fraction of the measured time, the bound."""
    if f is None:
        return {"sol_compute_s": math.nan, "sol_memory_s": math.nan, "sol_overhead_s": math.nan, "sol_s": math.nan,
                "sol_fraction": math.nan, "sol_bound": ""}
    return {"sol_compute_s": f.compute_s, "sol_memory_s": f.memory_s, "sol_overhead_s": f.overhead_s,
            "sol_s": f.time_s, "sol_fraction": f.time_s / measured_s if measured_s > 0 else math.nan,
            "sol_bound": f.bound.value}
