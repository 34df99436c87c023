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


def write_run(folder: Path, rows: list[dict[str, str]], env: dict | None = None, scale: float = 1.0) -> Path:
    """A run folder: ``rows`` with every time column multiplied by ``scale``, and meta.json's env."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for row in rows:
        row = dict(row)
        for col in ("median_s", "ci_low_s", "ci_high_s"):
            if row.get(col):
                row[col] = repr(float(row[col]) * scale)
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
