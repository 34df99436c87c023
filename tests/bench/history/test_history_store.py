"""The history database on SQLite and on a real PostgreSQL: append, read back, migrate from v1, like with like."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest
import sqlalchemy as sa
from conftest import ENV, REFERENCE_RUN, reference_rows, write_run

from bench.errors import UsageError
from bench.history.ingest import read_run
from bench.history.schema import LATEST_VERSION, migrate, schema_version
from bench.history.series import CUDA_CLASS_FIELDS, machine_class
from bench.history.store import HistoryDB


def _count(url: str, sql: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(sql)).scalar())
    finally:
        engine.dispose()


def test_a_real_run_is_appended_point_for_point(db_url):
    with open(REFERENCE_RUN / "summary.csv", newline="") as f:
        ok = [r for r in csv.DictReader(f) if r["status"] == "ok"]
    # independently: one median_s per ok row, two per-phase counters, four per-case counters on the step row
    expected = sum(1 + 2 + (4 if r["phase"] == "step" else 0) for r in ok)
    with HistoryDB(db_url, create=True) as db:
        db.add(read_run(REFERENCE_RUN, commit="c1"))
    assert _count(db_url, "select count(*) from points") == expected
    assert _count(db_url, "select count(*) from runs") == 1
    one = ok[0]
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        got = conn.execute(sa.text("select value, ci_low, ci_high, n from points where case_id = :c and phase = :p "
                                   "and metric = 'median_s'"), {"c": one["case_id"], "p": one["phase"]}).one()
    engine.dispose()
    assert got == (pytest.approx(float(one["median_s"])), pytest.approx(float(one["ci_low_s"])),
                   pytest.approx(float(one["ci_high_s"])), int(one["n"]))


def test_the_same_run_is_not_added_twice(db_url):
    with HistoryDB(db_url, create=True) as db:
        db.add(read_run(REFERENCE_RUN, commit="c1"))
        with pytest.raises(UsageError, match="already in the history"):
            db.add(read_run(REFERENCE_RUN, commit="c2"))
    assert _count(db_url, "select count(*) from runs") == 1


def test_another_machine_or_build_starts_its_own_series(db_url, tmp_path):
    rows = reference_rows(1)
    runs = [write_run(tmp_path / "a", rows), write_run(tmp_path / "b", rows, {"hostname": "runner-2", "date": "x"},
                                                         scale=1.01),
            write_run(tmp_path / "c", rows, {"torch": "2.15.0"}, scale=1.02),
            write_run(tmp_path / "d", rows, {"cpu_model": "Intel Xeon"}, scale=1.03)]
    with HistoryDB(db_url, create=True) as db:
        for i, run in enumerate(runs):
            db.add(read_run(run, commit=f"c{i}"))
        series = [s for s in db.series() if s.key.metric == "median_s" and s.key.phase == "step"]
    # same class (only the hostname and date differ): one series of two commits; the others: one each
    assert sorted(len(s.commits) for s in series) == [1, 1, 2]
    two = next(s for s in series if len(s.commits) == 2)
    assert two.commits == ("c0", "c1")
    assert two.values[1] == pytest.approx(two.values[0] * 1.01)


def test_runs_of_one_commit_merge_into_one_point(db_url, tmp_path):
    rows = reference_rows(1)
    with HistoryDB(db_url, create=True) as db:
        for i, scale in enumerate((1.0, 1.2, 1.1)):
            db.add(read_run(write_run(tmp_path / str(i), rows, scale=scale), commit="same"))
        step = next(s for s in db.series() if s.key.metric == "median_s" and s.key.phase == "step")
    base = float(next(r for r in rows if r["phase"] == "step")["median_s"])
    assert step.commits == ("same",) and step.values[0] == pytest.approx(base * 1.1)


V1_ROWS = [
    "insert into machines (machine_id, device, description, fields_json) values ('m1', 'cpu', 'cpu: old', '{}')",
    "insert into runs (commit_sha, run_digest, run_path, run_date, added_at, env_json) "
    "values ('old1', 'd1', '/r1', null, '2026-01-01', '{}')",
    "insert into points (run_id, machine_id, case_id, label, phase, metric, value, ci_low, ci_high, n) "
    "values (1, 'm1', 'case1', 'w1 d1', 'step', 'median_s', 0.5, 0.4, 0.6, 12)",
]


def test_a_v1_database_is_migrated_in_place_and_keeps_its_rows(db_url, tmp_path):
    engine = sa.create_engine(db_url)
    assert migrate(engine, target=1) == 1
    with engine.begin() as conn:
        for sql in V1_ROWS:
            conn.execute(sa.text(sql))
    columns = {c["name"] for c in sa.inspect(engine).get_columns("runs")}
    assert "commit_time" not in columns
    engine.dispose()
    with HistoryDB(db_url, create=False) as db:  # opening migrates
        old = db.series()
        db.add(read_run(write_run(tmp_path / "new", reference_rows(1)), commit="new1"))
    engine = sa.create_engine(db_url)
    inspector = sa.inspect(engine)
    assert "commit_time" in {c["name"] for c in inspector.get_columns("runs")}
    assert "ix_points_series" in {i["name"] for i in inspector.get_indexes("points")}
    with engine.connect() as conn:
        assert schema_version(conn) == LATEST_VERSION == 2
        assert conn.execute(sa.text("select count(*) from schema_version")).scalar() == 1
    engine.dispose()
    assert [(s.key.case_id, s.commits, s.values) for s in old] == [("case1", ("old1",), (0.5,))]


def test_a_database_newer_than_the_code_is_refused(db_url):
    engine = sa.create_engine(db_url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(sa.text("update schema_version set version = 99"))
    engine.dispose()
    with pytest.raises(UsageError, match="schema v99, newer than this mlpbench"):
        HistoryDB(db_url, create=False)


def test_the_machine_is_named_by_cpu_cores_and_gpu_and_keyed_as_before(db_url, tmp_path):
    """Issue 47: the site showed the machine as a hash. The name comes from the fingerprint; the key is the
    hash it always was (written out here by hand), so an existing history keeps its series."""
    env = {**ENV, "device_name": None}
    with HistoryDB(db_url, create=True) as db:
        db.add(read_run(write_run(tmp_path / "a", reference_rows(1), env), commit="c1"))
        (series, *_) = db.series()
    fields = [[k, str(ENV[k])] for k in ("cpu_model", "cpu_count", "cpu_capability", "torch", "torch_threads")]
    assert series.key.machine_id == hashlib.sha1(json.dumps(["cpu", fields]).encode()).hexdigest()[:12]
    assert series.machine == "AMD EPYC 7B13, 2 cores, no GPU (cpu cases: AVX2, 2 threads, torch 2.14.1+cu130)"
    gpu = {**ENV, "device_name": "NVIDIA H100 80GB HBM3", "cuda_capability": "9.0", "cuda": "13.0", "cudnn": "91002",
           "tf32_matmul_default": False, "cpu_count": 16}
    cuda = machine_class(gpu, "cuda")
    assert cuda.machine_id == hashlib.sha1(json.dumps(
        ["cuda", [[k, str(gpu[k])] for k in CUDA_CLASS_FIELDS]]).encode()).hexdigest()[:12]  # the host: not in it
    assert cuda.description.startswith("AMD EPYC 7B13, 16 cores, GPU NVIDIA H100 80GB HBM3 (cuda cases: sm 9.0")
    assert machine_class({**gpu, "cpu_model": "Intel Xeon"}, "cuda") == cuda  # another host, the same class
