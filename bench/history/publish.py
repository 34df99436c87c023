"""``mlpbench history publish``: the history database as a static web site (plotly; opens from ``file://``).

    DIR/index.html           every series: machine (by name), case, phase, metric, commits, its latest
                             value, a sparkline of its trend, its mark ("change": a significant change
                             point in the last N commits; "pending"; "not enough history") and its count
                             of significant change points, under a header that counts those same columns
                             (filterable and sortable)
    DIR/series/<key>.html    one page per series: the median over commits with its 95% CI band, the
                             change points of ``detect`` marked on the figure and listed with their
                             commit, and a link from each point (click it) and each commit row to its run
    DIR/plotly.min.js        plotly.js, written once and shared by every page

Only what changed is written: every page is rendered (the detector runs on every series, which is
what costs: docs/history.md gives the time for 500 commits x 50 series) and a page whose bytes equal
the file on disk is not rewritten. Pages of series that left the database are removed.

Bad input is a page that says so: a series with one commit (no trend yet), a series whose medians are
all NaN (nothing to draw); NaN points among others are left out and counted.
Imports no measuring code: the database (``store``), the detector (``detect``), ``render``'s formats.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..report.webpage import PLOTLY_JS, cell, escape, figure_html, page, plotly_js, table_html
from .detect import MIN_POINTS_EACH_SIDE, STEP_ALPHA, VERDICT_TOO_SHORT, ChangePoint, SeriesCheck, check_series
from .render import SHA_CHARS, format_value, interval_text, noise_text, verdict_text

INDEX_HTML = "index.html"
SERIES_DIR = "series"
SPARK_W_PX, SPARK_H_PX = 180, 36
SERIES_TABLE_ID = "series-table"
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")
MAX_NAME_CHARS = 120


@dataclass(frozen=True)
class PublishResult:
    out_dir: Path
    pages: int  # index + one per series
    written: int  # files whose bytes changed (plotly.min.js included)
    removed: int  # pages of series no longer in the database
    seconds: float
    sizes: dict  # file name -> bytes, for the pages written or kept


@dataclass(frozen=True)
class Clean:
    """A series' finite points (NaN medians left out), with their commit's place in the series."""

    indices: tuple[int, ...]
    commits: tuple[str, ...]
    values: tuple[float, ...]
    ci_low: tuple[float | None, ...]
    ci_high: tuple[float | None, ...]
    dropped: int


def clean(series) -> Clean:
    keep = [i for i, v in enumerate(series.values) if v is not None and math.isfinite(v)]
    return Clean(tuple(keep), tuple(series.commits[i] for i in keep), tuple(float(series.values[i]) for i in keep),
                 tuple(series.ci_low[i] for i in keep), tuple(series.ci_high[i] for i in keep),
                 len(series.values) - len(keep))


class _Finite:
    """``clean``'s points with the attributes ``detect.check_series`` reads from a series."""

    def __init__(self, series, points: Clean) -> None:
        self.key, self.label, self.machine = series.key, series.label, series.machine
        self.commits, self.values = points.commits, points.values
        self.ci_low, self.ci_high = points.ci_low, points.ci_high


def page_name(series) -> str:
    """The series page's file name: readable, unique per series key (a hash keeps it short and distinct)."""
    k = series.key
    text = SAFE_NAME.sub("_", f"{k.case_id}-{k.phase}-{k.metric}")[:MAX_NAME_CHARS]
    digest = hashlib.sha1(repr((k.machine_id, k.case_id, k.phase, k.metric)).encode()).hexdigest()[:8]
    return f"{text}-{digest}.html"


def run_link(commit: str, run_path: str | None, template: str | None) -> str | None:
    """Where a commit's point links: ``template`` formatted ({commit}, {run_path}), else the run folder."""
    if template:
        return template.format(commit=commit, run_path=run_path or "")
    if not run_path:
        return None
    path = Path(run_path)
    return path.as_uri() if path.is_absolute() else None


# --------------------------------------------------------------------------- one series


