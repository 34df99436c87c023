"""bench.limits.bandwidth's cache sizes from a sysfs tree written here, and its thread counts, by hand (issue 50: mutation
testing of the limits). The tree mirrors /sys/devices/system/cpu/cpuN/cache/indexM (type, level, shared_cpu_list,
size), as the kernel documents it (Documentation/ABI/testing/sysfs-devices-system-cpu)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.instruments.clocks import torch_threads
from bench.limits import bandwidth

from torch_calls import TorchCalls  # tests/bench/ is on sys.path
from virtual_clock import VirtualClock


def _cache(root, cpu, index, level, size, shared=None, kind="Unified"):
    d = root / f"cpu{cpu}" / "cache" / f"index{index}"
    d.mkdir(parents=True)
    (d / "type").write_text(kind + "\n")
    (d / "level").write_text(f"{level}\n")
    (d / "size").write_text(size + "\n")
    if shared is not None:
        (d / "shared_cpu_list").write_text(shared + "\n")


def test_the_last_level_is_summed_over_its_instances_once_each(tmp_path):
    # 4 CPUs, two L3 slices of 16 MiB (CPUs 0-1 and 2-3), a private L2 and L1d each, an L1i that is not data
    for cpu in range(4):
        _cache(tmp_path, cpu, 0, 1, "32K", str(cpu), kind="Data")
        _cache(tmp_path, cpu, 1, 1, "32K", str(cpu), kind="Instruction")
        _cache(tmp_path, cpu, 2, 2, "512K", str(cpu))
        _cache(tmp_path, cpu, 3, 3, "16384K", "0-1" if cpu < 2 else "2-3")
    assert bandwidth.last_level_cache_bytes("cpu", {0, 1, 2, 3}, tmp_path) == (32 * 2**20,
                                                                               "L3 from sysfs (2 x 16384 KiB)")
    assert bandwidth.last_level_cache_bytes("cpu", {0, 1}, tmp_path) == (16 * 2**20, "L3 from sysfs (1 x 16384 KiB)")


def test_without_a_shared_list_each_cpus_cache_is_its_own_and_bad_entries_are_skipped(tmp_path):
    _cache(tmp_path, 0, 0, 2, "1M")
    _cache(tmp_path, 1, 0, 2, "1M")
    _cache(tmp_path, 1, 1, 3, "not a size")  # unreadable: skipped, so L2 is the top level here
    (tmp_path / "cpu1" / "cache" / "index2").mkdir()  # no files at all
    _cache(tmp_path, 2, 0, 4, "8M", kind="Instruction")  # the highest level, but instructions: not counted
    assert bandwidth.last_level_cache_bytes("cpu", {0, 1, 2}, tmp_path) == (2 * 2**20, "L2 from sysfs (2 x 1024 KiB)")


def test_no_sysfs_sizes_assume_the_default(tmp_path):
    assert bandwidth.last_level_cache_bytes("cpu", {0}, tmp_path) == (bandwidth.DEFAULT_CACHE_BYTES,
                                                                      "assumed (no sysfs cache sizes)")


@pytest.mark.parametrize("text, size", [("512K", 512 * 1024), ("32M\n", 32 * 2**20), ("1g", 2**30), ("4096", 4096)])
def test_sizes_as_the_kernel_writes_them(tmp_path, text, size):
    _cache(tmp_path, 0, 0, 3, text.strip())
    assert bandwidth.last_level_cache_bytes("cpu", {0}, tmp_path)[0] == size


@pytest.mark.parametrize("threads, counts", [(0, (1,)), (1, (1,)), (2, (1, 2)), (8, (1, 8))])
def test_a_limit_is_measured_on_one_thread_and_on_its_own(threads, counts):
    assert bandwidth.thread_counts(threads) == counts


def test_a_gpus_cache_is_its_l2_as_the_device_reports_it(monkeypatch):
    """torch.cuda.get_device_properties(current device).L2_cache_size, stood in for here: device 3's 50 MiB."""
    props = {3: SimpleNamespace(L2_cache_size=50 * 2**20), 4: SimpleNamespace(L2_cache_size=0), 5: SimpleNamespace()}
    current = {"device": 3}
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current["device"])
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props[index])
    assert bandwidth.last_level_cache_bytes("cuda") == (50 * 2**20, "CUDA L2_cache_size")
    assert bandwidth.last_level_cache_bytes("cuda:0") == (50 * 2**20, "CUDA L2_cache_size")
    for unknown in (4, 5):  # reported as 0, or not reported at all
        current["device"] = unknown
        assert bandwidth.last_level_cache_bytes("cuda") == (bandwidth.DEFAULT_CACHE_BYTES, "assumed (L2 size unknown)")


