"""report.html: the report as one self-contained web page (plotly.js inlined), from the same tables as report.md.

``mlpbench report RUN [RUN ...] --html`` writes it beside report.md. It opens from ``file://`` with no
network. At the top: the runs, the environment fingerprint and the limits (matmul ceilings, bandwidth,
dispatch floor). Then the interactive figures, one marker per case (hover: the case's label, its fields
and its median with the 95% CI):

- throughput against batch (every ok case; one line per configuration, everything but the batch fixed);
- the phase breakdown (forward / loss+backward / optimiser ms per case, the whole step's median beside);
- the roofline (achieved TFLOP/s against arithmetic intensity, each platform x dtype's roofs, each case's
  own ceiling in its hover);
- compile payback (speedup with its CI, and the steps before the compile time is paid back);
- the CPU-versus-GPU crossover (CPU time / GPU time against batch) where CPU and CUDA runs are merged.

Then the case table, sortable and filterable by any case field, and, for ``report A B [C ...]``, the runs
compared (``comparison_html``: B against A with ``compare``'s verdicts, a figure and a table per pair). A
figure that cannot be drawn says why; a run with no ok case says so instead of drawing empty axes. Reads
result tables only (``tables``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..format import missing, ms, pct, sig, time_text
from ..model.phases import TRAINING_PHASE_NAMES
from ..runs import Status, write_atomic
from .webpage import Cell, cell, escape, figure_html, page, table_html
from .compare import interval_ratio
from .comparison_html import section as comparison_section
from .markdown import ceiling_table, limits_table, phase_shares
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

REPORT_HTML = "report.html"
PHASE_COLORS = dict(zip(TRAINING_PHASE_NAMES, ("#4C72B0", "#DD8452", "#55A868")))
ENV_KEYS = COMPARABILITY_KEYS + FLAG_KEYS + ("python", "cudnn", "cpu_count", "date", "git_commit", "command")
FIGURE_HEIGHT_PX = 460
BAR_PX = 22  # per case in the horizontal bar figures
TABLE_ID = "cases"


@dataclass(frozen=True)
class HtmlFigure:
    name: str  # element id, e.g. "fig-throughput"
    title: str
    figure: dict | None  # a plotly figure (data, layout); None: omitted
    reason: str = ""  # why it was omitted
    caption: str = ""
    height_px: int = FIGURE_HEIGHT_PX


@dataclass(frozen=True)
class HtmlReport:
    path: Path
    figures: list  # HtmlFigure


# --------------------------------------------------------------------------- hover text


def case_fields(row: pd.Series) -> str:
    return ", ".join(f"{f} {row[f]}" for f in identity_columns() if f in row and not missing(row[f]))


def median_text(row: pd.Series, suffix: str = "") -> str:
    return (f"median {time_text(row['median_s' + suffix])} "
            f"[{time_text(row['ci_low_s' + suffix])}, {time_text(row['ci_high_s' + suffix])}] (95% CI)")


def hover(row: pd.Series, *extra: str) -> str:
    """The case's label, its fields and its median with the CI (plotly hover text, <br> between lines)."""
    platform = f" · {row['platform']}" if "platform" in row else ""
    lines = [f"<b>{escape(row['label'])}</b>{escape(platform)}", escape(case_fields(row)), escape(median_text(row))]
    return "<br>".join(lines + [escape(e) for e in extra if e])


def _name(values: dict, varying: Sequence[str]) -> str:
    parts = []
    for field in varying:
        value = values[field]
        if field == "compile":
            parts.append("eager" if value == "none" else f"compile:{value}")
        elif field in ("threads",):
            parts.append(f"t{value}" if value else "default threads")
        elif field in ("width", "depth", "in_features", "out_features"):
            if value:  # 0: a named network's own sizes
                parts.append(f"{field[0] if field in ('width', 'depth') else field.split('_')[0]}{value}")
        else:
            parts.append(str(value))
    return " ".join(parts)


