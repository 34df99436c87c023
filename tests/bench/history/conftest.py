"""Fixtures of the history tests: synthetic run folders in the real format, and databases (SQLite, PostgreSQL).

PostgreSQL: ``MLPBENCH_TEST_PG_URL`` names a server (``.ci/run`` starts one with ``.ci/postgres``);
each test gets a database of its own, dropped afterwards. Without the variable the PostgreSQL
tests are skipped with a loud reason, except in CI (``CI=true``), where they fail: CI never
skips them silently. With the variable set, a server that does not answer is a failure.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
REFERENCE_RUN = REPO / "results/reference/cpu-2core/quick"  # a real run folder, committed
PG_URL_ENV = "MLPBENCH_TEST_PG_URL"
ENV = {"cpu_model": "AMD EPYC 7B13", "cpu_count": 2, "cpu_capability": "AVX2", "torch": "2.14.1+cu130",
       "torch_threads": 2, "hostname": "runner-1", "date": "2026-11-27T12:00:00+00:00", "git_commit": "unknown"}


def reference_rows(n_cases: int = 2) -> list[dict[str, str]]:
    """The first ``n_cases`` cases of the committed quick run, every phase, as csv rows."""
    with open(REFERENCE_RUN / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = list(dict.fromkeys(r["case_id"] for r in rows if r["status"] == "ok"))[:n_cases]
    return [r for r in rows if r["case_id"] in keep]


WORK_COLUMNS = ("matmul_flops", "elementwise_flops")  # the exact counters of a phase's work


def write_run(folder: Path, rows: list[dict[str, str]], env: dict | None = None, scale: float = 1.0,
              work: float = 1.0) -> Path:
    """A run folder: ``rows`` with every time column multiplied by ``scale`` and every work counter by ``work``
    (rounded to a whole count, as counted), and meta.json's env."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for row in rows:
        row = dict(row)
        for col in ("median_s", "ci_low_s", "ci_high_s"):
            if row.get(col):
                row[col] = repr(float(row[col]) * scale)
        for col in WORK_COLUMNS:
            if row.get(col) and work != 1.0:
                row[col] = str(round(float(row[col]) * work))
        out.append(row)
    with open(folder / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(out[0]))
        writer.writeheader()
        writer.writerows(out)
    (folder / "meta.json").write_text(json.dumps({"env": {**ENV, **(env or {})}}))
    return folder


def _pg_admin_url() -> str | None:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI: {PG_URL_ENV} is not set, so the PostgreSQL history tests cannot run "
                        "(.ci/run exports it from .ci/postgres)")
        pytest.skip(f"NO POSTGRESQL: {PG_URL_ENV} is not set; the history tests against a real PostgreSQL "
                    f"did NOT run (start one with: export {PG_URL_ENV}=\"$(bash .ci/postgres)\")")
    return url


@pytest.fixture
def pg_url():
    """A fresh, empty PostgreSQL database's URL (dropped after the test)."""
    import sqlalchemy as sa

    admin = sa.engine.make_url(_pg_admin_url().replace("postgresql://", "postgresql+psycopg://", 1))
    name = f"mlpbench_t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        pytest.fail(f"{PG_URL_ENV} is set but PostgreSQL does not answer: {str(exc).splitlines()[0]}")
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """Each store test runs on a SQLite file and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite'}"
    return request.getfixturevalue("pg_url")


VOID_TAGS = ("input", "img", "br", "meta", "link", "hr")


class _Tables(HTMLParser):
    """Every ``<table id=...>`` of a page as (header texts, body rows of cell texts), and every element's text by id."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, tuple[list[str], list[list[str]]]] = {}
        self.ids: dict[str, str] = {}
        self._table, self._part, self._cell, self._open = None, None, None, []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id"):
            self._table = attrs["id"]
            self.tables[self._table] = ([], [])
        elif self._table and tag in ("thead", "tbody"):
            self._part = tag
        elif self._table and tag == "tr" and self._part == "tbody":
            self.tables[self._table][1].append([])
        elif self._table and (tag == "td" or (tag == "th" and attrs.get("class") == "key")):
            self._cell = []
        if attrs.get("id") and tag not in VOID_TAGS:
            self._open.append((tag, attrs["id"], []))

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = self._part = None
        elif self._cell is not None and tag in ("td", "th"):
            heads, rows = self.tables[self._table]
            (heads if tag == "th" else rows[-1]).append("".join(self._cell).strip())
            self._cell = None
        if self._open and self._open[-1][0] == tag:
            _, element_id, text = self._open.pop()
            self.ids[element_id] = "".join(text).strip()

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        for _, _, text in self._open:
            text.append(data)


def read_page(text: str) -> _Tables:
    """A rendered page's tables (``.tables[id]``: headers, rows) and elements' texts (``.ids[id]``), as a browser
    would show them (the standard library's HTML parser: independent of the code that wrote the page)."""
    parser = _Tables()
    parser.feed(text)
    return parser
