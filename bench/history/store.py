"""The history database: append an ingested run, read every series back in commit order.

``--db`` takes a file path (SQLite, the default ``results/history.sqlite``) or a SQLAlchemy
URL (``postgresql://user@host/db`` for a team's shared history, through psycopg 3).
``MLPBENCH_HISTORY_DB`` sets the default. Commits are ordered by when they were first added:
a CI job that adds each commit after it lands keeps them in history order.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from ..errors import UsageError, first_line
from ..runs.outputs import database_file, is_sqlite  # the output guard, not the run record
from .ingest import IngestedRun
from .schema import TABLES, migrate
from .series import SeriesKey, machine_name

DEFAULT_DB = Path("results/history.sqlite")
DB_ENV = "MLPBENCH_HISTORY_DB"
POSTGRES_SCHEMES = ("postgresql", "postgres")  # plain schemes go through psycopg 3, not psycopg2


@dataclass(frozen=True)
class Series:
    """One series' points, one per commit (runs of one commit are merged: median of medians, widest CI)."""

    key: SeriesKey
    label: str
    machine: str  # the machine class, in words: CPU model, cores, GPU, then the rest of the class (series.py)
    commits: tuple[str, ...]
    values: tuple[float, ...]
    ci_low: tuple[float | None, ...]
    ci_high: tuple[float | None, ...]


def database_url(target: str | os.PathLike | None) -> str:
    """A SQLAlchemy URL from a path or URL (None: ``$MLPBENCH_HISTORY_DB`` or the default SQLite file)."""
    target = str(target or os.environ.get(DB_ENV) or DEFAULT_DB)
    if "://" not in target:
        return f"sqlite:///{Path(target).expanduser().resolve()}"
    scheme, rest = target.split("://", 1)
    if scheme in POSTGRES_SCHEMES:
        return f"postgresql+psycopg://{rest}"
    return target


def shown_url(url: str) -> str:
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


class HistoryDB:
    """An open history database at the latest schema (migrated on open when it is older)."""

    def __init__(self, target: str | os.PathLike | None, *, create: bool) -> None:
        self.url = database_url(target)
        try:
            url = sa.engine.make_url(self.url)
        except sa.exc.ArgumentError:
            raise UsageError(f"--db {target!r}: not a path or a database URL") from None
        if url.get_backend_name() == "sqlite" and url.database:
            path = database_file(url.database)
            if not create and not path.is_file():
                raise UsageError(f"no history database at {path} (add runs with `mlpbench history add RUN`)")
            size = path.stat().st_size if path.is_file() else 0
            if path.is_file() and not is_sqlite(path) and (size or not create):  # an empty file: only add fills it
                raise UsageError(f"{path} is not a history database ({'not SQLite' if size else 'an empty file'}); "
                                 "add runs with `mlpbench history add RUN --db FILE`")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise UsageError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
        try:
            self.engine = sa.create_engine(url)
            migrate(self.engine)
        except ModuleNotFoundError as exc:
            raise UsageError(f"{shown_url(self.url)}: the driver is not installed ({exc.name}); for PostgreSQL: "
                             "pip install 'psycopg[binary]'") from None
        except sa.exc.SQLAlchemyError as exc:
            raise UsageError(f"cannot open the history database {shown_url(self.url)}: "
                             f"{first_line(getattr(exc, 'orig', None) or exc)}") from None

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "HistoryDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, run: IngestedRun) -> int:
        """Append the run's points in one transaction; returns the run's id. The same run twice is refused."""
        t = TABLES
        with self.engine.begin() as conn:
            known = conn.execute(sa.select(t["runs"].c.run_id, t["runs"].c.commit_sha)
                                 .where(t["runs"].c.run_digest == run.run_digest)).first()
            if known:
                raise UsageError(f"{run.run_path} is already in the history (run {known.run_id}, "
                                 f"commit {known.commit_sha})")
            machines = {p.machine.machine_id: p.machine for p in run.points}
            have = set(conn.execute(sa.select(t["machines"].c.machine_id)
                                    .where(t["machines"].c.machine_id.in_(machines))).scalars())
            new = [{"machine_id": m.machine_id, "device": m.device, "description": m.description,
                    "fields_json": m.to_json()} for k, m in machines.items() if k not in have]
            if new:
                conn.execute(sa.insert(t["machines"]), new)
            run_id = conn.execute(sa.insert(t["runs"]).values(
                commit_sha=run.commit, commit_time=run.commit_time, run_digest=run.run_digest,
                run_path=run.run_path, run_date=run.run_date, env_json=run.env_json,
                added_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))).inserted_primary_key[0]
            conn.execute(sa.insert(t["points"]), [
                {"run_id": run_id, "machine_id": p.machine.machine_id, "case_id": p.case_id, "label": p.label,
                 "phase": p.phase, "metric": p.metric, "value": p.value, "ci_low": p.ci_low, "ci_high": p.ci_high,
                 "n": p.n} for p in run.points])
        return int(run_id)

    def series(self) -> list[Series]:
        """Every series, its points in commit order (a commit's place: the first run added for it)."""
        t = TABLES
        query = (sa.select(t["runs"].c.run_id, t["runs"].c.commit_sha, t["points"].c.machine_id,
                           t["points"].c.case_id, t["points"].c.phase, t["points"].c.metric, t["points"].c.label,
                           t["points"].c.value, t["points"].c.ci_low, t["points"].c.ci_high,
                           t["machines"].c.description, t["machines"].c.fields_json)
                 .join(t["runs"], t["runs"].c.run_id == t["points"].c.run_id)
                 .join(t["machines"], t["machines"].c.machine_id == t["points"].c.machine_id)
                 .order_by(t["runs"].c.run_id, t["points"].c.point_id))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        order: dict[str, int] = {}
        grouped: dict[SeriesKey, dict[str, list]] = defaultdict(lambda: defaultdict(list))
        labels, names = {}, {}
        for r in rows:
            order.setdefault(r.commit_sha, len(order))
            key = SeriesKey(r.machine_id, r.case_id, r.phase, r.metric)
            grouped[key][r.commit_sha].append(r)
            labels[key] = r.label
            if r.machine_id not in names:
                names[r.machine_id] = _machine(r.fields_json, r.description)
        return [_series(key, labels[key], names[key.machine_id], sorted(by_commit.items(), key=lambda kv: order[kv[0]]))
                for key, by_commit in sorted(grouped.items())]

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {name: int(conn.execute(sa.select(sa.func.count()).select_from(TABLES[name])).scalar())
                    for name in ("runs", "points", "machines")}


def _machine(fields_json: str, description: str) -> str:
    """The machine class's name from its stored fields (a database written before names: its description)."""
    try:
        info = json.loads(fields_json)
    except ValueError:
        info = None
    return (machine_name(info) if isinstance(info, dict) else "") or description


def _series(key: SeriesKey, label: str, machine: str, by_commit: list[tuple[str, list]]) -> Series:
    values, lows, highs = [], [], []
    for _, rows in by_commit:
        values.append(statistics.median(r.value for r in rows))
        low = [r.ci_low for r in rows if r.ci_low is not None]
        high = [r.ci_high for r in rows if r.ci_high is not None]
        lows.append(min(low) if low else None)
        highs.append(max(high) if high else None)
    return Series(key, label, machine, tuple(c for c, _ in by_commit), tuple(values), tuple(lows), tuple(highs))
