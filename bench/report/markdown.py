"""Reports: Markdown tables (tabulate) and figures from result tables only; measurement never imports this.

``mlpbench report RUN [RUN ...] [--out DIR]`` writes ``report.md`` and ``plots/*.png`` into the
run folder (one run) or into ``--out`` (several runs, merged by case identity: a CPU run from
one machine and a GPU run from another give the CPU -> GPU comparison).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..format import missing as _missing, ms as _ms, pct as _pct, sig as _sig, table as _table
from ..model.phases import PHASE_NAMES, TRAINING_PHASE_NAMES, Phase
from ..runs import Status, write_atomic
from ..runs import limit_tables
from ..runs.limit_tables import LimitTable
from .figure import markdown_lines
from .spread import WIDE_FACTOR, row_is_wide, wide_factor
from .tables import (
    COMPARABILITY_KEYS,
    FLAG_KEYS,
    compile_pairs,
    crossover_batches,
    describe_differences,
    device_speedup,
    fingerprint_differences,
    identity_columns,
    merged_ceilings,
    merged_limits,
    merged_summary,
    numerics_cell,
    numerics_flag,
    ok_rows,
    run_names,
)

REPORT_MD = "report.md"
PLOTS_DIR = "plots"
TOP_SLOWEST = 5  # phases listed in "slowest relative to their FLOPs"
MIB = 2**20
TRAINING_PHASES = TRAINING_PHASE_NAMES
SLOW_PHASES = tuple(p for p in PHASE_NAMES if p != Phase.STEP.value)  # every phase but the whole step


def format_summary(summary: pd.DataFrame, all_phases: bool = False, tablefmt: str = "github") -> str:
    """The run's summary: one row per case (the whole step), or per case x phase."""
    frame = summary if all_phases else summary[summary["phase"] == "step"]
    rows = []
    for _, r in frame.iterrows():
        ok = r["status"] == Status.OK
        rows.append({
            "case": r["label"],
            **({"phase": r["phase"]} if all_phases else {}),
            "median ms": _ms(r.get("median_s")) if ok else "",
            "IQR ms": _ms(r.get("iqr_s")) if ok else "",
            "samples/s": f"{r['samples_per_s']:.4g}" if ok else "",
            "TFLOP/s": f"{r['tflops']:.3g}" if ok else "",
            "MFU": _mfu_text(r) if ok else "",
            "status": r["status"] + ("" if ok else f": {r['reason']}") + (" (noisy)" if ok and r.get("noisy") else "")
            + (f"; {r['ceiling_flag']}" if ok and _flagged(r) else ""),
        })
    return _table(rows, tablefmt, empty="")


# --------------------------------------------------------------------------- derived tables


def phase_shares(summary: pd.DataFrame) -> pd.DataFrame:
    """Per (platform, case_id): forward/backward/optimizer medians and their share of the phase sum."""
    ok = ok_rows(summary, TRAINING_PHASES)
    table = ok.pivot_table(index=["platform", "case_id"], columns="phase", values="median_s", aggfunc="first")
    table = table.reindex(columns=list(TRAINING_PHASES))
    total = table.sum(axis=1, min_count=len(TRAINING_PHASES))
    for phase in TRAINING_PHASES:
        table[f"{phase}_share"] = table[phase] / total
    return table


def case_table(summary: pd.DataFrame, regimes: pd.DataFrame) -> str:
    steps = summary[summary["phase"] == "step"]
    shares = phase_shares(summary)
    regime_of = {(p, c): r for p, c, r in zip(regimes.get("platform", []), regimes.get("case_id", []),
                                             regimes.get("regime", []))}
    many = steps["platform"].nunique() > 1
    rows = []
    for _, r in steps.iterrows():
        ok = r["status"] == Status.OK
        key = (r["platform"], r["case_id"])
        share = shares.loc[key] if ok and key in shares.index else None
        split = "/".join(f"{share[f'{p}_share'] * 100:.0f}" for p in TRAINING_PHASES) \
            if share is not None and not _missing(share["optimizer_share"]) else ""
        rows.append({  # what a reader looks for first, then the rest
            "case": r["label"],
            "step ms (median ± IQR)": f"{_ms(r['median_s'])} ± {_ms(r['iqr_s'])}" if ok else "",
            "samples/s": _sig(r.get("samples_per_s"), 4) if ok else "",
            "MFU": _mfu_text(r) if ok else "",
            "status": _status_text(r),
            **({"platform": r["platform"]} if many else {}),
            "fwd/bwd/opt %": split,
            "TFLOP/s": _sig(r.get("tflops")) if ok else "",
            "% of SoL": _pct(r.get("sol_fraction"), 0) if ok else "",
            "memory MiB": _memory_text(r) if ok else "",
            "compile s": _sig(r.get("compile_s")) if ok else "",
            "numerics vs fp32 eager": numerics_cell(r) if ok else "",
            "regime": regime_of.get(key, ""),
        })
    return _table(rows)