def _hover(series, points: Clean, i: int, factor: float) -> str:
    metric = series.key.metric
    lo, hi = points.ci_low[i], points.ci_high[i]
    ci = (f" [{format_value(metric, lo * factor)}, {format_value(metric, hi * factor)}] (95% CI)"
          if lo is not None and hi is not None else "")
    return (f"commit <b>{escape(points.commits[i][:SHA_CHARS])}</b> (#{points.indices[i] + 1})<br>"
            f"{escape(metric)} {escape(format_value(metric, points.values[i] * factor))}{escape(ci)}<br>click: its run")


TIME_UNITS = (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6), ("ns", 1e-9))


def axis_unit(metric: str, values: Sequence[float]) -> tuple[str, float]:
    """A time series' unit for its axis (the one its largest value reads best in); other metrics: none."""
    if not metric.endswith("_s"):
        return "", 1.0
    top = max(abs(v) for v in values)
    return next(((u, f) for u, f in TIME_UNITS if top >= f), TIME_UNITS[-1])


def series_figure(series, points: Clean, check: SeriesCheck, links: Sequence[str | None]) -> dict:
    """Median over commits, its CI band, change points as vertical lines (red: recent, orange: earlier)."""
    unit, factor = axis_unit(series.key.metric, points.values)
    points = Clean(points.indices, points.commits, tuple(v / factor for v in points.values),
                   tuple(None if v is None else v / factor for v in points.ci_low),
                   tuple(None if v is None else v / factor for v in points.ci_high), points.dropped)
    x = list(points.indices)
    ticks = [c[:7] for c in points.commits]
    band = [(i, lo, hi) for i, lo, hi in zip(x, points.ci_low, points.ci_high) if lo is not None and hi is not None]
    traces = []
    if band:
        bx, blo, bhi = zip(*band)
        traces += [{"type": "scatter", "x": list(bx), "y": list(bhi), "mode": "lines", "line": {"width": 0},
                    "hoverinfo": "skip", "showlegend": False, "name": "CI high"},
                   {"type": "scatter", "x": list(bx), "y": list(blo), "mode": "lines", "line": {"width": 0},
                    "fill": "tonexty", "fillcolor": "rgba(31,119,180,0.2)", "hoverinfo": "skip",
                    "name": "95% CI of the run's median"}]
    traces.append({"type": "scatter", "mode": "lines+markers", "name": "median", "x": x, "y": list(points.values),
                   "marker": {"size": 7, "color": "#1f77b4"}, "line": {"width": 1.2, "simplify": False},
                   "customdata": list(links), "hoverinfo": "text",
                   "hovertext": [_hover(series, points, i, factor) for i in range(len(x))]})
    shapes, notes = [], []
    for cp in check.change_points:
        color = "#d62728" if cp in check.flagged else ("#ff7f0e" if cp.significant else "#999999")
        at = points.indices[cp.index] - 0.5
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": at, "x1": at, "y0": 0, "y1": 1,
                       "line": {"color": color, "dash": "dash", "width": 1.5}})
        notes.append({"x": at, "y": 1, "xref": "x", "yref": "paper", "text": _rel(cp), "showarrow": False,
                      "xanchor": "left", "yanchor": "top", "font": {"color": color, "size": 11}})
    every = max(1, math.ceil(len(x) / 25))
    layout = {"title": {"text": f"{series.label} · {series.key.phase} · {series.key.metric}", "font": {"size": 14}},
              "hovermode": "closest", "shapes": shapes, "annotations": notes, "margin": {"t": 50},
              "xaxis": {"title": {"text": "commit (oldest first)"}, "tickvals": x[::every], "ticktext": ticks[::every],
                        "tickangle": -60},
              "yaxis": {"title": {"text": series.key.metric + (f" ({unit})" if unit else "")}, "rangemode": "tozero"}, "legend": {"orientation": "h"}}
    return {"data": traces, "layout": layout}


def _rel(cp: ChangePoint) -> str:
    return f"{cp.step_rel:+.1%}" if math.isfinite(cp.step_rel) else f"{cp.step:+.3g}"