def _series(rows: pd.DataFrame, keys: Sequence[str]) -> list[tuple[str, pd.DataFrame, dict]]:
    """Groups of ``rows`` by ``keys``, each named by the keys whose values differ between groups."""
    groups = list(rows.groupby(list(keys), sort=True, dropna=False))
    varying = [k for i, k in enumerate(keys) if len({g[0][i] for g in groups}) > 1] or list(keys[:1])
    return [(_name(dict(zip(keys, values)), varying), group, dict(zip(keys, values))) for values, group in groups]


def _layout(title: str, x: str, y: str, *, xlog: bool = False, ylog: bool = False, **extra) -> dict:
    layout = {"title": {"text": title, "font": {"size": 15}}, "hovermode": "closest", "margin": {"t": 60, "r": 20},
              "xaxis": {"title": {"text": x}, "type": "log" if xlog else "linear"},
              "yaxis": {"title": {"text": y}, "type": "log" if ylog else "linear"},
              "legend": {"font": {"size": 10}}, "hoverlabel": {"align": "left", "font": {"size": 11}}}
    layout.update(extra)
    return layout


# --------------------------------------------------------------------------- figures


def throughput(summary: pd.DataFrame) -> HtmlFigure:
    name, title = "fig-throughput", "Training throughput vs batch size"
    steps = ok_rows(summary, ["step"])
    if not len(steps):
        return HtmlFigure(name, title, None, "no case was measured ok")
    keys = ["platform"] + identity_columns(["batch"])
    traces = []
    for series, line, values in _series(steps, keys):
        line = line.sort_values("batch")
        y = line["batch"] / line["median_s"]
        traces.append({"type": "scatter", "mode": "lines+markers", "name": series,
                       "x": line["batch"].tolist(), "y": y.tolist(),
                       "error_y": {"type": "data", "symmetric": False,
                                   "array": (line["batch"] / line["ci_low_s"] - y).tolist(),
                                   "arrayminus": (y - line["batch"] / line["ci_high_s"]).tolist(), "thickness": 1},
                       "line": {"dash": "solid" if values["compile"] == "none" else "dash"},
                       "hovertext": [hover(r, f"{r['samples_per_s']:,.4g} samples/s") for _, r in line.iterrows()],
                       "hoverinfo": "text"})
    caption = ("One marker per case measured ok (the whole training step; bars: the 95% CI of the median); a line "
               "joins the batch sizes of one configuration (dashed: compiled). A line that keeps rising has not yet "
               "amortised the per-step costs; a flat one is saturated.")
    return HtmlFigure(name, title, {"data": traces, "layout": _layout(
        title, "batch size", "samples / s", xlog=True, ylog=True)}, caption=caption)


