"""The device timeline read from a trace, against torch.profiler's own per-operator device totals.

The H100 reference profile (results/reference/h100/profile) holds both: ``trace.json`` (what the timeline
parses) and ``profile.md``, whose operator tables torch.profiler's ``key_averages`` computed from its event
tree on the GPU machine, a different path through the same run.
"""

from __future__ import annotations

import math
from pathlib import Path

from bench.profile import timeline

REPO = Path(__file__).resolve().parents[3]
H100 = REPO / "results" / "reference" / "h100" / "profile"
# profile.md, "Top 10 operators per phase", device ms per step: aten::addmm (forward) + aten::mm (backward)
PROFILER_MATMUL_MS = 6.680 + 12.351
PROFILER_COPY_MS = 0.809 + 1.435  # aten::copy_, forward + backward


def test_matmul_and_conversion_time_match_the_profilers_operator_totals():
    t = timeline.read_timeline(H100 / "trace.json")
    assert math.isclose(t.matmul_us / 1e3, PROFILER_MATMUL_MS, abs_tol=0.002)
    assert math.isclose(sum(c.device_us for c in t.conversions) / 1e3, PROFILER_COPY_MS, abs_tol=0.002)
    assert len(t.steps) == 3  # the profile's 3 recorded steps


def test_conversions_name_their_dtypes_and_launchers():
    t = timeline.read_timeline(H100 / "trace.json")
    forward = [c for c in t.conversions if c.phase == "forward" and c.shape == "8192x8192"]
    assert [(c.launched_by, c.from_dtype, c.to_dtype, c.calls) for c in forward] == \
        [("aten::linear", "float", "c10::BFloat16", 6)]  # 5 weights and the input, fp32 -> bf16 for autocast
    back = {(c.from_dtype, c.to_dtype): c for c in t.conversions if c.phase == "backward" and "ToCopy" in c.launched_by
            and c.shape == "8192x8192"}
    assert back[("c10::BFloat16", "float")].calls == 5  # the weight gradients back to the fp32 masters


def _event(cat, name, ts, dur, **args):
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur, "tid": 1, "pid": 1, "args": args}


def test_busy_idle_and_gap_of_a_synthetic_trace():
    events = [_event("user_annotation", "ProfilerStep#1", 0, 100), _event("user_annotation", "ProfilerStep#2", 100, 100)]
    for i, (launch, start, dur) in enumerate([(10, 20, 30), (15, 40, 20), (30, 70, 10),  # step 1: overlap, a hole
                                              (110, 100, 50)]):  # step 2
        events += [_event("cuda_runtime", "cudaLaunchKernel", launch, 1, correlation=i),
                   _event("kernel", f"k{i}", start, dur, correlation=i),
                   _event("cpu_op", "aten::mm", launch - 1, 3)]
    t = timeline.timeline(events)
    first, second = t.steps
    assert (first.span_us, first.busy_us, first.idle_us) == (60, 50, 10)  # 20..80 with 60..70 empty
    assert math.isnan(first.gap_before_us) and second.gap_before_us == 20  # 80 -> 100
    assert t.matmul_us == (30 + 20 + 10 + 50) / 2


def test_a_cpu_trace_has_no_device_timeline():
    assert timeline.timeline([_event("cpu_op", "aten::mm", 0, 5)]) is None
