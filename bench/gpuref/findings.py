"""The kit's headline figures in one page (``OUT/findings.md``, also printed): what the GPU issue must quote.

Read from what the stages wrote, nothing measured here: tests (junit), ceilings against the datasheet and
the copy rate, the large MLP's MFU, reduce-overhead against eager, the crossover batches (this machine's
CPU and the 2-core reference), analytic against measured peak memory, engine against ``do_bench``, and
the telemetry. A section whose inputs are missing says so in one line. The device tool returns only the
end of the console, so these lines are printed last.

``python -m bench.gpuref.findings --out OUT``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd

from ..errors import first_line
from ..format import number
from ..report.tables import compile_pairs, crossover_batches, device_speedup, load_runs, merged_summary, ok_rows
from ..report.tune import results as tune_results
from ..runs import META_JSON, is_run_dir, read_meta, write_atomic
from .stages import REFERENCE_CPU_RUN, Layout

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
        lines.append(f"- ceiling {key}: {c['measured_tflops']:.4g} TFLOP/s ({where}){share}")
    if layout.timer.is_file():
        copy = json.loads(layout.timer.read_text()).get("copy")
        if copy:
            lines.append(f"- device copy: {copy['gb_per_s']:.0f} GB/s (read + write)")
    return lines or ["- no CUDA ceiling in the run"]


def _large(gpu: pd.DataFrame) -> list[str]:
    rows = ok_rows(gpu, ["step"])
    rows = rows[(rows["network"] == "uniform") & (rows["width"] == LARGE["width"]) & (rows["depth"] == LARGE["depth"])
                & (rows["batch"] == LARGE["batch"])]
    out = []
    for _, r in rows.iterrows():
        energy = r.get("gpu_energy_per_step_j", math.nan)
        out.append(f"- large MLP {r['dtype']} {r['compile']}: step {r['median_s'] * 1e3:.4g} ms, "
                   f"{number(r['tflops'], '.4g')} TFLOP/s, MFU {number(r['mfu'] * 100, '.3g')}% "
                   "of the same-run ceiling; "
                   f"energy/step {number(energy, '.3g')} J, throttled {r.get('gpu_throttled', 'n/a')}")
    return out or ["- large MLP: not measured"]


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
    if is_run_dir(layout.gpu_run):
        runs = load_runs([str(p) for p in gpu_runs])
        gpu = runs[0].summary
        summary, _ = merged_summary(runs)
        for fn, arg in ((_large, gpu), (_reduce_overhead, summary), (_memory, gpu), (_telemetry_and_budget, gpu)):
            lines += _guarded(fn, arg)
        if len(runs) > 1:
            lines += _guarded(lambda r: _crossover(r, "this machine's CPU"), runs)
        if is_run_dir(REFERENCE_CPU_RUN):
            lines += _guarded(lambda r: _crossover(r, "the 2-core CPU reference"),
                              [runs[0], *load_runs([str(REFERENCE_CPU_RUN)])])
    return "\n".join(lines) + "\n"


def _guarded(fn, arg) -> list[str]:
    try:
        return fn(arg)
    except Exception as exc:  # noqa: BLE001 - one missing figure must not hide the others
        return [f"- {getattr(fn, '__name__', 'section').strip('_')}: not available ({type(exc).__name__}: "
                f"{first_line(exc)})"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpuref.findings")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    text = findings(args.out)
    write_atomic(args.out / "findings.md", text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
