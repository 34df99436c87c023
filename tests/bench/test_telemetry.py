"""GPU telemetry per case (bench.instruments.telemetry) on the CPU, with a fake NVML whose readings the test scripts.

The references are hand computations from the scripted readings (energy over time, the 75% rule),
and a real background thread sampling a fake device.
"""

from __future__ import annotations

import math
import time

import pytest

from bench.instruments import telemetry
from bench.instruments.telemetry import Gpu, Sample


class FakeNvml:
    """The slice of pynvml the sampler uses; readings come from functions of the fake clock."""

    NVML_CLOCK_SM = 1
    NVML_TEMPERATURE_GPU = 0

    class NVMLError(Exception):
        pass

    def __init__(self, clock_mhz=1980, power_mw=500_000, energy=True, max_mhz=1980):
        self.clock_mhz, self.power_mw, self.energy, self.max_mhz = clock_mhz, power_mw, energy, max_mhz
        self.start = time.perf_counter()
        self.initialised = False

    def nvmlInit(self):
        self.initialised = True

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("handle", index)

    def nvmlDeviceGetMaxClockInfo(self, handle, kind):
        return self.max_mhz

    def nvmlDeviceGetClockInfo(self, handle, kind):
        return self.clock_mhz

    def nvmlDeviceGetPowerUsage(self, handle):
        return self.power_mw

    def nvmlDeviceGetTemperature(self, handle, kind):
        return 61

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        if not self.energy:
            raise self.NVMLError("Not Supported")
        return int((time.perf_counter() - self.start) * self.power_mw)  # mJ: power (mW) x seconds


def _samples(times, clocks, powers_w, energies_j):
    return [Sample(t, c, p, 60.0, e) for t, c, p, e in zip(times, clocks, powers_w, energies_j)]


def test_energy_per_step_is_the_counters_increase_over_the_window_times_the_step():
    # counter steps every 0.1 s; 400 W exactly -> 40 J per 0.1 s; the window [0.15, 0.95] is bracketed by 0.1 and 1.0
    times = [i / 10 for i in range(11)]
    energies = [1000.0 + 400.0 * t for t in times]
    columns = telemetry.summarize(_samples(times, [1900] * 11, [395.0] * 11, energies), (0.15, 0.95), 0.025, 1980)
    assert columns["gpu_energy_per_step_j"] == pytest.approx(400.0 * 0.025)  # 10 J per 25 ms step
    assert columns["gpu_energy_source"] == telemetry.ENERGY_COUNTER
    assert columns["gpu_power_w_mean"] == pytest.approx(395.0)
    assert columns["gpu_throttled"] is False and columns["gpu_sm_clock_mhz_median"] == 1900
    assert columns["gpu_telemetry_samples"] == 8  # 0.2 .. 0.9
    assert columns["gpu_telemetry_reason"] == ""


def test_a_median_sm_clock_below_75_percent_of_the_maximum_is_throttled_and_one_dip_is_not():
    times = [i / 10 for i in range(11)]
    dip = [1980] * 5 + [400] + [1980] * 5
    low = [1400] * 11  # 70.7% of 1980
    energies = [float(i) for i in range(11)]
    one_dip = telemetry.summarize(_samples(times, dip, [300.0] * 11, energies), (0.0, 1.0), 0.01, 1980)
    throttled = telemetry.summarize(_samples(times, low, [300.0] * 11, energies), (0.0, 1.0), 0.01, 1980)
    assert one_dip["gpu_throttled"] is False and one_dip["gpu_sm_clock_mhz_min"] == 400
    assert throttled["gpu_throttled"] is True
    assert 0.75 * 1980 > 1400  # the reference: the rule's threshold


def test_without_an_energy_counter_the_sampled_power_stands_in_and_says_so():
    times = [i / 10 for i in range(6)]
    columns = telemetry.summarize(_samples(times, [1900] * 6, [200.0, 220.0, 240.0, 260.0, 280.0, 300.0],
                                           [None] * 6), (0.0, 0.5), 0.5, 1980)
    assert columns["gpu_energy_per_step_j"] == pytest.approx(250.0 * 0.5)
    assert columns["gpu_energy_source"] == telemetry.POWER_SAMPLES


def test_a_case_without_a_steady_window_has_empty_columns_and_a_reason():
    columns = telemetry.summarize([], None, 0.01, 1980)
    assert math.isnan(columns["gpu_energy_per_step_j"]) and "not measured" in columns["gpu_telemetry_reason"]


def test_the_sampler_thread_reads_the_device_while_the_case_runs():
    nvml = FakeNvml(power_mw=250_000)
    gpu = Gpu(nvml, nvml.nvmlDeviceGetHandleByIndex(0))
    watch = telemetry.CaseWatch("cuda", gpu_opener=lambda: gpu)
    with watch:
        t0 = time.perf_counter()
        time.sleep(0.5)
        t1 = time.perf_counter()
    columns = watch.columns((t0, t1), 0.01)
    assert columns["gpu_telemetry_samples"] >= 5  # every 20 ms over 0.5 s, even on a loaded machine
    assert columns["gpu_energy_per_step_j"] == pytest.approx(250.0 * 0.01, rel=0.05)  # 250 W x 10 ms
    assert columns["gpu_temperature_c_max"] == 61 and columns["gpu_sm_clock_max_mhz"] == 1980


