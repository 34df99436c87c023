"""report.html: the report as one self-contained web page (plotly.js inlined), from the same tables as report.md.

``mlpbench report RUN [RUN ...] --html`` writes it beside report.md. It opens from ``file://`` with no
network. At the top: the runs, the environment fingerprint and the limits (matmul ceilings, bandwidth,
dispatch floor). Then the interactive figures: report.md's set, each drawn from its one definition in
``bench.report.figures`` with the same series colours, one marker per case (hover: the case's label, its
fields and its median with the 95% CI).

Then the case table (label, step time, samples/s, MFU and status first, then the case fields and the rest; it
scrolls sideways inside the page), sortable and filterable by any column, and, for ``report A B [C ...]``, the runs
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

from ..format import missing, ms, pct, sig
from ..runs import Status, write_atomic
from .webpage import Cell, cell, escape, figure_html, page, table_html
from .comparison_html import section as comparison_section
from .figure import FIGURE_HEIGHT_PX, FigureInputs, HtmlFigure
from .figures import caption, definitions
from .markdown import ceiling_table, limits_table
from .spread import row_is_wide, wide_factor
from .tables import (
    COMPARABILITY_KEYS,
    FLAG_KEYS,
    describe_differences,
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
ENV_KEYS = COMPARABILITY_KEYS + FLAG_KEYS + ("python", "cudnn", "cpu_count", "date", "git_commit", "command")
TABLE_ID = "cases"


@dataclass(frozen=True)
class HtmlReport:
    path: Path
    figures: list  # HtmlFigure


# --------------------------------------------------------------------------- figures


def figures(summary: pd.DataFrame, regimes: pd.DataFrame, ceilings: pd.DataFrame,
            bandwidths: pd.DataFrame) -> list[HtmlFigure]:
    """Every definition of ``bench.report.figures`` drawn with plotly, in report order (the set report.md draws)."""
    inputs = FigureInputs(summary, regimes, ceilings, bandwidths)
    return [render(module, inputs) for module in definitions()]


def render(module, inputs: FigureInputs) -> HtmlFigure:
    name, data = f"fig-{module.NAME}", module.prepare(inputs)
    if isinstance(data, str):
        return HtmlFigure(name, module.TITLE, None, data)
    figure = module.draw_plotly(data)
    return HtmlFigure(name, module.TITLE, figure, caption=caption(module, data),
                      height_px=int(figure["layout"].get("height", FIGURE_HEIGHT_PX)))


# --------------------------------------------------------------------------- tables and page


def case_rows(summary: pd.DataFrame, regimes: pd.DataFrame) -> tuple[list[str], list[list[Cell]]]:
    """The case table, one row per platform x case: what a reader looks for first (label, step time, samples/s,
    MFU, status), then the platform, every case field and the step's other numbers."""
    steps = summary[summary["phase"] == "step"]
    fields = identity_columns()
    regime_of = {(p, c): r for p, c, r in zip(regimes.get("platform", []), regimes.get("case_id", []),
                                             regimes.get("regime", []))}
    columns = ["case", "median ms", "samples/s", "MFU", "status", "platform", *fields, "95% CI ms", "TFLOP/s",
               "% of SoL", "numerics vs fp32 eager", "regime"]
    rows = []
    for _, r in steps.iterrows():
        ok = r["status"] == Status.OK

        def number(column: str, r=r, ok=ok):
            return r.get(column) if ok else None

        wide = ok and row_is_wide(r)
        rows.append([cell(r["label"]),
                     cell(ms(number("median_s")), _scaled(number("median_s"), 1e3)),
                     cell(sig(number("samples_per_s"), 4), number("samples_per_s")),
                     cell(pct(number("mfu")), number("mfu"), css="flag" if ok and _flag(r) else ""),
                     cell(status_text(r), css="status flag" if wide else "status"),
                     cell(r["platform"]),
                     *(cell(r[f], float(r[f]) if isinstance(r[f], (int, float, np.integer, np.floating)) else None)
                       for f in fields),
                     cell(f"{ms(r['ci_low_s'])} – {ms(r['ci_high_s'])}" if ok else "", css="flag" if wide else ""),
                     cell(sig(number("tflops")), number("tflops")),
                     cell(pct(number("sol_fraction"), 0), number("sol_fraction")),
                     cell(numerics_cell(r) if ok else "", css="flag" if ok and numerics_flag(r) else ""),
                     cell(regime_of.get((r["platform"], r["case_id"]), ""))])
    return columns, rows


def status_text(r: pd.Series) -> str:
    """The status, its reason, the ceiling flag and a wide CI (``spread``)."""
    ok = r["status"] == Status.OK
    text = r["status"] + ("" if ok else f": {r['reason']}") + (f"; {r['ceiling_flag']}" if _flag(r) else "")
    if ok and row_is_wide(r):
        text += f"; wide CI (to {wide_factor(r['median_s'], r['ci_low_s'], r['ci_high_s']):.1f}x the median)"
    return text


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
              f'<div class="wide">{table_html(TABLE_ID, columns, rows)}</div>' if rows
              else '<p class="empty">No case in this run.</p>',
              *compared]
    return page(f"mlpbench report: {', '.join(names)}", "\n".join(parts),
                inline_plotly=has_ok or bool(compared_figures)), drawn


def write_html_report(runs: Sequence, out_dir: Path) -> HtmlReport:
    """Write report.html for ``runs`` into ``out_dir`` (the caller checks ``webpage.plotly_missing()`` first)."""
    text, drawn = render_html(runs)
    path = Path(out_dir) / REPORT_HTML
    write_atomic(path, text)
    return HtmlReport(path, drawn)