def _is_flag(flag) -> bool:
    """A ``ceiling_flag`` cell that holds a flag (older runs and unflagged cases: blank, read back as NaN)."""
    return isinstance(flag, str) and bool(flag)


def _flagged(r) -> bool:
    return _is_flag(r.get("ceiling_flag"))


def _mfu_text(r) -> str:
    """MFU, marked where the case beat its ceiling (the ceiling was under-measured; never silently > 100%)."""
    mfu = r.get("mfu")
    if not _missing(mfu) and mfu > 1 and not _flagged(r):  # runs before the flag existed
        return f"{_pct(mfu)} (above the ceiling: under-measured)"
    return _pct(mfu) + (" (ceiling under-measured)" if _flagged(r) else "")


def _memory_text(r: pd.Series) -> str:
    text = _sig(r.get("mem_total_bytes", math.nan) / MIB)
    peak = r.get("peak_mem_bytes", math.nan)
    return text + (f" (CUDA peak {peak / MIB:.3g})" if not _missing(peak) else "")


def _status_text(r: pd.Series) -> str:
    if r["status"] != Status.OK:
        return f"{r['status']}: {r['reason']}"
    text = "ok (noisy)" if str(r.get("noisy")) == "True" else "ok"
    text += f"; {r['ceiling_flag']}" if _flagged(r) else ""
    if row_is_wide(r):
        text += f"; wide CI (to {wide_factor(r['median_s'], r['ci_low_s'], r['ci_high_s']):.1f}x the median)"
    return text


def ceiling_table(ceilings: pd.DataFrame, tablefmt: str = "github") -> str:
    rows = [{"platform": c["platform"], "dtype": c["dtype"],
             "threads": "" if _missing(c.get("threads")) or c["device"] == "cuda" else int(c["threads"]),
             "measured matmul TFLOP/s": _ceiling_text(c),
             "spread (IQR/median)": _pct(c.get("spread_rel"), 0),
             "start / end pass": _passes_text(c.get("pass_tflops")),
             "case GEMMs measured": _shapes_text(c),
             "squares tried (budget)": _ceiling_budget_text(c),
             "peak TFLOP/s": _sig(c["datasheet_tflops"]) or "unknown",
             "measured / peak": _pct(c["measured_tflops"] / c["datasheet_tflops"], 0)
             if not _missing(c["datasheet_tflops"]) and c["datasheet_tflops"] else "",
             "peak source": c["datasheet_source"] if not _missing(c["datasheet_source"]) else ""}
            for _, c in ceilings.iterrows()]
    return _table(rows, tablefmt)


def _ceiling_text(c: pd.Series) -> str:
    best = c.get("best_product")
    where = best if isinstance(best, str) and best else f"n={int(c['matmul_size'])}"
    return f"{c['measured_tflops']:.3g} ({where})"


def _passes_text(passes) -> str:
    if not isinstance(passes, dict):
        return ""
    return " / ".join(_sig(passes.get(k)) or "-" for k in ("start", "end"))


def _shapes_text(c: pd.Series) -> str:
    total = c.get("case_shapes")
    if _missing(total) or not total:
        return ""
    return f"{int(c['case_shapes_measured'])} of {int(total)} (in {c['shapes_spent_s']:.2g} s)"


