"""The kit's headline figures in one page (``OUT/findings.md``, also printed): what the GPU issue must quote.

Read from what the stages wrote, nothing measured here: tests (junit), ceilings against the datasheet and
the copy rate, the large MLP's MFU, reduce-overhead against eager, the crossover batches (this machine's
CPU and the 2-core reference), analytic against measured peak memory, engine against ``do_bench``, and
the telemetry. A section whose inputs are missing says so in one line. The device tool returns only the
end of the console, so these lines are printed last.

``python -m tools.gpuref.findings --out OUT``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from bench.errors import first_line
from bench.format import number
from bench.report.tables import compile_pairs, crossover_batches, device_speedup, load_runs, merged_summary, ok_rows
from bench.report.tune import results as tune_results
from bench.runs import META_JSON, is_run_dir, read_meta, write_atomic
from tools.gpuref.stages import REFERENCE_CPU_RUN, Layout

MEMORY_TOLERANCE = 0.10  # analytic vs measured peak: the GPU issue's goal
LARGE = {"width": 8192, "depth": 4, "batch": 8192}


def _tests(layout: Layout) -> list[str]:
    suite = ET.parse(layout.junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    a = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    return [f"- tests: {a['tests']} selected, {a['failures']} failed, {a['errors']} errors, {a['skipped']} skipped"]


def _ceilings(layout: Layout) -> list[str]:
    lines = []
    for key, c in sorted(read_meta(layout.gpu_run / META_JSON).ceilings.items()):
        if c.get("device") != "cuda":
            continue
        sheet = c.get("datasheet_tflops")
        share = f" = {c['measured_tflops'] / sheet:.0%} of the datasheet's {sheet:g}" if sheet else ""
        where = c.get("best_product") or f"n={c['matmul_size']}"  # runs before case GEMMs: the best square
        lines.append(f"- ceiling {key}: {c['measured_tflops']:.4g} TFLOP/s ({where}){share}{_passes(c)}")
    if layout.timer.is_file():
        copy = json.loads(layout.timer.read_text()).get("copy")
        if copy:
            lines.append(f"- device copy: {copy['gb_per_s']:.0f} GB/s (read + write)")
    return lines or ["- no CUDA ceiling in the run"]


_PASS_ORDER = {"squares": 0, "start": 1, "end": 2}


def _passes(c: dict) -> str:
    """The best rate of each pass (squares, the cases' shapes at the start, the fastest again at the end), with
    the SM clock it ran at where NVML read one: a ceiling is the best of them, and a spread between them is drift."""
    clocks = c.get("pass_clock_mhz") or {}
    parts = [f"{name} {rate:.4g}" + (f" at {clocks[name]:.0f} MHz" if name in clocks else "")
             for name, rate in sorted((c.get("pass_tflops") or {}).items(), key=lambda kv: _PASS_ORDER.get(kv[0], 9))
             if rate == rate]
    return f"; passes: {', '.join(parts)}" if len(parts) > 1 else ""


def _large_rows(gpu: pd.DataFrame) -> pd.DataFrame:
    rows = ok_rows(gpu, ["step"])
    return rows[(rows["network"] == "uniform") & (rows["width"] == LARGE["width"])
                & (rows["depth"] == LARGE["depth"]) & (rows["batch"] == LARGE["batch"])]


def _large(gpu: pd.DataFrame, ceilings: dict) -> list[str]:
    """Each large-MLP row's MFU, naming the ceiling it is against: its own dtype's, and bf16's for the other
    16-bit dtype (fp16's ceiling searched fewer shapes), then against its own GEMMs' best rate."""
    out = []
    for _, r in _large_rows(gpu).iterrows():
        energy = r.get("gpu_energy_per_step_j", math.nan)
        line = (f"- large MLP {r['dtype']} {r['compile']}: step {r['median_s'] * 1e3:.4g} ms, "
                f"{number(r['tflops'], '.4g')} TFLOP/s, MFU {number(r['mfu'] * 100, '.3g')}% of the same-run "
                f"{r['dtype']} ceiling ({number(r['ceiling_tflops'], '.4g')})")
        bf16 = ceilings.get("cuda/bf16")
        if r["dtype"] == "fp16" and bf16:
            line += f", {r['tflops'] / bf16['measured_tflops']:.1%} of bf16's ({bf16['measured_tflops']:.4g})"
        own = _own_shapes_tflops(r, ceilings.get(f"cuda/{r['dtype']}") or {})
        if own:
            line += f", {r['tflops'] / own[1]:.1%} of its own GEMMs' best ({own[0]}: {own[1]:.4g})"
        clock = r.get("gpu_sm_clock_mhz_median", math.nan)
        out.append(line + f"; SM clock median {number(clock, '.4g')} MHz; "
                   f"energy/step {number(energy, '.3g')} J, throttled {r.get('gpu_throttled', 'n/a')}")
    return out or ["- large MLP: not measured"]


def _own_shapes_tflops(row: pd.Series, ceiling: dict) -> tuple[str, float] | None:
    """The fastest of the case's own GEMMs (``mlp.gemms``) among the products the ceiling measured."""
    import torch

    import mlp

    from bench.case.cases import Case

    case = Case.from_row(row.to_dict())
    with torch.device("meta"):
        labels = {g.label for g in mlp.gemms(case.build_model(), case.batch)}
    rates = {k: v for k, v in (ceiling.get("product_tflops") or {}).items() if k in labels}
    return max(rates.items(), key=lambda kv: kv[1]) if rates else None


def _profile(layout: Layout, gpu: pd.DataFrame | None, ceilings: dict) -> list[str]:
    """The profiled step's matmul kernels against the run's ceiling (a rate above it: the ceiling under-reads),
    and where the device waits (``bench.profile.timeline``, from the profile's trace.json)."""
    from bench.profile.timeline import read_timeline

    meta = json.loads((layout.profile / META_JSON).read_text())
    t = read_timeline(layout.profile / "trace.json")
    if t is None:
        return [f"- profile {meta.get('label')}: no device kernel in its trace"]
    line = (f"- profile {meta.get('label')}: device busy {t.mean_busy_us / 1e3:.4g} ms per step, idle "
            f"{t.mean_idle_us / 1e3:.3g} ms inside a step and {t.mean_gap_us / 1e3:.3g} ms between steps; "
            f"dtype conversions {sum(c.device_us for c in t.conversions) / 1e3:.3g} ms")
    rows = ok_rows(gpu, ["step"]) if gpu is not None else None
    row = rows[rows["case_id"] == meta.get("case_id")] if rows is not None else None
    if row is not None and len(row) and t.matmul_us > 0:
        r = row.iloc[0]
        rate = r["matmul_flops"] / (t.matmul_us * 1e-6) / 1e12
        ceiling = (ceilings.get(f"cuda/{r['dtype']}") or {}).get("measured_tflops", math.nan)
        line += (f"; matmul kernels {t.matmul_us / 1e3:.4g} ms for {r['matmul_flops'] / 1e12:.4g} TFLOP = "
                 f"{rate:.4g} TFLOP/s, {rate / ceiling:.1%} of the same-run {r['dtype']} ceiling ({ceiling:.4g})")
        if rate > ceiling:
            line += ": the ceiling under-reads the case's own kernels"
    return [line]


def _reduce_overhead(summary: pd.DataFrame) -> list[str]:
    pairs = compile_pairs(summary)
    pairs = pairs[(pairs["compile"] == "reduce-overhead") & (pairs["device"] == "cuda")]
    return [f"- reduce-overhead {r['label']}: {r['speedup']:.3g}x eager, "
            f"compile {number(r['compile_s'], '.3g')} s, break-even {number(r['break_even_steps'], '.3g')} steps"
            for _, r in pairs.iterrows()] or \
        ["- reduce-overhead: no pair measured"]


def _crossover(runs: list, what: str) -> list[str]:
    summary, _ = merged_summary(runs)
    cross = crossover_batches(device_speedup(summary))
    cross = cross[cross["batches"] >= 2]
    return [f"- crossover vs {what}, {r['dtype']} w{r['width']} d{r['depth']}: GPU wins from batch "
            f"{number(r['wins_from'], '.3g')} (interpolated {number(r['crossover_batch'], '.3g')})"
            for _, r in cross.iterrows()] or \
        [f"- crossover vs {what}: no case measured on both"]


MODELLED_PHASES = ("forward", "optimizer", "inference")  # the backward's transients are not modelled


def _memory(gpu: pd.DataFrame) -> list[str]:
    """Analytic phase peaks (``mlp.Memory.phase_peak_bytes``) against the measured peaks less the harness.

    Eager cases only: under ``torch.compile`` inductor chooses what to save, and CUDA graphs allocate
    from a private pool. Runs before the per-phase columns get a line that says what they lack.
    """
    rows = ok_rows(gpu)
    rows = rows[rows["peak_mem_bytes"].notna() & (rows["peak_mem_bytes"] > 0)]
    if not len(rows):
        return ["- memory: no measured CUDA peak"]
    if "mem_phase_peak_bytes" not in rows or "harness_mem_bytes" not in rows:
        return ["- memory: this run predates the analytic phase peaks and the harness column, so its raw peaks "
                "hold the engine's pooled batches and cuBLAS workspaces (docs/gpu-reference.md, 'Memory')"]
    all_eager = rows[rows["compile"] == "none"]
    eager = all_eager[all_eager["phase"].isin(MODELLED_PHASES)]
    step_peak = eager["peak_mem_bytes"] - eager["harness_mem_bytes"]
    ratio = eager["mem_phase_peak_bytes"] / step_peak
    off = eager[(ratio - 1).abs() > MEMORY_TOLERANCE]
    out = [f"- memory ({', '.join(MODELLED_PHASES)}; eager): analytic within {MEMORY_TOLERANCE:.0%} of the measured "
           f"peak less the harness for {len(eager) - len(off)} of {len(eager)} case phases"]
    if len(eager):
        worst = (ratio - 1).abs().idxmax()
        out[0] += (f"; worst {eager.loc[worst, 'label']} {eager.loc[worst, 'phase']}: "
                   f"analytic/measured {ratio[worst]:.3g}")
        harness = rows.groupby("case_id")["harness_mem_bytes"].first() / 2**20
        out.append(f"- memory harness (pooled batches + standing allocations): {harness.min():.4g} to "
                   f"{harness.max():.4g} MiB per case")
    back = all_eager[all_eager["phase"] == "backward"]
    if len(back):
        b = (back["peak_mem_bytes"] - back["harness_mem_bytes"]) / back["mem_phase_peak_bytes"]
        out.append(f"- memory backward (not modelled: loss and input-gradient transients): measured peak less the "
                   f"harness / the end-of-forward live set with every gradient, {b.min():.3g} to {b.max():.3g}")
    return out


def _block_note(case: dict) -> str:
    """The block reading beside the one-step one (timer-check files before 2026-11-28 have only the latter)."""
    if "ratio_block" not in case:
        return ""
    return f"; {case['block_steps']} steps per do_bench call: ratio {case['ratio_block']:.3f}"


def _timer(layout: Layout) -> list[str]:
    data = json.loads(layout.timer.read_text())
    return [f"- engine vs do_bench, {c['case']}: ratio {c['ratio']:.3f} ({c['engine_median_s'] * 1e3:.4g} ms vs "
            f"{c['do_bench_median_s'] * 1e3:.4g} ms)" + _block_note(c) for c in data.get("cases", [])] + \
        [f"- timer-check error: {e}" for e in data.get("errors", [])]


def _telemetry_and_budget(gpu: pd.DataFrame) -> list[str]:
    steps = gpu[gpu["phase"] == "step"]
    budget = int(steps["reason"].astype(str).str.startswith("run budget").sum())
    lines = [f"- run: {int((steps['status'] == 'ok').sum())} ok, {budget} skipped for the run budget, "
             f"{int(steps['status'].isin(['error', 'oom']).sum())} failed, of {len(steps)}"]
    if "gpu_throttled" in steps:
        flagged = steps[steps["gpu_throttled"].astype(str) == "True"]
        lines.append(f"- telemetry: {len(flagged)} case(s) throttled" +
                     (f" ({', '.join(flagged['label'])})" if len(flagged) else "") +
                     f"; reasons: {', '.join(sorted(set(steps['gpu_telemetry_reason'].dropna()) - {''})) or 'none'}")
    if "gpu_power_capped_fraction" in steps:
        capped = steps[steps["gpu_power_capped_fraction"] >= 0.5]
        lines.append(f"- telemetry: {len(capped)} case(s) at the power cap in at least half their samples" +
                     (f" ({', '.join(capped['label'])})" if len(capped) else ""))
    return lines


def _fastest(layout: Layout) -> list[str]:
    """Per tuned case: the fastest configuration against eager and its share of the limit, and the chain's steps."""
    lines = []
    for folder in sorted(p for p in layout.fastest.iterdir() if is_run_dir(p)):
        for result in tune_results(load_runs([str(folder)])[0]):
            best, eager = result.best, result.eager
            if best is None:
                lines.append(f"- fastest step, {result.base_label}: nothing measured")
                continue
            chain = ", ".join(f"{b.label} {b.median_s * 1e3:.3g} ms" for b in result.bars[1:]
                              if b.status == "ok")
            speedup = eager.median_s / best.median_s if eager.status == "ok" else math.nan
            lines.append(f"- fastest step, {result.base_label}: {best.case_label}, {best.median_s * 1e3:.4g} ms, "
                         f"{number(speedup, '.2f')}x eager, {number(best.share, '.1%')} {result.share_name}"
                         f" (eager {eager.median_s * 1e3:.4g} ms{'; ' + chain if chain else ''})")
    return lines or ["- fastest step: no tune run"]


def findings(out: Path) -> str:
    layout = Layout(out)
    lines = [f"# GPU kit findings: {out}", ""]
    if layout.preflight.is_file():
        info = json.loads(layout.preflight.read_text()).get("fingerprint", {})
        lines.append(f"- machine: {info.get('gpu_name') or 'no GPU'}, driver {info.get('driver_version')}, torch "
                     f"{info.get('torch')} (CUDA {info.get('torch_cuda_build')}), {info.get('cpu_model')} x"
                     f"{info.get('cpu_count')}")
    gpu_runs = [r for r in (layout.gpu_run, layout.cpu_run) if is_run_dir(r)]
    sections = [(_tests, layout.junit.is_file()), (_ceilings, is_run_dir(layout.gpu_run)),
                (_timer, layout.timer.is_file()), (_fastest, layout.fastest.is_dir())]
    for fn, ready in sections:
        lines += _guarded(fn, layout) if ready else [f"- {fn.__name__.strip('_')}: no input"]
    gpu, ceilings = None, {}
    if is_run_dir(layout.gpu_run):
        runs = load_runs([str(p) for p in gpu_runs])
        gpu, ceilings = runs[0].summary, read_meta(layout.gpu_run / META_JSON).ceilings
        summary, _ = merged_summary(runs)
        lines += _guarded(lambda g: _large(g, ceilings), gpu)
        for fn, arg in ((_reduce_overhead, summary), (_memory, gpu), (_telemetry_and_budget, gpu)):
            lines += _guarded(fn, arg)
        if len(runs) > 1:
            lines += _guarded(lambda r: _crossover(r, "this machine's CPU"), runs)
        if is_run_dir(REFERENCE_CPU_RUN):
            lines += _guarded(lambda r: _crossover(r, "the 2-core CPU reference"),
                              [runs[0], *load_runs([str(REFERENCE_CPU_RUN)])])
    if (layout.profile / "trace.json").is_file():
        lines += _guarded(lambda lay: _profile(lay, gpu, ceilings), layout)
    return "\n".join(lines) + "\n"


def _guarded(fn, arg) -> list[str]:
    try:
        return fn(arg)
    except Exception as exc:  # noqa: BLE001 - one missing figure must not hide the others
        return [f"- {getattr(fn, '__name__', 'section').strip('_')}: not available ({type(exc).__name__}: "
                f"{first_line(exc)})"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpuref.findings")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    text = findings(args.out)
    write_atomic(args.out / "findings.md", text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
