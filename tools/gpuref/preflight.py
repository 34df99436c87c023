"""Stage 1 of the GPU kit: the machine's fingerprint and a few seconds of checks that the CUDA paths can work.

Run in its own process (``python -m tools.gpuref.preflight --device cuda --out FILE``). It writes
FILE (JSON: the fingerprint and one entry per check) and prints one line: ``preflight: ok ...`` or
``preflight: FAILED: <check>: <error>`` with exit code 1, so the kit stops before spending minutes.

Checks (CUDA): events time a matmul (elapsed > 0), ``synchronize`` returns, the peak-memory
statistics see a 64 MiB allocation, and ``torch.compile`` of a tiny function runs, matches eager
and really compiled (dynamo's graph count). On ``--device cpu`` (the rehearsal) the CUDA checks
say ``skipped: no CUDA`` and the compile check runs on the CPU.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROBE_BYTES = 64 * 2**20  # the peak-memory check's allocation
NO_CUDA = "skipped: no CUDA"


def _driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # noqa: BLE001 - optional; nvidia-smi below
        pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None
    except (OSError, subprocess.SubprocessError):
        return None


def fingerprint(device: str) -> dict:
    import torch

    from bench.instruments.env import cpu_model, fingerprint as run_fingerprint

    cuda = device == "cuda" and torch.cuda.is_available()
    out = {**run_fingerprint(), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
           "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
           "torch_cuda_build": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
    if cuda:
        props = torch.cuda.get_device_properties(0)
        out.update({"gpu_name": props.name, "gpu_memory_bytes": int(props.total_memory),
                    "gpu_multiprocessors": props.multi_processor_count, "driver_version": _driver_version()})
    return out


def _timed(fn) -> tuple[str, float, str]:
    start = time.perf_counter()
    try:
        detail = fn()
        return "ok", time.perf_counter() - start, str(detail or "")
    except Exception as exc:  # noqa: BLE001 - a failed check is the answer, reported in one line
        text = str(exc).strip().splitlines()
        return "failed", time.perf_counter() - start, f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def check_events() -> str:
    import torch

    a = torch.randn(1024, 1024, device="cuda")
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(10):
        a = a @ a / 1024
    end.record()
    end.synchronize()
    ms = start.elapsed_time(end)
    if not ms > 0:
        raise RuntimeError(f"event elapsed time is {ms} ms for 10 matmuls")
    return f"10 matmuls of 1024^2 in {ms:.3f} ms"


def check_synchronize() -> str:
    import torch

    x = torch.randn(2**20, device="cuda")
    y = (x * 2).sum()
    torch.cuda.synchronize()
    if not torch.isfinite(y).item():
        raise RuntimeError("a sum of random numbers is not finite")
    return "synchronize returned"


def check_peak_memory() -> str:
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    block = torch.empty(PROBE_BYTES, dtype=torch.uint8, device="cuda")
    peak = torch.cuda.max_memory_allocated()
    del block
    if peak - before < PROBE_BYTES:
        raise RuntimeError(f"max_memory_allocated grew by {peak - before} bytes for a {PROBE_BYTES}-byte tensor")
    return f"peak {peak - before} bytes for a {PROBE_BYTES}-byte tensor"


def check_compile(device: str) -> str:
    import torch
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()

    def f(x):
        return torch.nn.functional.gelu(x) * 2 + 1

    x = torch.randn(4096, device=device)
    compiled = torch.compile(f, dynamic=False)
    out = compiled(x)
    if device == "cuda":
        torch.cuda.synchronize()
    if not torch.allclose(out, f(x), rtol=1e-4, atol=1e-5):
        raise RuntimeError("the compiled function's output differs from eager")
    graphs = counters["stats"]["unique_graphs"]
    if graphs < 1:
        raise RuntimeError("torch.compile produced no graph (it ran eager)")
    return f"{graphs} graph, output matches eager"


def run_checks(device: str) -> dict[str, dict]:
    import torch

    checks = {}
    cuda = device == "cuda"
    if cuda and not torch.cuda.is_available():
        return {"cuda": {"status": "failed", "seconds": 0.0,
                         "detail": "torch.cuda.is_available() is False (torch built for CUDA "
                                   f"{torch.version.cuda}); nothing on CUDA can run"}}
    for name, fn in (("events", check_events), ("synchronize", check_synchronize),
                     ("peak_memory", check_peak_memory)):
        if cuda:
            status, seconds, detail = _timed(fn)
            checks[name] = {"status": status, "seconds": seconds, "detail": detail}
        else:
            checks[name] = {"status": "skipped", "seconds": 0.0, "detail": NO_CUDA}
    status, seconds, detail = _timed(lambda: check_compile(device))
    checks["torch_compile"] = {"status": status, "seconds": seconds, "detail": detail}
    for name, module in (("triton", "triton"), ("nvidia_ml_py", "pynvml"), ("torchvision", "torchvision")):
        status, seconds, detail = _timed(lambda m=module: getattr(__import__(m), "__version__", "imported"))
        checks[name] = {"status": "ok" if status == "ok" else "missing", "seconds": seconds, "detail": detail,
                        "required": False}
    return checks


def summary_line(info: dict, checks: dict[str, dict]) -> tuple[bool, str]:
    failed = [(n, c) for n, c in checks.items() if c["status"] == "failed"]
    if failed:
        name, check = failed[0]
        return False, f"preflight: FAILED: {name}: {check['detail']}"
    gpu = (f"{info.get('gpu_name')}, {info.get('gpu_memory_bytes', 0) / 2**30:.0f} GiB, driver "
           f"{info.get('driver_version')}" if info.get("gpu_name") else "no GPU (cpu rehearsal)")
    timings = ", ".join(f"{n} {c['seconds']:.2f} s" for n, c in checks.items()
                        if c["status"] == "ok" and not c.get("required") is False)
    optional = ", ".join(f"{n} {c['detail'] if c['status'] == 'ok' else 'missing'}" for n, c in checks.items()
                         if c.get("required") is False)
    return True, (f"preflight: ok: {gpu}; torch {info.get('torch')} (CUDA {info.get('torch_cuda_build')}); "
                  f"{info.get('cpu_model')} x{info.get('cpu_count')}; {timings}; {optional}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpuref.preflight")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    info = fingerprint(args.device)
    checks = run_checks(args.device)
    ok, line = summary_line(info, checks)
    from bench.runs import write_json
    from tools.gpuref.torch_api import check_all

    apis = check_all()
    missing = [name for name, present in apis.items() if not present]
    line += f"; APIs: {len(apis) - len(missing)}/{len(apis)} present" + (f", missing {', '.join(missing)}"
                                                                          if missing else "")
    write_json(args.out, {"ok": ok, "device": args.device, "fingerprint": info, "checks": checks, "torch_api": apis,
                          "seconds": time.perf_counter() - start})
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