def limits_table(runs: Sequence, tablefmt: str = "github") -> str:
    """The limits of the runs other than the matmul ceiling (its own table), one row per platform x limit x key,
    in declaration order (``bench.runs.limit_tables``): a limit without a row of its own here shows its headline."""
    rows = []
    for table in limit_tables.LIMIT_TABLES:
        if table.name == "ceilings":
            continue
        row_of = LIMIT_ROWS.get(table.name, _headline_row(table))
        for _, r in merged_limits(runs, table.name).iterrows():
            rows.append({"platform": r["platform"], "limit": f"{table.name} {r['key']}",
                         **row_of(r), "spread": _pct(r.get("spread_rel"), 0), "spent s": _sig(r.get("spent_s"), 2)})
    return _table(rows, tablefmt)


def _bandwidth_row(b) -> dict:
    return {"value": f"{b['bytes_per_s'] / 1e9:.3g} GB/s",
            "detail": f"copy {b['copy_bytes_per_s'] / 1e9:.3g}, triad {b['triad_bytes_per_s'] / 1e9:.3g} GB/s; "
                      f"arrays {b['array_bytes'] / MIB:.0f} MiB vs cache {b['cache_bytes'] / MIB:.3g} MiB "
                      f"({b['cache_source']})"}


def _dispatch_row(d) -> dict:
    return {"value": f"{d['per_op_s'] * 1e6:.3g} us per ATen op",
            "detail": f"one-element add {d['add_s'] * 1e6:.3g} us; {_engine(d)}tiny forward+backward "
                      f"{d['tiny_backprop_s'] * 1e6:.3g} us / {int(d['tiny_backprop_ops'])} ops; "
                      f"tiny step with SGD {d['tiny_step_s'] * 1e6:.3g} us / {int(d['tiny_step_ops'])} ops"}


def _headline_row(table: LimitTable):
    def row(r) -> dict:
        return {"value": f"{_sig(r.get(table.headline))} {table.headline_unit}".strip(), "detail": ""}
    return row


LIMIT_ROWS = {"bandwidth": _bandwidth_row, "dispatch": _dispatch_row}  # the rest: _headline_row


def _engine(d) -> str:
    """The backward engine's own per-op floor (charged to backward, optimiser and step phases), where the run has it."""
    value = d.get("autograd_per_op_s")
    return "" if value is None or pd.isna(value) else f"backward engine {value * 1e6:.3g} us per op; "


def sol_table(summary: pd.DataFrame) -> str:
    """Per case: the floor, its terms and its fraction of the measured step; each phase's fraction."""
    ok = ok_rows(summary, list(PHASE_NAMES))
    if "sol_s" not in ok or not ok["sol_s"].notna().any():
        return "(this run has no speed-of-light columns: its limits were not measured)"
    fraction = ok.pivot_table(index=["platform", "case_id"], columns="phase", values="sol_fraction",
                              aggfunc="first")
    rows = []
    for _, r in ok[ok["phase"] == "step"].iterrows():
        share = fraction.loc[(r["platform"], r["case_id"])] if (r["platform"], r["case_id"]) in fraction.index \
            else {}
        rows.append({"case": r["label"], "measured ms": _ms(r["median_s"]), "floor ms": _ms(r["sol_s"]),
                     "% of SoL step": _sol_pct(r["sol_fraction"]),
                     "fwd / bwd / opt": " / ".join(_sol_pct(share.get(p)) or "-" for p in TRAINING_PHASES),
                     "compute / memory / overhead ms": " / ".join(_ms(r[f"sol_{t}_s"])
                                                                  for t in ("compute", "memory", "overhead")),
                     "bound": r["sol_bound"] if isinstance(r["sol_bound"], str) else ""})
    return _table(rows)


def _sol_pct(fraction) -> str:
    """A fraction of the speed of light; above 100% marked: the phase beat a limit (never shown silently)."""
    return _pct(fraction, 0) + (" (!)" if not _missing(fraction) and fraction > 1 else "")


def model_error_table(summary: pd.DataFrame) -> str:
    """Median |floor - measured| / measured of the step, per bound: how far the model is from the measurement."""
    steps = ok_rows(summary, ["step"])
    if "sol_s" not in steps:
        return "(none)"
    steps = steps[steps["sol_s"].notna()]
    error = (steps["sol_s"] - steps["median_s"]).abs() / steps["median_s"]
    rows = [{"bound": bound, "cases": str(len(group)), "median abs(floor - measured) / measured": _pct(
        error[group.index].median(), 0), "median % of SoL": _pct(group["sol_fraction"].median(), 0)}
            for bound, group in steps.groupby("sol_bound", sort=True)]
    return _table(rows)


