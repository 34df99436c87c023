"""report.html's colours in a real browser (headless Chromium, from file://), read from the rendered SVG: the
throughput figure has as many distinct colours as series (counted from the runs' summary.csv with pandas alone;
the CPU run's cases copied at 1-3 threads give 21 series, more than a 10-colour palette),
each series one colour for its line and markers; the roofline's roofs are drawn in their points' colour; the case
table leads with label, step time, samples/s, MFU and status and scrolls inside the page."""

from __future__ import annotations

import pandas as pd
import pytest
from selenium.webdriver.common.by import By

import chromium
from page_data import many_series_run, report_runs

pytestmark = pytest.mark.browser

SERIES_FIELDS = ["device", "network", "width", "depth", "in_features", "out_features", "activation", "dtype",
                 "compile", "optimizer", "loss", "threads"]  # the case fields but the batch; one platform per device


@pytest.fixture(scope="module")
def loaded(driver, tmp_path_factory, screenshots):
    from bench.report.html import write_html_report
    from bench.runs import load_run

    cpu, gpu = report_runs()
    out = tmp_path_factory.mktemp("colors-html")
    cpu = many_series_run(cpu, out)
    page = write_html_report([load_run(cpu), load_run(gpu)], out)
    summary = pd.concat([pd.read_csv(cpu / "summary.csv"), pd.read_csv(gpu / "summary.csv")], ignore_index=True)
    driver.set_window_size(*chromium.WINDOW)
    chromium.open_page(driver, page.path)
    chromium.screenshot(driver, screenshots / "report-colors.png")
    driver.set_window_size(*chromium.WINDOW)
    return driver, summary[(summary["phase"] == "step") & (summary["status"] == "ok")]


def drawn_colours(driver, figure_id: str) -> dict[str, dict[str, list[str]]]:
    """Per trace name: the computed fill of its markers and the stroke of its lines, as the browser drew them."""
    return driver.execute_script("""
        const out = {};
        for (const t of document.getElementById(arguments[0]).querySelectorAll('.scatterlayer g.trace')) {
          const name = t.__data__[0].trace.name;
          const fills = [...t.querySelectorAll('path.point')].map(p => getComputedStyle(p).fill);
          const strokes = [...t.querySelectorAll('path.js-line')].map(p => getComputedStyle(p).stroke);
          out[name] = {fills: [...new Set(fills)], strokes: [...new Set(strokes)]};
        }
        return out;""", figure_id)


def test_throughput_has_one_distinct_colour_per_series(loaded):
    driver, steps = loaded
    expected = steps.groupby(SERIES_FIELDS).ngroups
    assert expected > 10
    drawn = drawn_colours(driver, "fig-throughput")
    assert len(drawn) == expected
    colour = {}
    for name, seen in drawn.items():
        assert len(seen["fills"]) == 1 and set(seen["strokes"]) <= set(seen["fills"]), (name, seen)
        colour[name] = seen["fills"][0]
    assert len(set(colour.values())) == expected, colour  # no two series share a colour


def test_roofline_roofs_match_their_points(loaded):
    driver, steps = loaded
    drawn = drawn_colours(driver, "fig-roofline")
    points = {n: s["fills"] for n, s in drawn.items() if not n.startswith("roof: ")}
    roofs = {n.removeprefix("roof: "): s["strokes"] for n, s in drawn.items() if n.startswith("roof: ")}
    assert len(points) == steps.groupby(["device", "dtype"]).ngroups
    assert all(len(f) == 1 for f in points.values()) and len({f[0] for f in points.values()}) == len(points)
    assert roofs and all(roofs[n] == points[n] for n in roofs), (roofs, points)


def test_case_table_leads_with_what_a_reader_looks_for_and_scrolls_inside_the_page(loaded):
    driver, _ = loaded
    headers = [h.text for h in driver.find_elements(By.CSS_SELECTOR, "#cases th.key")]
    assert headers[:5] == ["case", "median ms", "samples/s", "MFU", "status"]
    page_width, box = driver.execute_script(
        "const w = document.getElementById('cases').parentElement;"
        " return [document.documentElement.scrollWidth, [w.clientWidth, getComputedStyle(w).overflowX]];")
    assert box[1] == "auto" and page_width <= chromium.WINDOW[0]  # the table scrolls in its box, not the page
