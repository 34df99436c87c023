"""Static web pages for the report and the history site: plotly figures, sortable and filterable tables.

Shared by ``bench.report.html`` and ``bench.history.publish``; imports no project module and no torch.
plotly (the ``html`` extra) is imported lazily: where it is missing, ``plotly_missing()`` gives the
one-line reason and the callers skip their pages instead of failing (the GPU machines cannot install it).

Figures are plotly figure dicts, validated by ``plotly.graph_objects.Figure`` and drawn by plotly.js,
which is either inlined (``report.html``: one file that opens from ``file://`` with no network) or
written once beside the pages (the history site: ``plotly.min.js``, shared by every page).
Every page is deterministic (fixed element ids, no timestamps): the same input gives the same bytes,
so a publisher can skip writing a page that did not change.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass

PLOTLY_JS = "plotly.min.js"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2em 2em; color: #222; max-width: 1500px; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.82em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 2px 6px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
table.sortable th.key { cursor: pointer; user-select: none; white-space: nowrap; }
table.sortable th.key[data-order="asc"]::after { content: " \\25B2"; }
table.sortable th.key[data-order="desc"]::after { content: " \\25BC"; }
table.sortable input { width: 100%; box-sizing: border-box; font-size: 0.95em; min-width: 3em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.note { background: #fff6dd; border-left: 4px solid #e0b000; padding: 0.5em 0.8em; }
.empty { background: #f6f6f6; border: 1px dashed #aaa; padding: 1.5em; color: #555; }
.caption { color: #555; font-size: 0.9em; max-width: 70em; }
.flag { color: #c00; font-weight: bold; }
.figure { min-height: 360px; }
.count { color: #555; font-size: 0.85em; }
.verdict-slower { color: #d62728; font-weight: bold; } .verdict-faster { color: #2ca02c; font-weight: bold; }
td.spark { width: 180px; height: 36px; padding: 0 4px; color: #777; }
.wide { overflow-x: auto; max-width: 100%; }
.wide table td:first-child { white-space: nowrap; }
td.status { min-width: 24em; }
"""

# Sorting (click a header; numbers by their data-value) and filtering (one box per column: text is a
# case-insensitive substring, "=x" an exact cell, ">x" / "<x" / ">=x" / "<=x" a number comparison).
TABLE_JS = r"""
function mlpbenchTable(table) {
  const body = table.tBodies[0], keys = Array.from(table.querySelectorAll("th.key"));
  const boxes = Array.from(table.querySelectorAll("input[data-col]"));
  const count = document.querySelector('[data-count-for="' + table.id + '"]');
  const cell = (row, i) => row.cells[i];
  const value = (c) => c.dataset.value !== undefined ? parseFloat(c.dataset.value) : NaN;
  function match(c, text) {
    text = text.trim();
    if (!text) return true;
    const m = text.match(/^(>=|<=|>|<|=)\s*(.*)$/);
    if (!m) return c.textContent.toLowerCase().includes(text.toLowerCase());
    if (m[1] === "=") return c.textContent.trim().toLowerCase() === m[2].trim().toLowerCase()
                              || (!isNaN(value(c)) && value(c) === parseFloat(m[2]));
    const v = value(c), x = parseFloat(m[2]);
    if (isNaN(v) || isNaN(x)) return false;
    return {">": v > x, "<": v < x, ">=": v >= x, "<=": v <= x}[m[1]];
  }
  function filter() {
    let shown = 0;
    for (const row of body.rows) {
      const ok = boxes.every((b) => match(cell(row, +b.dataset.col), b.value));
      row.style.display = ok ? "" : "none";
      shown += ok;
    }
    if (count) count.textContent = shown + " of " + body.rows.length + " rows shown";
  }
  keys.forEach((th, i) => th.addEventListener("click", () => {
    const order = th.dataset.order === "asc" ? "desc" : "asc";
    keys.forEach((k) => delete k.dataset.order);
    th.dataset.order = order;
    const rows = Array.from(body.rows), sign = order === "asc" ? 1 : -1;
    const numeric = rows.every((r) => !isNaN(value(cell(r, i))) || !cell(r, i).textContent.trim());
    rows.sort((a, b) => {
      const x = cell(a, i), y = cell(b, i);
      if (numeric) {
        const vx = value(x), vy = value(y);
        if (isNaN(vx) !== isNaN(vy)) return isNaN(vx) ? 1 : -1;
        return sign * ((vx || 0) - (vy || 0));
      }
      return sign * x.textContent.localeCompare(y.textContent, undefined, {numeric: true});
    });
    rows.forEach((r) => body.appendChild(r));
  }));
  boxes.forEach((b) => b.addEventListener("input", filter));
  filter();
}
document.querySelectorAll("table.sortable").forEach(mlpbenchTable);
"""