def _ceiling_budget_text(c: pd.Series) -> str:
    """``256-1024 in 1.9 s (budget 3 s)``: where the budget stopped the size growing; empty for older runs."""
    sizes = c.get("sizes_tried")
    if not isinstance(sizes, (list, tuple)) or not sizes:
        return ""
    span = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"
    return f"{span} in {c['spent_s']:.2g} s (budget {c['budget_s']:g} s)"


def best_table(summary: pd.DataFrame) -> str:
    """The highest-throughput configuration per network size and platform."""
    steps = ok_rows(summary, ["step"])
    rows = []
    for (_, _, _, size, platform), group in steps.groupby(["network", "width", "depth", "size", "platform"],
                                                          sort=True):
        best = group.loc[group["samples_per_s"].idxmax()]
        rows.append({"network": size, "platform": platform, "samples/s": _sig(best["samples_per_s"], 4),
                     "batch": int(best["batch"]), "dtype": best["dtype"], "compile": best["compile"],
                     "activation": best["activation"], "optimizer": best["optimizer"],
                     "step ms": _ms(best["median_s"]), "configs measured": str(len(group))})
    return _table(rows)


def slowest_phases(summary: pd.DataFrame, n: int = TOP_SLOWEST) -> pd.DataFrame:
    """Phases with the lowest achieved FLOP rate (matmul + elementwise) relative to their device's ceiling."""
    phases = ok_rows(summary, SLOW_PHASES).copy()
    flops = phases["matmul_flops"].fillna(0) + phases["elementwise_flops"].fillna(0)
    phases = phases[(flops > 0) & (phases["median_s"] > 0)].copy()
    phases["gflops"] = (flops[phases.index] / phases["median_s"]) / 1e9
    phases["of_ceiling"] = phases["gflops"] / 1e3 / phases["ceiling_tflops"]
    order = "of_ceiling" if phases["of_ceiling"].notna().any() else "gflops"
    return phases.sort_values(order).head(n)


def slowest_table(summary: pd.DataFrame) -> str:
    rows = [{"case": r["label"], "phase": r["phase"], "median ms": _ms(r["median_s"]),
             "FLOPs (matmul + elementwise)": f"{r['matmul_flops'] + r['elementwise_flops']:.3g}",
             "achieved GFLOP/s": _sig(r["gflops"]),
             "% of ceiling": "" if _missing(r["of_ceiling"]) else f"{r['of_ceiling'] * 100:.2g}%"}
            for _, r in slowest_phases(summary).iterrows()]
    return _table(rows)


def compile_table(pairs: pd.DataFrame) -> str:
    rows = [{"case": r["label_eager"].replace(" eager", ""),
             "mode": r["compile"] + (" (whole step)" if r.get("compile_scope") == "step" else ""),
             "eager ms": _ms(r["median_s_eager"]), "compiled ms": _ms(r["median_s"]),
             "speedup": f"{r['speedup']:.2f}×", "numerics": numerics_cell(r), "compile s": _sig(r["compile_s"]),
             "break-even steps": f"{r['break_even_steps']:,.0f}" if not _missing(r["break_even_steps"])
             else "never (not faster)",
             "graphs / breaks / recompiles": f"{r['compile_graphs']:.0f} / {r['graph_breaks']:.0f} / "
                                             f"{r['recompiles']:.0f}"}
            for _, r in pairs.iterrows()]
    return _table(rows)


def speedup_tables(summary: pd.DataFrame) -> tuple[str, str]:
    speed = device_speedup(summary)
    rows = [{"case": r["label_cpu"].replace(" cpu", ""), "CPU ms": _ms(r["cpu_s"]), "GPU ms": _ms(r["gpu_s"]),
             "CPU/GPU": f"{r['speedup']:.3g}×"} for _, r in speed.sort_values(["network", "width", "batch"]).iterrows()]
    cross = crossover_batches(speed)
    cross = cross[cross["batches"] >= 2]
    cross_rows = [{"network": r["network"] if r["network"] != "uniform" else f"w{r['width']} d{r['depth']}",
                   "activation": r["activation"], "dtype": r["dtype"], "compile": r["compile"],
                   "GPU wins from batch (measured)": _sig(r["wins_from"]) or "never (at measured batches)",
                   "crossover (interpolated)": _sig(r["crossover_batch"])}
                  for _, r in cross.iterrows()]
    return _table(rows), _table(cross_rows)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Report:
    path: Path
    figures: list  # plots.Figure


