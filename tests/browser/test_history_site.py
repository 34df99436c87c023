"""The history site in a real browser (headless Chromium, from file://), built from a real SQLite history
of known series: the index lists every series of the database (counted with SQL here) with a sparkline of
every commit and a mark on the series where a step was put; a series page draws every commit, lists the
change point at the commit of the step, and a click on a point opens that commit's run; one commit and
NaN medians give pages that say so. Issue 47: the index's header counts what its columns show, the machine is
named, and an A/A pair of real runs as two commits reads "not enough history" with nothing significant."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By

import chromium

pytestmark = pytest.mark.browser

COMMITS = 35
STEP_AT = 25  # the stepped series is 30% slower from this commit on
STEP = 1.30
NOISE = 0.01


def _history(tmp_path, commits: int):
    from bench.history.ingest import IngestedRun, Point
    from bench.history.series import machine_class
    from bench.history.store import HistoryDB

    machine = machine_class({"cpu_model": "Test CPU", "cpu_count": 2, "torch": "2.14.1"}, "cpu")
    rng = np.random.default_rng(0)
    db_path = tmp_path / "history.sqlite"
    shas, runs = [f"{i:02d}" + "c0ffee" * 6 for i in range(commits)], []
    with HistoryDB(db_path, create=True) as db:
        for i, sha in enumerate(shas):
            run = tmp_path / "runs" / f"run-{i:02d}"
            run.mkdir(parents=True)
            runs.append(run)
            slow = 1e-3 * (STEP if i >= STEP_AT else 1.0) * (1 + NOISE * rng.standard_normal())
            flat = 2e-3 * (1 + NOISE * rng.standard_normal())
            points = (Point("stepped", "w64 stepped", machine, "step", "median_s", slow, slow * 0.99, slow * 1.01, 12),
                      Point("flat", "w64 flat", machine, "step", "median_s", flat, flat * 0.99, flat * 1.01, 12),
                      Point("flat", "w64 flat", machine, "step", "matmul_flops", 1e6))
            db.add(IngestedRun(sha, None, str(run), f"digest-{i}", None, "{}", points))
        engine = db.engine
        with engine.connect() as conn:
            n_series = conn.execute(sa.text("SELECT COUNT(*) FROM (SELECT DISTINCT machine_id, case_id, phase, metric "
                                            "FROM points) AS s")).scalar()
    return db_path, shas, runs, n_series


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from bench.history.publish import publish

    tmp = tmp_path_factory.mktemp("history-site")
    db, shas, runs, n_series = _history(tmp, COMMITS)
    result = publish(str(db), tmp / "site", last=10)
    return tmp / "site", shas, runs, n_series, result


def _rows(driver) -> list[list[str]]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#series-table tbody tr')).filter(r => r.style.display !== 'none')"
        ".map(r => Array.from(r.cells).map(c => c.textContent));")


def test_the_index_lists_every_series_with_its_trend_and_the_mark(driver, site, screenshots):
    out, shas, _, n_series, _ = site
    chromium.open_page(driver, out / "index.html")
    assert chromium.console_errors(driver) == []
    rows = _rows(driver)
    assert len(rows) == n_series == 3
    # every sparkline is drawn through one vertex per commit (plotly's line path: M then one L per segment)
    vertices = driver.execute_script(
        "return Array.from(document.querySelectorAll('td.spark')).map(td => "
        "td.querySelector('path.js-line').getAttribute('d').split('L').length);")
    assert vertices == [COMMITS] * n_series
    marked = {r[0] + " " + r[2] for r in rows if "change" in r[7]}
    assert marked == {"w64 stepped median_s"}
    chromium.screenshot(driver, screenshots / "history-index.png")


def test_a_series_page_draws_every_commit_and_lists_the_change(driver, site, screenshots):
    out, shas, runs, _, _ = site
    chromium.open_page(driver, out / "index.html")
    driver.find_element(By.LINK_TEXT, "w64 stepped").click()
    chromium.open_page(driver, driver.current_url.removeprefix("file://"))
    assert chromium.console_errors(driver) == []
    points = driver.find_elements(By.CSS_SELECTOR, "#series-figure path.point")
    assert len(points) == COMMITS
    changes = driver.find_elements(By.CSS_SELECTOR, "#changes tbody tr")
    listed = [r.find_element(By.TAG_NAME, "td").text for r in changes]
    assert shas[STEP_AT][:8] in listed
    links = [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#commits tbody a")]
    assert links == [run.resolve().as_uri() for run in runs]
    chromium.screenshot(driver, screenshots / "history-series.png")
    driver.set_window_size(*chromium.WINDOW)
    chromium.open_page(driver, driver.current_url.removeprefix("file://"))
    point = driver.find_elements(By.CSS_SELECTOR, "#series-figure path.point")[7]
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", point)
    ActionChains(driver).move_to_element(point).click().perform()
    assert driver.current_url.rstrip("/") == runs[7].resolve().as_uri()


def test_one_commit_and_nan_medians_say_so(driver, tmp_path):
    from bench.history.publish import render_site, write_site
    from bench.history.series import SeriesKey
    from bench.history.store import Series

    db, _, _, _ = _history(tmp_path, 1)
    from bench.history.publish import publish

    publish(str(db), tmp_path / "one", last=10)
    chromium.open_page(driver, tmp_path / "one" / "index.html")
    assert chromium.console_errors(driver) == []
    assert {r[6] for r in _rows(driver)} == {"one commit"}
    driver.find_element(By.LINK_TEXT, "w64 stepped").click()
    assert "One commit so far" in driver.find_element(By.ID, "one-commit").text
    nan = Series(SeriesKey("m", "nan-case", "step", "median_s"), "w64 nan", "cpu: test", ("a" * 40, "b" * 40),
                 (math.nan, math.nan), (None, None), (None, None))
    write_site(render_site([nan], {}, 10, "test"), tmp_path / "nan")
    chromium.open_page(driver, tmp_path / "nan" / "index.html", plots=0)
    assert {r[6] for r in _rows(driver)} == {"no finite median"}
    driver.find_element(By.LINK_TEXT, "w64 nan").click()
    assert "Every median of this series is NaN" in driver.find_element(By.ID, "no-data").text
    assert chromium.console_errors(driver) == []


CHANGE, SIGNIFICANT, MACHINE = 7, 8, 3  # the index's columns: change in last N, significant change points, machine


def _header(driver) -> dict[str, int]:
    return driver.execute_script(
        "const out = {}; for (const id of ['n-changed', 'n-significant', 'n-pending', 'n-too-short']) {"
        " const e = document.getElementById(id); if (e) out[id] = parseInt(e.textContent); } return out;")


def test_the_index_header_counts_what_its_columns_show_and_names_the_machine(driver, site):
    out, _, _, n_series, _ = site
    chromium.open_page(driver, out / "index.html")
    rows, header = _rows(driver), _header(driver)
    assert header["n-changed"] == sum(r[CHANGE] == "change" for r in rows) == 1  # the stepped series alone
    assert header["n-significant"] == sum(int(r[SIGNIFICANT]) > 0 for r in rows)
    assert "n-too-short" not in header and "n-pending" not in header
    heads = driver.execute_script("return Array.from(document.querySelectorAll('#series-table th.key'))"
                                  ".map(th => th.textContent);")
    assert heads[CHANGE] == "change in last 10" and heads[SIGNIFICANT] == "significant change points"
    assert heads[MACHINE] == "machine"
    with sa.create_engine(f"sqlite:///{out.parent / 'history.sqlite'}").connect() as conn:
        (machine_id,) = conn.execute(sa.text("SELECT machine_id FROM machines")).one()
    assert {r[MACHINE].split(" (")[0] for r in rows} == {"Test CPU, 2 cores"}  # as the fingerprint recorded it
    assert all(machine_id not in r[MACHINE] for r in rows)


AA_RUNS = [Path(__file__).resolve().parents[2] / "results/reference/cpu-2core" / name
           for name in ("quick", "quick-repeat")]  # two real runs of the same code


def test_an_a_a_pair_as_two_commits_says_not_enough_history_and_marks_nothing(driver, tmp_path):
    from bench.history.ingest import read_run
    from bench.history.publish import publish
    from bench.history.store import HistoryDB

    db = tmp_path / "history.sqlite"
    with HistoryDB(db, create=True) as h:
        for i, run in enumerate(AA_RUNS):
            h.add(read_run(run, commit=f"{i:02d}" + "aa" * 19))
    publish(str(db), tmp_path / "site", last=10)
    chromium.open_page(driver, tmp_path / "site" / "index.html")
    assert chromium.console_errors(driver) == []
    rows, header = _rows(driver), _header(driver)
    timing = [r for r in rows if r[2] == "median_s"]
    assert len(timing) == 155 and {r[CHANGE] for r in timing} == {"not enough history"}
    assert {r[SIGNIFICANT] for r in rows} == {"0"} and not any(r[CHANGE] == "change" for r in rows)
    assert header == {"n-changed": 0, "n-significant": 0, "n-too-short": len(timing)}
    env = json.loads((AA_RUNS[0] / "meta.json").read_text())["env"]
    assert {r[MACHINE].split(" (")[0] for r in rows} == {f"{env['cpu_model']}, {env['cpu_count']} cores, no GPU"}
    # a timing series' page: it says so, and its one change point has no verdict and nothing "exact"
    link = driver.execute_script("return Array.from(document.querySelectorAll('#series-table tbody tr'))"
                                 ".find(r => r.cells[2].textContent === 'median_s').cells[0].querySelector('a');")
    link.click()
    chromium.open_page(driver, driver.current_url.removeprefix("file://"))
    assert "median_s" in driver.find_element(By.TAG_NAME, "h1").text
    assert driver.find_element(By.ID, "not-enough-history").text.startswith("not enough history: 2 commit(s)")
    cells = driver.execute_script("return Array.from(document.querySelectorAll('#changes tbody tr'))"
                                  ".map(r => Array.from(r.cells).map(c => c.textContent));")
    assert cells and {r[-1] for r in cells} == {"not enough history"}
    assert not any("exact" in c for r in cells for c in r)