def test_by_default_the_cpus_are_those_this_process_may_run_on(tmp_path, monkeypatch):
    _cache(tmp_path, 0, 0, 3, "8M", "0")
    _cache(tmp_path, 1, 0, 3, "2M", "1")

    def affinity(pid):
        assert pid == 0  # this process
        return {1}

    monkeypatch.setattr(bandwidth.os, "sched_getaffinity", affinity)
    assert bandwidth.last_level_cache_bytes("cpu", root=tmp_path) == (2 * 2**20, "L3 from sysfs (1 x 2048 KiB)")


def test_an_unreadable_or_instruction_entry_does_not_end_that_cpus_listing(tmp_path):
    """index0 unreadable and index1 an instruction cache come before cpu 0's good L2 entry: it still counts."""
    _cache(tmp_path, 0, 0, 3, "not a size")
    _cache(tmp_path, 0, 1, 3, "64M", kind="Instruction")
    _cache(tmp_path, 0, 2, 2, "1M")
    assert bandwidth.last_level_cache_bytes("cpu", {0}, tmp_path) == (2**20, "L2 from sysfs (1 x 1024 KiB)")


@pytest.mark.parametrize("dtype, element", [(torch.float32, 4), (torch.bfloat16, 2)])
def test_the_kernels_compute_stream_s_copy_and_triad_and_move_the_bytes_stream_counts(dtype, element):
    """n = 37 elements: copy b <- a (2 x n x element bytes), triad c = a + 3 b (3 x n x element), memmove a -> c (2 x n);
    a = 1 and b = 2, so the copy gives 1 and the triad 1 + 3 x 2 = 7, in the requested dtype."""
    n = 37
    kernels = bandwidth._kernels(n, torch.device("cpu"), dtype)
    assert set(kernels) == {"copy", "triad", "memmove"}
    assert {k: nbytes for k, (_, nbytes) in kernels.items()} == {"copy": 2 * n * element, "triad": 3 * n * element,
                                                                 "memmove": 2 * n * element}
    with TorchCalls() as seen:
        c = kernels["copy"][0]()
    assert c.dtype == dtype and c.shape == (n,) and torch.equal(c, torch.ones(n, dtype=dtype))
    assert [name for name, _, _ in seen.calls] == ["copy_"] and seen.tensors(seen.calls[0]) == [(dtype, "cpu", n)] * 2
    with TorchCalls() as seen:
        out = kernels["triad"][0]()
    assert out is c and torch.equal(c, torch.full((n,), 7.0, dtype=dtype))
    assert [name for name, _, _ in seen.calls] == ["add"] and seen.tensors(seen.calls[0]) == [(dtype, "cpu", n)] * 3
    c.zero_()
    kernels["memmove"][0]()  # libc's copy of a's n elements into c
    assert torch.equal(c, torch.ones(n, dtype=dtype))


def test_the_kernels_arrays_are_made_on_the_limits_device_in_its_dtype():
    """The three arrays are created by torch.full / torch.zeros with the device and dtype asked for (seen through a
    function mode: the factory calls and their keywords), so on a GPU they are the GPU's arrays."""
    dev = torch.device("cpu")
    with TorchCalls() as seen:
        bandwidth._kernels(5, dev, torch.float16)
    assert [(name, args, kwargs) for name, args, kwargs in seen.named("full", "zeros")] == [
        ("full", ((5,), 1.0), {"device": dev, "dtype": torch.float16}),
        ("full", ((5,), 2.0), {"device": dev, "dtype": torch.float16}),
        ("zeros", (5,), {"device": dev, "dtype": torch.float16})]


class _Wall:
    """One virtual clock for the kernels' timers and for ``time.perf_counter`` (the budget and spent_s)."""

    def __init__(self):
        self.clock = VirtualClock()
        self.clock.now = 100.0

    def perf_counter(self) -> float:
        return self.clock.now


def _fake_kernels(wall: _Wall, seconds: dict[str, float], moved: dict[str, int], log: list):
    """name -> (a call taking ``seconds[name]`` on the wall and logging (name, torch threads), bytes it moves)."""
    def kernel(name):
        def call():
            log.append((name, torch.get_num_threads()))
            wall.clock.now += seconds[name]
        return call
    return {name: (kernel(name), moved[name]) for name in seconds}