def write_report(runs: Sequence, out_dir: Path) -> Report:
    """Render report.md and plots/*.png for ``runs`` (store.Run objects) into ``out_dir``."""
    from . import plots
    from .regime import classify

    out_dir = Path(out_dir)
    summary, duplicates = merged_summary(runs)
    regimes = classify(summary) if len(summary) else pd.DataFrame()
    ceilings = merged_ceilings(runs)
    plot_dir = out_dir / PLOTS_DIR
    bandwidths = merged_limits(runs, "bandwidth")
    figures = plots.render_all(summary, plot_dir, regimes, ceilings, bandwidths) if len(summary) else []
    for figure in figures:
        if figure.path is None:
            (plot_dir / f"{figure.name}.png").unlink(missing_ok=True)  # no stale figure from an earlier render
    from .comparison import section as comparison_section

    compared = comparison_section(runs, out_dir, plot_dir) if duplicates else []
    text = render_markdown(runs, summary, regimes, ceilings, figures, duplicates, out_dir, compared)
    path = out_dir / REPORT_MD
    write_atomic(path, text)
    return Report(path, figures)


def render_markdown(runs: Sequence, summary: pd.DataFrame, regimes: pd.DataFrame, ceilings: pd.DataFrame,
                    figures: list, duplicates: int, out_dir: Path, compared: Sequence[str] = ()) -> str:
    from .regime import RULE, SOL_RULE

    names = run_names(runs)
    parts = [f"# mlpbench report: {', '.join(names)}", "", _overview(runs, names, summary), ""]
    parts += environment_section(runs, names)
    if duplicates:
        parts += [f"> {duplicates} case(s) were measured on the same platform in several runs; tables and "
                  "figures use the last run given; \"Runs compared\" below sets each later run against the first.", ""]
    parts += list(compared)
    steps_ok = ok_rows(summary, ["step"]) if len(summary) else summary
    if len(steps_ok):
        parts += ["## At a glance", "", *_glance(summary, regimes), ""]
    parts += _figures_section(figures, out_dir)
    parts += ["## Cases", "",
              "Step time is the uninstrumented whole training step; the phase split is from separately timed "
              "blocks (forward / loss+backward / optimiser step + zero_grad), as % of their sum. MFU is against "
              "the same-run matmul ceiling below. Memory is the analytic total (parameters, gradients, optimiser "
              "state, saved activations, data), with the measured CUDA peak where available. \"wide CI\" in the "
              f"status: the case's 95% CI of the median reaches beyond {WIDE_FACTOR:g}x (or below 1/{WIDE_FACTOR:g}) "
              "of its median, a few slow samples among few: rerun it with more --repeats before comparing.", ""]
    parts += [case_table(summary, regimes) if len(summary) else "(no rows)", ""]
    parts += ["## Matmul ceilings", "", "MFU is measured against the device's own matmul rate in the same run: "
              "square products (the size doubles from the smallest while the next size's predicted cost fits a "
              "budget) and the GEMMs the run's cases execute (each layer's forward product and both backward "
              "products, largest first within a budget), each product's best block, at the start of the run "
              "and again at the end (the best is kept). Spread: the best product's IQR / median over its blocks. "
              "A case whose matmul rate still beats its ceiling is flagged \"ceiling under-measured\", never shown "
              "silently above 100%. Peak: the GPU's datasheet, or on a CPU the theoretical peak, an estimate "
              "(cores x FMA units x SIMD lanes x 2 x clock, inputs in the source column).", "",
              ceiling_table(ceilings), ""]
    parts += ["## Bandwidth and dispatch limits", "", "Memory bandwidth: the faster of a copy and a triad "
              "(c = a + s*b), bytes read + written, on arrays well past the last-level cache, best block. "
              "Dispatch floor: the forward + backward of a tiny MLP (batch 1), per ATen op it dispatches.", "",
              limits_table(runs), ""]
    parts += _skipped_dtypes_section(runs)
    parts += _counted_section(summary)
    parts += _thread_note(summary, runs)
    if len(steps_ok):
        parts += ["## Best configuration per network size", "", "Highest training throughput (samples/s) among "
                  "the configurations measured for each network size and platform.", "", best_table(summary), ""]
        parts += [f"## Slowest phases relative to their FLOPs (top {TOP_SLOWEST})", "",
                  "Achieved FLOP rate of each phase (matmul + elementwise FLOPs / median) against the device's "
                  "matmul ceiling; the lowest first. These are where time is spent on something other than "
                  "arithmetic.", "", slowest_table(summary), ""]
        pairs = compile_pairs(summary)
        if len(pairs):
            parts += ["## torch.compile vs eager", "", "Break-even = compile time / per-step saving: the number "
                      "of training steps before compiling pays off.", "", compile_table(pairs), ""]
        if set(steps_ok["device"]) == {"cpu", "cuda"}:
            cases, cross = speedup_tables(summary)
            parts += ["## CPU → GPU", "", "Cases measured on both, joined on every case field except the "
                      "device and the CPU's thread count (`tN` in the case: the CPU side's; a CUDA case records "
                      "torch's default). The runs may come from different machines; see the fingerprints above.", "",
                      cases, "", "Crossover batch size per configuration:", "", cross, ""]
        parts += ["## Speed of light", "", "The least time the run's own limits allow: max(matmul FLOPs / matmul "
                  "ceiling, bytes / bandwidth) + ATen ops x dispatch floor, per phase (bytes: each operand read "
                  "once and each result written once, from `mlp.traffic`, at the cache-resident copy's rate where "
                  "the phase's tensors may fit in the last-level cache; ops: the eager step's, none for compiled "
                  "cases). % of SoL = floor / measured (100% = at the limit). Above 100% (marked (!)) a phase "
                  "beat a limit: a limit was measured in a busier moment, or its bytes were served from a cache "
                  "faster than the last level.", "",
                  sol_table(summary), "",
                  "How far the floor is from the measured step, per dominant term:", "", model_error_table(summary),
                  ""]
        parts += ["## Regimes: how they are decided", "", SOL_RULE, "", RULE, "", _regime_table(regimes), ""]
        parts += _disagreement_lines(regimes)
    parts += _failures_section(summary)
    return "\n".join(parts).rstrip() + "\n"


