"""Run a sweep: measure each case, turn failures into rows, and save after every case.

Failure is data: CUDA absent or a case bigger than the memory available -> ``skipped``;
an allocation that fails (CUDA or CPU) -> ``oom`` (memory released, the sweep goes on);
compile or other error -> ``error`` with the message; a case the process died in twice
-> ``crashed`` (``bench.runs.writer``). Ctrl-C and SIGTERM keep every finished case;
``resume`` measures only what is missing. The folder's format belongs to ``bench.runs``.

Bounded in time: the run folder and meta.json are written before anything is
measured; each ceiling has a budget (``ceiling.py``), each case a predicted-time
budget (``timing.py``), and a preset skips the dtypes this device has no fast path
for (``skip_slow_dtypes``), each as ``skipped`` rows that say why and how to run them.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path

import torch

import mlp

from ..case import plugin
from ..limits import ceiling as ceiling_limit
from ..limits import registry, speed_of_light
from ..instruments import telemetry
from .budget import RunBudget, prior_case_s
from ..case.accounting import case_figures
from ..case.accounting import columns as accounting_columns
from ..case.cases import Case
from ..limits.ceiling import (
    END_BUDGET_S,
    SHAPES_BUDGET_S,
    Ceiling,
    fastest_products,
    measure_case_shapes,
    slower_than_fp32,
)
from ..limits.key import LimitKey
from ..instruments.clocks import torch_threads
from ..instruments.env import FULL_RATE_DTYPES, dtype_fast_path, fingerprint, load_average
from ..analysis.noise import run_record
from ..instruments.numerics import STEPS, case_numerics, is_reference
from ..errors import first_line
from ..format import duration as _duration
from ..instruments.counters import count_step
from ..case.headroom import memory_shortfall
from ..model.case_fields import GRAPHS_OFF
from ..model.phases import TRAINING_PHASES, Phase
from ..runs import CRASHED_REASON, RunMeta, RunWriter, Status
from ..runs.recipe import ModelRecipe
from ..analysis.stats import summarize
from .process_samples import add_process_samples, processes_for
from ..instruments.timing import Measurement, TimingConfig, measure

_OOM_ERRORS = tuple(e for e in (getattr(torch, "OutOfMemoryError", None),
                                getattr(torch.cuda, "OutOfMemoryError", None), MemoryError) if e is not None)
# How the CPU allocator (c10's DefaultCPUAllocator) words a failed allocation in its RuntimeError
CPU_OOM_MESSAGES = ("can't allocate memory", "DefaultCPUAllocator")


def failure_status(exc: BaseException) -> Status:
    """``oom`` for an allocation that failed (CUDA, or the CPU allocator), else ``error``."""
    if isinstance(exc, _OOM_ERRORS):
        return Status.OOM
    if isinstance(exc, RuntimeError) and any(text in str(exc) for text in CPU_OOM_MESSAGES):
        return Status.OOM
    return Status.ERROR


def safe_measure(case: Case, config: TimingConfig, on_predict: Callable[[float], object] | None = None) -> Measurement:
    """``measure`` with every failure turned into a status; memory is released after a failure.

    A case whose analytic memory exceeds what the device has available is ``skipped`` before
    it is built: on Linux an oversized CPU allocation succeeds and the kernel kills the
    process later, mid-case, with nothing to catch (``bench.case.headroom``). A measured case then gets its
    numerics against fp32 eager (``measured_numerics``: one short step sequence a side, after the timing, so
    it never lands in a sample; its seconds are the ``numerics_s`` column, outside ``measure_s``).
    """
    start = time.perf_counter()
    try:
        shortfall = memory_shortfall(case)
        if shortfall:
            return Measurement(case, status=Status.SKIPPED, reason=shortfall)
        m = measure(case, config, on_predict=on_predict)
        if m.status == Status.OK and processes_for(case, config) > 1:  # pyperf's method (bench.engine.process_samples)
            add_process_samples(m, config, processes_for(case, config))
        if m.status == Status.OK:
            m.numerics = measured_numerics(m, config)
        return m
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure of one case is data, not a crash
        status = failure_status(exc)
        reason = _one_line(exc) if status is Status.OOM else f"{type(exc).__name__}: {_one_line(exc)}"
        failed = Measurement(case, status=status, reason=reason)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    failed.measure_s = time.perf_counter() - start
    return failed


def measured_numerics(m: Measurement, config: TimingConfig) -> dict:
    """The case's numerics columns (``bench.instruments.numerics``) and their cost ``numerics_s``, where its budget has room.

    The pass builds the step twice more (a compiled case compiles again) and runs ``numerics.STEPS`` steps a
    side: about one first step plus ``2 * STEPS`` steady ones. Where the case's budget (``max_case_s``, or what a
    run budget left it) cannot hold that beside what the timing took, the pass is not run and says why.
    """
    step = m.samples.get(Phase.STEP) or [math.nan]
    cost_s = 0.0 if is_reference(m.case) else m.first_step_s + 2 * STEPS * summarize(step).median
    if config.max_case_s is not None and not m.measure_s + cost_s <= config.max_case_s:
        return {"numerics": f"not measured: the case budget ({config.max_case_s:.0f} s) has no room for it "
                            f"(~{cost_s:.0f} s after {m.measure_s:.0f} s of timing)", "numerics_s": 0.0}
    start = time.perf_counter()
    return {**case_numerics(m.case), "numerics_s": time.perf_counter() - start}


def _one_line(exc: BaseException) -> str:
    return first_line(exc) or type(exc).__name__


# --------------------------------------------------------------------------- rows

def summary_rows(m: Measurement, ceiling: Ceiling | None) -> list[dict]:
    """One row per phase (one row in all for a failed case), with statistics and derived metrics."""
    case = m.case
    base = {**case.to_row(), "case_id": case.case_id, "label": case.label, "status": Status(m.status).value,
            "reason": m.reason,
            **m.telemetry}
    timings = {"first_step_s": m.first_step_s, "measure_s": m.measure_s,
               "predicted_measure_s": m.predicted_measure_s, "steady_measure_s": m.steady_measure_s}
    if m.status == Status.OK:
        try:  # analytic, or counted (a module the accounting does not know); a failure is the case's error row
            figures = case_figures(case)
        except Exception as exc:  # noqa: BLE001 - one case's failure is data, not the sweep's end
            m.status, m.reason = Status.ERROR, f"accounting: {type(exc).__name__}: {_one_line(exc)}"
            base.update(status=m.status.value, reason=m.reason)
    if m.status != Status.OK:
        return [{**base, "phase": Phase.STEP.value, **timings}]
    # a whole-step case (Case.whole_step) timed the step alone: its other phases have no samples and no row
    summaries = {p: summarize(m.samples[p]) for p in Phase if m.samples.get(p)}
    medians = {p: s.median for p, s in summaries.items()}
    phase_sum = sum(medians[p] for p in TRAINING_PHASES) if all(p in medians for p in TRAINING_PHASES) else math.nan
    compiled = case.compiled
    rows = []
    for phase in summaries:
        s = summaries[phase]
        matmul = figures.matmul_flops[phase.value]
        tflops = matmul / s.median / 1e12 if s.median > 0 else math.nan
        row = {
            **base,
            "phase": phase.value,
            **s.as_dict(unit="_s"),
            "iters_per_block": m.iters_per_block.get(phase, 0),
            "samples_per_s": case.batch / s.median if s.median > 0 else math.nan,
            **accounting_columns(figures, phase.value),
            "tflops": tflops,
            **ceiling_limit.ceiling_columns(tflops, ceiling),
            "peak_tflops": ceiling.datasheet_tflops if ceiling and ceiling.datasheet_tflops else math.nan,
            "mfu_peak": tflops / ceiling.datasheet_tflops if ceiling and ceiling.datasheet_tflops else math.nan,
            "peak_mem_bytes": m.peak_mem_bytes.get(phase, math.nan),
            "harness_mem_bytes": math.nan if m.harness_mem_bytes is None else m.harness_mem_bytes,
            "first_inference_s": m.first_inference_s,
            "compile_s": max(m.first_step_s - medians[Phase.STEP], 0.0) if compiled else math.nan,
            "compile_graphs": m.compile_graphs,
            "graph_breaks": m.graph_breaks,
            "recompiles": m.recompiles,
            "phase_sum_gap": (phase_sum / medians[Phase.STEP] - 1) if phase is Phase.STEP else math.nan,
            "untimed_phases": m.untimed_phases if phase is Phase.STEP else "",
            "optimizer_impl": m.optimizer_impl,
            "torch_threads": m.threads,
            **timings,
            **m.numerics,
            **({"processes": m.processes, "between_process_cv": m.process_spread.get(phase, math.nan),
                "process_note": m.process_note} if m.sample_process else {}),
        }
        rows.append(row)
    return rows


OPS_COUNT_BATCH = 4  # an eager step dispatches the same ops at any batch: count at a cheap one


@functools.lru_cache(maxsize=256)
def phase_ops(case: Case) -> dict[str, int]:
    """ATen ops per phase of the case's eager step (``bench.instruments.counters``); {} when counting fails.

    A compiled case is charged the ops of its eager step (an upper bound on what it dispatches).
    Cached: callers pass ``ops_case(case)``, so the cases of a batch sweep share one count.
    """
    small = case.with_(**GRAPHS_OFF)
    try:
        step = mlp.TrainStep(small.build_model(), small.loss, small.optimizer, small.dtype, small.device,
                             optimizer_options=small.optimizer_options, knobs=small.knobs)
        with torch_threads(1):  # the count does not depend on threads; one thread never waits at a barrier
            counts = count_step(step, small, small.make_batch())
    except Exception as exc:  # noqa: BLE001 - no op count leaves the overhead term empty, not the row
        what = f"--model {case.model}" + (f" ({case.model_args})" if case.model_args else "") if case.model else (
            f"network {case.network}")
        warn_once(what, f"no ATen op count for {what} ({_one_line(exc)}): its aten_ops and the speed of light's "
                        "dispatch term (sol_*) are left empty")
        return {}
    return {phase: c.aten_ops for phase, c in counts.phases.items()}


_WARNED: set[str] = set()


def warn_once(key: str, text: str) -> None:
    """A warning about a model, printed once per model and run process (not once per case or dispatch pass)."""
    if key not in _WARNED:
        _WARNED.add(key)
        print(f"mlpbench: warning: {text}", file=sys.stderr)


def ops_case(case: Case) -> Case:
    """The case whose eager step is counted for ``case``: the same network at a small batch, eager, default threads.

    A whole-step CUDA graph dispatches nothing per op on the host: its count is 0 (``case_rows``), not this one's.
    """
    return case.with_(batch=min(case.batch, OPS_COUNT_BATCH), threads=0, **GRAPHS_OFF)


def derived_columns(row: dict, meta: RunMeta | dict) -> dict:
    """The columns that depend on the run's limits (``meta``: read by key): each registered limit's own (the
    ceiling's MFU and its flag), then the speed of light from each limit's term (``bench.limits.registry``)."""
    out, terms = {}, {}
    for limit in registry.registered():
        record = limit_record(meta, limit, LimitKey.of(row))
        if limit.derived is not None:
            out.update(limit.derived(record, row))
        if limit.sol_term is not None:
            terms[limit.sol_term] = terms.get(limit.sol_term, 0.0) + limit.sol_seconds(record, row)
    return {**out, **speed_of_light.columns(speed_of_light.floor_of(terms), row["median_s"])}


def limit_record(meta: RunMeta | dict, limit: registry.Limit, key: LimitKey) -> dict | None:
    """The run's record of ``limit`` for ``key`` (a case's or a row's), or None where it was not measured."""
    return (meta.get(limit.name) or {}).get(str(key.for_table(limit.table.per_dtype)))


def sample_rows(m: Measurement) -> list[dict]:
    """One row per block: ``seconds`` on the run's clock (meta.json's timing_config.clock), and the step's and
    inference's blocks read on both clocks beside it (``wall_s``, ``cpu_s``; NaN where a clock has no reading)."""
    def on(clock: str, phase, i: int) -> float:
        values = m.clock_samples.get(clock, {}).get(phase, [])
        return values[i] if i < len(values) else math.nan

    return [{"case_id": m.case.case_id, "phase": phase.value, "sample": i, "seconds": value,
             "iters_per_block": m.iters_per_block.get(phase, 0),
             **({f"{c}_s": on(c, phase, i) for c in m.clock_samples} if m.clock_samples else {}),
             **({"process": m.sample_process[phase][i]} if m.sample_process else {})}
            for phase, values in m.samples.items() for i, value in enumerate(values)]


# --------------------------------------------------------------------------- the sweep


def case_rows(m: Measurement, meta: RunMeta) -> list[dict]:
    """``summary_rows`` plus the columns that need the run's limits: ATen ops per phase and the speed of light.

    The ceiling is the one ``meta`` holds for the case, the same record ``derived_columns`` and ``rederive`` read.
    """
    ceiling = meta.ceilings.get(str(LimitKey.of(m.case)))
    rows = summary_rows(m, Ceiling(**ceiling) if ceiling else None)
    if m.status == Status.OK:
        with _spent(meta, "op_counts"):
            # a replayed CUDA graph launches its kernels without the host dispatching an op
            ops = {p.value: 0 for p in Phase} if m.case.whole_graph else phase_ops(ops_case(m.case))
        for row in rows:
            row["aten_ops"] = ops.get(row["phase"], math.nan)
            row.update(derived_columns(row, meta))
    return rows


def rederive(writer: RunWriter) -> None:
    """Recompute the limit-derived columns of every row from the final limits (the end pass may raise them)."""
    for row in writer.summary:
        if row.get("status") == Status.OK:
            row.update(derived_columns(row, writer.meta))


def run_sweep(
    cases: Sequence[Case],
    out_dir: Path,
    config: TimingConfig = TimingConfig(),
    *,
    preset: str = "custom",
    resume: bool = False,
    progress: bool = True,
    measure_fn: Callable[..., Measurement] = safe_measure,
    meta_extra: dict | None = None,
    skip_slow_dtypes: bool = False,
    max_run_s: float | None = None,
    limits: bool = True,
) -> RunWriter:
    """Measure every case not yet in ``out_dir`` and write the run folder after each one.

    The folder and meta.json exist before the first ceiling. ``measure_fn(case, config, on_predict=...)``
    reports each case's predicted time to the progress bar. With ``skip_slow_dtypes`` (a preset whose
    dtypes the user did not choose), cases in a dtype the device has no fast path for become
    ``skipped`` rows, and meta.json's ``skipped_dtypes`` says why. With ``max_run_s`` (``--max-run-s``) the
    run starts a case only while the time left covers its prediction (``bench.engine.budget``); the rest become
    ``skipped`` rows whose reason starts with "run budget". ``limits=False`` measures no ceiling, bandwidth or
    dispatch floor (seconds saved; MFU and the speed of light stay empty): the cases are timed as always.
    """
    started = time.perf_counter()
    budget = RunBudget(max_run_s) if max_run_s is not None else None  # the ceilings count against it
    meta = RunMeta(preset=preset, env=fingerprint(), timing_config=asdict(config), n_cases=len(cases),
                   cases=[c.to_row() for c in cases], skip_slow_dtypes=skip_slow_dtypes,
                   load_average_1m_start=load_average(),
                   extra={**(meta_extra or {}), "max_run_s": max_run_s})
    writer = RunWriter(out_dir, meta, resume=resume)  # takes the folder's lock (FolderBusy: another writer)
    try:
        writer.flush()  # the folder and meta.json from the first second
        writer.record_models([ModelRecipe.from_dict(r) for r in plugin.recipes(cases)])  # what --confirm rebuilds
        todo = [c for c in cases if c.case_id not in writer.done_ids]
        if limits:
            _measure_passes(todo, writer, first=True)
        slow = slow_dtypes(todo, writer.meta.ceilings) if skip_slow_dtypes else {}
        writer.meta.skipped_dtypes = slow
        # the limits are measured for the cases that will run: not a slow dtype, not a case over memory
        fast = [c for c in todo if str(LimitKey(c.device, c.dtype)) not in slow and not memory_shortfall(c)]
        with _spent(writer.meta, "case_shapes_start"):
            _measure_case_shapes(fast, writer, "start")
        with _spent(writer.meta, "_and_".join(limit.name for limit in registry.registered() if not limit.first)):
            if limits:
                _measure_passes(fast, writer, first=False)
        writer.flush()
        _measure_cases(todo, writer, config, measure_fn, slow, progress, budget)
        with _spent(writer.meta, "case_shapes_end"):
            _measure_case_shapes(todo, writer, "end")
        _measure_end(fast if limits else [], writer)
        rederive(writer)
    finally:
        writer.meta.run_s += time.perf_counter() - started
        writer.meta.load_average_1m_end = load_average()
        writer.meta.noise = run_record(writer.meta)  # what compare, history and the gate read of the machine
        writer.flush()
        writer.close()
    return writer


def _measure_cases(todo: Sequence[Case], writer: RunWriter, config: TimingConfig, measure_fn: Callable,
                   slow: dict[str, str], progress: bool, budget: RunBudget | None) -> None:
    """Each case in turn, marked in flight while it is measured; interrupted, the mark is withdrawn."""
    bar = _Progress(todo, progress)
    try:
        for case in todo:
            bar.start(case)
            key = str(LimitKey(case.device, case.dtype))
            ceiling = writer.meta.ceilings.get(str(LimitKey.of(case)))
            if writer.gave_up_on(case.case_id):
                measurement = Measurement(case, status=Status.CRASHED, reason=CRASHED_REASON)
            elif key in slow:
                measurement = Measurement(case, status=Status.SKIPPED, reason=slow_dtype_reason(case, slow[key]))
            else:
                writer.begin(case.case_id, case.label)
                if budget is not None:
                    measurement = _measure_within(budget, case, config, ceiling, measure_fn, bar.predicted)
                else:
                    measurement = _measure_watched(case, config, measure_fn, bar.predicted)
            writer.add(case_rows(measurement, writer.meta), sample_rows(measurement))
            bar.done(measurement)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI turns it into this): not a crash
        writer.abandon()
        writer.meta.interrupted = True
        raise
    finally:
        bar.close()