def test_missing_nvidia_ml_py_leaves_the_columns_empty_with_the_reason(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pynvml(name, *args, **kwargs):
        if name == "pynvml":
            raise ImportError("No module named 'pynvml'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pynvml)
    monkeypatch.setattr(telemetry, "_GPU", None)
    watch = telemetry.CaseWatch("cuda")
    assert "nvidia-ml-py is not installed" in watch.reason
    with watch:
        pass
    columns = watch.columns((0.0, 1.0), 0.01)
    assert set(columns) == set(telemetry.COLUMNS) and math.isnan(columns["gpu_power_w_mean"])
    assert "nvidia-ml-py" in columns["gpu_telemetry_reason"]


def test_a_failing_nvml_is_a_reason_not_a_crash():
    class Broken(FakeNvml):
        def nvmlInit(self):
            raise self.NVMLError("Driver Not Loaded")

    gpu = telemetry.open_gpu(Broken())
    assert isinstance(gpu, str) and "Driver Not Loaded" in gpu


def test_cpu_cases_are_not_sampled():
    watch = telemetry.CaseWatch("cpu", gpu_opener=lambda: pytest.fail("a CPU case must not open NVML"))
    assert watch.sampler is None and watch.reason == "cpu case"


def test_power_cap_and_slowdown_fractions_from_the_clock_event_reasons():
    """The first H100's large MLP: at the 700 W cap, median SM clock 1545 of 1980 MHz (78%), not throttled."""
    times = [i / 10 for i in range(11)]
    capped = [telemetry.POWER_CAP] * 7 + [0x40, 0x40] + [0, 0]  # 7 power cap, 2 hardware thermal of 11
    samples = [Sample(t, 1545, 700.0, 64.0, float(i), r) for i, (t, r) in enumerate(zip(times, capped))]
    columns = telemetry.summarize(samples, (0.0, 1.0), 0.027, 1980)
    assert columns["gpu_power_capped_fraction"] == pytest.approx(7 / 11)
    assert columns["gpu_slowdown_fraction"] == pytest.approx(2 / 11)
    assert columns["gpu_throttled"] is False  # a power cap alone is the card's sustained rate
    hot = [Sample(t, 1900, 500.0, 90.0, float(i), 0x20 if i < 6 else 0) for i, t in enumerate(times)]
    assert telemetry.summarize(hot, (0.0, 1.0), 0.027, 1980)["gpu_throttled"] is True  # 6 of 11 thermal


def test_clock_event_reasons_are_read_by_either_name_and_a_refusal_is_none():
    class EventNvml(FakeNvml):
        def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
            return telemetry.POWER_CAP | 0x1

    class ThrottleNvml(FakeNvml):  # an older nvidia-ml-py: only the throttle name
        def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle):
            return 0x40

    class RefusingNvml(FakeNvml):
        def nvmlDeviceGetCurrentClocksEventReasons(self, handle):
            raise self.NVMLError("Not Supported")

    def reasons(nvml):
        return Gpu(nvml, nvml.nvmlDeviceGetHandleByIndex(0)).sample(time.perf_counter).clock_reasons

    assert reasons(EventNvml()) == 0x5
    assert reasons(ThrottleNvml()) == 0x40
    assert reasons(RefusingNvml()) is None
    assert reasons(FakeNvml()) is None
    empty = telemetry.summarize(_samples([0.0, 0.5, 1.0], [1900] * 3, [300.0] * 3, [0.0, 1.0, 2.0]), (0.0, 1.0),
                                0.01, 1980)
    assert math.isnan(empty["gpu_power_capped_fraction"]) and empty["gpu_throttled"] is False


def test_a_ceiling_pass_records_the_median_sm_clock_it_ran_at():
    nvml = FakeNvml(clock_mhz=1545)  # the first H100's clock at its 700 W power cap
    gpu = Gpu(nvml, nvml.nvmlDeviceGetHandleByIndex(0))
    with telemetry.CaseWatch("cuda", gpu_opener=lambda: gpu) as watch:
        time.sleep(0.05)
    assert watch.median_sm_clock_mhz() == 1545
    assert telemetry.CaseWatch("cpu").median_sm_clock_mhz() is None  # no NVML: nothing recorded


def test_a_ceilings_pass_clocks_survive_meta_json_and_older_meta_reads_without_them():
    import dataclasses
    import json

    from bench.limits.ceiling import Ceiling

    old = Ceiling("cuda", "bf16", "NVIDIA H100", 789.1, 8192, 989.4, "datasheet")
    assert old.with_pass_clock("start", None) == old
    clocked = old.with_pass_clock("start", 1545.0).with_pass_clock("end", 1530.0)
    assert Ceiling(**json.loads(json.dumps(clocked.as_dict()))).pass_clock_mhz == {"start": 1545.0, "end": 1530.0}
    legacy = {k: v for k, v in old.as_dict().items() if k != "pass_clock_mhz"}  # a meta.json from before
    assert Ceiling(**legacy).pass_clock_mhz == {} and dataclasses.replace(old) == Ceiling(**legacy)