def _thread_note(summary: pd.DataFrame, runs: Sequence) -> list[str]:
    """Say so when CPU cases ran with fewer threads than their CPU ceiling was measured with.

    Runs since the ceiling became per thread count measure one for each; older runs have only
    the default-thread ceiling.
    """
    if not len(summary):
        return []
    default_threads = {run.meta.get("env", {}).get("torch_threads") for run in runs} - {None}
    pinned = {int(c["threads"]) for run in runs for c in run.meta.get("ceilings", {}).values()
              if c.get("device") == "cpu" and c.get("threads")}
    steps = summary[(summary["phase"] == "step") & (summary["device"] == "cpu")]
    fewer = steps[(steps["threads"] > 0) & (steps["threads"] < max(default_threads, default=0))
                  & ~steps["threads"].isin(pinned - default_threads)]
    if not len(fewer):
        return []
    used = ", ".join(str(t) for t in sorted(fewer["threads"].unique()))
    return [f"> {len(fewer)} CPU case(s) ran with {used} thread(s) (`tN` in the label) while the CPU ceiling was "
            f"measured with torch's default of {max(default_threads)}: their MFU is relative to the whole "
            "machine's matmul rate.", ""]


def _overview(runs: Sequence, names: list[str], summary: pd.DataFrame) -> str:
    steps = summary[summary["phase"] == "step"] if len(summary) else summary
    counts = steps["status"].value_counts() if len(steps) else pd.Series(dtype=int)
    status = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines = []
    for run, name in zip(runs, names):
        env = run.meta.get("env", {})
        run_s = run.meta.get("run_s")
        lines.append(f"- `{name}`: preset `{run.meta.get('preset', '?')}`, {env.get('date', '?')}, "
                     f"{env.get('hostname', '?')}, git {str(env.get('git_commit', '?'))[:12]}"
                     + (f", measured in {run_s:.0f} s" if run_s else "")
                     + (" (interrupted)" if run.meta.get("interrupted") else ""))
    return f"{len(steps)} cases ({status or 'none'}) from {len(runs)} run(s):\n" + "\n".join(lines)