def test_rounds_time_every_kernel_at_each_thread_count_and_memmove_on_one(monkeypatch):
    """counts (1, 2): copy at 1 and 2 threads, memmove at 1 only. A copy call takes 2^-15 s (30.5 us), so a sample is
    ceil(200 us / 30.5 us) = 7 calls; memmove's 2^-12 s (244 us) is above MIN_SAMPLE_S: one call a sample. Each key
    then has ROUNDS samples of bytes / call seconds, and the interleave ran once per round."""
    wall, log, interleaved = _Wall(), [], []
    monkeypatch.setattr(bandwidth, "time", SimpleNamespace(perf_counter=wall.perf_counter))
    monkeypatch.setattr(bandwidth, "clock_for", lambda dev: wall.clock if dev == torch.device("cpu") else None)
    kernels = _fake_kernels(wall, {"copy": 2**-15, "memmove": 2**-12}, {"copy": 2**20, "memmove": 2**21}, log)
    with torch_threads(2):
        rates, rounds = bandwidth._rounds(kernels, (1, 2), torch.device("cpu"), lambda: interleaved.append(1))
    assert rounds == 20 == len(interleaved)
    assert rates == {("copy", 1): [2**35] * 20, ("copy", 2): [2**35] * 20, ("memmove", 1): [2**33] * 20}
    # warm-up: one call each; then per round 7 + 7 + 1 calls, each at its own thread count
    assert log[:3] == [("copy", 1), ("copy", 2), ("memmove", 1)]
    assert log[3:3 + 15] == [("copy", 1)] * 7 + [("copy", 2)] * 7 + [("memmove", 1)]
    assert len(log) == 3 + 20 * 15


def test_rounds_stop_at_the_budget_but_never_below_min_rounds(monkeypatch):
    """One kernel of 0.5 s a call: the warm-up ends at 100.5, the budget (3 s) at 103.5, reached exactly after 6
    rounds: 6 samples. At 4 s a call every round is past the budget: MIN_ROUNDS (5) samples."""
    for seconds, expected in [(0.5, 6), (4.0, 5), (2**-3, 20)]:
        wall, log, interleaved = _Wall(), [], []
        monkeypatch.setattr(bandwidth, "time", SimpleNamespace(perf_counter=wall.perf_counter))
        monkeypatch.setattr(bandwidth, "clock_for", lambda dev: wall.clock)
        kernels = _fake_kernels(wall, {"triad": seconds}, {"triad": 3}, log)
        rates, rounds = bandwidth._rounds(kernels, (1,), torch.device("cpu"), lambda: interleaved.append(1))
        assert rounds == expected == len(rates[("triad", 1)]) == len(interleaved) == len(log) - 1
        assert rates[("triad", 1)] == [3 / seconds] * expected


def _measure(monkeypatch, device: str, dtype: str, threads: int, cache_bytes: int, cache_multiple: int = 4):
    """measure_bandwidth on fake kernels: copy 2^-12 s (244 us) a call at one thread and 2^-13 s at more, triad and
    memmove 2^-11 s; the cache-resident level's calls (any n but the large one) 2^-14 s. Records what each layer got."""
    wall, log, got = _Wall(), [], {"kernels": [], "rounds": [], "interleave": 0}
    monkeypatch.setattr(bandwidth, "time", SimpleNamespace(perf_counter=wall.perf_counter))

    def clock_for(dev):
        assert dev == torch.device(device)
        return wall.clock

    def last_level_cache_bytes(dev):
        assert dev == device
        return cache_bytes, "test cache"

    def kernels(n, dev, dtype_):
        got["kernels"].append((n, dev, dtype_))
        big = len(got["kernels"]) == 1

        def kernel(name):
            def call():
                log.append((name, torch.get_num_threads(), big))
                wall.clock.now += (2**-13 if name == "copy" and torch.get_num_threads() > 1 else
                                   2**-12 if name == "copy" else 2**-11) if big else 2**-14
            return call
        names = ("copy", "triad", "memmove") if dev.type == "cpu" else ("copy", "triad")
        return {name: (kernel(name), {"copy": 2, "triad": 3, "memmove": 2}[name] * n) for name in names}

    def interleave():
        got["interleave"] += 1

    monkeypatch.setattr(bandwidth, "clock_for", clock_for)
    monkeypatch.setattr(bandwidth, "last_level_cache_bytes", last_level_cache_bytes)
    monkeypatch.setattr(bandwidth, "_kernels", kernels)
    with torch_threads(threads):
        b = bandwidth.measure_bandwidth(device, dtype, cache_multiple, interleave=interleave)
    return b, got, log