def _measure_watched(case: Case, config: TimingConfig, measure_fn, on_predict) -> Measurement:
    """``measure_fn`` with GPU telemetry sampled while it runs (CUDA cases; ``bench.instruments.telemetry``)."""
    watch = telemetry.CaseWatch(case.device)
    with watch:
        m = measure_fn(case, config, on_predict=on_predict)
    if case.device == "cuda":
        step = m.samples.get(Phase.STEP) if m.samples else None
        m.telemetry = watch.columns(m.steady_window, summarize(step).median if step else math.nan)
    return m


def _measure_within(budget: RunBudget, case: Case, config: TimingConfig, ceiling: dict | None, measure_fn,
                    on_predict) -> Measurement:
    """Measure ``case`` only if the run's time left covers it: before it starts, and again after its first step."""
    rate = ceiling["measured_tflops"] if ceiling else None
    reason = budget.not_started_reason(prior_case_s(case, rate, config).total_s, case)
    if reason:
        return Measurement(case, status=Status.SKIPPED, reason=reason)
    left = budget.left_s()
    run_limited = config.max_case_s is None or left < config.max_case_s
    m = _measure_watched(case, replace(config, max_case_s=max(min(left, config.max_case_s or math.inf), 1e-3)),
                         measure_fn, on_predict)
    if m.status == Status.SKIPPED and run_limited and m.reason.startswith("predicted"):
        m.reason = budget.measuring_reason(m.predicted_measure_s, left, case)
    return m


