"""Environment fingerprint recorded with every run; comparisons across fingerprints say so."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..runs.meta import COMPARABILITY_KEYS, FLAG_KEYS  # what the run record compares; re-exported here

BUSY_LOAD_PER_CORE = 0.75  # a benchmark run itself adds ~1 per core it uses; above this, someone else is running
# Fields that make two runs' numbers incomparable when they differ ...


CPUINFO = Path("/proc/cpuinfo")


def read_system_file(path: Path) -> str:
    """A /proc or /sys file's text; "" where it cannot be read (not Linux, no cpufreq)."""
    try:
        return path.read_text()
    except OSError:
        return ""


def cpuinfo_field(text: str, names: tuple[str, ...]) -> str:
    """The value of the first /proc/cpuinfo line whose key is one of ``names``; "" when there is none."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in names:
            return value.strip()
    return ""


def cpu_model() -> str:
    return cpuinfo_field(read_system_file(CPUINFO), ("model name",)) or platform.processor() or platform.machine()


# CPU flags (/proc/cpuinfo) of instructions that multiply the dtype natively.
NATIVE_CPU_FLAGS = {"bf16": ("avx512_bf16", "amx_bf16", "bf16"),  # x86 AVX-512/AMX; "bf16" is aarch64's
                    "fp16": ("avx512_fp16", "amx_fp16", "fphp")}
FULL_RATE_DTYPES = ("fp32", "tf32")  # every device multiplies these at its full (non-reduced) rate
CUDA_BF16_MIN_MAJOR = 8  # bf16 tensor cores since Ampere (sm_80)


@dataclass(frozen=True)
class FastPath:
    """Whether the device multiplies a dtype at a useful rate, and the evidence the answer rests on."""

    native: bool
    reason: str


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, aarch64 ``Features``) from /proc/cpuinfo; empty elsewhere."""
    return frozenset(cpuinfo_field(read_system_file(CPUINFO), ("flags", "Features")).split())


def mkldnn_supports(dtype: str) -> bool:
    """oneDNN's own check that it has a (native or AVX-512-converted) kernel for ``dtype`` on this CPU."""
    import torch  # lazily, as in fingerprint(): readers of this module need no torch

    check = {"bf16": "_is_mkldnn_bf16_supported", "fp16": "_is_mkldnn_fp16_supported"}.get(dtype)
    try:
        return bool(getattr(torch.ops.mkldnn, check)()) if check else True
    except (AttributeError, RuntimeError):
        return False


def cpu_fast_path(dtype: str, capability: str, mkldnn_ok: bool, flags: frozenset[str]) -> FastPath:
    """The decision for a CPU, from PyTorch's view of it (capability, oneDNN) and the CPU flags.

    Without oneDNN support and without native instructions, torch multiplies bf16/fp16 in a
    reference kernel: ~1 GFLOP/s against ~56 for fp32 on an AVX2 AMD EPYC core.
    """
    if dtype in FULL_RATE_DTYPES:
        return FastPath(True, f"{dtype} runs at the CPU's full rate")
    native = sorted(set(NATIVE_CPU_FLAGS.get(dtype, ())) & flags)
    if native or mkldnn_ok:
        evidence = f"CPU flags {', '.join(native)}" if native else f"oneDNN {dtype} kernels (capability {capability})"
        return FastPath(True, f"{dtype} has a fast path: {evidence}")
    return FastPath(False, f"this CPU has no fast {dtype} path (torch CPU capability {capability}, oneDNN {dtype} "
                           f"unsupported, none of the flags {'/'.join(NATIVE_CPU_FLAGS.get(dtype, ()))})")


def dtype_fast_path(device: str, dtype: str) -> FastPath:
    """``cpu_fast_path`` with this machine's inputs; on CUDA, bf16 needs compute capability 8.0."""
    import torch

    if device == "cuda":
        if dtype != "bf16" or not torch.cuda.is_available():
            return FastPath(True, f"{dtype} on CUDA")
        major, minor = torch.cuda.get_device_capability()
        return FastPath(major >= CUDA_BF16_MIN_MAJOR, f"bf16 on compute capability {major}.{minor} "
                                                      f"(tensor cores from {CUDA_BF16_MIN_MAJOR}.0)")
    return cpu_fast_path(dtype, torch.backends.cpu.get_cpu_capability(), mkldnn_supports(dtype), cpu_flags())


def git_commit(repo: Path | None = None) -> str:
    repo = repo or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def load_average() -> float | None:
    """1-minute load average (runnable processes); above the core count, timings are contended."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def busy_warning() -> str | None:
    """A one-line warning when other work competes for the cores (numbers then read slow and noisy)."""
    load, cores = load_average(), os.cpu_count() or 1
    if load is not None and load > cores * BUSY_LOAD_PER_CORE:
        return (f"the machine is busy (load average {load:.1f} on {cores} cores): timings will be slow and "
                f"noisy; OpenMP threads suffer most (try --threads 1, or a quiet machine)")
    return None


def fingerprint(argv: list[str] | None = None) -> dict:
    import torch  # here, not at the top: the reporting side reads this module's keys without torch

    cuda = torch.cuda.is_available()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "hostname": socket.gethostname(),
        "command": " ".join(argv if argv is not None else sys.argv),
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device_name": torch.cuda.get_device_name() if cuda else None,
        "cuda_capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else None,
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(),
        "tf32_matmul_default": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn_default": torch.backends.cudnn.allow_tf32,
        "float32_matmul_precision_default": torch.get_float32_matmul_precision(),
        "platform": platform.platform(),
        "load_average_1m": load_average(),
    }
