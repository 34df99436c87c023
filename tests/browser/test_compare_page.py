"""report A B --html in a real browser: the "Runs compared" figure holds one marker per case the two runs share
in each of its two panels (counted against the runs' summary.csv with pandas), a hover on the case slowed 3x
in B shows that case, its ratio as the CSVs give it and the verdict slower; no JavaScript console error."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from selenium.webdriver.common.action_chains import ActionChains

import chromium
from page_data import report_runs, slowed_pair

pytestmark = pytest.mark.browser

SLOWDOWN = 3.0


@pytest.fixture(scope="module")
def compared(tmp_path_factory, driver, screenshots):
    """The tiny CPU run (A) and a copy of it with one case 3x slower (B), their report.html open."""
    from bench.report.html import write_html_report
    from bench.runs import load_run

    cpu, _ = report_runs()
    root = tmp_path_factory.mktemp("compare-html")
    a, b, slowed_id = slowed_pair(cpu, root, SLOWDOWN, middle=True)
    summary = pd.read_csv(b / "summary.csv")
    slowed = summary[(summary["case_id"] == slowed_id) & (summary["phase"] == "step")].iloc[0]
    page = write_html_report([load_run(a), load_run(b)], root)
    driver.set_window_size(*chromium.WINDOW)
    chromium.open_page(driver, page.path)
    chromium.screenshot(driver, screenshots / "report-compare.png")
    shared = pd.read_csv(a / "summary.csv").merge(summary, on=["case_id", "phase"], suffixes=("_a", "_b"))
    shared = shared[(shared["phase"] == "step") & (shared["status_a"] == "ok") & (shared["status_b"] == "ok")]
    return driver, shared, slowed


def panel_points(driver, figure_id: str) -> dict[str, int]:
    """Markers per x axis ('x': the ratio panel, 'x2': B against A), read from the rendered SVG."""
    return driver.execute_script("""
        const out = {};
        for (const t of document.getElementById(arguments[0]).querySelectorAll('g.trace.scatter')) {
          const trace = t.__data__[0].trace;
          if (trace.mode !== 'markers') continue;
          out[trace.xaxis] = (out[trace.xaxis] || 0) + t.querySelectorAll('path.point').length;
        }
        return out;""", figure_id)


def test_no_console_errors_and_the_comparison_is_drawn(compared):
    driver, _, _ = compared
    assert chromium.console_errors(driver) == []
    assert driver.execute_script("return !!document.querySelector('#fig-compare-1 .main-svg');")


def test_each_panel_has_a_marker_per_shared_case(compared):
    driver, shared, _ = compared
    assert panel_points(driver, "fig-compare-1") == {"x": len(shared), "x2": len(shared)}


def test_hover_on_the_slowed_case_shows_it_slower(compared):
    driver, shared, slowed = compared
    row = shared[shared["case_id"] == slowed["case_id"]].iloc[0]
    ratio = row["median_s_b"] / row["median_s_a"]
    point = driver.execute_script("""
        for (const t of document.getElementById('fig-compare-1').querySelectorAll('g.trace.scatter')) {
          if (t.__data__[0].trace.xaxis !== 'x') continue;
          for (const p of t.querySelectorAll('path.point')) {
            if (Math.abs(p.__data__.x - arguments[0]) < 1e-9 * arguments[0]) return p;
          }
        }
        return null;""", ratio)
    assert point is not None, f"no marker at B/A {ratio}"
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", point)
    ActionChains(driver).move_to_element(point).perform()
    deadline, text = time.monotonic() + 10, ""
    while time.monotonic() < deadline and not text:
        text = driver.execute_script("const h = document.querySelector('#fig-compare-1 .hoverlayer .hovertext');"
                                     " return h ? h.textContent : '';")
        time.sleep(0.1)
    assert slowed["label"] in text and f"B/A {ratio:.3f}" in text and "slower:" in text, text