@contextlib.contextmanager
def _spent(meta: RunMeta, what: str) -> Iterator[None]:
    """Add the block's wall time to ``meta.limits_spent_s[what]``: what the limits beyond the squares cost."""
    start = time.perf_counter()
    try:
        yield
    finally:
        meta.limits_spent_s[what] = meta.limits_spent_s.get(what, 0.0) + time.perf_counter() - start


def slow_dtypes(cases: Sequence[Case], ceilings: dict) -> dict[str, str]:
    """``{"cpu/bf16": why}`` for each reduced-precision device x dtype without a fast path.

    Two independent sources, either suffices: PyTorch's view of the device (``env.dtype_fast_path``:
    CPU capability, oneDNN support, CPU flags), and the ceilings measured in this run (a dtype far
    below fp32's matmul rate on the same device and threads).
    """
    out = {}
    for device, dtype, threads in sorted({(c.device, c.dtype, c.threads) for c in cases}):
        key = str(LimitKey(device, dtype))
        if dtype in FULL_RATE_DTYPES or key in out:
            continue
        path = dtype_fast_path(device, dtype)
        ceiling = ceilings.get(str(LimitKey(device, dtype, threads)))
        fp32 = ceilings.get(str(LimitKey(device, "fp32", threads)))
        measured = slower_than_fp32(ceiling, fp32) if ceiling and fp32 else None
        if not path.native or measured:
            out[key] = "; ".join(r for r in (None if path.native else path.reason, measured) if r)
    return out


