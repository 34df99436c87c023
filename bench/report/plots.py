"""Figures for a report, drawn from result tables only (matplotlib, Agg backend, imported lazily).

Each figure function takes the merged summary (``tables.merged_summary``: one row per
platform x case x phase, with ``platform`` and ``size`` columns) and writes one PNG, or
returns the reason it has nothing to draw: a dimension with one value, a missing device.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..format import time_text as _ms_text
from ..model.phases import TRAINING_PHASE_NAMES
from .compare import interval_ratio
from .figure import Figure, pyplot as _pyplot, save as _save
from .tables import compile_pairs, crossover_batches, device_speedup, identity_columns, ok_rows

PANEL_IN = 3.6  # width of one small-multiple panel in inches
MAX_PANELS_PER_ROW = 3
BAR_IN = 0.28  # height per horizontal bar; keeps case labels legible at any case count
PHASE_COLORS = dict(zip(TRAINING_PHASE_NAMES, ("#4C72B0", "#DD8452", "#55A868")))
REGIME_MARKERS = {"overhead-bound": "o", "memory-bound": "s", "compute-bound": "^"}
DTYPE_MARKERS = {"fp32": "o", "tf32": "D", "bf16": "s", "fp16": "^"}


def _omitted(name: str, title: str, reason: str) -> Figure:
    return Figure(name, title, None, reason)


def _steps(summary: pd.DataFrame) -> pd.DataFrame:
    return ok_rows(summary, ["step"])


def _compile_label(mode: str) -> str:
    return "eager" if mode == "none" else f"compile:{mode}"


def _batch_axis(ax, batches) -> None:
    ax.set_xscale("log", base=2)
    ticks = sorted(set(int(b) for b in batches))
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(t) for t in ticks])
    ax.minorticks_off()


def _most_common(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Rows whose values in ``columns`` equal the most frequent combination (fixes the other dimensions)."""
    if not len(frame):
        return frame
    top = frame.groupby(columns, sort=False).size().idxmax()
    top = top if isinstance(top, tuple) else (top,)
    mask = np.logical_and.reduce([frame[c] == v for c, v in zip(columns, top)])
    return frame[mask]


def _grid(plt, n_panels: int, panel_h: float = 3.0, sharey: bool = True, extra_w: float = 0.6, **kwargs):
    cols = min(n_panels, MAX_PANELS_PER_ROW)
    rows = math.ceil(n_panels / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(PANEL_IN * cols + extra_w, panel_h * rows + 0.9),
                             sharey=sharey, squeeze=False, **kwargs)
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


# --------------------------------------------------------------------------- 1. throughput


def throughput(summary: pd.DataFrame, out_dir: Path) -> Figure:
    name, title = "throughput", "Training throughput vs batch size"
    steps = _steps(summary)
    panels = []
    for size, rows in steps.groupby("size", sort=False):
        rows = _most_common(rows, ["depth", "activation", "optimizer", "loss", "threads"])
        if rows["batch"].nunique() >= 2:
            panels.append((size, rows))
    if not panels:
        return _omitted(name, title, "no network size was measured at two or more batch sizes")
    plt = _pyplot()
    fig, axes = _grid(plt, len(panels))
    series_keys = sorted({(p, d, c) for _, rows in panels for p, d, c in
                          zip(rows["platform"], rows["dtype"], rows["compile"])})
    platforms = sorted({k[0] for k in series_keys})
    colors = _series_colors(plt, series_keys)
    for ax, (size, rows) in zip(axes, panels):
        for (platform, dtype, mode), line in rows.groupby(["platform", "dtype", "compile"], sort=True):
            line = line.sort_values("batch")
            y = line["batch"] / line["median_s"]
            err = np.vstack([y - line["batch"] / line["ci_high_s"], line["batch"] / line["ci_low_s"] - y])
            label = _series_label(platform, dtype, mode, len(platforms) > 1)
            ax.errorbar(line["batch"], y, yerr=err, label=label, color=colors[(platform, dtype, mode)],
                        linestyle="-" if mode == "none" else "--", marker=DTYPE_MARKERS.get(dtype, "o"),
                        markersize=4, capsize=2, linewidth=1.4)
        ax.set_yscale("log")
        _batch_axis(ax, rows["batch"])
        ax.set_title(f"{size} ({rows['activation'].iloc[0]})")
        ax.set_xlabel("batch size")
    for ax in axes[::MAX_PANELS_PER_ROW]:
        ax.set_ylabel("samples / s (log)")
    fig.suptitle(f"{title} (whole step; median, bars: 95% CI of the median)", fontsize=11)
    _figure_legend(fig, axes)
    caption = ("One panel per network size; lines per device, dtype (marker) and compile mode "
               "(dashed = compiled). A line that keeps rising means the batch is not yet big enough to "
               "amortise per-step costs; a flat line means the device is saturated.")
    return Figure(name, title, _save(fig, out_dir / f"{name}.png"), caption=caption)


