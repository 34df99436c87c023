"""Will a case fit? Its analytic memory against what the device has available, before it is built.

On Linux an oversized CPU allocation succeeds (overcommit) and the kernel's OOM killer ends
the process later, mid-case, with no exception to catch; on CUDA a case far over the free
memory wastes its warm-up before failing. So the runner asks first: the analytic total
(``mlp.memory``: parameters, gradients, optimiser state, saved activations, data) of the
model built on the ``meta`` device (no storage is allocated) against ``MemAvailable`` from
/proc/meminfo (CPU) or ``torch.cuda.mem_get_info`` (CUDA). The analytic total is a lower
bound of what a step needs (temporaries and allocator slack come on top), so a case that
passes may still fail: that is an ``oom`` row, or for a death, ``crashed`` after two tries.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .accounting import case_figures
from .cases import Case

GIB = 2**30
MEMINFO = Path("/proc/meminfo")


def needed_bytes(case: Case) -> int:
    """The analytic memory of one training step of ``case`` (``mlp.memory(...).total_bytes``), allocating nothing.

    A module without analytic accounting (``bench.case.accounting``) counts what its parameters and the batch
    need: a lower bound, as the analytic total is.
    """
    return int(case_figures(case).needed_bytes)


def available_bytes(device: str) -> int | None:
    """Memory a new allocation can get on ``device`` now; None where it cannot be told."""
    if device == "cuda":
        return torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel reports kB (KiB)
    except (OSError, ValueError, IndexError):
        return None
    return None


def memory_shortfall(case: Case) -> str:
    """Why the case cannot fit (``needs 43.2 GiB, 21.5 GiB available``), or "" when it may."""
    available = available_bytes(case.device)
    if available is None:
        return ""
    try:
        needed = needed_bytes(case)
    except Exception:  # noqa: BLE001 - a model that cannot be counted fails when measured: its own error row
        return ""
    if needed <= available:
        return ""
    where = "CUDA free memory" if case.device == "cuda" else "CPU MemAvailable"
    return f"needs {needed / GIB:.1f} GiB, {available / GIB:.1f} GiB available ({where}); not built"