def test_a_cpu_limit_is_the_best_kernel_and_thread_count_over_arrays_sized_by_stream_s_rule(monkeypatch):
    """bf16 (2-byte elements), a 1001-byte cache, 3 x: n = 3003 // 2 = 1501 elements; the cache level's n is
    1001 // 8 // 2 = 62. Copy at 2 threads is the fastest call: 2 x 1501 bytes / 2^-13 s."""
    b, got, log = _measure(monkeypatch, "cpu", "bf16", 2, 1001, cache_multiple=3)
    assert got["kernels"] == [(1501, torch.device("cpu"), torch.bfloat16), (62, torch.device("cpu"), torch.bfloat16)]
    assert all(type(n) is int for n, _, _ in got["kernels"])
    assert (b.device, b.dtype, b.threads, b.threads_tried, b.rounds) == ("cpu", "bf16", 2, (1, 2), 20)
    assert (b.array_bytes, b.cache_bytes, b.cache_source, b.cache_array_bytes) == (3002, 1001, "test cache", 124)
    assert type(b.array_bytes) is int and type(b.cache_array_bytes) is int
    assert b.copy_bytes_per_s == b.bytes_per_s == 2 * 1501 * 2**13 and (b.best_kernel, b.best_threads) == ("copy", 2)
    assert b.triad_bytes_per_s == 3 * 1501 * 2**11 and b.spread_rel == 0.0
    assert b.cache_bytes_per_s == 2 * 62 * 2**14
    assert got["interleave"] == 20  # once per round of the large arrays; none for the cache level
    # every (kernel, threads) of the large arrays ran at its own count; memmove at one only; no triad in the cache level
    big = {(name, threads) for name, threads, is_big in log if is_big}
    assert big == {("copy", 1), ("copy", 2), ("triad", 1), ("triad", 2), ("memmove", 1)}
    assert {(name, threads) for name, threads, is_big in log if not is_big} == {("copy", 1), ("copy", 2), ("memmove", 1)}
    # the wall: warm-ups and 20 rounds of both levels (calls per sample: ceil(200 us / call), at least one)
    calls_big = {2**-12: 1, 2**-13: 2, 2**-11: 1}
    big_s = (2**-12 + 2**-13 + 2 * 2**-11 + 2**-11) + 20 * (2**-12 * calls_big[2**-12] + 2**-13 * calls_big[2**-13]
                                                            + 2 * 2**-11 + 2**-11)
    cache_s = 3 * 2**-14 + 20 * 3 * 4 * 2**-14  # ceil(2e-4 / 2^-14) = 4 calls a sample
    assert b.spent_s == pytest.approx(big_s + cache_s, rel=1e-12)


def test_a_tiny_cache_still_gets_a_one_element_cache_level(monkeypatch):
    b, got, _ = _measure(monkeypatch, "cpu", "fp32", 1, 16)
    assert [n for n, _, _ in got["kernels"]] == [16, 1] and b.cache_array_bytes == 4  # 16 // 8 // 4 = 0 -> 1 element
    assert b.threads_tried == (1,) and b.array_bytes == 64


def test_a_gpu_limit_is_measured_at_the_callers_thread_count_only(monkeypatch):
    b, got, log = _measure(monkeypatch, "cuda", "fp32", 2, 1024)
    assert b.device == "cuda" and b.threads_tried == (2,) and {threads for _, threads, _ in log} == {2}
    assert got["kernels"][0] == (1024, torch.device("cuda"), torch.float32)
    assert (b.best_kernel, b.best_threads) == ("copy", 2) and b.copy_bytes_per_s == 2 * 1024 * 2**13


def test_an_unknown_dtype_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"^unknown dtype 'fp13'; valid: "):
        bandwidth.measure_bandwidth("cpu", "fp13")


def test_the_spread_is_the_iqr_over_the_median_of_the_call_times():
    rates = [1e9, 2e9, 4e9, 5e9, 8e9]
    q1, med, q3 = np.percentile([1 / r for r in rates], [25, 50, 75])
    assert bandwidth._spread(rates) == pytest.approx((q3 - q1) / med, rel=1e-12)


def test_a_phases_memory_term_is_its_bytes_at_the_rate_they_are_charged():
    """1 GB at DRAM's 10 GB/s: 0.1 s; 40 MB with a 16 MiB LLC at the cache copy's 50 GB/s: 0.8 ms; no record, no
    traffic count: no bound."""
    record = {"bytes_per_s": 10e9, "cache_bytes_per_s": 50e9, "cache_bytes": 16 * 2**20}
    assert bandwidth._memory_s(record, {"traffic_bytes": 1e9}) == pytest.approx(0.1)
    assert bandwidth._memory_s(record, {"traffic_bytes": 40e6}) == pytest.approx(40e6 / 50e9)
    assert math.isnan(bandwidth._memory_s(None, {"traffic_bytes": 1e9}))
    assert math.isnan(bandwidth._memory_s(record, {}))
    b = bandwidth.Bandwidth("cpu", "fp32", 2, 64, 16, "x", 1e9, 2e9, 2e9, 0.1, 0.5)
    assert b.as_dict()["bytes_per_s"] == 2e9 and b.as_dict()["cache_source"] == "x" and len(b.as_dict()) == 17