def _series_colors(plt, keys) -> dict:
    cmap = plt.get_cmap("tab10")
    return {k: cmap(i % 10) for i, k in enumerate(keys)}


def _series_label(platform: str, dtype: str, mode: str, with_platform: bool) -> str:
    return (f"{platform} " if with_platform else "") + f"{dtype} {_compile_label(mode)}"


def _figure_legend(fig, axes) -> None:
    handles, labels = {}, []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in handles:
                handles[l] = h
                labels.append(l)
    fig.legend([handles[l] for l in labels], labels, loc="lower center", ncol=min(len(labels), 4),
               frameon=False, bbox_to_anchor=(0.5, -0.02 - 0.035 * math.ceil(len(labels) / 4)))
    fig.tight_layout()


# --------------------------------------------------------------------------- 2. phase breakdown


def phase_breakdown(summary: pd.DataFrame, out_dir: Path) -> Figure:
    name, title = "phases", "Where the training step goes"
    ok = ok_rows(summary, ["step", "forward", "backward", "optimizer"])
    table = ok.pivot_table(index=["platform", "case_id"], columns="phase", values="median_s", aggfunc="first")
    table = table.add_suffix("_s")  # forward_s, ...: no clash with the case's `optimizer` column
    needed = [f"{p}_s" for p in PHASE_COLORS] + ["step_s"]
    if not len(table) or not set(needed) <= set(table.columns) or not len(table.dropna(subset=needed)):
        return _omitted(name, title, "no case has forward, backward and optimiser timings")
    table = table.dropna(subset=needed)
    steps = _steps(summary).set_index(["platform", "case_id"])
    order = ["network", "width", "depth", "dtype", "compile", "activation", "optimizer", "batch"]
    table = table.join(steps[["label", "phase_sum_gap"] + order])
    table = table.sort_values(["platform"] + order)
    phase_sum = table[needed[:-1]].sum(axis=1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 1.3 + BAR_IN * len(table)))
    y = np.arange(len(table))
    left = np.zeros(len(table))
    for phase, color in PHASE_COLORS.items():
        share = (table[f"{phase}_s"] / phase_sum * 100).to_numpy()
        ax.barh(y, share, left=left, color=color, label=phase, height=0.75)
        for yi, l, s in zip(y, left, share):
            if s >= 12:
                ax.text(l + s / 2, yi, f"{s:.0f}%", ha="center", va="center", fontsize=7, color="white")
        left += share
    for yi, step_s, gap in zip(y, table["step_s"], table["phase_sum_gap"]):
        ax.text(101, yi, f"{_ms_text(step_s)}  ({gap:+.0%})" if not pd.isna(gap) else _ms_text(step_s),
                va="center", fontsize=7)
    ax.set_yticks(y)
    ax.set_yticklabels(_case_labels(table))
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of the phase sum (%)")
    ax.grid(axis="y", visible=False)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax.set_title(f"{title}: forward / loss+backward / optimiser (+zero_grad), % of the phase sum\n"
                 "right: whole-step median (phase sum vs step)", pad=22)
    caption = ("Each bar splits one case's training step into its phases (timed in separate instrumented "
               "blocks); the number on the right is the uninstrumented step median and, in brackets, how far "
               "the phase sum is from it.")
    return Figure(name, title, _save(fig, out_dir / f"{name}.png"), caption=caption)


def _case_labels(table: pd.DataFrame) -> list[str]:
    platforms = table.index.get_level_values("platform")
    many = len(set(platforms)) > 1
    return [f"{label} [{p}]" if many else label for label, p in zip(table["label"], platforms)]


