"""Results store: one folder per run with samples.csv, summary.csv and meta.json, written atomically.

Every write goes to a temporary file in the same folder and is renamed over
the old one, so a crash or Ctrl-C leaves the previous complete file readable.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

RUNS_DIR = Path("results/runs")
SAMPLES_CSV, SUMMARY_CSV, META_JSON = "samples.csv", "summary.csv", "meta.json"
# summary.csv's first columns: the fields of bench.cases.Case, in order, so any row re-runs exactly.
# Declared here, in the run-folder format, so that readers need no torch; a test checks the dataclass.
CASE_COLUMNS = ("network", "width", "depth", "in_features", "out_features", "batch", "activation", "device",
                "dtype", "compile", "optimizer", "loss", "threads", "world_size", "backend", "scaling",
                "bucket_cap_mb")
# Values of the data-parallel fields in runs written before they existed (bench.cases' defaults; a test checks).
PARALLEL_DEFAULTS = {"world_size": 1, "backend": "none", "scaling": "none", "bucket_cap_mb": 0.0}


def new_run_dir(root: Path = RUNS_DIR, preset: str = "custom") -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = root / f"{stamp}-{preset}"
    suffix = 1
    while path.exists():
        suffix += 1
        path = root / f"{stamp}-{preset}-{suffix}"
    return path


def prepare_run_dir(path: Path) -> None:
    """Create ``path`` (and its parents) and prove that a file can be written in it; raises OSError.

    Called before anything is measured, so that an unwritable place is a usage error at
    once, not an error after the first case.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=path):
        pass


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(path: Path, frame: pd.DataFrame) -> None:
    write_atomic(path, frame.to_csv(index=False))


def write_meta(path: Path, meta: dict) -> None:
    write_atomic(path, json.dumps(meta, indent=2, sort_keys=True, default=str) + "\n")


@dataclass
class Run:
    """A run folder read back: the summary (one row per case x phase), raw samples and metadata."""

    path: Path
    summary: pd.DataFrame
    samples: pd.DataFrame
    meta: dict


def is_run_dir(path: Path) -> bool:
    return (Path(path) / SUMMARY_CSV).is_file()


def load_run(path: str | Path) -> Run:
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no run folder at {path}")
    if not is_run_dir(path):
        raise FileNotFoundError(f"{path} is not a run folder (no {SUMMARY_CSV})")
    summary = pd.read_csv(path / SUMMARY_CSV, keep_default_na=False, na_values=[""])
    samples_path = path / SAMPLES_CSV
    samples = pd.read_csv(samples_path) if samples_path.is_file() else pd.DataFrame()
    meta_path = path / META_JSON
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return Run(path, summary, samples, meta)


def latest_run(root: Path = RUNS_DIR) -> Path:
    runs = sorted((p for p in Path(root).glob("*") if is_run_dir(p)), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise FileNotFoundError(f"no runs under {root}; run `make bench` first")
    return runs[-1]