def too_short_text(n_commits: int) -> str:
    """What a measured series' page says above its figure before a verdict is possible."""
    return (f"{VERDICT_TOO_SHORT}: {n_commits} commit(s); a verdict on a measured series needs "
            f"{2 * MIN_POINTS_EACH_SIDE} ({MIN_POINTS_EACH_SIDE} on each side of a change). Nothing here is "
            "called significant yet.")


def series_page(series, points: Clean, check: SeriesCheck | None, links: Sequence[str | None], last: int,
                validate: bool = True) -> str:
    k = series.key
    head = (f'<p><a href="../{INDEX_HTML}">all series</a></p><h1>{escape(series.label)} · {escape(k.phase)} · '
            f'{escape(k.metric)}</h1><p>Machine: <span id="machine">{escape(series.machine)}</span> (class '
            f"<code>{escape(k.machine_id)}</code>). "
            f"{len(series.commits)} commit(s)" + (f", {points.dropped} with a NaN median left out" if points.dropped
                                                  else "") + ".</p>")
    if check is not None and not check.enough_history:
        head += f'<p class="empty" id="not-enough-history">{escape(too_short_text(len(points.values)))}</p>'
    if not points.values:
        return page(series.label, head + f'<p class="empty" id="no-data">Every median of this series is NaN '
                                          f"({points.dropped} commit(s)): nothing to draw.</p>",
                    plotly_src=f"../{PLOTLY_JS}")
    parts = [head]
    if len(points.values) == 1:
        parts.append('<p class="empty" id="one-commit">One commit so far: no trend and no change point yet '
                     f"(value {escape(format_value(k.metric, points.values[0]))} at commit "
                     f"<code>{escape(points.commits[0][:SHA_CHARS])}</code>).</p>")
    else:
        parts.append(figure_html("series-figure", series_figure(series, points, check, links), height_px=440,
                                 on_click_url=True, validate=validate))
        parts.append(_change_table(series, points, check, links, last))
    rows = [[cell(points.indices[i] + 1, points.indices[i] + 1), cell(c[:SHA_CHARS], href=links[i]),
             cell(format_value(k.metric, v), v), cell(format_value(k.metric, points.ci_low[i])),
             cell(format_value(k.metric, points.ci_high[i]))] for i, (c, v) in enumerate(zip(points.commits,
                                                                                              points.values))]
    parts += ["<h2>Commits</h2>", table_html("commits", ["#", "commit (its run)", k.metric, "CI low", "CI high"], rows)]
    return page(series.label, "\n".join(parts), plotly_src=f"../{PLOTLY_JS}")


def _change_table(series, points: Clean, check: SeriesCheck, links: Sequence[str | None], last: int) -> str:
    metric = series.key.metric
    if not check.change_points:
        return '<h2>Change points</h2><p id="no-change">None found.</p>'
    rows = []
    for cp in check.change_points:
        rows.append([cell(points.commits[cp.index][:SHA_CHARS], href=links[cp.index]),
                     cell(f"{format_value(metric, cp.before)} → {format_value(metric, cp.after)}"),
                     cell(_rel(cp), cp.step_rel if math.isfinite(cp.step_rel) else None),
                     cell(interval_text(metric, cp)), cell(noise_text(cp)),
                     cell(verdict_text(check, cp), css="flag" if cp in check.flagged else "")])
    how = ("An exact counter: every change of its value is a change point, significant as it is, its step exact."
           if any(cp.exact for cp in check.change_points) else
           "Found by <code>mlpbench history check</code>'s detector (PELT on the series in units of its noise). "
           "Significant: the 95% bootstrap interval of the step excludes 0, a Mann-Whitney test of the two segments "
           f"gives p &lt; {STEP_ALPHA:g}, the step exceeds twice one point's noise, and each segment holds at least "
           f"{MIN_POINTS_EACH_SIDE} commits (else: {VERDICT_TOO_SHORT}).")
    return (f"<h2>Change points</h2><p>{how} Recent: significant and within the last {last} commits "
            "(<code>history check</code> fails on it).</p>"
            + table_html("changes", ["commit", "median before → after", "step", "step 95% CI", "step / noise",
                                     "verdict"], rows, interactive=False))