def phase_breakdown(summary: pd.DataFrame) -> HtmlFigure:
    name, title = "fig-phases", "Where the training step goes"
    shares = phase_shares(summary).dropna(subset=list(TRAINING_PHASE_NAMES)) if len(ok_rows(summary)) else None
    if shares is None or not len(shares):
        return HtmlFigure(name, title, None, "no case has forward, backward and optimiser timings")
    steps = ok_rows(summary, ["step"]).set_index(["platform", "case_id"])
    index = [k for k in shares.index if k in steps.index]
    steps = steps.loc[index]
    many = steps.index.get_level_values("platform").nunique() > 1
    labels = [f"{r['label']} [{p}]" if many else r["label"] for (p, _), r in steps.iterrows()]
    traces = []
    for phase, color in PHASE_COLORS.items():
        values = shares.loc[index, phase]
        share = shares.loc[index, f"{phase}_share"]
        traces.append({"type": "bar", "orientation": "h", "name": phase, "marker": {"color": color},
                       "y": labels, "x": (values * 1e3).tolist(), "hoverinfo": "text",
                       "hovertext": [hover(r, f"{phase}: {time_text(v)} ({pct(s, 0)} of the phase sum)")
                                     for (_, r), v, s in zip(steps.iterrows(), values, share)]})
    traces.append({"type": "scatter", "mode": "markers", "name": "whole step (median, 95% CI)", "y": labels,
                   "x": (steps["median_s"] * 1e3).tolist(), "marker": {"color": "black", "symbol": "line-ns-open",
                                                                     "size": 14, "line": {"width": 2}},
                   "error_x": {"type": "data", "symmetric": False,
                               "array": ((steps["ci_high_s"] - steps["median_s"]) * 1e3).tolist(),
                               "arrayminus": ((steps["median_s"] - steps["ci_low_s"]) * 1e3).tolist()},
                   "hovertext": [hover(r, f"phase sum gap {pct(r.get('phase_sum_gap'), 0)}")
                                 for _, r in steps.iterrows()], "hoverinfo": "text"})
    layout = _layout(title + ": forward / loss+backward / optimiser (+zero_grad)", "ms per step", "",
                     barmode="stack", yaxis={"autorange": "reversed", "automargin": True, "type": "category"})
    caption = ("Each bar splits one case's step into its separately timed phases (ms); the black tick is the "
               "uninstrumented whole-step median with its 95% CI: how far the phase sum is from it.")
    return HtmlFigure(name, title, {"data": traces, "layout": layout}, caption=caption,
                      height_px=max(FIGURE_HEIGHT_PX, 120 + BAR_PX * len(labels)))


def roofline(summary: pd.DataFrame, regimes: pd.DataFrame, ceilings: pd.DataFrame,
             bandwidths: pd.DataFrame) -> HtmlFigure:
    name, title = "fig-roofline", "Roofline: achieved TFLOP/s vs arithmetic intensity"
    steps = ok_rows(summary, ["step"])
    bytes_column = "traffic_bytes" if "traffic_bytes" in steps and steps["traffic_bytes"].notna().any() \
        else "mem_total_bytes"
    if bytes_column not in steps:
        return HtmlFigure(name, title, None, "no case has both a FLOP count and a byte count")
    steps = steps[(steps["tflops"] > 0) & (steps[bytes_column] > 0)]
    if not len(steps):
        return HtmlFigure(name, title, None, "no case has both a FLOP count and a byte count")
    if len(regimes):
        steps = steps.merge(regimes[["platform", "case_id", "regime"]], on=["platform", "case_id"], how="left")
    else:
        steps = steps.assign(regime="")
    intensity = steps["matmul_flops"] / steps[bytes_column]
    x_lo, x_hi = float(intensity.min()) / 4, float(intensity.max()) * 4
    traces = []
    for (platform, dtype), rows in steps.groupby(["platform", "dtype"], sort=True):
        x = intensity[rows.index]
        traces.append({"type": "scatter", "mode": "markers", "name": f"{platform} {dtype}", "x": x.tolist(),
                       "y": rows["tflops"].tolist(), "marker": {"size": 9, "line": {"width": 0.5, "color": "white"}},
                       "hoverinfo": "text", "legendgroup": f"{platform} {dtype}",
                       "hovertext": [hover(r, f"{sig(r['tflops'])} TFLOP/s at {sig(i)} FLOP/byte",
                                           f"its ceiling {sig(r.get('ceiling_tflops'))} TFLOP/s (MFU {pct(r.get('mfu'))})",
                                           f"regime {r['regime']}" if isinstance(r["regime"], str) else "")
                                     for (_, r), i in zip(rows.iterrows(), x)]})
        roof = _roof(ceilings, bandwidths, platform, dtype, rows, x_lo, x_hi)
        if roof is not None:
            traces.append({"type": "scatter", "mode": "lines", "name": f"roof: {platform} {dtype}", **roof,
                           "line": {"width": 1.5, "dash": "dot"}, "legendgroup": f"{platform} {dtype}",
                           "hoverinfo": "name"})
    caption = ("One marker per case's training step. Roofs per platform and dtype: the slope is the same-run "
               "memory bandwidth, the flat part the same-run matmul ceiling; hover a case for its own ceiling "
               "and MFU. Bytes are the least the step moves (each operand read once), so a point sits at or right "
               "of its true intensity.")
    moved = "bytes moved" if bytes_column == "traffic_bytes" else "bytes of state touched"
    return HtmlFigure(name, title, {"data": traces, "layout": _layout(
        title, f"matmul FLOPs per step / {moved} (FLOP/byte)", "achieved matmul TFLOP/s", xlog=True, ylog=True)},
        caption=caption)