def slow_dtype_reason(case: Case, why: str) -> str:
    return f"{case.dtype} skipped by the preset: {why}; measure it with: mlpbench run {case.cli_flags()}"


def limit_axes(cases: Sequence[Case]) -> list[LimitKey]:
    """The (device, dtype, CPU thread count) each limit is measured for; a CUDA case's thread count does not matter."""
    return sorted({LimitKey.of(c) for c in cases})


def _measure_passes(cases: Sequence[Case], writer: RunWriter, first: bool) -> None:
    """Each registered limit (``bench.limits.registry``) whose ``first`` is ``first``, once per key the cases need
    (``limit_axes``, as its table keys them), that the machine has and ``writer.meta`` lacks (a resumed run keeps
    its own): the matmul ceiling first (the dtypes a preset skips read it), then the bandwidth ceiling per device x
    dtype x threads and the dispatch floor per device x threads. Each is written to meta.json as soon as measured."""
    for axis in limit_axes(cases):
        for limit in registry.registered():
            if limit.first == first:
                _measure_limit(writer, limit, axis.for_table(limit.table.per_dtype))


def _measure_limit(writer: RunWriter, limit: registry.Limit, key: LimitKey) -> None:
    """``table[key] = limit.measure(...).as_dict()`` on ``key.threads`` threads, then meta.json rewritten; skipped
    where the table has the key already (a resumed run) or the device is absent. A failure is a warning: the
    limit's columns stay empty, the run goes on."""
    table = writer.meta.limit_table(limit.name)
    if str(key) in table or (key.device == "cuda" and not torch.cuda.is_available()):
        return
    try:
        with torch_threads(key.threads):
            table[str(key)] = limit.measure(key.device, key.dtype).as_dict()
    except Exception as exc:  # noqa: BLE001 - a missing limit empties columns, not the run
        print(f"mlpbench: warning: no {key} {limit.table.title} ({_one_line(exc)})", file=sys.stderr)
        return
    writer.flush()


