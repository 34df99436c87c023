"""What ``mlpbench profile`` measures and returns: the schedule and the result types (no torch)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import UsageError

if TYPE_CHECKING:
    import mlp
    from bench.case.cases import Case

    from .timeline import Timeline


TRACE_FILE, REPORT_FILE, META_FILE, SNAPSHOT_FILE = "trace.json", "profile.md", "meta.json", "memory_snapshot.pickle"

WAIT_STEPS = 2  # untraced: the first step pays allocation, oneDNN/cuBLAS heuristics and compilation
WARMUP_STEPS = 1  # traced but discarded: the profiler's own start-up cost lands here
ACTIVE_STEPS = 3  # recorded; tables report the mean per step over these
TOP_N = 10  # operators listed per phase


@dataclass(frozen=True)
class ProfileConfig:
    wait_steps: int = WAIT_STEPS
    warmup_steps: int = WARMUP_STEPS
    active_steps: int = ACTIVE_STEPS
    top_n: int = TOP_N
    by_shape: bool = False
    memory_snapshot: bool = False

    def __post_init__(self) -> None:
        if self.wait_steps < 0 or self.warmup_steps < 0:
            raise UsageError("--wait-steps and --warmup-steps must be >= 0")
        if self.active_steps < 1:
            raise UsageError(f"--active-steps must be >= 1, got {self.active_steps}")
        if self.top_n < 1:
            raise UsageError(f"--top must be >= 1, got {self.top_n}")

    @property
    def total_steps(self) -> int:
        return self.wait_steps + self.warmup_steps + self.active_steps


@dataclass(frozen=True)
class OpStat:
    """One operator (or operator x input shapes) within one phase, per step."""

    name: str
    shapes: str
    calls: float
    self_cpu_us: float
    device_us: float  # kernels it launched (CUDA); 0 on CPU


@dataclass(frozen=True)
class PhaseTime:
    """Where one phase's time goes, per step (profiled), and its wall time without the profiler."""

    phase: str
    wall_us: float  # host time inside the phase's record_function range
    operator_self_cpu_us: float  # sum of operator self CPU time attributed to the phase (every thread)
    device_us: float  # kernel time launched from the phase (CUDA)
    unprofiled_wall_us: float

    @property
    def host_gap_us(self) -> float:
        """Host time in no operator: Python, module calls, autograd bookkeeping, the profiler itself."""
        return self.wall_us - self.operator_self_cpu_us


@dataclass(frozen=True)
class PhaseMemory:
    """Allocator traffic of one phase as the profiler's memory profiling saw it (bytes)."""

    phase: str
    allocated_bytes: int  # per step
    freed_bytes: int  # per step
    peak_above_start_bytes: int  # highest level reached during the phase, relative to its start (max over steps)
    cuda_peak_allocated_bytes: int | None  # torch.cuda.max_memory_allocated, reset per phase (absolute)


@dataclass(frozen=True)
class ModuleFlops:
    module: str  # FlopCounterMode's name, e.g. "MLP.1"
    kind: str  # e.g. "Linear(784->512)"
    forward: int
    backward: int


@dataclass(frozen=True)
class MeasuredMemory:
    """Bytes read off live tensors of one eager training step (independent of ``mlp.memory``)."""

    parameters_bytes: int
    gradients_bytes: int
    optimizer_state_bytes: int
    saved_activations_bytes: int  # unique storages packed by autograd, minus parameters and the batch
    data_bytes: int


@dataclass
class ProfileResult:
    case: Case
    config: ProfileConfig
    torch_version: str
    operators: dict[str, list[OpStat]]  # phase -> every operator, most expensive first
    times: list[PhaseTime]
    memory_phases: list[PhaseMemory]
    module_flops: list[ModuleFlops]
    flops_total: tuple[int, int]  # FlopCounterMode (forward, backward) of the whole model
    flops_analytic: mlp.Flops
    memory_analytic: mlp.Memory
    memory_measured: MeasuredMemory
    files: list[str]
    timeline: Timeline | None = None  # the device's busy/idle time and conversions, from trace.json (CUDA)
