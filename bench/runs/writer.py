"""The one writer of run folders, used by ``run``, ``ddp`` and ``profile`` (which writes no tables).

It holds the run's tables and ``RunMeta`` in memory, rewrites the folder atomically after
every case, and holds the folder's lock while it lives. Before a case is measured it marks
the case *in flight* in meta.json: a process that dies mid-case (the kernel's OOM killer, a
segfault, ``kill -9``) leaves the mark behind, the next ``--resume`` counts the death and
measures the case once more, and after ``CRASH_LIMIT`` deaths in the same case it records
the case as ``crashed`` instead, so a resume never loops on a case that kills the process.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from .columns import samples_frame, summary_frame
from .folder import META_JSON, SAMPLES_CSV, SUMMARY_CSV, FolderLock, write_atomic, write_table
from . import limit_tables
from .meta import CRASH_LIMIT, RunMeta
from .reader import load_run
from .recipe import ModelRecipe, copy_sources
from .status import DONE_STATUSES

CRASHED_REASON = f"the process died while measuring it, {'twice' if CRASH_LIMIT == 2 else f'{CRASH_LIMIT} times'}"


class RunWriter:
    """Writes one run folder; ``resume=True`` keeps the folder's finished cases (status ``done``)."""

    def __init__(self, out_dir: Path, meta: RunMeta, resume: bool = False):
        self.out_dir = Path(out_dir)
        self.lock = FolderLock(self.out_dir).acquire()  # before reading: nobody else may be writing it
        try:
            self.meta = meta
            self.summary: list[dict] = []
            self.samples: list[dict] = []
            if resume:
                self._resume(meta)
        except BaseException:
            self.lock.release()
            raise

    def _resume(self, meta: RunMeta) -> None:
        run = load_run(self.out_dir)
        done = run.summary[run.summary["status"].isin(DONE_STATUSES)]
        self.summary = done.to_dict("records")
        if len(run.samples):
            self.samples = run.samples[run.samples["case_id"].isin(set(done["case_id"]))].to_dict("records")
        old = run.meta
        crashes = dict(old.crashes)
        if old.in_flight and old.in_flight.get("case_id") not in self.done_ids:  # it died in that case
            case_id = old.in_flight["case_id"]
            crashes[case_id] = crashes.get(case_id, 0) + 1
        for declared in limit_tables.LIMIT_TABLES:  # measured once per run folder: a resume keeps them
            table = meta.limit_table(declared.name)
            table.update({**old.limit_table(declared.name), **table})
        meta.run_s, meta.crashes, meta.in_flight = old.run_s, crashes, None
        meta.resumed_from = old.resumed_from or old.env.get("date")
        meta.models = {**old.models, **meta.models}
        meta.extra = {**old.extra, **meta.extra}
        self.meta = meta

    # ------------------------------------------------------------------ cases

    @property
    def done_ids(self) -> set[str]:
        return {row["case_id"] for row in self.summary}

    def begin(self, case_id: str, label: str) -> None:
        """Mark the case in flight (meta.json only) before measuring it."""
        self.meta.in_flight = {"case_id": case_id, "label": label, "pid": os.getpid()}
        self.write_meta()

    def abandon(self) -> None:
        """The case in flight was stopped on purpose (Ctrl-C, SIGTERM): not a crash."""
        self.meta.in_flight = None

    def gave_up_on(self, case_id: str) -> bool:
        return self.meta.gave_up_on(case_id)

    def add(self, summary_rows: list[dict], sample_rows: list[dict]) -> None:
        """One finished case's rows; clears the in-flight mark and rewrites the folder."""
        self.summary += summary_rows
        self.samples += sample_rows
        self.meta.in_flight = None
        self.flush()

    def set_tables(self, summary: pd.DataFrame, samples: pd.DataFrame) -> None:
        """Replace both tables (a data-parallel run rebuilds them from its ranks' records)."""
        self.summary, self.samples = summary.to_dict("records"), samples.to_dict("records")

    def record_models(self, recipes: list[ModelRecipe]) -> None:
        """Each user's model's rebuild recipe into meta.json, its source files copied into the folder (a resumed
        run keeps the recipes of its first invocation: what its finished cases measured)."""
        for recipe in recipes:
            if recipe.model not in self.meta.models:
                self.meta.models[recipe.model] = copy_sources(recipe, self.out_dir).as_dict()
        self.write_meta()

    def write_text(self, name: str, text: str) -> Path:
        """Another file of the folder (profile.md, report.md), atomically."""
        write_atomic(self.out_dir / name, text)
        return self.out_dir / name

    def write_meta(self) -> None:
        write_atomic(self.out_dir / META_JSON, self.meta.to_json())

    def flush(self) -> None:
        write_table(self.out_dir / SAMPLES_CSV, samples_frame(self.samples))
        write_table(self.out_dir / SUMMARY_CSV, summary_frame(self.summary))
        self.write_meta()

    def close(self) -> None:
        self.lock.release()

    def __enter__(self) -> "RunWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_meta(path: Path, meta: RunMeta | dict) -> None:
    """meta.json alone (a dict is read as ``RunMeta`` first, so what is written is a valid record)."""
    meta = meta if isinstance(meta, RunMeta) else RunMeta.from_dict(dict(meta))
    write_atomic(Path(path), meta.to_json())
