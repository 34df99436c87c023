"""The GPU kit's plan: its stages in order, each with its time limit, and their predicted times on an H100/H200.

The whole kit must end inside one device command (10 minutes at most, and 15 minutes of device
time for a session, a machine start included), so the limits add up to at most ``TOTAL_LIMIT_S``
with the orchestration's own seconds; a test checks it. The prediction of the ``gpu`` preset is
the run budget's a-priori model (``bench.engine.budget``) with the datasheet rates below: FLOPs over
``ACHIEVED_FRACTION`` of the rate, bytes over the same fraction of the bandwidth, plus per-op overhead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bench.limits.peak import DATASHEET_TFLOPS

TOTAL_LIMIT_S = 540.0  # 9 minutes: one device command is capped at 10, and the transfer and start need the rest
ORCHESTRATION_S = 15.0  # the kit's own work between stages: status files, archives, Python start-up
IMPORT_S = 6.0  # a stage's process: Python, torch and CUDA start-up on the GPU machine
RUN_MARGIN_S = 25.0  # a run stage's limit minus its --max-run-s: start-up, the case in flight, the last write


class StageName(str, enum.Enum):
    PREFLIGHT = "preflight"
    TESTS = "cuda-tests"
    MUTANTS = "cuda-mutants"
    GPU_RUN = "gpu-run"
    FASTEST = "fastest-step"
    CPU_RUN = "cpu-crossover"
    TIMER = "timer-check"
    PROFILE = "profile"
    REPORT = "report"


@dataclass(frozen=True)
class Stage:
    name: StageName
    title: str
    limit_s: float  # on the GPU machine
    rehearsal_limit_s: float  # --device cpu --tiny on a 2-core CPU: headroom for a loaded CI machine
    cuda_only: bool = False  # without CUDA it prints `skipped: no CUDA` and is not run

    def limit(self, tiny: bool) -> float:
        return self.rehearsal_limit_s if tiny else self.limit_s


STAGES: tuple[Stage, ...] = (
    Stage(StageName.PREFLIGHT, "fingerprint; CUDA events, synchronize, peak memory, torch.compile", 35, 60),
    Stage(StageName.TESTS, "pytest -m 'cuda or torchvision' with a junit file", 80, 90),
    Stage(StageName.MUTANTS, "the CUDA mutants (host clock, no synchronize) must fail the CUDA timing tests", 65, 30,
          cuda_only=True),
    Stage(StageName.GPU_RUN, "the gpu preset under --max-run-s (ceilings first, cases by value)", 105, 90),
    Stage(StageName.FASTEST, "mlpbench tune: the large MLP, then the batch-64 nets (knob chains first)", 100, 90),
    Stage(StageName.CPU_RUN, "the crossover grid on this machine's own CPU cores under --max-run-s", 50, 60),
    Stage(StageName.TIMER, "engine step median vs triton.testing.do_bench; device copy GB/s", 30, 30, cuda_only=True),
    Stage(StageName.PROFILE, "mlpbench profile of the large MLP", 25, 60),
    Stage(StageName.REPORT, "merged CPU-vs-GPU reports (this machine's CPU; the 2-core reference); findings", 35, 120),
)


@dataclass(frozen=True)
class GpuSpec:
    """Datasheet figures (dense, SXM) the dry-run plan predicts with."""

    name: str
    tflops: dict[str, float]
    hbm_bytes_per_s: float


GPUS = {  # the TFLOP/s are the datasheet lines MFU reports against (bench.limits.peak); the HBM rates, SXM datasheets
    "h100": GpuSpec("NVIDIA H100 SXM", DATASHEET_TFLOPS["H100"], 3.35e12),
    "h200": GpuSpec("NVIDIA H200 SXM", DATASHEET_TFLOPS["H200"], 4.8e12),
}
PLANNED_S = {  # predicted seconds of the stages whose work is not a list of cases (seen sizes, see docs)
    StageName.PREFLIGHT: IMPORT_S + 17.0,  # + a torch.compile of one tiny function: 13.9 s cold, 7.9 s warm on the
    # first H100 (2026-11-27), where the stage took 20 s (killed at its then 20 s limit) and 23 s
    StageName.TESTS: IMPORT_S + 55.0,  # collection + the CUDA tests, three of them compiled
    StageName.MUTANTS: 3 * (IMPORT_S + 8.0),  # the four CUDA timing tests: once clean, once per CUDA mutant;
    # the first H100 took 42 s (clean 24 s, each mutant ~12 s) and was killed at the then 45 s limit once
    StageName.TIMER: IMPORT_S + 15.0,  # two engine measurements, two do_bench calls, one copy
    StageName.PROFILE: IMPORT_S + 10.0,  # 6 steps of ~25 ms, the trace written
    StageName.REPORT: 2 * (IMPORT_S + 6.0) + IMPORT_S,  # two reports (matplotlib figures), the findings page
}
CEILING_S = 3.0  # bench.limits.ceiling.CEILING_BUDGET_S: one matmul ceiling per dtype


TUNE_MARGIN_S = 12.0  # a tune's share of fastest-step minus its --max-run-s: start-up, the report and figure
# (a tune starts a compiled case only when its compile allowance fits: the case in flight overruns little)
TUNE_SHARES = {"large": 0.55, "batch64": 0.45, "tiny": 0.33}  # of the stage's limit, by run folder; the tiny
# rehearsal's --max-run-s (18 s) leaves no room for a cold CPU compile (25-90 s on 2 shared cores), and its
# limit covers the process's start-up and report at load 16 (49 s measured with a 60 s limit)


def run_max_s(stage: Stage, tiny: bool) -> float:
    """The --max-run-s a run stage gets: its limit less the margin for start-up and the case in flight."""
    return max(stage.limit(tiny) - (RUN_MARGIN_S if not tiny else 10.0), 5.0)


def tune_max_s(stage: Stage, tiny: bool, folder: str) -> float:
    """The --max-run-s of one of fastest-step's tunes (they run one after the other): its share less the margin."""
    return max(stage.limit(tiny) * TUNE_SHARES[folder] - TUNE_MARGIN_S, 5.0)


def total_limit_s(tiny: bool = False) -> float:
    return sum(s.limit(tiny) for s in STAGES) + ORCHESTRATION_S
