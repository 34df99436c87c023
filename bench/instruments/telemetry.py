"""GPU telemetry per case through NVML (nvidia-ml-py, imported lazily as ``pynvml``): clock, power, heat, energy.

While a CUDA case runs, a background thread reads the SM clock, the power draw, the temperature and
the total-energy counter every ``SAMPLE_INTERVAL_S``. After the case they are summarised over the
engine's steady window (warm-up and timed rounds; the first step, which holds any compilation, is
outside it):

* ``gpu_sm_clock_mhz_median`` / ``_min`` against the card's ``gpu_sm_clock_max_mhz``;
* ``gpu_power_capped_fraction`` / ``gpu_slowdown_fraction``: the share of the window's samples in which the
  driver's clock-event reasons name the software power cap, or a thermal or hardware slowdown;
* ``gpu_throttled`` when the median SM clock over the window is below ``THROTTLE_FRACTION`` of the
  maximum (the median, because one sample taken while the host syncs is not a throttled case), or a
  slowdown held in at least half the samples. A power cap alone does not set it: a card at its power
  limit runs at its sustained rate (the first H100's large MLP: 700 W, median SM clock 1545 of 1980 MHz);
  ``gpu_power_capped_fraction`` reports it;
* ``gpu_power_w_mean`` and ``gpu_temperature_c_max`` from the samples;
* ``gpu_energy_per_step_j``: the total-energy counter's increase over the window divided by the
  window's length (its mean power) times the step median. The counter updates only every
  20-100 ms, so it is read over the whole window, never per step; where the card has no counter,
  the mean sampled power stands in and ``gpu_energy_source`` says so.

Where NVML is missing or fails, the columns stay empty and ``gpu_telemetry_reason`` says why.
CPU cases get no telemetry columns' values and the reason ``cpu case``. The sampler reads NVML
from its own thread; ctypes releases the GIL for each call, so the launching thread is barely touched.
"""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import first_line

SAMPLE_INTERVAL_S = 0.02  # NVML's power reading and energy counter update every 20-100 ms
THROTTLE_FRACTION = 0.75  # an SM clock below 75% of the maximum is throttling (power, heat or idle)
# NVML's clock-event reason bits (nvmlClocksEventReason*, formerly nvmlClocksThrottleReason*)
POWER_CAP = 0x4  # SwPowerCap: clocks held down to stay within the power limit
SLOWDOWN = 0x8 | 0x20 | 0x40 | 0x80  # HwSlowdown, SwThermalSlowdown, HwThermalSlowdown, HwPowerBrakeSlowdown
COLUMNS = ("gpu_sm_clock_mhz_median", "gpu_sm_clock_mhz_min", "gpu_sm_clock_max_mhz", "gpu_throttled",
           "gpu_power_capped_fraction", "gpu_slowdown_fraction",
           "gpu_power_w_mean", "gpu_temperature_c_max", "gpu_energy_per_step_j", "gpu_energy_source",
           "gpu_telemetry_samples", "gpu_telemetry_reason")
ENERGY_COUNTER = "total energy counter"
POWER_SAMPLES = "mean sampled power (no energy counter)"


@dataclass(frozen=True)
class Sample:
    t_s: float  # the sampler's clock (time.perf_counter by default, the engine's clock)
    sm_clock_mhz: float | None
    power_w: float | None
    temperature_c: float | None
    energy_j: float | None  # the card's total-energy counter (since the driver loaded)
    clock_reasons: int | None = None  # NVML's clock-event reason bits (POWER_CAP, SLOWDOWN, ...)


def empty_columns(reason: str) -> dict:
    return {**{c: math.nan for c in COLUMNS}, "gpu_throttled": None, "gpu_energy_source": "",
            "gpu_telemetry_samples": 0, "gpu_telemetry_reason": reason}


