"""Figure 4: torch.compile against eager: the compiled step's speedup with its 95% interval, and the training steps
before the compile time is paid back."""

from __future__ import annotations

import numpy as np

from ...format import missing, time_text
from ..compare import interval_ratio
from ..figure import BAR_PX, FIGURE_HEIGHT_PX, FigureInputs, pyplot
from ..hover import hover, layout, median_text
from ..palette import BAR_COLOR, FASTER, SLOWER, WITHIN_NOISE
from ..tables import compile_pairs, numerics_cell, ok_rows

NAME, ORDER = "compile", 4
TITLE = "torch.compile vs eager"
CAPTION = ("Left: how much faster the compiled step is than the same case eager (the 95% interval of the ratio; "
           "green: faster, red: slower, grey: within noise). Right: how many training steps it takes before the "
           "one-off compile time is paid back by the faster steps; none: compiling never pays back.")


def prepare(inputs: FigureInputs) -> dict | str:
    pairs = compile_pairs(inputs.summary) if len(ok_rows(inputs.summary)) else []
    if not len(pairs):
        return "no case was measured both compiled and eager"
    pairs = pairs.sort_values(["platform", "size", "batch"])
    ratios = [interval_ratio({"median_s": r["median_s"], "ci_low_s": r["ci_low_s"], "ci_high_s": r["ci_high_s"]},
                             {"median_s": r["median_s_eager"], "ci_low_s": r["ci_low_s_eager"],
                              "ci_high_s": r["ci_high_s_eager"]}) for _, r in pairs.iterrows()]
    colors = [FASTER if q.low > 1 else SLOWER if q.high < 1 else WITHIN_NOISE for q in ratios]
    return {"pairs": pairs, "ratios": ratios, "colors": colors, "note": ""}


def draw_png(data: dict):
    pairs, ratios = data["pairs"], data["ratios"]
    speedup = np.array([r.ratio for r in ratios])
    err = np.array([[r.ratio - r.low for r in ratios], [r.high - r.ratio for r in ratios]])
    compile_s = pairs["compile_s"].to_numpy(float)
    plt = pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 1.6 + 0.42 * len(pairs)), sharey=True,
                                   gridspec_kw={"width_ratios": [1.1, 1]})
    y = np.arange(len(pairs))
    ax1.barh(y, speedup, xerr=err, color=data["colors"], height=0.6, capsize=2, error_kw={"elinewidth": 0.8})
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
    ax2.barh(y, np.nan_to_num(break_even, nan=0.0), color=BAR_COLOR, height=0.6)
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
    fig.suptitle(TITLE, fontsize=11)
    fig.tight_layout()
    return fig


def draw_plotly(data: dict) -> dict:
    pairs, ratios = data["pairs"], data["ratios"]
    labels = pairs["label"].tolist()
    texts = [hover(r, f"eager: {median_text(r, '_eager')}", f"speedup {q.ratio:.3g}× [{q.low:.3g}, {q.high:.3g}]",
                   f"compile {time_text(r['compile_s'])}; pays back after "
                   + (f"{r['break_even_steps']:,.0f} steps" if not missing(r["break_even_steps"])
                      else "never (not faster)"),
                   *([f"numerics: {numerics_cell(r)}"] if numerics_cell(r) else []))
             for (_, r), q in zip(pairs.iterrows(), ratios)]
    speed = {"type": "scatter", "mode": "markers", "name": "eager / compiled step time", "y": labels,
             "x": [q.ratio for q in ratios], "xaxis": "x", "yaxis": "y", "hoverinfo": "text", "hovertext": texts,
             "marker": {"size": 10, "color": data["colors"]},
             "error_x": {"type": "data", "symmetric": False, "array": [q.high - q.ratio for q in ratios],
                         "arrayminus": [q.ratio - q.low for q in ratios]}}
    payback = {"type": "bar", "orientation": "h", "name": "steps to pay back the compile", "y": labels,
               "x": [None if missing(v) else float(v) for v in pairs["break_even_steps"]], "xaxis": "x2", "yaxis": "y",
               "hoverinfo": "text", "hovertext": texts, "marker": {"color": BAR_COLOR}}
    out = layout(TITLE + ": speedup and payback", "", "",
                 yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
                 xaxis={"domain": [0, 0.45], "title": {"text": "eager / compiled (>1: compiled faster)"}},
                 xaxis2={"domain": [0.55, 1], "type": "log", "anchor": "y",
                         "title": {"text": "break-even: compile time / per-step saving (steps)"}},
                 shapes=[{"type": "line", "xref": "x", "yref": "paper", "x0": 1, "x1": 1, "y0": 0, "y1": 1,
                          "line": {"width": 1}}],
                 height=max(FIGURE_HEIGHT_PX, 140 + 2 * BAR_PX * len(labels)))
    return {"data": [speed, payback], "layout": out}
