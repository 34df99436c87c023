"""Environment fingerprint recorded with every run; comparisons across fingerprints say so."""

from __future__ import annotations

import datetime as dt
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

BUSY_LOAD_PER_CORE = 0.75  # a benchmark run itself adds ~1 per core it uses; above this, someone else is running
# Fields that make two runs' numbers incomparable when they differ ...
COMPARABILITY_KEYS = ("torch", "cuda", "device_name", "cpu_model", "torch_threads", "hostname")
FLAG_KEYS = ("tf32_matmul_default", "float32_matmul_precision_default", "cpu_capability")  # ... and precision flags


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit(repo: Path | None = None) -> str:
    repo = repo or Path(__file__).resolve().parent.parent
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