def _roof(ceilings: pd.DataFrame, bandwidths: pd.DataFrame, platform: str, dtype: str, rows: pd.DataFrame,
          x_lo: float, x_hi: float) -> dict | None:
    ceiling = None
    if len(ceilings):
        match = ceilings[(ceilings["platform"] == platform) & (ceilings["dtype"] == dtype)]
        ceiling = float(match["measured_tflops"].max()) if len(match) else None
    if ceiling is None and rows["ceiling_tflops"].notna().any():
        ceiling = float(rows["ceiling_tflops"].dropna().iloc[0])
    if ceiling is None:
        return None
    bandwidth = None
    if len(bandwidths) and "dtype" in bandwidths:
        match = bandwidths[(bandwidths["platform"] == platform) & (bandwidths["dtype"] == dtype)]
        bandwidth = float(match["bytes_per_s"].max()) if len(match) else None
    if bandwidth is None:
        return {"x": [x_lo, x_hi], "y": [ceiling, ceiling]}
    ridge = ceiling * 1e12 / bandwidth
    xs = np.geomspace(min(x_lo, ridge / 4), max(x_hi, ridge * 4), 60)
    return {"x": xs.tolist(), "y": np.minimum(bandwidth * xs / 1e12, ceiling).tolist()}


def compile_payback(summary: pd.DataFrame) -> HtmlFigure:
    name, title = "fig-compile", "torch.compile: speedup and payback"
    pairs = compile_pairs(summary) if len(ok_rows(summary)) else pd.DataFrame()
    if not len(pairs):
        return HtmlFigure(name, title, None, "no case was measured both compiled and eager")
    pairs = pairs.sort_values(["platform", "size", "batch"])
    ratios = [interval_ratio({"median_s": r["median_s"], "ci_low_s": r["ci_low_s"], "ci_high_s": r["ci_high_s"]},
                             {"median_s": r["median_s_eager"], "ci_low_s": r["ci_low_s_eager"],
                              "ci_high_s": r["ci_high_s_eager"]}) for _, r in pairs.iterrows()]
    labels = [f"{r['label']}" for _, r in pairs.iterrows()]
    texts = [hover(r, f"eager: {median_text(r, '_eager')}", f"speedup {q.ratio:.3g}× [{q.low:.3g}, {q.high:.3g}]",
                   f"compile {time_text(r['compile_s'])}; pays back after "
                   + (f"{r['break_even_steps']:,.0f} steps" if not missing(r["break_even_steps"])
                      else "never (not faster)"),
                   *([f"numerics: {numerics_cell(r)}"] if numerics_cell(r) else []))
             for (_, r), q in zip(pairs.iterrows(), ratios)]
    speed = {"type": "scatter", "mode": "markers", "name": "eager / compiled step time", "y": labels,
             "x": [q.ratio for q in ratios], "xaxis": "x", "yaxis": "y", "hoverinfo": "text", "hovertext": texts,
             "marker": {"size": 10, "color": ["#55A868" if q.low > 1 else "#C44E52" if q.high < 1 else "#9A9A9A"
                                              for q in ratios]},
             "error_x": {"type": "data", "symmetric": False, "array": [q.high - q.ratio for q in ratios],
                         "arrayminus": [q.ratio - q.low for q in ratios]}}
    payback = {"type": "bar", "orientation": "h", "name": "steps to pay back the compile", "y": labels,
               "x": [None if missing(v) else float(v) for v in pairs["break_even_steps"]], "xaxis": "x2", "yaxis": "y",
               "hoverinfo": "text", "hovertext": texts, "marker": {"color": "#4C72B0"}}
    layout = _layout(title, "", "", yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
                     xaxis={"domain": [0, 0.45], "title": {"text": "eager / compiled (>1: compiled faster)"}},
                     xaxis2={"domain": [0.55, 1], "type": "log", "anchor": "y",
                             "title": {"text": "break-even: compile time / per-step saving (steps)"}},
                     shapes=[{"type": "line", "xref": "x", "yref": "paper", "x0": 1, "x1": 1, "y0": 0, "y1": 1,
                              "line": {"width": 1}}])
    caption = ("Left: how much faster the compiled step is than the same case eager (95% interval of the ratio; "
               "green: faster, red: slower, grey: within noise). Right: the training steps before the one-off "
               "compile time is paid back; no bar: compiling never pays back.")
    return HtmlFigure(name, title, {"data": [speed, payback], "layout": layout}, caption=caption,
                      height_px=max(FIGURE_HEIGHT_PX, 140 + 2 * BAR_PX * len(labels)))


