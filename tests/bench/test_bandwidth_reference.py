"""bench.limits.bandwidth's cache sizes from a sysfs tree written here, and its thread counts, by hand (issue 50: mutation
testing of the limits). The tree mirrors /sys/devices/system/cpu/cpuN/cache/indexM (type, level, shared_cpu_list,
size), as the kernel documents it (Documentation/ABI/testing/sysfs-devices-system-cpu)."""

from __future__ import annotations

import pytest

from bench.limits import bandwidth


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
