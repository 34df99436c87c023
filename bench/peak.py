"""The peak FLOP/s a device is reported against: a GPU's datasheet line, or the theoretical peak of a CPU.

A GPU's peak is read from ``DATASHEET_TFLOPS``. A CPU's is an estimate, with its inputs:

peak FLOP/s = cores x FMA units per core x SIMD lanes x 2 (an FMA is two FLOPs) x clock.

Everything comes from what the CPU reports (/proc/cpuinfo, sysfs); what it cannot report is
assumed and said so: the number of FMA units per core (two on the server cores this project
meets: AMD Zen 2-4, Intel Xeon Scalable Gold/Platinum) and the clock under load (a
hypervisor hides turbo; we take the nominal clock from the model name, else the frequency
the kernel reports). No torch: the report reads the result from meta.json.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .env import CPUINFO, cpuinfo_field, read_system_file

FP32_LANES = {"avx512f": 16, "avx2": 8, "avx": 8, "sse2": 4, "asimd": 4}  # 32-bit lanes per vector, widest first
ASSUMED_FMA_UNITS = 2  # per core: Zen 2-4 (two 256-bit FMA pipes), Xeon Scalable Gold/Platinum (two 512-bit)
BF16_FLAGS = ("avx512_bf16",)  # a bf16 dot-product instruction: twice fp32's FLOPs per lane pair
MAX_FREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")  # kHz, where cpufreq exists

# Dense (no sparsity) datasheet peaks in TFLOP/s, by a substring of torch.cuda.get_device_name(); the GPU
# kit's dry-run plan predicts with the same lines (bench.gpuref.plan).
DATASHEET_TFLOPS = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},  # H200 SXM
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0},
    "H100": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4},  # H100 SXM
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
}


@dataclass(frozen=True)
class CpuPeak:
    """Theoretical dense FLOP/s of this CPU for one dtype; ``estimate`` is always True, with the inputs shown."""

    dtype: str
    cores: int
    fma_units: int
    lanes: int
    clock_ghz: float
    tflops: float
    isa: str  # the flag the lane count comes from
    clock_source: str
    estimate: bool = True

    @property
    def formula(self) -> str:
        return (f"{self.cores} cores x {self.fma_units} FMA units x {self.lanes} {self.dtype} lanes ({self.isa}) x 2 "
                f"x {self.clock_ghz:.3g} GHz ({self.clock_source})")

    def as_dict(self) -> dict:
        return {**asdict(self), "formula": self.formula}


def cpu_peak(dtype: str = "fp32", cpuinfo: str | None = None, max_freq_khz: float | None = None,
             cpus: int | None = None) -> CpuPeak | None:
    """The estimate for ``dtype`` (fp32 / tf32: the same on a CPU; bf16 only with a native bf16 FMA); None when
    the ISA or the clock is unknown. The arguments replace what this machine reports (tests)."""
    text = cpuinfo if cpuinfo is not None else read_system_file(CPUINFO)
    flags = set(cpuinfo_field(text, ("flags", "Features")).split())
    isa = next((f for f in FP32_LANES if f in flags), None)
    clock_ghz, source = _clock_ghz(text, max_freq_khz)
    if isa is None or clock_ghz is None:
        return None
    lanes = FP32_LANES[isa]
    if dtype == "bf16":
        native = [f for f in BF16_FLAGS if f in flags]
        if not native:
            return None
        lanes, isa = 2 * lanes, native[0]
    elif dtype not in ("fp32", "tf32"):
        return None
    cores = _physical_cores(text, cpus if cpus is not None else len(os.sched_getaffinity(0)))
    fma_units = ASSUMED_FMA_UNITS if ("fma" in flags or "avx512f" in flags or isa == "asimd") else 1
    tflops = cores * fma_units * lanes * 2 * clock_ghz * 1e9 / 1e12
    return CpuPeak(dtype, cores, fma_units, lanes, clock_ghz, tflops, isa, source)


def _clock_ghz(text: str, max_freq_khz: float | None) -> tuple[float | None, str]:
    nominal = re.search(r"@\s*([\d.]+)\s*GHz", cpuinfo_field(text, ("model name",)))
    if nominal:
        return float(nominal.group(1)), "nominal, from the model name"
    if max_freq_khz is None and MAX_FREQ.is_file():
        max_freq_khz = float(read_system_file(MAX_FREQ) or "nan")
    if max_freq_khz and max_freq_khz == max_freq_khz:
        return max_freq_khz / 1e6, "cpufreq cpuinfo_max_freq"
    mhz = cpuinfo_field(text, ("cpu MHz",))
    if mhz:
        return float(mhz) / 1e3, "'cpu MHz' in /proc/cpuinfo (turbo unknown)"
    return None, ""


def _physical_cores(text: str, cpus: int) -> int:
    """Logical CPUs we may run on, divided by the SMT threads per core (siblings / cpu cores)."""
    siblings, cores = cpuinfo_field(text, ("siblings",)), cpuinfo_field(text, ("cpu cores",))
    smt = int(siblings) // int(cores) if siblings.isdigit() and cores.isdigit() and int(cores) else 1
    return max(1, cpus // max(smt, 1))
