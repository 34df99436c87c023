"""Every torch (and Triton, NVML) API the CUDA paths use, checked by name on the machine that runs them.

The preflight records which of them resolve (``preflight.json``'s ``torch_api``), so the GPU machine's
torch (2.11 there) answers for itself; docs/gpu-reference.md lists them with what was verified where.
"""

from __future__ import annotations

import importlib

# name -> where mlpbench uses it (the fallback, if any, is in docs/gpu-reference.md)
CUDA_APIS = {
    "torch.cuda.Event": "bench.instruments.clocks.CudaClock, preflight: events around timed blocks and phases",
    "torch.cuda.synchronize": "bench.instruments.clocks, timing.peak_memory_per_phase, profile, gate counters",
    "torch.cuda.reset_peak_memory_stats": "timing.peak_memory_per_phase, gate counters, preflight",
    "torch.cuda.max_memory_allocated": "timing.peak_memory_per_phase, gate counters, preflight",
    "torch.cuda.memory_allocated": "preflight, timing.harness_bytes",
    "torch.cuda.empty_cache": "runner.safe_measure after a failed case",
    "torch.cuda.OutOfMemoryError": "runner: out of memory -> oom rows",
    "torch.cuda.get_device_name": "env.fingerprint, ceiling.device_name",
    "torch.cuda.get_device_capability": "env.fingerprint, env.dtype_fast_path (bf16 from sm_80)",
    "torch.cuda.get_device_properties": "preflight fingerprint (memory, SMs)",
    "torch.cuda.set_device": "ddp worker (nccl)",
    "torch.cuda.memory._record_memory_history": "profile --memory-snapshot",
    "torch.cuda.memory._dump_snapshot": "profile --memory-snapshot",
    "torch.cuda.clock_rate": "not used: bench.instruments.telemetry reads NVML directly (needs pynvml too)",
    "torch.cuda.power_draw": "not used: bench.instruments.telemetry reads NVML directly (needs pynvml too)",
    "torch.cuda.temperature": "not used: bench.instruments.telemetry reads NVML directly (needs pynvml too)",
    "torch.compiler.cudagraph_mark_step_begin": "timing.cudagraph_step_marker (reduce-overhead on CUDA)",
    "torch._dynamo.reset": "timing.case_context before each compiled case, preflight",
    "torch._dynamo.utils.counters": "timing: graphs, graph breaks, recompiles per compiled case",
    "torch._dynamo.config.recompile_limit": "not set by mlpbench (reset per case instead); its name since 2.6",
    "torch._dynamo.config.cache_size_limit": "not set by mlpbench; the older name, an alias where it remains",
    "torch.cuda.CUDAGraph": "mlp.graphs.CapturedStep (--cuda-graph step)",
    "torch.cuda.graph": "mlp.graphs.CapturedStep: the capture context",
    "torch.cuda.Stream": "mlp.graphs.CapturedStep: the side-stream warm-up",
    "torch.cuda.stream": "mlp.graphs.CapturedStep: the side-stream warm-up",
    "torch.cuda.current_stream": "mlp.graphs.CapturedStep: the streams wait for each other",
    "torch._addmm_activation": "mlp.epilogue (--epilogue fused: cuBLASLt's bias + ReLU epilogue on CUDA)",
    "torch.ops.aten.threshold_backward": "mlp.epilogue.FusedLinearReLU.backward",
    "torch.get_autocast_dtype": "mlp.epilogue.fused_linear_relu under autocast",
    "torch.amp.GradScaler": "mlp.train.TrainStep (fp16)",
    "torch.autocast": "mlp.train.TrainStep (bf16, fp16)",
    "torch.backends.cuda.matmul.allow_tf32": "mlp.matmul_precision, env.fingerprint",
    "torch.backends.cudnn.allow_tf32": "mlp.matmul_precision, env.fingerprint",
    "torch.set_float32_matmul_precision": "mlp.matmul_precision",
    "torch.backends.cudnn.version": "env.fingerprint",
    "torch.utils._foreach_utils._get_fused_kernels_supported_devices": "mlp.train.optimizer_impl (fallback: "
                                                                       "fused means CUDA)",
    "torch.profiler.profile": "profile, gate counters",
    "torch.profiler.ProfilerActivity.CUDA": "profile, gate counters",
    "torch.utils.flop_counter.FlopCounterMode": "profile accounting",
    "torch.distributed.is_nccl_available": "ddp --backend nccl",
    "triton.testing.do_bench": "gpuref.timercheck (the independent timer)",
    "pynvml.nvmlDeviceGetTotalEnergyConsumption": "bench.instruments.telemetry (energy per step)",
    "pynvml.nvmlDeviceGetClockInfo": "bench.instruments.telemetry (SM clock)",
    "pynvml.nvmlDeviceGetMaxClockInfo": "bench.instruments.telemetry (throttled flag)",
    "pynvml.nvmlDeviceGetPowerUsage": "bench.instruments.telemetry (power)",
    "pynvml.nvmlDeviceGetTemperature": "bench.instruments.telemetry (temperature)",
    "pynvml.nvmlDeviceGetCurrentClocksEventReasons": "bench.instruments.telemetry (power cap, slowdown; or the Throttle alias)",
    # fp8 (issue 39's levers): a separate row, never counted toward bf16 MFU; not used yet, listed so the GPU
    # machine's preflight says whether its torch 2.11 (and a torchao, if installed there) offers them
    "torch._scaled_mm": "not used yet: an fp8 GEMM ceiling and fp8 linears (sm_89+; Hopper's fp8 tensor cores)",
    "torch.float8_e4m3fn": "not used yet: fp8 weights and activations (forward)",
    "torch.float8_e5m2": "not used yet: fp8 gradients (backward)",
    "torchao.float8.convert_to_float8_training": "not used yet: torchao's fp8 training recipe (optional package)",
}


def resolves(name: str) -> bool:
    """Whether ``a.b.c`` names something: the longest importable module prefix, then attributes."""
    parts = name.split(".")
    obj, i = None, len(parts)
    while i > 0:
        try:
            obj = importlib.import_module(".".join(parts[:i]))
            break
        except ImportError:
            i -= 1
    if obj is None:
        return False
    for attr in parts[i:]:
        if not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
    return True


def fused_optimizers_on_cuda() -> bool:
    """torch.optim's own answer: SGD/Adam/AdamW take fused=True on CUDA."""
    import inspect

    import torch
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    return "cuda" in _get_fused_kernels_supported_devices() and all(
        "fused" in inspect.signature(c.__init__).parameters for c in (torch.optim.SGD, torch.optim.Adam,
                                                                      torch.optim.AdamW))


def check_all() -> dict[str, bool]:
    out = {name: resolves(name) for name in CUDA_APIS}
    try:
        out["fused SGD/Adam/AdamW on cuda"] = fused_optimizers_on_cuda()
    except ImportError:
        out["fused SGD/Adam/AdamW on cuda"] = False
    return out
