"""The peak FLOP/s a device is reported against: a GPU's datasheet line, or the theoretical peak of a CPU.

A GPU's peak is read from ``DATASHEET_TFLOPS``. A CPU's is an estimate, with its inputs:

peak FLOP/s = cores x FMA units per core x SIMD lanes x 2 (an FMA is two FLOPs) x clock.

It is meant as a bound (the matmul ceiling can never beat it), so each input errs high, never low:

* **clock:** the measured one (``bench.limits.core_clock``: a chain of dependent adds, the best of many
  samples), or cpufreq's ``cpuinfo_max_freq``, the higher of the two. The nominal clock of a model
  name ("@ 2.00GHz": base, below turbo) and 'cpu MHz' (a VM shows the host's nominal rate: 2.6 GHz on
  a Zen 5 EPYC that runs at 3.9) are not bounds: with neither of the others there is no estimate.
* **lanes:** the vector width the cores execute, not the ISA's: Zen 4 (AMD family 19h with AVX-512)
  runs a 512-bit FMA as two halves on 256-bit pipes, so 8 fp32 lanes; Zen 5 (family 1Ah; the EPYC
  and desktop parts) has full 512-bit pipes, 16 lanes (a mobile Zen 5 has 256-bit ones: the estimate
  is then 2x high, still a bound).
* **FMA units:** two per core (Zen 2-5; Xeon Scalable Gold/Platinum and later). A Xeon with one
  512-bit unit is 2x over: still a bound.
* **bf16:** ``avx512_bf16`` (VDPBF16PS: a pair of bf16 products per fp32 lane per FMA pipe) is 2x the
  fp32 lanes; ``amx_bf16`` (a Sapphire Rapids tile unit: 1024 bf16 FLOPs per cycle per core, TDPBF16PS
  16x16x32 every 16 cycles) is its own unit.

No torch: the report reads the result from meta.json.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .core_clock import core_clock
from ..instruments.env import CPUINFO, cpuinfo_field, read_system_file

FP32_LANES = {"avx512f": 16, "avx2": 8, "avx": 8, "sse2": 4, "asimd": 4}  # 32-bit lanes per vector, widest first
HALF_WIDTH_AVX512 = {"AuthenticAMD": (0x19,)}  # vendor -> CPU families whose AVX-512 runs on 256-bit pipes (Zen 4)
ASSUMED_FMA_UNITS = 2  # per core: Zen 2-5 (two FMA pipes), Xeon Scalable Gold/Platinum (two 512-bit)
BF16_FLAGS = ("avx512_bf16",)  # a bf16 dot-product instruction: twice fp32's FLOPs per lane pair
AMX_FLAG, AMX_BF16_MACS_PER_CYCLE = "amx_bf16", 512  # per core: 1024 FLOPs per cycle (Intel's AMX figures)
MAX_FREQ = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")  # kHz, where cpufreq exists

# Dense (no sparsity) datasheet peaks in TFLOP/s, by a substring of torch.cuda.get_device_name(); the GPU
# kit's dry-run plan predicts with the same lines (tools.gpuref.plan).
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
             cpus: int | None = None, measured_ghz: float | None = None) -> CpuPeak | None:
    """The estimate for ``dtype``, or None (``cpu_peak_or_reason`` says why)."""
    peak = cpu_peak_or_reason(dtype, cpuinfo, max_freq_khz, cpus, measured_ghz)
    return peak if isinstance(peak, CpuPeak) else None


def cpu_peak_or_reason(dtype: str = "fp32", cpuinfo: str | None = None, max_freq_khz: float | None = None,
                       cpus: int | None = None, measured_ghz: float | None = None) -> CpuPeak | str:
    """The estimate for ``dtype`` (fp32 / tf32: the same on a CPU; bf16 only with a native bf16 path), or a
    one-line reason why there is none. ``cpuinfo`` etc. describe another CPU (tests): its clock is then
    ``measured_ghz`` (None: not measured); on this machine the clock is measured (``bench.limits.core_clock``)."""
    this_machine = cpuinfo is None
    text = read_system_file(CPUINFO) if this_machine else cpuinfo
    flags = set(cpuinfo_field(text, ("flags", "Features")).split())
    isa = next((f for f in FP32_LANES if f in flags), None)
    if isa is None:
        return f"no estimate: no known vector ISA among the CPU's flags ({', '.join(FP32_LANES)})"
    if this_machine and measured_ghz is None:
        clock = core_clock()
        measured_ghz, measured_source = clock.ghz, clock.source
    else:
        measured_source = "measured"
    clock_ghz, source = _clock_ghz(measured_ghz, measured_source, max_freq_khz, this_machine)
    if clock_ghz is None:
        return f"no estimate: {source}"
    lanes, fma_units = _datapath_lanes(text, isa), ASSUMED_FMA_UNITS if ("fma" in flags or "avx512f" in flags
                                                                        or isa == "asimd") else 1
    if dtype == "bf16":
        if AMX_FLAG in flags:
            lanes, fma_units, isa = AMX_BF16_MACS_PER_CYCLE, 1, AMX_FLAG
        elif native := [f for f in BF16_FLAGS if f in flags]:
            lanes, isa = 2 * lanes, native[0]
        else:
            return "no estimate: no native bf16 instruction (avx512_bf16, amx_bf16) among the CPU's flags"
    elif dtype not in ("fp32", "tf32"):
        return f"no estimate for {dtype} on a CPU"
    cores = _physical_cores(text, cpus if cpus is not None else len(os.sched_getaffinity(0)))
    tflops = cores * fma_units * lanes * 2 * clock_ghz * 1e9 / 1e12
    return CpuPeak(dtype, cores, fma_units, lanes, clock_ghz, tflops, isa, source)


def _datapath_lanes(text: str, isa: str) -> int:
    """fp32 lanes the FMA pipes execute per cycle: the ISA's, halved for AVX-512 split over 256-bit pipes (Zen 4)."""
    lanes = FP32_LANES[isa]
    family = cpuinfo_field(text, ("cpu family",))
    if isa == "avx512f" and family.isdigit() and int(family) in HALF_WIDTH_AVX512.get(
            cpuinfo_field(text, ("vendor_id",)), ()):
        return lanes // 2
    return lanes


def _clock_ghz(measured_ghz: float | None, measured_source: str, max_freq_khz: float | None,
               this_machine: bool) -> tuple[float | None, str]:
    """The higher of the measured clock and cpufreq's maximum; (None, why) without either."""
    if max_freq_khz is None and this_machine and MAX_FREQ.is_file():
        max_freq_khz = float(read_system_file(MAX_FREQ) or "nan")
    candidates = []
    if measured_ghz and measured_ghz == measured_ghz:
        candidates.append((measured_ghz, "measured by a chain of dependent adds"))
    if max_freq_khz and max_freq_khz == max_freq_khz:
        candidates.append((max_freq_khz / 1e6, "cpufreq cpuinfo_max_freq"))
    if not candidates:
        why = measured_source if measured_source != "measured" else "the clock was not measured"
        return None, f"{why}, and there is no cpufreq maximum ('cpu MHz' and a model name's nominal clock are no bound)"
    return max(candidates)


def _physical_cores(text: str, cpus: int) -> int:
    """Logical CPUs we may run on, divided by the SMT threads per core (siblings / cpu cores)."""
    siblings, cores = cpuinfo_field(text, ("siblings",)), cpuinfo_field(text, ("cpu cores",))
    smt = int(siblings) // int(cores) if siblings.isdigit() and cores.isdigit() and int(cores) else 1
    return max(1, cpus // max(smt, 1))