# --------------------------------------------------------------------------- 3. CPU -> GPU


def gpu_speedup(summary: pd.DataFrame, out_dir: Path) -> Figure:
    name, title = "gpu_speedup", "CPU → GPU speedup"
    devices = set(_steps(summary)["device"])
    if devices != {"cpu", "cuda"}:
        have = ", ".join(sorted(devices)) or "none"
        return _omitted(name, title, f"needs CPU and CUDA measurements of the same cases (this report has: {have}); "
                                     "run the sweep on a GPU machine and pass both runs to `mlpbench report`")
    speed = device_speedup(summary)
    speed = speed[speed["network"] == "uniform"]
    if not len(speed):
        return _omitted(name, title, "no uniform-width case was measured on both CPU and CUDA")
    speed = _most_common(speed, ["depth", "activation", "optimizer", "loss", "threads"])
    panels = list(speed.groupby(["dtype", "compile"], sort=True))
    panels = [(k, p) for k, p in panels if p["width"].nunique() * p["batch"].nunique() >= 2] or panels
    plt = _pyplot()
    from matplotlib.colors import TwoSlopeNorm

    fig, axes = _grid(plt, len(panels), panel_h=0.9 + 0.5 * speed["width"].nunique(), sharey=False,
                      extra_w=1.6, layout="constrained")
    log2 = np.log2(speed["speedup"].to_numpy(float))
    bound = max(1.0, float(np.nanmax(np.abs(log2))))
    norm = TwoSlopeNorm(vcenter=0.0, vmin=-bound, vmax=bound)
    image = None
    crossings = crossover_batches(speed)
    for ax, ((dtype, mode), rows) in zip(axes, panels):
        grid = rows.pivot_table(index="width", columns="batch", values="speedup", aggfunc="first")
        image = ax.imshow(np.log2(grid.to_numpy(float)), cmap="RdBu", norm=norm, aspect="auto", origin="lower")
        for (i, j), value in np.ndenumerate(grid.to_numpy(float)):
            if not np.isnan(value):
                ax.text(j, i, f"{value:.3g}×", ha="center", va="center", fontsize=7,
                        color="white" if abs(np.log2(value)) > 0.6 * bound else "black")
        _mark_crossovers(ax, grid, crossings[(crossings["dtype"] == dtype) & (crossings["compile"] == mode)])
        ax.set_xticks(range(grid.shape[1]), [str(b) for b in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [str(w) for w in grid.index])
        ax.set_xlabel("batch size")
        ax.grid(False)
        ax.set_title(f"{dtype} {_compile_label(mode)}")
    for ax in axes[::MAX_PANELS_PER_ROW]:
        ax.set_ylabel("width")
    cbar = fig.colorbar(image, ax=axes, shrink=0.9, pad=0.02)
    cbar.set_label("CPU time / GPU time (>1: GPU faster)")
    ticks = [t for t in range(-int(bound), int(bound) + 1)]
    cbar.set_ticks(ticks, labels=[f"{2.0 ** t:g}×" for t in ticks])
    cpu, gpu = speed["platform_cpu"].iloc[0], speed["platform_gpu"].iloc[0]
    fig.suptitle(f"{title}, whole training step: {cpu} vs {gpu}\n"
                 "black bar: crossover batch (GPU faster from there on)", fontsize=10)
    caption = ("Blue cells: the GPU is faster; red: the CPU is. The black tick in each row marks the batch size "
               "from which the GPU wins at every larger measured batch (log-interpolated between the two "
               "measured batches around it).")
    return Figure(name, title, _save(fig, out_dir / f"{name}.png"), caption=caption)


def _mark_crossovers(ax, grid: pd.DataFrame, crossings: pd.DataFrame) -> None:
    batches = np.log(np.asarray(grid.columns, dtype=float))
    for _, c in crossings.iterrows():
        if c["width"] not in grid.index or pd.isna(c["crossover_batch"]):
            continue
        row = list(grid.index).index(c["width"])
        x = float(np.interp(math.log(c["crossover_batch"]), batches, np.arange(len(batches))))
        x = x - 0.5 if c["crossover_batch"] <= grid.columns[0] else x
        ax.plot([x, x], [row - 0.45, row + 0.45], color="black", linewidth=2.5)


# --------------------------------------------------------------------------- 4. compile


def compile_speedup(summary: pd.DataFrame, out_dir: Path) -> Figure:
    name, title = "compile", "torch.compile vs eager"
    pairs = compile_pairs(summary)
    if not len(pairs):
        return _omitted(name, title, "no case was measured both compiled and eager")
    pairs = pairs.sort_values(["platform", "size", "batch"])
    ratios = [interval_ratio({"median_s": r["median_s"], "ci_low_s": r["ci_low_s"], "ci_high_s": r["ci_high_s"]},
                             {"median_s": r["median_s_eager"], "ci_low_s": r["ci_low_s_eager"],
                              "ci_high_s": r["ci_high_s_eager"]}) for _, r in pairs.iterrows()]
    speedup = np.array([r.ratio for r in ratios])
    err = np.array([[r.ratio - r.low for r in ratios], [r.high - r.ratio for r in ratios]])
    compile_s = pairs["compile_s"].to_numpy(float)
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 1.6 + 0.42 * len(pairs)), sharey=True,
                                   gridspec_kw={"width_ratios": [1.1, 1]})
    y = np.arange(len(pairs))
    colors = ["#55A868" if r.low > 1 else "#C44E52" if r.high < 1 else "#9A9A9A" for r in ratios]
    ax1.barh(y, speedup, xerr=err, color=colors, height=0.6, capsize=2, error_kw={"elinewidth": 0.8})
    ax1.axvline(1.0, color="black", linewidth=0.8)
    for yi, s, e in zip(y, speedup, err[1]):
        ax1.text(s + e, yi, f"  {s:.2f}×", va="center", fontsize=7)
    ax1.set_xlim(0, max(1.05, float(np.nanmax(speedup + err[1]))) * 1.15)
    ax1.set_yticks(y, [f"{r['label_eager'].replace(' eager', '')} → {r['compile']}" for _, r in pairs.iterrows()])
    ax1.invert_yaxis()
    ax1.set_xlabel("eager step time / compiled step time (>1: compile faster)")
    ax1.set_title("whole-step speedup (error bars from the 95% CIs;\ngreen: faster, red: slower, grey: within noise)")
    break_even = pairs["break_even_steps"].to_numpy(float)  # NaN where compiled is not faster
    finite = break_even[np.isfinite(break_even)]
    ax2.barh(y, np.nan_to_num(break_even, nan=0.0), color="#4C72B0", height=0.6)
    for yi, steps_n, c_s in zip(y, break_even, compile_s):
        text = f" {steps_n:,.0f} steps" if np.isfinite(steps_n) else " never: compiled is not faster"
        ax2.text(steps_n if np.isfinite(steps_n) else (finite.min() / 3 if len(finite) else 0), yi,
                 text + (f" (compile {c_s:.1f} s)" if np.isfinite(c_s) else ""), va="center", fontsize=7)
    if len(finite):
        ax2.set_xscale("log")
        ax2.set_xlim(max(finite.min() / 3, 0.5), finite.max() * 30)
        ax2.set_xlabel("break-even: compile time / per-step saving (steps, log)")
    else:
        ax2.set_xlim(0, 1)
        ax2.set_xticks([])
        ax2.set_xlabel("break-even: compile time / per-step saving")
    ax2.set_title("steps before compiling pays off")
    ax2.grid(axis="y", visible=False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    caption = ("Left: how much faster the compiled step is than the same case in eager mode. Right: how many "
               "training steps it takes before the one-off compile time is paid back by the faster steps.")
    return Figure(name, title, _save(fig, out_dir / f"{name}.png"), caption=caption)


# --------------------------------------------------------------------------- 5. roofline


def roofline(summary: pd.DataFrame, out_dir: Path, regimes: pd.DataFrame | None = None,
             ceilings: pd.DataFrame | None = None, bandwidths: pd.DataFrame | None = None) -> Figure:
    name, title = "roofline", "Roofline: achieved TFLOP/s vs arithmetic intensity"
    steps = _steps(summary)
    has_traffic = "traffic_bytes" in steps and steps["traffic_bytes"].notna().any()
    bytes_column = "traffic_bytes" if has_traffic else "mem_total_bytes"
    steps = steps[(steps["tflops"] > 0) & (steps[bytes_column] > 0)]
    if not len(steps):
        return _omitted(name, title, "no case has both a FLOP count and a byte count")
    if regimes is not None and len(regimes):
        steps = steps.merge(regimes[["platform", "case_id", "regime"]], on=["platform", "case_id"], how="left")
    else:
        steps = steps.assign(regime="")
    intensity = steps["matmul_flops"] / steps[bytes_column]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5.2))
    groups = sorted({(p, d) for p, d in zip(steps["platform"], steps["dtype"])})
    colors = _series_colors(plt, groups)
    x_lo, x_hi = float(intensity.min()) / 4, float(intensity.max()) * 4
    for (platform, dtype), rows in steps.groupby(["platform", "dtype"], sort=True):
        color = colors[(platform, dtype)]
        x = intensity[rows.index]
        for regime, sub in rows.groupby("regime", sort=False):
            ax.scatter(x[sub.index], sub["tflops"], color=color, marker=REGIME_MARKERS.get(regime, "o"),
                       s=28, alpha=0.85, edgecolors="white", linewidths=0.4)
        where = f"{rows['device'].iloc[0]} {dtype}"
        ceiling = _ceiling_for(ceilings, platform, dtype, rows)
        bandwidth = _bandwidth_for(bandwidths, platform, dtype)
        if ceiling is not None and bandwidth is not None:  # both roofs: min(bandwidth x intensity, ceiling)
            ridge = ceiling * 1e12 / bandwidth
            xs = np.geomspace(min(x_lo, ridge / 4), max(x_hi, ridge * 4), 200)
            ax.plot(xs, np.minimum(bandwidth * xs / 1e12, ceiling), color=color, linewidth=1.3, alpha=0.85)
            ax.text(1.0, ceiling, f"{where}: matmul {ceiling:.3g} TFLOP/s, {bandwidth / 1e9:.3g} GB/s  ",
                    color=color, fontsize=7, ha="right", va="top", transform=ax.get_yaxis_transform())  # peak: above
        elif ceiling is not None:
            ax.axhline(ceiling, color=color, linestyle="-", linewidth=1.2, alpha=0.8)
            ax.text(1.0, ceiling, f"{where} measured matmul ceiling {ceiling:.3g}  ", color=color, fontsize=7,
                    ha="right", va="bottom", transform=ax.get_yaxis_transform())
        peak = rows["peak_tflops"].dropna()
        if len(peak):
            ax.axhline(float(peak.iloc[0]), color=color, linestyle=":", linewidth=1.0)
            ax.text(1.0, float(peak.iloc[0]), f"{where} peak {float(peak.iloc[0]):.3g}  ", color=color,
                    fontsize=7, ha="right", va="bottom", transform=ax.get_yaxis_transform())
        ax.plot([], [], color=color, marker="o", linestyle="-", label=f"{platform} {dtype}")
    for regime, marker in REGIME_MARKERS.items():
        if regime in set(steps["regime"]):
            ax.scatter([], [], marker=marker, color="grey", label=regime)
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax.xaxis)
    moved = "bytes moved (mlp.traffic)" if has_traffic else "bytes of state touched"
    ax.set_xlabel(f"arithmetic intensity: matmul FLOPs per step / {moved} (FLOP/byte, log)")
    ax.set_ylabel("achieved matmul TFLOP/s (log)")
    ax.set_title(f"{title} (whole training step; roofs: same-run bandwidth and matmul ceilings)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    caption = ("Each point is a case's training step. Roofs per device and dtype: the slope is the same-run "
               "memory bandwidth (copy/triad past the last-level cache), the flat part the same-run matmul "
               "ceiling; dotted: the datasheet or theoretical peak. Bytes are the least the step moves (each "
               "operand read once, each result written once), so a point sits at or right of its true intensity. "
               "Points far below both roofs are held back by per-op overhead. Marker = regime.")
    return Figure(name, title, _save(fig, out_dir / f"{name}.png"), caption=caption)


