"""The closed vocabularies of a run record: a case's status and the kind of run.

``str`` enums, so that a member compares equal to its value (``Status.OK == "ok"``) and the
CSV and JSON files hold the same words as before the enums existed. A new status is one
member here; ``done`` says whether ``--resume`` keeps it or measures the case again.
"""

from __future__ import annotations

import enum


class _Word(str, enum.Enum):
    def __str__(self) -> str:  # the value, as CSV and f-strings expect (Python 3.11's default is 'Status.OK')
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Status(_Word):
    """What became of one case. Failure is data: every case gets a row with a status and a reason."""

    OK = "ok"  # measured
    SKIPPED = "skipped"  # not measured on purpose (no CUDA, over the time or memory budget, a slow dtype)
    OOM = "oom"  # an allocation failed (CUDA or CPU); memory was released and the sweep went on
    ERROR = "error"  # any other exception while measuring it (compile error, no gradient, ...)
    CRASHED = "crashed"  # the process died while measuring it, twice (the OOM killer, a segfault)

    @property
    def done(self) -> bool:
        """Kept by ``--resume``; a skipped case is measured again (the machine or the budget may differ)."""
        return self is not Status.SKIPPED

    @property
    def failed(self) -> bool:
        return self not in (Status.OK, Status.SKIPPED)


DONE_STATUSES = tuple(s.value for s in Status if s.done)


class RunKind(_Word):
    """What wrote the folder; runs written before the field existed are sweeps."""

    SWEEP = "sweep"  # mlpbench run: one row per case x phase
    DDP = "ddp"  # mlpbench ddp: one row per case x phase x rank (and rank 'all')
    PROFILE = "profile"  # mlpbench profile: one case, trace.json and profile.md, no tables
    LOADER = "loader"  # mlpbench loader: one row per case (the classic loop end to end vs the step alone)