def case_gemms(cases: Sequence[Case]) -> dict[LimitKey, set]:
    """The distinct GEMMs (``mlp.Gemm``: forward and both backward products) the cases run, per ceiling key."""
    out: dict[LimitKey, set] = {}
    for case in cases:
        try:  # shapes only (the meta device); a counted case lists none, a failing one is its own error row
            shapes = case_figures(case).gemms
        except Exception:  # noqa: BLE001
            shapes = ()
        out.setdefault(LimitKey.of(case), set()).update(shapes)
    return out


def _measure_end(cases: Sequence[Case], writer: RunWriter) -> None:
    """Each limit with an end pass (``Limit.again``: the dispatch floor) measured again after the cases, for the
    keys of the cases' axes (``limit_axes``, as the start pass); ``again`` chooses the record kept. A key the start
    pass lacks stays absent; a failure keeps the start pass, with a warning. Its seconds: ``<name>_end``."""
    for limit in registry.registered():
        if limit.again is None:
            continue
        with _spent(writer.meta, f"{limit.name}_end"):
            table = writer.meta.limit_table(limit.name)
            for key in sorted({axis.for_table(limit.table.per_dtype) for axis in limit_axes(cases)}):
                start = table.get(str(key))
                if start is None or (key.device == "cuda" and not torch.cuda.is_available()):
                    continue
                try:
                    with torch_threads(key.threads):
                        table[str(key)] = limit.again(start, key.device)
                except Exception as exc:  # noqa: BLE001 - the start pass stands
                    print(f"mlpbench: warning: {key} {limit.table.probe_name or limit.table.title} (end) failed "
                          f"({_one_line(exc)})", file=sys.stderr)
            writer.flush()


