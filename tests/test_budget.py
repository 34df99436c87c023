"""`make bench` bounded in time on any CPU: the ceiling's budget."""

from __future__ import annotations

import time

import pytest
import torch

from bench import ceiling
from bench.ceiling import measure_ceiling

AMD_BF16_FLOPS_PER_S = 0.5e9  # the reference kernel's bf16 rate, in the range seen on that EPYC (~1 GFLOP/s)
MIN_PRODUCTS_PER_SIZE = 7  # a ceiling size costs >= 2 untimed + 5 timed products
GENEROUS = 3.0  # factor on a wall-clock budget: shared 2-core machine, never a tight time


# --------------------------------------------------------------------------- the ceiling budget


def test_the_ceiling_stops_growing_when_the_next_size_would_not_fit(monkeypatch):
    """On the AMD part's bf16 (~0.5-1 GFLOP/s) a 512³ size alone costs > 3.8 s: a 1 s budget stops at 256."""
    seen = []

    def amd_bf16_product(n, *args):
        per_product_s = 2 * n**3 / AMD_BF16_FLOPS_PER_S
        time.sleep(MIN_PRODUCTS_PER_SIZE * per_product_s)  # what measuring that size would take
        seen.append(n)
        return per_product_s

    monkeypatch.setattr(ceiling, "_median_product_s", amd_bf16_product)
    c = measure_ceiling("cpu", "bf16", budget_s=1.0)
    assert seen == [256] and c.sizes_tried == (256,) and c.matmul_size == 256
    assert c.measured_tflops * 1e12 == pytest.approx(AMD_BF16_FLOPS_PER_S)
    assert c.budget_s == 1.0 and c.spent_s < 1.0 * GENEROUS


def test_a_real_ceiling_honours_its_budget():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: no OpenMP barrier stalls when other work shares the cores
    try:
        c = measure_ceiling("cpu", "fp32", budget_s=1.0)
    finally:
        torch.set_num_threads(threads)
    assert c.sizes_tried and list(c.sizes_tried) == sorted(c.sizes_tried)
    assert list(c.sizes_tried) == list(ceiling.CPU_SIZES[:len(c.sizes_tried)])  # grows from the smallest
    assert c.measured_tflops > 0 and c.spent_s < 1.0 * GENEROUS, c


