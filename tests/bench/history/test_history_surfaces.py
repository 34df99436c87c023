"""Issue 47: `history check` and the published site say the same thing, on SQLite and on the real PostgreSQL.

- An A/A pair (two real runs of the same code, results/reference/cpu-2core/quick and quick-repeat) added as
  two commits: every surface says "not enough history" and nothing is significant (the site once showed
  "+43.1% ... significant", its step interval and noise "exact", and check listed its rows twice).
- Twelve commits of two real cases whose work and time grow by 20% from commit 7 on: each series' change is
  found once, at commit 7, by check and by the site alike; "exact" stands beside the work counters only.

The references are the injected step (where, and the counters' exact size by hand) and SQL counts of the
database; the pages are read with the standard library's HTML parser.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter

import numpy as np
import pytest
import sqlalchemy as sa
from conftest import REPO, WORK_COLUMNS, read_page, reference_rows, write_run

from bench.cli import main

pytest.importorskip("plotly", reason="NO PLOTLY: history publish needs the html extra (pip install plotly)")

AA_RUNS = (REPO / "results/reference/cpu-2core/quick", REPO / "results/reference/cpu-2core/quick-repeat")
COMMITS, STEP_AT, STEP, NOISE = 12, 7, 1.20, 0.02  # commit 7 (1-based) is the first 20% slower, 20% more work
MEASURED = "median_s"
CHANGE_COLUMN = "change in last 10"


def _sql(db: str, query: str):
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(query)).all()
    finally:
        engine.dispose()


def _check(db: str, capsys) -> tuple[int, str, list[list[str]]]:
    capsys.readouterr()
    code = main(["history", "check", "--db", db])
    out = capsys.readouterr().out
    return code, out, _rows_of(out)


def _rows_of(text: str) -> list[list[str]]:
    """The change point rows of a check summary (or of one of its sections), as cells."""
    return [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in text.splitlines()
            if line.startswith("| `")]


def _publish(db: str, out, capsys):
    assert main(["history", "publish", "--db", db, "--out", str(out)]) == 0
    capsys.readouterr()
    index = read_page((out / "index.html").read_text())
    heads, rows = index.tables["series-table"]
    named = [dict(zip(heads, r)) for r in rows]
    pages = {}
    for path in (out / "series").glob("*.html"):
        text = path.read_text()
        title = html.unescape(re.search(r"<h1>(.*?)</h1>", text).group(1))
        pages[tuple(title.split(" · "))] = (text, read_page(text))
    return index, named, pages


def _header_number(index, element_id: str) -> int:
    return int(index.ids.get(element_id, "0"))


def test_a_two_commit_a_a_pair_is_not_enough_history_on_every_surface(tmp_path, db_url, capsys):
    for i, run in enumerate(AA_RUNS):
        assert main(["history", "add", str(run), "--commit", f"{i:02d}" + "ab" * 19, "--db", db_url]) == 0
    measured = _sql(db_url, "SELECT COUNT(*) FROM (SELECT DISTINCT machine_id, case_id, phase FROM points "
                            f"WHERE metric = '{MEASURED}') AS s")[0][0]
    assert measured == 155  # the quick preset's 31 cases x 5 phases, all measured ok

    code, out, rows = _check(db_url, capsys)
    assert code == 0 and out.startswith(f"## mlpbench history: not enough history: {measured} of ")
    assert rows == []  # nothing significant, nothing pending, nothing listed twice
    assert "Earlier change points" not in out and "Pending" not in out

    index, named, pages = _publish(db_url, tmp_path / "site", capsys)
    timing = [r for r in named if r["metric"] == MEASURED]
    assert len(timing) == measured
    assert {r[CHANGE_COLUMN] for r in timing} == {"not enough history"}
    assert {r["significant change points"] for r in named} == {"0"}
    assert {r[CHANGE_COLUMN] for r in named if r["metric"] != MEASURED} == {""}  # equal counters: no change
    # the header counts what the columns show
    assert _header_number(index, "n-changed") == sum(r[CHANGE_COLUMN] == "change" for r in named) == 0
    assert _header_number(index, "n-significant") == 0
    assert _header_number(index, "n-too-short") == sum(r[CHANGE_COLUMN] == "not enough history" for r in named)
    for (label, phase, metric), (text, page) in pages.items():
        verdicts = [r[-1] for r in page.tables.get("changes", ([], []))[1]]
        assert not {"significant", "recent"} & set(verdicts), (label, phase, metric)
        if metric == MEASURED:
            assert page.ids["not-enough-history"].startswith("not enough history: 2 commit(s)")
            assert set(verdicts) <= {"not enough history"}
            cells = [c for r in page.tables.get("changes", ([], []))[1] for c in r]
            assert "exact" not in cells  # a measured step is never "exact"

    # the machine is named: the CPU model and cores its runs recorded, and no GPU; the hash only as a key
    env = json.loads((AA_RUNS[0] / "meta.json").read_text())["env"]
    (machine_id,), = _sql(db_url, "SELECT machine_id FROM machines")
    name = f"{env['cpu_model']}, {env['cpu_count']} cores, no GPU"
    assert {r["machine"].split(" (")[0] for r in named} == {name}
    assert all(machine_id not in r["machine"] for r in named)
    assert f"- {name}" in out
    assert next(iter(pages.values()))[1].ids["machine"].startswith(name)


def _stepped_history(tmp_path, db: str, seed: int) -> tuple[list[str], list[dict[str, str]]]:
    rows, rng, commits = reference_rows(2), np.random.default_rng(seed), []
    for i in range(1, COMMITS + 1):
        after = i >= STEP_AT
        scale = (1.0 + NOISE * rng.standard_normal()) * (STEP if after else 1.0)
        run = write_run(tmp_path / f"run{i}", rows, scale=scale, work=STEP if after else 1.0)
        commits.append(f"{i:02d}" + "7e" * 19)
        assert main(["history", "add", str(run), "--commit", commits[-1], "--db", db]) == 0
    return commits, rows


@pytest.mark.parametrize("seed", [0, 1])
def test_a_step_at_commit_7_of_12_is_found_once_there_by_check_and_by_the_site(tmp_path, db_url, capsys, seed):
    commits, rows = _stepped_history(tmp_path, db_url, seed)
    at = commits[STEP_AT - 1][:8]
    # what changed, by construction: every measured phase, and every work counter whose count moves by 20%
    exact_step = {(r["label"], r["phase"], c): (round(float(r[c]) * STEP) - float(r[c])) / float(r[c])
                  for r in rows for c in WORK_COLUMNS if r.get(c) and round(float(r[c]) * STEP) != float(r[c])}
    expected = {(r["label"], r["phase"], MEASURED) for r in rows} | set(exact_step)
    assert len(expected) > 10

    code, out, found = _check(db_url, capsys)
    assert code == 1 and "change(s) in the last 10 commits: FAIL" in out
    keys = [(r[1], r[2], r[3]) for r in found]
    assert Counter(keys) == Counter(expected)  # each change once: no second "earlier" or "pending" copy
    assert {r[0] for r in found} == {f"`{at}`"}
    assert "Earlier change points" not in out and "Pending" not in out
    assert out.count(f"- `{at}`: 2 case(s)") == 1
    for commit, label, phase, metric, _, step, noise in found:
        rel = float(re.match(r"([+-]\d+\.\d+)%", step).group(1))
        if metric == MEASURED:
            assert "exact" not in step and "exact" not in noise
            assert 14.0 < rel < 26.0, (label, phase, rel)  # the injected +20%, within a 2% noise of 6 vs 6 commits
        else:  # the exact count, computed by hand from the run's row
            assert step.endswith("exact)") and noise == "exact"
            assert step.startswith(f"{exact_step[(label, phase, metric)]:+.2%}")

    index, named, pages = _publish(db_url, tmp_path / "site", capsys)
    marked = {(r["case"], r["phase"], r["metric"]) for r in named if r[CHANGE_COLUMN] == "change"}
    assert marked == set(keys) == expected  # the site and check agree, series for series
    assert {r[CHANGE_COLUMN] for r in named} <= {"change", ""}
    significant = {(r["case"], r["phase"], r["metric"]): int(r["significant change points"]) for r in named}
    assert {k for k, n in significant.items() if n} == expected and set(significant.values()) <= {0, 1}
    assert _header_number(index, "n-changed") == len(marked)
    assert _header_number(index, "n-significant") == sum(n > 0 for n in significant.values())
    assert "n-too-short" not in index.ids and "n-pending" not in index.ids
    for key in expected:
        text, page = pages[key]
        changes = page.tables["changes"][1]
        assert [r[0] for r in changes if r[-1] in ("recent", "significant")] == [at]
        assert [r[-1] for r in changes if r[0] == at] == ["recent"]  # listed once
        exact_cells = [c for r in changes for c in r[3:5] if c == "exact"]
        assert exact_cells == ([] if key[2] == MEASURED else ["exact", "exact"])
        assert "not-enough-history" not in page.ids


def test_this_repositorys_32_commit_history_reads_the_same_in_check_and_on_the_site(tmp_path, capsys):
    """Real database rows: the committed history of 32 commits of this repository's main (docs/history.md). Each
    change point is listed once by check; the site marks "change" and "pending" on the series check lists as
    such, and the index header counts its columns."""
    import shutil

    db = tmp_path / "main-history-32.sqlite"
    shutil.copyfile(REPO / "results/history-eval/main-history-32.sqlite", db)  # opening may migrate it: a copy
    code, out, found = _check(str(db), capsys)
    keys = [(r[0].strip("`"), r[1], r[2], r[3]) for r in found]
    assert Counter(keys).most_common(1)[0][1] == 1  # each change point once
    sections = re.split(r"^### ", out, flags=re.M)
    listed = {name.split(" ")[0]: {(r[1], r[2], r[3]) for r in _rows_of(text)} for name, text in
              ((s.split("\n", 1)[0], s) for s in sections[1:])}
    index, named, _ = _publish(str(db), tmp_path / "site", capsys)
    by_mark = {mark: {(r["case"], r["phase"], r["metric"]) for r in named if r[CHANGE_COLUMN] == mark}
               for mark in ("change", "pending")}
    assert by_mark["change"] and by_mark["pending"]  # this history has both (1 and 3 series when written)
    assert by_mark["change"] == listed.get("Changes", set()) and code == 1
    assert by_mark["pending"] == listed.get("Pending", set()) - by_mark["change"]
    assert _header_number(index, "n-changed") == len(by_mark["change"])
    assert _header_number(index, "n-pending") == len(by_mark["pending"])
    assert _header_number(index, "n-significant") == sum(int(r["significant change points"]) > 0 for r in named)
    assert _header_number(index, "n-too-short") == sum(r[CHANGE_COLUMN] == "not enough history" for r in named) == 0