def crossover(summary: pd.DataFrame) -> HtmlFigure:
    name, title = "fig-crossover", "CPU vs GPU: where the GPU wins"
    devices = set(ok_rows(summary, ["step"])["device"]) if len(summary) else set()
    if devices != {"cpu", "cuda"}:
        return HtmlFigure(name, title, None, "needs CPU and CUDA measurements of the same cases (this report has: "
                          f"{', '.join(sorted(devices)) or 'none'}); pass a CPU run and a GPU run to `mlpbench report`")
    speed = device_speedup(summary)
    if not len(speed):
        return HtmlFigure(name, title, None, "no case was measured on both CPU and CUDA")
    keys = identity_columns(["device", "batch", "threads"])
    cross = crossover_batches(speed)
    traces, marks = [], []
    for series, line, values in _series(speed, keys):
        line = line.sort_values("batch")
        traces.append({"type": "scatter", "mode": "lines+markers", "name": series, "x": line["batch"].tolist(),
                       "y": line["speedup"].tolist(), "hoverinfo": "text",
                       "hovertext": [f"<b>{escape(r['label_cpu'])}</b> vs <b>{escape(r['label_gpu'])}</b><br>"
                                     f"{escape(r['platform_cpu'])} vs {escape(r['platform_gpu'])}<br>"
                                     f"CPU {time_text(r['cpu_s'])}, GPU {time_text(r['gpu_s'])}: "
                                     f"{r['speedup']:.3g}× (>1: GPU faster)" for _, r in line.iterrows()]})
        match = np.logical_and.reduce([cross[k] == values[k] for k in keys]) if len(cross) else []
        for _, c in cross[match].iterrows() if len(cross) else []:
            if not missing(c["crossover_batch"]) and c["batches"] >= 2:
                marks.append((series, float(c["crossover_batch"])))
    if marks:
        traces.append({"type": "scatter", "mode": "markers", "name": "crossover (interpolated)",
                       "x": [b for _, b in marks], "y": [1.0] * len(marks), "hoverinfo": "text",
                       "marker": {"symbol": "x", "size": 12, "color": "black"},
                       "hovertext": [f"{escape(s)}: the GPU wins from batch {sig(b)}" for s, b in marks]})
    layout = _layout(title, "batch size", "CPU time / GPU time (whole step)", xlog=True, ylog=True,
                     shapes=[{"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": 1, "y1": 1,
                              "line": {"width": 1, "dash": "dot"}}])
    caption = ("Per configuration measured on both devices, the CPU's step time over the GPU's against batch "
               "(above 1: the GPU is faster); crosses: the batch from which the GPU wins at every larger measured "
               "batch, log-interpolated.")
    return HtmlFigure(name, title, {"data": traces, "layout": layout}, caption=caption)


