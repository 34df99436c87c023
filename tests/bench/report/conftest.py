"""Shared runs for the reporting tests: one real tiny CPU sweep and a synthetic "GPU" run made from it.

One tiny eager CPU sweep is measured once per test session (``cpu_run_dir``) and shared by
test_markdown, test_plots and test_compare. A second "GPU" run is *synthesised* from it
(``gpu_run_dir``: device cuda, times scaled by known factors, a different fingerprint) so the
merge / speedup / crossover paths are tested on a machine without CUDA. Its numbers are
invented for the test and never leave the temporary folder.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from bench import runs as run_record
from bench.report.markdown import write_report

# Synthetic GPU: slower than the CPU at the smallest batch, faster above it -> a known crossover.
GPU_FACTOR_SMALL_BATCH = 2.0  # GPU time = 2 x CPU time at batch 4 (speedup 0.5)
GPU_FACTOR_LARGE_BATCH = 0.25  # GPU time = CPU time / 4 at batch 16 (speedup 4)
SMALL_BATCH, LARGE_BATCH = 4, 16
EXPECTED_CROSSOVER = SMALL_BATCH * 4 ** (1 / 3)  # log-linear between (4, 0.5) and (16, 4): 4 * 4**(1/3)
SYNTHETIC_COMPILE_S = 1.0
SYNTHETIC_COMPILE_FACTOR = 0.5  # compiled step takes half the eager time


def _tiny_cases():
    from bench.case.cases import Case

    relu = [Case(width=w, depth=1, batch=b) for w in (16, 32) for b in (SMALL_BATCH, LARGE_BATCH)]
    return relu + [Case(width=16, depth=1, batch=LARGE_BATCH, activation="gelu"), Case(network="teaching", batch=4)]


def _scratch(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.lru_cache(maxsize=None)
def cpu_run_dir() -> Path:
    """A real run folder: six tiny eager CPU cases, measured once per session (a few seconds)."""
    from bench.engine.runner import run_sweep
    from bench.instruments.timing import TimingConfig

    out = _scratch("mlpbench-cpu-run-") / "cpu-run"
    run_sweep(_tiny_cases(), out, TimingConfig(repeats=3, warmup_s=0.02, min_block_s=0.002),
              preset="test", progress=False)
    return out


def _gpu_factor(batch: int) -> float:
    return GPU_FACTOR_SMALL_BATCH if batch == SMALL_BATCH else GPU_FACTOR_LARGE_BATCH


TIME_COLUMNS = ("median_s", "iqr_s", "min_s", "max_s", "mean_s", "ci_low_s", "ci_high_s")


@functools.lru_cache(maxsize=None)
def gpu_run_dir() -> Path:
    """A synthetic CUDA run of the same cases (plus compiled copies), written next to nothing real."""
    from bench.case.cases import Case

    run = run_record.load_run(cpu_run_dir())
    summary, samples = run.summary.copy(), run.samples.copy()
    summary = summary[summary["network"] == "uniform"]  # the teaching net is "missing" on the GPU
    new_ids = {}
    for i, row in summary.iterrows():
        case = Case.from_row({**row.to_dict(), "device": "cuda"})
        new_ids[row["case_id"]] = case.case_id
        summary.loc[i, ["device", "case_id", "label"]] = ["cuda", case.case_id, case.label]
        factor = _gpu_factor(int(row["batch"]))
        for col in TIME_COLUMNS:
            summary.loc[i, col] = row[col] * factor
        summary.loc[i, "samples_per_s"] = row["samples_per_s"] / factor
    samples = samples[samples["case_id"].isin(new_ids)].copy()
    batch_of = dict(zip(run.summary["case_id"], run.summary["batch"]))
    samples["seconds"] *= [_gpu_factor(int(batch_of[c])) for c in samples["case_id"]]
    samples["case_id"] = samples["case_id"].map(new_ids)
    compiled = _compiled_copies(summary)
    compiled_samples = _compiled_samples(samples, summary, compiled)
    env = {**run.meta["env"], "device_name": "Synthetic GPU (test)", "torch": "2.11.0", "cuda": "12.4",
           "hostname": "gpu-host"}
    meta = {**run.meta.to_dict(), "env": env, "preset": "synthetic",
            "ceilings": {"cuda/fp32": {"device": "cuda", "dtype": "fp32", "device_name": "Synthetic GPU (test)",
                                       "measured_tflops": 50.0, "matmul_size": 8192, "datasheet_tflops": 67.0,
                                       "datasheet_source": "test"}}}
    out = _scratch("mlpbench-gpu-run-") / "gpu-run"
    run_record.write_table(out / run_record.SUMMARY_CSV, pd.concat([summary, compiled], ignore_index=True))
    run_record.write_table(out / run_record.SAMPLES_CSV, pd.concat([samples, compiled_samples], ignore_index=True))
    run_record.write_meta(out / run_record.META_JSON, meta)
    return out


def _compiled_copies(summary: pd.DataFrame) -> pd.DataFrame:
    from bench.case.cases import Case

    compiled = summary[summary["activation"] == "relu"].copy()
    for i, row in compiled.iterrows():
        case = Case.from_row({**row.to_dict(), "compile": "default"})
        compiled.loc[i, ["compile", "case_id", "label"]] = ["default", case.case_id, case.label]
        for col in TIME_COLUMNS:
            compiled.loc[i, col] = row[col] * SYNTHETIC_COMPILE_FACTOR
    compiled["compile_s"] = SYNTHETIC_COMPILE_S
    return compiled


def _compiled_samples(samples: pd.DataFrame, eager: pd.DataFrame, compiled: pd.DataFrame) -> pd.DataFrame:
    mapping = dict(zip(eager.loc[compiled.index, "case_id"], compiled["case_id"]))
    out = samples[samples["case_id"].isin(mapping)].copy()
    out["case_id"] = out["case_id"].map(mapping)
    out["seconds"] *= SYNTHETIC_COMPILE_FACTOR
    return out


TIGHT_CI = 0.01  # the pair's within-run intervals, +-1% of each median


def slowed_pair(run_dir: Path, root: Path, factor: float, middle: bool = False) -> tuple[Path, Path, str]:
    """Two copies of ``run_dir`` under ``root`` (A, B), B with one ok case's times (summary and samples) x
    ``factor``: the first step case, or the middle one by median. The tiny sweep's 3 blocks a case vary widely
    on a busy machine (seen in CI and a browser run: a 3x case read B/A 3.0 [1.34, 6.70], inconclusive), so in both
    copies each case's blocks are set to its median x (1 - 1%, 1, 1 + 1%) and its interval to +-1%: the slowed
    case's verdict cannot hinge on the run's own noise. Returns (A, B, its case_id)."""
    a, b = root / "A", root / "B"
    for run in (a, b):
        shutil.copytree(run_dir, run)
        table = pd.read_csv(run / "summary.csv")
        table["ci_low_s"], table["ci_high_s"] = table["median_s"] * (1 - TIGHT_CI), table["median_s"] * (1 + TIGHT_CI)
        table.to_csv(run / "summary.csv", index=False)
        blocks = pd.read_csv(run / "samples.csv")
        middle_of = blocks.groupby(["case_id", "phase"])["seconds"].transform("median")
        blocks["seconds"] = middle_of * (1 + TIGHT_CI * ((blocks["sample"] % 3) - 1))
        blocks.to_csv(run / "samples.csv", index=False)
    summary, samples = pd.read_csv(b / "summary.csv"), pd.read_csv(b / "samples.csv")
    steps = summary[(summary["phase"] == "step") & (summary["status"] == "ok")]
    slowed = (steps.sort_values("median_s").iloc[len(steps) // 2] if middle else steps.iloc[0])["case_id"]
    for column in TIME_COLUMNS:
        summary.loc[summary["case_id"] == slowed, column] *= factor
    samples.loc[samples["case_id"] == slowed, "seconds"] *= factor
    summary.to_csv(b / "summary.csv", index=False)
    samples.to_csv(b / "samples.csv", index=False)
    return a, b, slowed


@functools.lru_cache(maxsize=None)
def cpu_report() -> tuple[Path, list]:
    out = _scratch("mlpbench-cpu-report-")
    report = write_report([run_record.load_run(cpu_run_dir())], out)
    return report.path, report.figures


@functools.lru_cache(maxsize=None)
def merged_report() -> tuple[Path, list]:
    out = _scratch("mlpbench-merged-report-")
    report = write_report([run_record.load_run(cpu_run_dir()), run_record.load_run(gpu_run_dir())], out)
    return report.path, report.figures


@pytest.fixture(scope="session", name="cpu_run_dir")
def _cpu_run_dir_fixture() -> Path:
    return cpu_run_dir()


@pytest.fixture(scope="session", name="gpu_run_dir")
def _gpu_run_dir_fixture() -> Path:
    return gpu_run_dir()


@pytest.fixture(scope="session", name="cpu_report")
def _cpu_report_fixture() -> tuple[Path, list]:
    return cpu_report()


@pytest.fixture(scope="session", name="merged_report")
def _merged_report_fixture() -> tuple[Path, list]:
    return merged_report()


@pytest.fixture(scope="session")
def expected_crossover() -> float:
    return EXPECTED_CROSSOVER


@pytest.fixture(scope="session")
def synthetic_compile() -> tuple[float, float]:
    """(compile seconds, compiled/eager step-time factor) of the synthetic compiled GPU rows."""
    return SYNTHETIC_COMPILE_S, SYNTHETIC_COMPILE_FACTOR


@pytest.fixture(scope="session", name="slowed_pair")
def _slowed_pair_fixture():
    return slowed_pair


def many_series_run(run_dir: Path, root: Path, copies: int = 3) -> Path:
    """A copy of ``run_dir`` whose cases come ``copies`` more times each, pinned to 1..``copies`` threads (a series
    field): the CPU run's 4 throughput series become 4 x (``copies`` + 1), more than tab10 or plotly's 10 colours.
    Each copy's case_id and label are its own; its times are the original's (the colours are under test)."""
    run = root / "many-series"
    shutil.copytree(run_dir, run)
    summary = pd.read_csv(run / "summary.csv")
    copied = [summary.assign(threads=t, case_id=summary["case_id"] + f"-t{t}", label=summary["label"] + f" t{t}")
              for t in range(1, copies + 1)]
    pd.concat([summary, *copied], ignore_index=True).to_csv(run / "summary.csv", index=False)
    return run


@pytest.fixture(scope="session", name="many_series_run")
def _many_series_run_fixture():
    return many_series_run