def _measure_case_shapes(cases: Sequence[Case], writer: RunWriter, pass_name: str) -> None:
    """The ceilings measured again on the cases' own GEMMs (``start``) or on their fastest products (``end``)."""
    ok = {row["case_id"] for row in writer.summary if row.get("status") == Status.OK}
    if pass_name == "end":
        cases = [c for c in cases if c.case_id in ok]
    for key, shapes in sorted(case_gemms(cases).items()):
        known = writer.meta.ceilings.get(str(key))
        if not known:
            continue
        ceiling = Ceiling(**known)
        try:
            with torch_threads(key.threads):
                todo, budget_s = (shapes, SHAPES_BUDGET_S) if pass_name == "start" else \
                    (fastest_products(ceiling), END_BUDGET_S)
                ceiling = ceiling_limit.clocked(key.device, pass_name,
                                                lambda: measure_case_shapes(ceiling, todo, budget_s, pass_name))
        except Exception as exc:  # noqa: BLE001 - the squares' ceiling stands; the flag still guards it
            print(f"mlpbench: warning: {key} case-shape ceiling ({pass_name}) failed ({_one_line(exc)})",
                  file=sys.stderr)
            continue
        writer.meta.ceilings[str(key)] = ceiling.as_dict()
        writer.flush()


class _Progress:
    """A tqdm bar over the cases: the case being measured, its predicted time, and the time left.

    The time left is the current case's prediction (from its first steps) plus, for each case still
    to come, the mean wall time of the cases done so far (or of this one, before any is done).
    """

    def __init__(self, cases: Sequence[Case], enabled: bool):
        self.left = len(cases)
        self.done_s: list[float] = []
        self.bar = None
        self.label, self.case_start = "", time.perf_counter()
        if enabled and cases:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(cases), unit="case", file=sys.stderr, mininterval=0.5, dynamic_ncols=True,
                            bar_format="{n_fmt}/{total_fmt} cases [{elapsed}] {desc}")

    def start(self, case: Case) -> None:
        self.label, self.case_start = case.label, time.perf_counter()
        self._show(f"{self.label}: first step")

    def predicted(self, seconds: float) -> None:
        this_case = time.perf_counter() - self.case_start + seconds
        per_case = sum(self.done_s) / len(self.done_s) if self.done_s else this_case
        left = seconds + (self.left - 1) * per_case
        self._show(f"{self.label}: ~{_duration(seconds)} to measure, run ~{_duration(left)} left")

    def done(self, m: Measurement) -> None:
        self.left -= 1
        self.done_s.append(m.measure_s)
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _show(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(text, refresh=True)