# --------------------------------------------------------------------------- the index


CHANGE_MARK, PENDING_MARK = "change", "pending"  # the "change in last N" column; else VERDICT_TOO_SHORT or ""


def change_mark(check: SeriesCheck | None) -> str:
    """A series' mark in the index: a recent significant change, a pending one, no verdict yet, or nothing."""
    if check is None:
        return ""
    if check.flagged:
        return CHANGE_MARK
    if not check.enough_history:
        return VERDICT_TOO_SHORT
    return PENDING_MARK if check.pending else ""


def index_header(marks: Sequence[str], significant: Sequence[int], last: int) -> str:
    """The sentence above the index table, counted from the same marks and counts as its columns."""
    text = (f'<span id="n-changed">{sum(m == CHANGE_MARK for m in marks)}</span> series with a significant change '
            f"point in the last {last} commits (marked \"{CHANGE_MARK}\"; red line in the sparkline) · "
            f'<span id="n-significant">{sum(n > 0 for n in significant)}</span> series with a significant change '
            f"point at any commit")
    pending = sum(m == PENDING_MARK for m in marks)
    if pending:
        text += (f' · <span id="n-pending">{pending}</span> series with a recent change awaiting '
                 f"{MIN_POINTS_EACH_SIDE} commits a side (\"{PENDING_MARK}\")")
    short = sum(m == VERDICT_TOO_SHORT for m in marks)
    if short:
        text += (f' · <span id="n-too-short">{short}</span> measured series with {VERDICT_TOO_SHORT} '
                 f"(fewer than {2 * MIN_POINTS_EACH_SIDE} commits: no verdict yet, nothing called significant)")
    return text


def index_page(entries: Sequence[tuple], last: int, source: str, n_commits: int) -> str:
    """``entries``: (series, Clean, SeriesCheck | None, page file name)."""
    rows, sparks, marks, counts = [], {}, [], []
    for n, (series, points, check, name) in enumerate(entries):
        k = series.key
        mark, significant = change_mark(check), _significant(check)
        marks.append(mark)
        counts.append(significant)
        latest = points.values[-1] if points.values else None
        spark_id = f"spark-{n}"
        if len(points.values) >= 2:
            sparks[spark_id] = {"x": list(points.indices), "y": list(points.values),
                                "marks": [points.indices[cp.index] - 0.5 for cp in check.flagged]}
            trend = ""
        else:
            trend = "one commit" if points.values else "no finite median"
        rows.append([cell(series.label, href=f"{SERIES_DIR}/{name}"), cell(k.phase), cell(k.metric),
                     cell(series.machine), cell(len(series.commits), len(series.commits)),
                     cell(format_value(k.metric, latest), latest),
                     cell(trend, css="spark", element_id=spark_id if spark_id in sparks else ""),
                     cell(mark, css="flag" if mark == CHANGE_MARK else ""),
                     cell(significant, significant)])
    body = [f"<h1>mlpbench history</h1><p>{escape(source)} · {len(entries)} series · {n_commits} commits</p>"
            f'<p id="index-summary">{index_header(marks, counts, last)}.</p>',
            "<p>Filter and sort by any column; open a series for its median over commits with the CI band and "
            "its change points.</p>"]
    if not entries:
        body.append('<p class="empty" id="no-series">The history database holds no series yet '
                    "(add runs with <code>mlpbench history add RUN</code>).</p>")
    else:
        body.append(table_html(SERIES_TABLE_ID, ["case", "phase", "metric", "machine", "commits", "latest",
                                                 "trend", f"change in last {last}", "significant change points"], rows))
    body.append(_sparkline_script(sparks))
    return page("mlpbench history", "\n".join(body), plotly_src=PLOTLY_JS)


def _significant(check: SeriesCheck | None) -> int:
    return sum(cp.significant for cp in check.change_points) if check else 0