def figures(summary: pd.DataFrame, regimes: pd.DataFrame, ceilings: pd.DataFrame,
            bandwidths: pd.DataFrame) -> list[HtmlFigure]:
    return [throughput(summary), phase_breakdown(summary), roofline(summary, regimes, ceilings, bandwidths),
            compile_payback(summary), crossover(summary)]


# --------------------------------------------------------------------------- tables and page


def case_rows(summary: pd.DataFrame, regimes: pd.DataFrame) -> tuple[list[str], list[list[Cell]]]:
    """The case table: every case field, then the step's numbers; one row per platform x case."""
    steps = summary[summary["phase"] == "step"]
    fields = identity_columns()
    regime_of = {(p, c): r for p, c, r in zip(regimes.get("platform", []), regimes.get("case_id", []),
                                             regimes.get("regime", []))}
    columns = ["case", "platform", *fields, "median ms", "95% CI ms", "samples/s", "TFLOP/s", "MFU", "% of SoL",
               "numerics vs fp32 eager", "regime", "status"]
    rows = []
    for _, r in steps.iterrows():
        ok = r["status"] == Status.OK

        def number(column: str, r=r, ok=ok):
            return r.get(column) if ok else None

        rows.append([cell(r["label"]), cell(r["platform"]),
                     *(cell(r[f], float(r[f]) if isinstance(r[f], (int, float, np.integer, np.floating)) else None)
                       for f in fields),
                     cell(ms(number("median_s")), _scaled(number("median_s"), 1e3)),
                     cell(f"{ms(r['ci_low_s'])} – {ms(r['ci_high_s'])}" if ok else ""),
                     cell(sig(number("samples_per_s"), 4), number("samples_per_s")),
                     cell(sig(number("tflops")), number("tflops")),
                     cell(pct(number("mfu")), number("mfu"), css="flag" if ok and _flag(r) else ""),
                     cell(pct(number("sol_fraction"), 0), number("sol_fraction")),
                     cell(numerics_cell(r) if ok else "", css="flag" if ok and numerics_flag(r) else ""),
                     cell(regime_of.get((r["platform"], r["case_id"]), "")),
                     cell(r["status"] + ("" if ok else f": {r['reason']}") + (f"; {r['ceiling_flag']}" if _flag(r)
                                                                             else ""))])
    return columns, rows


def _scaled(value, factor: float):
    return None if value is None or missing(value) else float(value) * factor


def _flag(r: pd.Series) -> bool:
    flag = r.get("ceiling_flag")
    return isinstance(flag, str) and bool(flag)


def environment_html(runs: Sequence, names: list[str]) -> str:
    envs = {name: run.meta.get("env", {}) for run, name in zip(runs, names)}
    rows = [[cell(key), *(cell(env.get(key, "")) for env in envs.values())] for key in ENV_KEYS]
    text = table_html("environment", ["", *names], rows, interactive=False)
    diffs = describe_differences(fingerprint_differences(envs))
    if len(runs) > 1 and diffs:
        text += ('<div class="note"><b>The runs\' fingerprints differ</b>, so differences between them may come '
                 "from the machine or software, not only from the case:<ul>"
                 + "".join(f"<li>{escape(d)}</li>" for d in diffs) + "</ul></div>")
    return text