def environment_section(runs: Sequence, names: list[str]) -> list[str]:
    envs = {name: run.meta.get("env", {}) for run, name in zip(runs, names)}
    keys = COMPARABILITY_KEYS + FLAG_KEYS + ("python", "cudnn", "cpu_count", "command")
    rows = [{"": key, **{name: str(env.get(key, "")) for name, env in envs.items()}} for key in keys]
    lines = ["## Environment", "", _table(rows), ""]
    diffs = describe_differences(fingerprint_differences(envs))
    if len(runs) > 1 and diffs:
        lines += ["> **The runs' fingerprints differ**, so differences between them may come from the machine "
                  "or software, not only from the case:", ">"]
        lines += [f"> - {d}" for d in diffs] + [""]
    elif len(runs) > 1:
        lines += ["The runs' fingerprints agree on " + ", ".join(COMPARABILITY_KEYS + FLAG_KEYS) + ".", ""]
    return lines


def _figures_section(figures: list, out_dir: Path) -> list[str]:
    lines = ["## Figures", ""]
    for i, figure in enumerate(figures, 1):
        if figure.path is None:
            lines += [f"**{i}. {figure.title}**: omitted, {figure.reason}.", ""]
            continue
        lines += markdown_lines(figure, out_dir, f"{i}. ")
    return lines


def _glance(summary: pd.DataFrame, regimes: pd.DataFrame) -> list[str]:
    steps = ok_rows(summary, ["step"])
    lines = []
    fastest = steps.loc[steps["samples_per_s"].idxmax()]
    lines.append(f"- Highest throughput: **{fastest['samples_per_s']:.4g} samples/s** ({fastest['label']}, "
                 f"{_ms(fastest['median_s'])} ms per step).")
    shares = phase_shares(summary).dropna()
    if len(shares):
        dominant = shares[[f"{p}_share" for p in TRAINING_PHASES]].idxmax(axis=1).str.replace("_share", "")
        counts = dominant.value_counts()
        lines.append("- Largest phase: " + ", ".join(f"{p} in {n} of {len(shares)} cases" for p, n in counts.items())
                     + f" (median shares fwd/bwd/opt: " + "/".join(
                         f"{shares[f'{p}_share'].median():.0%}" for p in TRAINING_PHASES) + ").")
    if len(regimes):
        counts = regimes["regime"].value_counts()
        lines.append("- Regimes: " + ", ".join(f"{n} {r}" for r, n in counts.items()) + " (rule below).")
    if "sol_fraction" in steps and steps["sol_fraction"].notna().any():
        lines.append(f"- Speed of light: the median case runs at {steps['sol_fraction'].median():.0%} of the floor "
                     "its run's limits allow (table below).")
    flagged = ok_rows(summary)
    flagged = flagged[flagged["ceiling_flag"].apply(_is_flag)] \
        if "ceiling_flag" in flagged else flagged.iloc[0:0]
    if len(flagged):
        lines.append(f"- **Ceiling under-measured**: {flagged['case_id'].nunique()} case(s) ran faster than their "
                     "matmul ceiling (flagged in the tables; their MFU above 100% is a measurement error of the "
                     "ceiling, not a real rate).")
    beyond = steps[steps.apply(lambda r: bool(numerics_flag(r)), axis=1)] if len(steps) else steps
    if len(beyond):
        lines.append(f"- **Numerics**: {len(beyond)} case(s) compute beyond their tolerance from fp32 eager (the "
                     "'numerics' column; a speedup there buys a different result): "
                     + "; ".join(f"{r['label']}: {numerics_flag(r)}" for _, r in beyond.iterrows()) + ".")
    pairs = compile_pairs(summary)
    if len(pairs):
        faster = pairs[pairs["speedup"] > 1]
        best = pairs.loc[pairs["speedup"].idxmax()]
        payback = (f"pays back its {best['compile_s']:.1f} s compile after {best['break_even_steps']:,.0f} steps"
                   if not _missing(best["break_even_steps"]) else f"never pays back its {best['compile_s']:.1f} s compile")
        lines.append(f"- torch.compile: faster in {len(faster)} of {len(pairs)} cases; best "
                     f"{best['speedup']:.2f}× ({best['label']}), which {payback}.")
    if set(steps["device"]) == {"cpu", "cuda"}:
        cross = crossover_batches(device_speedup(summary))
        cross = cross[(cross["network"] == "uniform") & (cross["batches"] >= 2)]
        if len(cross):
            lines.append("- GPU beats CPU from batch " + "; ".join(
                f"w{r['width']} d{r['depth']} {r['activation']} {r['dtype']}"
                + ("" if r["compile"] == "none" else f" compile:{r['compile']}")
                + f": {_sig(r['crossover_batch']) or 'never'}" for _, r in cross.iterrows())
                + " (interpolated crossover).")
    noisy = steps["noisy"].astype(str).eq("True").sum()
    lines.append(f"- Noise: {noisy} of {len(steps)} step medians have IQR > 10% of the median (flagged "
                 "'noisy'); compare runs with `mlpbench compare`, which accounts for it.")
    return lines


