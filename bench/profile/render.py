"""``profile.md`` from a ``ProfileResult`` (takes only results; measures nothing)."""

from __future__ import annotations

from ..format import US_PER_S, ms, table as _table
from .attribution import PHASE_LABELS
from .results import ProfileResult
from .timeline import markdown as timeline_markdown


def render_markdown(result: ProfileResult) -> str:
    """profile.md: header, overhead split, top operators per phase, FLOPs by module, memory."""
    parts = [_header(result), _times_section(result), _operators_section(result), _flops_section(result),
             _memory_section(result)]
    if result.timeline is not None:  # CUDA: where the device waits, and what the conversions are
        parts.insert(2, timeline_markdown(result.timeline))
    return "\n\n".join(parts) + "\n"


def _ms(us: float) -> str:  # the profiler counts microseconds
    return ms(us / US_PER_S)


def _header(r: ProfileResult) -> str:
    c = r.config
    return "\n".join([
        f"# Profile: {r.case.label}",
        "",
        f"case id `{r.case.case_id}`, torch {r.torch_version}; schedule: {c.wait_steps} untraced, "
        f"{c.warmup_steps} warm-up, {c.active_steps} recorded steps. Times are per step (mean over the "
        f"recorded steps) and include the profiler's overhead; the last column of the first table is the "
        f"same phase timed without it. Files: {', '.join(f'`{f}`' for f in r.files)}.",
    ])


def _times_section(r: ProfileResult) -> str:
    cuda = r.case.device == "cuda"
    rows = []
    for t in r.times:
        row = {"phase": t.phase, "host wall ms": _ms(t.wall_us), "operator self CPU ms": _ms(t.operator_self_cpu_us),
               "host gap ms": _ms(t.host_gap_us),
               "gap %": f"{t.host_gap_us / t.wall_us:.0%}" if t.wall_us > 0 else ""}
        if cuda:
            row |= {"device kernel ms": _ms(t.device_us), "host - device ms": _ms(t.wall_us - t.device_us),
                    "bound": "host" if t.wall_us > t.device_us else "device"}
        rows.append(row | {"wall ms, no profiler": _ms(t.unprofiled_wall_us)})
    meaning = ("On CUDA the host issues work and the device runs it: where host wall time exceeds kernel time the "
               "phase is host-bound (dispatch and launch overhead), and CUDA graphs or `torch.compile` can help; "
               "where kernel time dominates, only faster kernels help." if cuda else
               "The host gap is time in no operator: Python, module calls, autograd bookkeeping (and the profiler). "
               "A large gap means dispatch overhead, which `torch.compile` can remove; a small gap means the "
               "operators themselves are the cost.")
    return f"## Overhead split per phase\n\n{_table(rows)}\n\n{meaning}"


def _operators_section(r: ProfileResult) -> str:
    cuda = r.case.device == "cuda"
    order = "device time, then self CPU time" if cuda else "self CPU time"
    blocks = [f"## Top {r.config.top_n} operators per phase\n\nSorted by {order}; % is of the phase's operator "
              f"self CPU time."]
    for phase in PHASE_LABELS:
        stats = r.operators[phase]
        total_cpu = sum(s.self_cpu_us for s in stats) or 1.0
        rows = []
        for s in stats[:r.config.top_n]:
            row = {"operator": s.name}
            if r.config.by_shape:
                row["input shapes"] = s.shapes
            row |= {"calls": f"{s.calls:g}", "self CPU ms": _ms(s.self_cpu_us), "%": f"{s.self_cpu_us / total_cpu:.1%}"}
            if cuda:
                row["device ms"] = _ms(s.device_us)
            rows.append(row)
        blocks.append(f"### {phase}\n\n{_table(rows) if rows else '(no operators recorded)'}")
    return "\n\n".join(blocks)


def _flops_section(r: ProfileResult) -> str:
    rows = [{"module": f.module, "kind": f.kind, "forward FLOPs": f"{f.forward:,}", "backward FLOPs": f"{f.backward:,}",
             "total FLOPs": f"{f.forward + f.backward:,}"} for f in r.module_flops]
    fwd, bwd = r.flops_total
    a = r.flops_analytic
    rows.append({"module": "**FlopCounterMode total**", "kind": "", "forward FLOPs": f"{fwd:,}",
                 "backward FLOPs": f"{bwd:,}", "total FLOPs": f"{fwd + bwd:,}"})
    rows.append({"module": "**analytic (mlp.flops)**", "kind": "matmul", "forward FLOPs": f"{a.forward_matmul:,}",
                 "backward FLOPs": f"{a.backward_matmul:,}", "total FLOPs": f"{a.step_matmul:,}"})
    verdict = "equal" if (fwd, bwd) == (a.forward_matmul, a.backward_matmul) else "DIFFERENT"
    return (f"## FLOPs by module (one training step)\n\n{_table(rows)}\n\nFlopCounterMode vs analytic: **{verdict}**. "
            f"Both count matmuls only; the elementwise work (bias, activations, loss, optimiser: "
            f"{a.step_elementwise:,} FLOPs by the analytic convention) is not in either total.")


def _memory_section(r: ProfileResult) -> str:
    a, m = r.memory_analytic, r.memory_measured
    pairs = [("parameters", a.parameters_bytes, m.parameters_bytes, "parameter tensors"),
             ("gradients", a.gradients_bytes, m.gradients_bytes, ".grad after backward"),
             ("optimizer state", a.optimizer_state_bytes, m.optimizer_state_bytes, "optimizer.state after a step"),
             ("saved activations", a.saved_activations_bytes, m.saved_activations_bytes,
              "storages packed by autograd (saved-tensor hooks)"),
             ("data (input + target)", a.data_bytes, m.data_bytes, "batch tensors")]
    total_m = sum(p[2] for p in pairs)
    pairs.append(("total", a.total_bytes, total_m, ""))
    rows = [{"component": name, "analytic bytes": f"{ab:,}", "measured bytes": f"{mb:,}",
             "measured - analytic": f"{mb - ab:+,}", "measured from": how} for name, ab, mb, how in pairs]
    cuda = r.case.device == "cuda"
    phase_rows = []
    for p in r.memory_phases:
        row = {"phase": p.phase, "allocated bytes": f"{p.allocated_bytes:,}", "freed bytes": f"{p.freed_bytes:,}",
               "net bytes": f"{p.allocated_bytes - p.freed_bytes:+,}",
               "peak above phase start": f"{p.peak_above_start_bytes:,}"}
        if cuda:
            row["CUDA peak allocated (absolute)"] = f"{(p.cuda_peak_allocated_bytes or 0):,}"
        phase_rows.append(row)
    source = ("the profiler's memory events (CUDA caching allocator) and `torch.cuda.max_memory_allocated`, reset "
              "before each phase of a separate step" if cuda else "the profiler's memory profiling (CPU allocator)")
    return (f"## Memory: analytic vs measured\n\n{_table(rows)}\n\n"
            f"Analytic saved activations include {a.cast_weights_bytes:,} bytes of low-precision weight copies.\n\n"
            f"### Per phase ({r.case.device}), per step\n\nFrom {source}. The forward phase's net allocation is what "
            f"it leaves alive for backward: the activations the layers saved plus the output (the loss runs, and "
            f"saves its tensors, in the backward phase).\n\n{_table(phase_rows)}")
