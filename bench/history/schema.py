"""The history database's tables and their versioned migrations (SQLite or PostgreSQL, through SQLAlchemy Core).

The schema version is a row in ``schema_version``. ``MIGRATIONS`` lists every step from
an empty database; opening a database applies the missing steps in one transaction, so a
database written by an older mlpbench is upgraded in place and keeps its rows. A database
newer than this code is refused, never written.

- v1: ``machines`` (machine classes), ``runs`` (one per run added: commit, run digest,
  fingerprint), ``points`` (one number of one case x phase x metric, with its CI).
- v2: ``runs.commit_time`` (the commit's date, when known) and an index on the series key.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from ..errors import UsageError

TEXT_KEY = 64  # commit shas, case ids, metric names


def define_tables(metadata: sa.MetaData, version: int) -> dict[str, sa.Table]:
    """The tables as they are at schema ``version`` (one definition; migrations and queries both use it)."""
    machines = sa.Table(
        "machines", metadata,
        sa.Column("machine_id", sa.String(TEXT_KEY), primary_key=True),
        sa.Column("device", sa.String(16), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("fields_json", sa.Text, nullable=False))
    run_columns = [
        sa.Column("run_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("commit_sha", sa.String(TEXT_KEY), nullable=False),
        sa.Column("run_digest", sa.String(TEXT_KEY), nullable=False, unique=True),  # sha1 of summary.csv
        sa.Column("run_path", sa.Text, nullable=False),
        sa.Column("run_date", sa.String(40)),
        sa.Column("added_at", sa.String(40), nullable=False),
        sa.Column("env_json", sa.Text, nullable=False)]
    if version >= 2:
        run_columns.append(sa.Column("commit_time", sa.String(40)))
    runs = sa.Table("runs", metadata, *run_columns)
    points = sa.Table(
        "points", metadata,
        sa.Column("point_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.run_id"), nullable=False),
        sa.Column("machine_id", sa.String(TEXT_KEY), sa.ForeignKey("machines.machine_id"), nullable=False),
        sa.Column("case_id", sa.String(TEXT_KEY), nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("phase", sa.String(TEXT_KEY), nullable=False),
        sa.Column("metric", sa.String(TEXT_KEY), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("ci_low", sa.Float),
        sa.Column("ci_high", sa.Float),
        sa.Column("n", sa.Integer))
    if version >= 2:
        sa.Index("ix_points_series", points.c.machine_id, points.c.case_id, points.c.phase, points.c.metric)
    version_table = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))
    return {"machines": machines, "runs": runs, "points": points, "schema_version": version_table}


def _create_v1(conn: sa.Connection) -> None:
    metadata = sa.MetaData()
    tables = define_tables(metadata, 1)
    metadata.create_all(conn, tables=[tables[n] for n in ("machines", "runs", "points")])


def _v2_commit_time(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE runs ADD COLUMN commit_time VARCHAR(40)"))
    for index in define_tables(sa.MetaData(), 2)["points"].indexes:  # ix_points_series
        index.create(conn)


# (version it brings the database to, step); append only, never edit a released step
MIGRATIONS: tuple[tuple[int, Callable[[sa.Connection], None]], ...] = ((1, _create_v1), (2, _v2_commit_time))
LATEST_VERSION = MIGRATIONS[-1][0]
TABLES = define_tables(sa.MetaData(), LATEST_VERSION)


def schema_version(conn: sa.Connection) -> int:
    """The database's schema version; 0 for an empty database."""
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    found = conn.execute(sa.select(sa.func.max(TABLES["schema_version"].c.version))).scalar()
    return int(found or 0)


def migrate(engine: sa.Engine, target: int = LATEST_VERSION) -> int:
    """Apply the missing migrations up to ``target`` in one transaction; returns the version reached."""
    with engine.begin() as conn:
        current = schema_version(conn)
        if current > LATEST_VERSION:
            raise UsageError(f"the history database has schema v{current}, newer than this mlpbench "
                             f"(v{LATEST_VERSION}); upgrade mlpbench to use it")
        if current == 0:
            TABLES["schema_version"].create(conn)
        for version, step in MIGRATIONS:
            if current < version <= target:
                step(conn)
                conn.execute(sa.delete(TABLES["schema_version"]))
                conn.execute(sa.insert(TABLES["schema_version"]).values(version=version))
                current = version
        return current