def _bandwidth_for(bandwidths: pd.DataFrame | None, platform: str, dtype: str) -> float | None:
    if bandwidths is None or not len(bandwidths):
        return None
    match = bandwidths[(bandwidths["platform"] == platform) & (bandwidths["dtype"] == dtype)]
    return float(match["bytes_per_s"].max()) if len(match) else None


def _plain_log_ticks(axis) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _ceiling_for(ceilings: pd.DataFrame | None, platform: str, dtype: str, rows: pd.DataFrame) -> float | None:
    if ceilings is not None and len(ceilings):
        match = ceilings[(ceilings["platform"] == platform) & (ceilings["dtype"] == dtype)]
        if len(match):  # several thread counts on a CPU: draw the whole machine's roof
            return float(match["measured_tflops"].max())
    values = rows["ceiling_tflops"].dropna()
    return float(values.iloc[0]) if len(values) else None


# --------------------------------------------------------------------------- 6. activations


def activations(summary: pd.DataFrame, out_dir: Path) -> Figure:
    name, title = "activations", "Activation functions compared"
    steps = _steps(summary)
    keys = ["platform"] + identity_columns(["activation"])
    counts = steps.groupby(keys, sort=False)["activation"].nunique()
    if not len(counts) or counts.max() < 2:
        return _omitted(name, title, "no configuration was measured with two or more activations")
    best = counts.idxmax()
    mask = np.logical_and.reduce([steps[k] == v for k, v in zip(keys, best)])
    chosen = steps[mask]
    phases = ok_rows(summary, list(PHASE_COLORS) + ["inference"])
    phases = phases[phases["platform"].eq(best[0]) & phases["case_id"].isin(chosen["case_id"])]
    table = phases.pivot_table(index="case_id", columns="phase", values="median_s", aggfunc="first")
    table = table.join(chosen.set_index("case_id")[["activation", "median_s", "ci_low_s", "ci_high_s"]])
    table = table.sort_values("median_s")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(table) + 2), 4.4))
    x = np.arange(len(table))
    bottom = np.zeros(len(table))
    for phase, color in PHASE_COLORS.items():
        values = table[phase].to_numpy(float) * 1e3 if phase in table else np.zeros(len(table))
        ax.bar(x, values, bottom=bottom, color=color, width=0.6, label=phase)
        bottom += np.nan_to_num(values)
    step_ms = table["median_s"].to_numpy() * 1e3
    err = np.vstack([step_ms - table["ci_low_s"] * 1e3, table["ci_high_s"] * 1e3 - step_ms])
    ax.errorbar(x, step_ms, yerr=err, fmt="_", color="black", markersize=22, capsize=3, label="whole step (95% CI)")
    if "inference" in table:
        ax.scatter(x, table["inference"] * 1e3, marker="D", color="#8172B3", s=18, zorder=3, label="inference")
    ax.set_xticks(x, table["activation"])
    ax.set_ylabel("time per step (ms)")
    ax.set_ylim(0, max(np.nanmax(bottom), np.nanmax(step_ms + err[1])) * 1.15)
    ax.grid(axis="x", visible=False)
    row = chosen.iloc[0]
    threads = f", {int(row['threads'])} thread(s)" if int(row["threads"]) else ""
    where = (f"{row['size']}, batch {row['batch']}, {row['dtype']} {_compile_label(row['compile'])}{threads}\n"
             f"on {row['platform']}")
    ax.set_title(f"{title} at {where}")
    ax.legend(loc="upper left", ncol=3, frameon=False, fontsize=7)
    caption = ("Stacked bars: forward, loss+backward and optimiser medians per activation at one fixed "
               "configuration, sorted by step time; black tick: the whole step with its 95% CI; diamond: "
               "inference (forward under inference_mode).")
    return Figure(name, title, _save(fig, out_dir / f"{name}.png"), caption=caption)


# --------------------------------------------------------------------------- all


def render_all(summary: pd.DataFrame, out_dir: Path, regimes: pd.DataFrame | None = None,
               ceilings: pd.DataFrame | None = None, bandwidths: pd.DataFrame | None = None) -> list[Figure]:
    """Every figure in report order; omitted ones carry their reason instead of a path."""
    out_dir = Path(out_dir)
    return [
        throughput(summary, out_dir),
        phase_breakdown(summary, out_dir),
        gpu_speedup(summary, out_dir),
        compile_speedup(summary, out_dir),
        roofline(summary, out_dir, regimes, ceilings, bandwidths),
        activations(summary, out_dir),
    ]
