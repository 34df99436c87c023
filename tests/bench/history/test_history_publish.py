"""history publish without a browser: a site from a real database (SQLite and PostgreSQL), rewritten only where a
page changed; one commit and NaN medians give pages that say so; bad input is one line and exit 2.
The pages in a real browser: tests/browser/test_history_site.py."""

from __future__ import annotations

import math

import pytest
from conftest import reference_rows, write_run

from bench.cli import main

pytest.importorskip("plotly", reason="NO PLOTLY: history publish needs the html extra (pip install plotly)")


def _add(tmp_path, db: str, commits: list[str], rows, first: int = 0) -> None:
    for i, sha in enumerate(commits, first):
        run = write_run(tmp_path / f"run-{i}", rows, scale=1.0 + 0.002 * i)
        assert main(["history", "add", str(run), "--commit", sha, "--db", db]) == 0


def test_a_site_has_a_page_per_series_and_rewrites_only_what_changed(tmp_path, db_url, capsys):
    import sqlalchemy as sa

    from bench.history.store import HistoryDB

    rows = reference_rows(2)
    _add(tmp_path, db_url, [f"c{i:02d}" for i in range(4)], rows)
    out = tmp_path / "site"
    assert main(["history", "publish", "--db", db_url, "--out", str(out)]) == 0
    with HistoryDB(db_url, create=False) as db, db.engine.connect() as conn:
        n_series = conn.execute(sa.text("SELECT COUNT(*) FROM (SELECT DISTINCT machine_id, case_id, phase, metric "
                                        "FROM points) AS s")).scalar()
    pages = sorted((out / "series").glob("*.html"))
    assert len(pages) == n_series and (out / "index.html").is_file() and (out / "plotly.min.js").is_file()
    assert f"{n_series + 1} pages" in capsys.readouterr().out
    before = {p: p.stat().st_mtime_ns for p in pages}
    assert main(["history", "publish", "--db", db_url, "--out", str(out)]) == 0
    assert "(0 written," in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in pages} == before
    # a new commit of one case only: its series' pages and the index change, the other case's pages do not
    one_case = [r for r in rows if r["case_id"] == rows[0]["case_id"]]
    _add(tmp_path, db_url, ["c04"], one_case, first=4)
    capsys.readouterr()
    assert main(["history", "publish", "--db", db_url, "--out", str(out)]) == 0
    changed = {p.name for p in pages if p.stat().st_mtime_ns != before[p]}
    untouched = {p.name for p in pages} - changed
    assert changed and untouched
    assert all(p.startswith(rows[0]["case_id"]) for p in changed)
    assert all(not p.startswith(rows[0]["case_id"]) for p in untouched)
    assert f"({len(changed) + 1} written," in capsys.readouterr().out  # + the index


def test_one_commit_and_nan_medians_give_pages_that_say_so(tmp_path):
    from bench.history.publish import render_site
    from bench.history.series import SeriesKey
    from bench.history.store import Series

    key = SeriesKey("m", "one", "step", "median_s")
    one = Series(key, "one", "cpu", ("a" * 40,), (1e-3,), (9e-4,), (1.1e-3,))
    nan = Series(SeriesKey("m", "nan", "step", "median_s"), "nan", "cpu", ("a" * 40, "b" * 40),
                 (math.nan, math.nan), (None, None), (None, None))
    some = Series(SeriesKey("m", "some", "step", "median_s"), "some", "cpu", tuple(c * 40 for c in "abcd"),
                  (1e-3, math.nan, 1e-3, 1.1e-3), (None,) * 4, (None,) * 4)
    pages = render_site([one, nan, some], {}, 10, "test")
    by_label = {label: text for name, text in pages.items() for label in ("one", "nan", "some")
                if name.startswith(f"series/{label}-")}
    assert 'id="one-commit"' in by_label["one"] and "Plotly.newPlot" not in by_label["one"]
    assert 'id="no-data"' in by_label["nan"] and "Plotly.newPlot" not in by_label["nan"]
    assert "1 with a NaN median left out" in by_label["some"] and "Plotly.newPlot" in by_label["some"]
    assert ">one commit<" in pages["index.html"] and ">no finite median<" in pages["index.html"]


@pytest.mark.parametrize("argv, message", [
    (["history", "publish", "--db", "{tmp}/none.sqlite", "--out", "{tmp}/site"], "no history database"),
    (["history", "publish", "--db", "{tmp}/h.sqlite", "--out", "{tmp}/file"], "cannot write the site"),
    (["history", "publish", "--db", "{tmp}/h.sqlite", "--out", "{tmp}/site", "--last", "0"], "--last"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    _add(tmp_path, str(tmp_path / "h.sqlite"), ["c0"], reference_rows(1))
    (tmp_path / "file").write_text("not a folder")
    capsys.readouterr()
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