class Gpu:
    """One NVML device handle and its readers; ``nvml`` is the ``pynvml`` module or a test's fake."""

    def __init__(self, nvml, handle):
        self.nvml, self.handle = nvml, handle
        self.max_sm_clock_mhz = float(nvml.nvmlDeviceGetMaxClockInfo(handle, nvml.NVML_CLOCK_SM))

    def _read(self, fn: Callable[[], float]) -> float | None:
        try:
            return float(fn())
        except self.nvml.NVMLError:  # NotSupported on some cards / under some hypervisors
            return None

    def sample(self, clock: Callable[[], float]) -> Sample:
        n, h = self.nvml, self.handle
        return Sample(
            t_s=clock(),
            sm_clock_mhz=self._read(lambda: n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)),
            power_w=_scaled(self._read(lambda: n.nvmlDeviceGetPowerUsage(h)), 1e-3),  # milliwatts
            temperature_c=self._read(lambda: n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
            energy_j=_scaled(self._read(lambda: n.nvmlDeviceGetTotalEnergyConsumption(h)), 1e-3),  # millijoules
            clock_reasons=self._clock_reasons(),
        )

    def _clock_reasons(self) -> int | None:
        n = self.nvml  # nvidia-ml-py renamed the getter; older ones have only the throttle name
        getter = getattr(n, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
            getattr(n, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        if getter is None:
            return None
        try:
            return int(getter(self.handle))
        except n.NVMLError:
            return None


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


_GPU: Gpu | str | None = None  # the process's device, or the reason there is none (opened once)


def nvml_device_index() -> int:
    """NVML index of torch's cuda:0: the first entry of CUDA_VISIBLE_DEVICES when it is a number, else 0."""
    first = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(first) if first.isdigit() else 0


def open_gpu(nvml=None) -> Gpu | str:
    """The GPU to watch, or a one-line reason why there is none (nvidia-ml-py missing, NVML failing)."""
    global _GPU
    if nvml is None and _GPU is not None:
        return _GPU
    try:
        if nvml is None:
            import pynvml as nvml  # nvidia-ml-py; optional
        nvml.nvmlInit()
        gpu: Gpu | str = Gpu(nvml, nvml.nvmlDeviceGetHandleByIndex(nvml_device_index()))
    except ImportError as exc:
        gpu = f"nvidia-ml-py is not installed (import pynvml: {exc})"
    except Exception as exc:  # noqa: BLE001 - NVMLError and friends: telemetry is optional, the case is not
        gpu = f"NVML failed: {type(exc).__name__}: {first_line(exc)}"
    if nvml is None or _GPU is None:
        _GPU = gpu
    return gpu


class Sampler:
    """Reads ``gpu.sample`` every ``interval_s`` on a daemon thread between ``start`` and ``stop``."""

    def __init__(self, gpu: Gpu, interval_s: float = SAMPLE_INTERVAL_S, clock: Callable[[], float] = time.perf_counter):
        self.gpu, self.interval_s, self.clock = gpu, interval_s, clock
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gpu-telemetry", daemon=True)

    def _loop(self) -> None:
        while True:
            self.samples.append(self.gpu.sample(self.clock))
            if self._stop.wait(self.interval_s):
                break

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> list[Sample]:
        self._stop.set()
        self._thread.join()
        self.samples.append(self.gpu.sample(self.clock))  # one reading at the very end
        return self.samples


def summarize(samples: list[Sample], window: tuple[float, float] | None, step_s: float,
              max_sm_clock_mhz: float) -> dict:
    """The telemetry columns of one case from its samples, over ``window`` (start, end) on the sampler's clock."""
    if window is None or not (window[1] > window[0]):
        return empty_columns("the case was not measured (no steady window)")
    t0, t1 = window
    inside = [s for s in samples if t0 <= s.t_s <= t1]
    clocks = [s.sm_clock_mhz for s in inside if s.sm_clock_mhz is not None]
    powers = [s.power_w for s in inside if s.power_w is not None]
    temps = [s.temperature_c for s in inside if s.temperature_c is not None]
    out = empty_columns("")
    out["gpu_telemetry_samples"] = len(inside)
    out["gpu_sm_clock_max_mhz"] = max_sm_clock_mhz
    if clocks:
        median = statistics.median(clocks)
        out["gpu_sm_clock_mhz_median"], out["gpu_sm_clock_mhz_min"] = median, min(clocks)
        out["gpu_throttled"] = bool(median < THROTTLE_FRACTION * max_sm_clock_mhz)
    reasons = [s.clock_reasons for s in inside if s.clock_reasons is not None]
    if reasons:
        out["gpu_power_capped_fraction"] = sum(bool(r & POWER_CAP) for r in reasons) / len(reasons)
        out["gpu_slowdown_fraction"] = sum(bool(r & SLOWDOWN) for r in reasons) / len(reasons)
        out["gpu_throttled"] = bool(out["gpu_throttled"]) or out["gpu_slowdown_fraction"] >= 0.5
    if powers:
        out["gpu_power_w_mean"] = statistics.fmean(powers)
    if temps:
        out["gpu_temperature_c_max"] = max(temps)
    mean_power_w, source = _window_power(samples, t0, t1), ENERGY_COUNTER
    if mean_power_w is None and powers:
        mean_power_w, source = statistics.fmean(powers), POWER_SAMPLES
    if mean_power_w is not None and step_s > 0:
        out["gpu_energy_per_step_j"], out["gpu_energy_source"] = mean_power_w * step_s, source
    if not inside:
        out["gpu_telemetry_reason"] = "no sample fell inside the case's steady window"
    return out


def _window_power(samples: list[Sample], t0: float, t1: float) -> float | None:
    """Mean power over [t0, t1] from the energy counter: readings bracketing the window, increase over time.

    The counter moves in steps every 20-100 ms, so the readings just before t0 and just after t1
    are used and the increase is divided by the time between them: the window is covered whole.
    """
    readings = [(s.t_s, s.energy_j) for s in samples if s.energy_j is not None]
    before = [r for r in readings if r[0] <= t0]
    after = [r for r in readings if r[0] >= t1]
    if not before or not after:
        return None
    (ta, ea), (tb, eb) = before[-1], after[0]
    if tb <= ta or eb < ea:
        return None
    return (eb - ea) / (tb - ta)


class CaseWatch:
    """Context of one case: samples a CUDA case's GPU; ``columns(...)`` gives its telemetry columns."""

    def __init__(self, device: str, gpu_opener: Callable[[], Gpu | str] = open_gpu):
        self.sampler: Sampler | None = None
        self.reason = ""
        if device != "cuda":
            self.reason = "cpu case"
            return
        gpu = gpu_opener()
        if isinstance(gpu, str):
            self.reason = gpu
        else:
            self.sampler = Sampler(gpu)

    def __enter__(self) -> "CaseWatch":
        if self.sampler is not None:
            self.sampler.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.sampler is not None:
            self.sampler.stop()

    def median_sm_clock_mhz(self) -> float | None:
        """The median SM clock over everything sampled (a ceiling pass: no steady window); None without NVML."""
        clocks = [s.sm_clock_mhz for s in (self.sampler.samples if self.sampler else ()) if s.sm_clock_mhz is not None]
        return statistics.median(clocks) if clocks else None

    def columns(self, window: tuple[float, float] | None, step_s: float) -> dict:
        if self.sampler is None:
            return empty_columns(self.reason)
        return summarize(self.sampler.samples, window, step_s, self.sampler.gpu.max_sm_clock_mhz)
