"""The engine's step median against an independent timer, ``triton.testing.do_bench``, on two CUDA cases.

One large case (the large MLP, compute-bound) and one launch-bound case (the FashionMNIST net at
batch 64). For each: ``bench.instruments.timing.measure``'s whole-step median, then ``do_bench``'s median of the
same training step (its own events, warm-up and repetitions in milliseconds, L2 flushed between
calls), in the same process. Their ratio should be within a few per cent. Also the device-to-device
copy rate (bytes read + written), the bandwidth ceiling issue 17 asks for. CUDA only: without
CUDA it prints ``skipped: no CUDA`` and exits 0.

Two ``do_bench`` readings per case: one step per call (``ratio``), and a block of ``block_steps``
back-to-back steps per call, sized to about ``BLOCK_TARGET_S`` (``ratio_block``). ``do_bench`` zeroes a
256 MB buffer before every call and records its start event after it, so on a host-bound step the host
could run ahead of the events. The block reading spreads that over the block, as the engine's blocks do.
On the first H100 (results/reference/h100) that did not show. Over five readings a few seconds apart, the
FashionMNIST net at b64 read 1.04-1.30 ms by the engine, by one-step calls and by blocks alike (ratios
0.86-1.24, either sign). The large MLP, GPU-bound, agreed within 2.2% every time. So on that host a
launch-bound ratio measures the host's drift, not a timer.

``python -m tools.gpuref.timercheck --out FILE [--tiny]``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from bench.case.cases import Case
from bench.errors import first_line
from bench.model.phases import Phase
from bench.runs import write_json
from bench.analysis.stats import summarize
from bench.instruments.timing import build_step, case_context, measure

CASES = (Case(width=8192, depth=4, batch=8192, dtype="bf16", device="cuda"),
         Case(network="fashion_mnist", batch=64, device="cuda"))
TINY_CASES = (Case(width=256, depth=2, batch=256, device="cuda"), Case(network="teaching", batch=64, device="cuda"))
DO_BENCH_WARMUP_MS, DO_BENCH_REP_MS = 100, 500
BLOCK_TARGET_S = 0.02  # a do_bench call of back-to-back steps at least this long: a ~0.1 ms flush is <1% of it
COPY_BYTES = 2**30  # one GiB each way: far beyond the L2 (50-60 MB on Hopper)
NO_CUDA = "skipped: no CUDA"


def do_bench_median_s(fn) -> float:
    from triton.testing import do_bench

    return do_bench(fn, warmup=DO_BENCH_WARMUP_MS, rep=DO_BENCH_REP_MS, return_mode="median") * 1e-3


def block_steps(single_s: float, target_s: float = BLOCK_TARGET_S) -> int:
    """Steps per do_bench call so that one call lasts at least ``target_s`` (1 for a step that long already)."""
    return max(1, math.ceil(target_s / single_s)) if single_s > 0 else 1


def block_median_s(fn, steps: int, timer=do_bench_median_s) -> float:
    """``timer``'s median of ``steps`` back-to-back calls of ``fn``, per call."""
    def block():
        for _ in range(steps):
            fn()
    return timer(block) / steps


def compare_case(case: Case) -> dict:
    import torch

    start = time.perf_counter()
    ours = summarize(measure(case).samples[Phase.STEP]).median
    with case_context(case):
        step = build_step(case)
        x, y = case.make_batch(torch.Generator().manual_seed(1))
        step.step(x, y)  # warm: cuBLAS handles, allocator
        single = do_bench_median_s(lambda: step.step(x, y))
        steps = block_steps(single)
        block = single if steps == 1 else block_median_s(lambda: step.step(x, y), steps)
    return {"case": case.label, "case_id": case.case_id, "engine_median_s": ours, "do_bench_median_s": single,
            "ratio": ours / single, "block_steps": steps, "do_bench_block_median_s": block,
            "ratio_block": ours / block, "seconds": time.perf_counter() - start}


def copy_rate(n_bytes: int = COPY_BYTES) -> dict:
    import torch

    src = torch.randn(n_bytes // 4, device="cuda")
    dst = torch.empty_like(src)
    seconds = do_bench_median_s(lambda: dst.copy_(src))
    return {"bytes_each_way": n_bytes, "median_s": seconds, "gb_per_s": 2 * n_bytes / seconds / 1e9,
            "counting": "bytes read + bytes written"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpuref.timercheck")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"timer-check: {NO_CUDA}")
        return 0
    rows, errors = [], []
    for case in TINY_CASES if args.tiny else CASES:
        try:
            rows.append(compare_case(case))
        except Exception as exc:  # noqa: BLE001 - one case failing keeps the other's numbers
            errors.append(f"{case.label}: {type(exc).__name__}: {first_line(exc)}")
    try:
        copy = copy_rate(COPY_BYTES // 16 if args.tiny else COPY_BYTES)
    except Exception as exc:  # noqa: BLE001
        copy, errors = None, errors + [f"copy: {type(exc).__name__}: {first_line(exc)}"]
    write_json(args.out, {"cases": rows, "copy": copy, "errors": errors,
                           "do_bench": {"warmup_ms": DO_BENCH_WARMUP_MS, "rep_ms": DO_BENCH_REP_MS,
                                        "return_mode": "median"}})
    for r in rows:
        print(f"timer-check: {r['case']}: engine {r['engine_median_s'] * 1e3:.4g} ms, do_bench "
              f"{r['do_bench_median_s'] * 1e3:.4g} ms, ratio {r['ratio']:.3f} ({r['block_steps']}-step calls: "
              f"{r['do_bench_block_median_s'] * 1e3:.4g} ms per step, ratio {r['ratio_block']:.3f})")
    if copy:
        print(f"timer-check: device copy {copy['gb_per_s']:.0f} GB/s (read + write, {copy['bytes_each_way']} B)")
    for e in errors:
        print(f"timer-check: error: {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