def _overview(runs: Sequence, names: list[str], summary: pd.DataFrame) -> str:
    steps = summary[summary["phase"] == "step"] if len(summary) else summary
    counts = steps["status"].value_counts() if len(steps) else pd.Series(dtype=int)
    status = ", ".join(f"{n} {s}" for s, n in counts.items()) or "none"
    items = []
    for run, name in zip(runs, names):
        env = run.meta.get("env", {})
        items.append(f"<li><code>{escape(name)}</code>: preset <code>{escape(run.meta.get('preset', '?'))}</code>, "
                     f"{escape(env.get('date', '?'))}, {escape(env.get('hostname', '?'))}, git "
                     f"{escape(str(env.get('git_commit', '?'))[:12])}"
                     + (" (interrupted)" if run.meta.get("interrupted") else "") + "</li>")
    return f"<p>{len(steps)} cases ({escape(status)}) from {len(runs)} run(s):</p><ul>{''.join(items)}</ul>"


def _figure_section(i: int, figure: HtmlFigure) -> str:
    head = f'<h3 id="{figure.name}-title">{i}. {escape(figure.title)}</h3>'
    if figure.figure is None:
        return f'{head}\n<p class="empty" id="{figure.name}-omitted">Not drawn: {escape(figure.reason)}.</p>'
    return (f'{head}\n<p class="caption">{escape(figure.caption)}</p>\n'
            + figure_html(figure.name, figure.figure, height_px=figure.height_px))


def render_html(runs: Sequence) -> tuple[str, list[HtmlFigure]]:
    """The page's text and its figures (for ``runs``: store.Run objects)."""
    from .regime import classify

    names = run_names(runs)
    summary, duplicates = merged_summary(runs)
    regimes = classify(summary) if len(summary) else pd.DataFrame()
    ceilings = merged_ceilings(runs)
    bandwidths = merged_limits(runs, "bandwidth")
    has_ok = bool(len(summary)) and bool(len(ok_rows(summary, ["step"])))
    drawn = figures(summary, regimes, ceilings, bandwidths) if has_ok else []
    parts = [f"<h1>mlpbench report: {escape(', '.join(names))}</h1>", _overview(runs, names, summary),
             "<h2>Environment</h2>", environment_html(runs, names),
             "<h2>Limits</h2>", "<p>Matmul ceilings (MFU is against these, measured in the same run):</p>",
             ceiling_table(ceilings, "html"), "<p>Memory bandwidth and dispatch floor:</p>",
             limits_table(runs, "html")]
    if duplicates:
        parts.append(f'<p class="note">{duplicates} case(s) were measured on the same platform in several runs; '
                     "the tables and figures use the last run given.</p>")
    parts.append("<h2>Figures</h2>")
    if has_ok:
        parts += [_figure_section(i, f) for i, f in enumerate(drawn, 1)]
    else:
        parts.append('<p class="empty" id="no-ok-cases">No figure: no case was measured ok in '
                     + ("this run" if len(runs) == 1 else "these runs")
                     + " (every case is listed below with its status and reason).</p>")
    columns, rows = case_rows(summary, regimes) if len(summary) else ([], [])
    compared, compared_figures = comparison_section(runs)
    drawn += [HtmlFigure(fig_id, title, fig) for fig_id, title, fig in compared_figures]
    parts += ["<h2>Cases</h2>", "<p>Click a header to sort; type in a box to filter (text: contains; "
              "<code>=64</code>: equals; <code>&gt;100</code>, <code>&lt;=2</code>: compares numbers).</p>",
              table_html(TABLE_ID, columns, rows) if rows else '<p class="empty">No case in this run.</p>',
              *compared]
    return page(f"mlpbench report: {', '.join(names)}", "\n".join(parts),
                inline_plotly=has_ok or bool(compared_figures)), drawn


def write_html_report(runs: Sequence, out_dir: Path) -> HtmlReport:
    """Write report.html for ``runs`` into ``out_dir`` (the caller checks ``webpage.plotly_missing()`` first)."""
    text, drawn = render_html(runs)
    path = Path(out_dir) / REPORT_HTML
    write_atomic(path, text)
    return HtmlReport(path, drawn)
