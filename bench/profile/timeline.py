"""The device's timeline in a profiler trace: busy, idle inside a step, the gap between steps, and the
matmul and dtype-conversion kernels by what launched them (pure JSON, no torch).

``torch.profiler``'s operator tables sum device time per operator, which hides two things a reader of a
CUDA profile needs: whether the device ever waits (idle inside a step, gaps between steps), and which
conversions ``aten::copy_``'s total is made of (weights cast for autocast, the input, the weight gradients
cast back to the fp32 masters, a loss computed in fp32). Both are read here from the Chrome trace the
profile writes (``trace.json``), so every figure is backed by that file:

``python -m bench.profile.timeline results/reference/h100/profile/trace.json``

A kernel belongs to the step (``ProfilerStep#N``) and phase (``forward``, ``backward``, ``optimizer``)
whose host range contains the runtime call that launched it (time, not thread: on CUDA autograd runs the
backward on a thread of its own), and to the operators whose host range contains that call on the
launching thread: the innermost names the kernel's kind, the outermost says why it ran.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..model.phases import TRAINING_PHASE_NAMES

DEVICE_CATEGORIES = ("kernel", "gpu_memset", "gpu_memcpy")  # what occupies the device
LAUNCH_CATEGORIES = ("cuda_runtime", "cuda_driver")
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::_scaled_mm", "aten::_addmm_activation")
CONVERSION_OP = "aten::copy_"  # every dtype cast (``_to_copy``) runs its kernel under copy_
STEP_PREFIX = "ProfilerStep#"


@dataclass(frozen=True)
class StepTimeline:
    step: str
    span_us: float  # first kernel start to last kernel end
    busy_us: float  # union of the kernels' intervals
    gap_before_us: float  # idle between the previous step's last kernel and this step's first (nan for the first)

    @property
    def idle_us(self) -> float:
        return self.span_us - self.busy_us


@dataclass(frozen=True)
class Conversion:
    """A group of dtype-conversion kernels, per step: what launched them, from which dtype to which."""

    phase: str
    launched_by: str  # the outermost operator (``aten::linear``, an autograd node, ``aten::mse_loss``)
    from_dtype: str
    to_dtype: str
    shape: str
    calls: float
    device_us: float


@dataclass(frozen=True)
class Timeline:
    steps: tuple[StepTimeline, ...]
    matmul_us: float  # per step: kernels launched under a matmul operator
    conversions: tuple[Conversion, ...]  # per step, largest first

    @property
    def mean_idle_us(self) -> float:
        return sum(s.idle_us for s in self.steps) / len(self.steps)

    @property
    def mean_gap_us(self) -> float:
        gaps = [s.gap_before_us for s in self.steps[1:]]
        return sum(gaps) / len(gaps) if gaps else float("nan")

    @property
    def mean_busy_us(self) -> float:
        return sum(s.busy_us for s in self.steps) / len(self.steps)


def read_timeline(trace_path: Path) -> Timeline | None:
    """The device timeline of a trace; None when it holds no device kernel (a CPU profile)."""
    data = json.loads(Path(trace_path).read_text())
    return timeline(data["traceEvents"] if isinstance(data, dict) else data)


def timeline(events: Sequence[dict]) -> Timeline | None:
    kernels = sorted((e for e in events if e.get("cat") in DEVICE_CATEGORIES and "dur" in e), key=lambda e: e["ts"])
    if not kernels:
        return None
    launches = {e["args"]["correlation"]: e for e in events
                if e.get("cat") in LAUNCH_CATEGORIES and "correlation" in e.get("args", {})}
    ranges = [e for e in events if e.get("cat") == "user_annotation" and "dur" in e]
    steps = sorted((r for r in ranges if r["name"].startswith(STEP_PREFIX)), key=lambda r: r["ts"])
    phases = [r for r in ranges if r["name"] in TRAINING_PHASE_NAMES]
    ops_by_thread = defaultdict(list)
    for e in events:
        if e.get("cat") == "cpu_op" and "dur" in e:
            ops_by_thread[e["tid"]].append(e)
    per_step = defaultdict(list)
    matmul_us, groups = 0.0, defaultdict(lambda: [0, 0.0])
    for kernel in kernels:
        launch = launches.get(kernel.get("args", {}).get("correlation"))
        if launch is None:
            continue
        t = launch["ts"]
        step = _containing(steps, t)
        if step is None:
            continue
        per_step[step["name"]].append(kernel)
        chain = sorted((o for o in ops_by_thread[launch["tid"]] if o["ts"] <= t <= o["ts"] + o["dur"]),
                       key=lambda o: (o["ts"], -o["dur"]))
        if not chain:
            continue
        inner = chain[-1]
        if any(o["name"] in MATMUL_OPS for o in chain):
            matmul_us += kernel["dur"]
        elif inner["name"] == CONVERSION_OP:
            phase = _containing(phases, t)
            types = inner.get("args", {}).get("Input type") or ["?", "?"]
            dims = inner.get("args", {}).get("Input Dims") or [[]]
            key = (phase["name"] if phase else "", chain[0]["name"], str(types[1]), str(types[0]),
                   "x".join(map(str, dims[0])))  # copy_(self=destination, src): from src to self
            groups[key][0] += 1
            groups[key][1] += kernel["dur"]
    if not per_step:
        return None
    n = len(per_step)
    ordered = [s for s in steps if s["name"] in per_step]
    out, previous_end = [], None
    for s in ordered:
        ks = per_step[s["name"]]
        start, end = min(k["ts"] for k in ks), max(k["ts"] + k["dur"] for k in ks)
        out.append(StepTimeline(s["name"], end - start, _union_us(ks),
                                start - previous_end if previous_end is not None else float("nan")))
        previous_end = end
    conversions = sorted((Conversion(*key, calls / n, us / n) for key, (calls, us) in groups.items()),
                         key=lambda c: -c.device_us)
    return Timeline(tuple(out), matmul_us / n, tuple(conversions))


def _containing(ranges: Sequence[dict], t_us: float) -> dict | None:
    return next((r for r in ranges if r["ts"] <= t_us <= r["ts"] + r["dur"]), None)


def _union_us(kernels: Sequence[dict]) -> float:
    busy, start, end = 0.0, None, None
    for k in sorted(kernels, key=lambda k: k["ts"]):
        if end is None or k["ts"] > end:
            busy += (end - start) if end is not None else 0.0
            start, end = k["ts"], k["ts"] + k["dur"]
        else:
            end = max(end, k["ts"] + k["dur"])
    return busy + (end - start)


def markdown(t: Timeline) -> str:
    """The profile's "Device timeline" section."""
    from ..format import table

    steps = [{"step": s.step, "device span ms": f"{s.span_us / 1e3:.3f}", "busy ms": f"{s.busy_us / 1e3:.3f}",
              "idle inside ms": f"{s.idle_us / 1e3:.3f}",
              "gap before ms": "" if s.gap_before_us != s.gap_before_us else f"{s.gap_before_us / 1e3:.3f}"}
             for s in t.steps]
    conv = [{"phase": c.phase or "(autograd thread)", "launched by": c.launched_by, "from": c.from_dtype,
             "to": c.to_dtype, "shape": c.shape, "calls": f"{c.calls:g}", "device ms": f"{c.device_us / 1e3:.3f}"}
            for c in t.conversions]
    total = sum(c.device_us for c in t.conversions) / 1e3
    parts = ["## Device timeline", "",
             f"Per recorded step, from `trace.json`: the device was busy {t.mean_busy_us / 1e3:.3f} ms, idle "
             f"{t.mean_idle_us / 1e3:.3f} ms inside the step and {t.mean_gap_us / 1e3:.3f} ms between steps; "
             f"matmul kernels took {t.matmul_us / 1e3:.3f} ms. A step timed without the profiler that takes longer "
             "than busy + idle + gap ran its kernels slower (a power cap lowers the clock), not with more gaps.",
             "", table(steps)]
    if conv:
        parts += ["", f"Dtype conversions (`{CONVERSION_OP}` kernels, {total:.3f} ms per step), by what launched "
                      "them:", "", table(conv)]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile.timeline",
                                     description="the device timeline of a profile's trace.json")
    parser.add_argument("trace", type=Path)
    args = parser.parse_args(argv)
    try:
        t = read_timeline(args.trace)
    except (OSError, ValueError, KeyError) as exc:
        print(f"timeline: cannot read {args.trace}: {exc}", file=sys.stderr)
        return 2
    print(markdown(t) if t else f"timeline: {args.trace} holds no device kernel (a CPU profile)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