def _regime_table(regimes: pd.DataFrame) -> str:
    rows = [{"case": r["label"], "regime": r["regime"], "alpha rule": r.get("regime_alpha", ""),
             "signals": r["why"]} for _, r in regimes.iterrows()]
    return _table(rows)


def _disagreement_lines(regimes: pd.DataFrame) -> list[str]:
    from .regime import disagreements

    differ = disagreements(regimes)
    if not len(regimes) or "regime_source" not in regimes or not (regimes["regime_source"] == "speed of light").any():
        return []
    if not len(differ):
        return ["The speed of light and the alpha rule agree on every case.", ""]
    return [f"The speed of light and the alpha rule disagree on {len(differ)} case(s):", ""] + [
        f"- {r['label']}: {r['regime']} by the speed of light, {r['regime_alpha']} by the alpha rule"
        for _, r in differ.iterrows()] + [""]


def _skipped_dtypes_section(runs: Sequence) -> list[str]:
    """The dtypes a preset did not measure because the device has no fast path for them, and why."""
    rows = [{"run": name, "device/dtype": key, "why": why}
            for run, name in zip(runs, run_names(runs)) for key, why in run.meta.get("skipped_dtypes", {}).items()]
    if not rows:
        return []
    return ["## Dtypes skipped", "", "The preset does not spend minutes on a dtype the device multiplies without a "
            "fast path; each of its cases is a `skipped` row below. Name the dtype (`--dtype bf16`) to measure it.",
            "", _table(rows), ""]


def _counted_section(summary: pd.DataFrame) -> list[str]:
    """The cases whose FLOPs were counted (a user's model): which cells are empty, and why."""
    if "flops_source" not in summary.columns or not len(summary):
        return []
    counted = summary[(summary["phase"] == "step") & (summary["flops_source"] == "counted")]
    if not len(counted):
        return []
    rows = [{"case": r["label"], "model source": r.get("model_source_sha", ""), "parameters": r.get("parameters", "")}
            for _, r in counted.iterrows()]
    note = str(counted["accounting_note"].dropna().iloc[0]) if counted["accounting_note"].notna().any() else ""
    return ["## Counted accounting (models without a formula)", "", f"{len(counted)} case(s) name a model mlpbench "
            f"has no analytic accounting for: {note}. Their empty memory and traffic cells have no source on this "
            "machine; they are not estimated.", "", _table(rows), ""]


def _failures_section(summary: pd.DataFrame) -> list[str]:
    failed = summary[(summary["phase"] == "step") & (summary["status"] != Status.OK)] if len(summary) else summary
    if not len(failed):
        return []
    rows = [{"case": r["label"], "status": r["status"], "reason": r["reason"]} for _, r in failed.iterrows()]
    return ["## Cases not measured", "", "Failure is data: these cases ran into a limit or are not available "
            "on this machine. Cases skipped by the time budget are re-tried by `mlpbench run --resume RUN "
            "--max-case-s SECONDS`.", "", _table(rows), ""]


# --------------------------------------------------------------------------- CLI