def _sparkline_script(sparks: Mapping[str, dict]) -> str:
    import json

    layout = {"width": SPARK_W_PX, "height": SPARK_H_PX, "margin": {"l": 0, "r": 0, "t": 2, "b": 2},
              "xaxis": {"visible": False}, "yaxis": {"visible": False}, "showlegend": False,
              "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)"}
    return ("<script>(function() { const sparks = " + json.dumps(sparks, separators=(",", ":")) + ";\n"
            "const layout = " + json.dumps(layout) + ";\n"
            "for (const [id, s] of Object.entries(sparks)) {\n"
            "  const shapes = s.marks.map((m) => ({type: 'line', x0: m, x1: m, yref: 'paper', y0: 0, y1: 1,"
            " line: {color: '#d62728', width: 1.5}}));\n"
            "  Plotly.newPlot(id, [{type: 'scatter', mode: 'lines', x: s.x, y: s.y, line: {width: 1, color: '#1f77b4', simplify: false},"
            " hoverinfo: 'skip'}], Object.assign({shapes: shapes}, layout), {staticPlot: true});\n"
            "} })();</script>")


# --------------------------------------------------------------------------- the site


def render_site(series_list: Sequence, run_paths: Mapping[str, str], last: int, source: str,
                run_url: str | None = None) -> dict[str, str]:
    """Every page of the site as {relative path: text}; the detector runs on every series with a finite point."""
    entries, pages = [], {}
    commits = {c for s in series_list for c in s.commits}
    link_of = {c: run_link(c, run_paths.get(c), run_url) for c in commits}
    validated = False  # every series figure has one shape: plotly validates the first (it is most of the cost)
    for series in series_list:
        points = clean(series)
        check = check_series(_Finite(series, points), last) if points.values else None
        links = [link_of[c] for c in points.commits]
        name = page_name(series)
        pages[f"{SERIES_DIR}/{name}"] = series_page(series, points, check, links, last, validate=not validated)
        validated = validated or len(points.values) >= 2
        entries.append((series, points, check, name))
    pages[INDEX_HTML] = index_page(entries, last, source, len(commits))
    return pages


def write_site(pages: Mapping[str, str], out_dir: Path) -> tuple[int, int, dict]:
    """Write the pages whose bytes changed, plotly.min.js once, and remove stale series pages."""
    written, sizes = 0, {}
    files = {name: text.encode() for name, text in pages.items()}
    js = out_dir / PLOTLY_JS
    try:
        (out_dir / SERIES_DIR).mkdir(parents=True, exist_ok=True)
        files_js = plotly_js().encode()
        if not js.is_file() or js.stat().st_size != len(files_js) or js.read_bytes() != files_js:
            js.write_bytes(files_js)
            written += 1
        sizes[PLOTLY_JS] = len(files_js)
        for name, data in files.items():
            path = out_dir / name
            sizes[name] = len(data)
            if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
                continue
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
            written += 1
        stale = [p for p in (out_dir / SERIES_DIR).glob("*.html") if f"{SERIES_DIR}/{p.name}" not in files]
        for p in stale:
            p.unlink()
    except OSError as exc:
        raise UsageError(f"cannot write the site to {out_dir}: {exc.strerror or exc}") from None
    return written, len(stale), sizes


def run_paths(db) -> dict[str, str]:
    """commit -> the path of its first run added (where a point links)."""
    import sqlalchemy as sa

    from .schema import TABLES

    runs = TABLES["runs"]
    out: dict[str, str] = {}
    with db.engine.connect() as conn:
        for sha, path in conn.execute(sa.select(runs.c.commit_sha, runs.c.run_path).order_by(runs.c.run_id)):
            out.setdefault(sha, path)
    return out


def publish(db_target: str | None, out_dir: Path, last: int, run_url: str | None = None) -> PublishResult:
    from .store import HistoryDB, shown_url

    start = time.perf_counter()
    with HistoryDB(db_target, create=False) as db:
        series, paths, source = db.series(), run_paths(db), shown_url(db.url)
    pages = render_site(series, paths, last, source, run_url)
    written, removed, sizes = write_site(pages, Path(out_dir))
    return PublishResult(Path(out_dir), len(pages), written, removed, time.perf_counter() - start, sizes)