def plotly_missing() -> str | None:
    """Why no page can be drawn here (plotly is not installed), or None."""
    try:
        import plotly  # noqa: F401
    except ImportError:
        return "plotly is not installed (pip install 'mlpbench[html]')"
    return None


def plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def escape(text: object) -> str:
    return html.escape("" if text is None else str(text))


@dataclass(frozen=True)
class Cell:
    """A table cell: its text, and for numbers the value it sorts and filters by."""

    text: str
    value: float | None = None
    href: str | None = None
    css: str = ""
    element_id: str = ""


def cell(text: object, value: float | None = None, href: str | None = None, css: str = "",
         element_id: str = "") -> Cell:
    return Cell("" if text is None else str(text), value, href, css, element_id)


def table_html(table_id: str, columns: Sequence[str], rows: Sequence[Sequence[Cell]], *,
               interactive: bool = True) -> str:
    """An HTML table; ``interactive``: sortable headers and one filter box per column (TABLE_JS)."""
    head = "".join(f'<th class="key">{escape(c)}</th>' for c in columns)
    boxes = "".join(f'<th><input data-col="{i}" aria-label="filter {escape(c)}" placeholder="filter"></th>'
                    for i, c in enumerate(columns))
    lines = [f'<table id="{table_id}"' + (' class="sortable"' if interactive else "") + ">",
             f"<thead><tr>{head}</tr>" + (f"<tr>{boxes}</tr>" if interactive else "") + "</thead><tbody>"]
    for row in rows:
        lines.append("<tr>" + "".join(_td(c) for c in row) + "</tr>")
    lines.append("</tbody></table>")
    if interactive:
        lines.append(f'<p class="count" data-count-for="{table_id}"></p>')
    return "\n".join(lines)


def _td(c: Cell) -> str:
    value = "" if c.value is None or c.value != c.value else f' data-value="{float(c.value)!r}"'
    css = " ".join(x for x in ("num" if c.value is not None else "", c.css) if x)
    text = escape(c.text)
    if c.href:
        text = f'<a href="{escape(c.href)}">{text}</a>'
    return (f"<td{value}" + (f' class="{css}"' if css else "") + (f' id="{c.element_id}"' if c.element_id else "")
            + f">{text}</td>")


def figure_json(figure: dict, validate: bool = True) -> str:
    """The figure as JSON, validated by plotly (a wrong attribute fails here, not silently in the browser).

    ``validate=False`` serialises it as it is (plotly's encoder: NaN as null): for the many figures of one
    shape that a site writes, once one of them has been validated (validation is most of the cost).
    """
    import plotly.io as pio

    if validate:
        import plotly.graph_objects as go

        return go.Figure(figure).to_json()
    return pio.to_json(figure, validate=False)


def figure_html(div_id: str, figure: dict, *, height_px: int | None = None, on_click_url: bool = False,
                validate: bool = True) -> str:
    """A div and the script that draws ``figure`` into it; ``on_click_url``: a click on a point opens its
    ``customdata`` (a URL)."""
    style = f' style="height:{height_px}px"' if height_px else ""
    click = (f"\ndocument.getElementById({json.dumps(div_id)}).on('plotly_click', (e) => {{"
             "const u = e.points[0].customdata; if (u) window.location.href = u; });") if on_click_url else ""
    return (f'<div id="{div_id}" class="figure"{style}></div>\n<script>(function() {{ const f = {figure_json(figure, validate)};'
            f" Plotly.newPlot({json.dumps(div_id)}, f.data, f.layout, {json.dumps(PLOTLY_CONFIG)}); }})();{click}"
            "</script>")


def page(title: str, body: str, *, plotly_src: str | None = None, inline_plotly: bool = False) -> str:
    """A whole HTML page: plotly.js inlined (``inline_plotly``) or loaded from ``plotly_src`` (a relative path)."""
    if inline_plotly:
        head_script = f"<script>{plotly_js()}</script>"
    elif plotly_src:
        head_script = f'<script src="{escape(plotly_src)}"></script>'
    else:
        head_script = ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
            f"<style>{CSS}</style>\n{head_script}\n</head>\n<body>\n{body}\n<script>{TABLE_JS}</script>\n"
            "</body>\n</html>\n")
