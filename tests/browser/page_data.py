"""The runs the browser tests render (a module of its own: `import conftest` is ambiguous across test folders)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

REPORT_CONFTEST = Path(__file__).resolve().parents[1] / "bench" / "report" / "conftest.py"


@functools.lru_cache(maxsize=None)
def _report_conftest():
    spec = importlib.util.spec_from_file_location("mlpbench_report_runs", REPORT_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def report_runs() -> tuple[Path, Path]:
    """The reporting tests' shared runs: a real tiny CPU sweep and a synthetic GPU run made from it."""
    module = _report_conftest()
    return module.cpu_run_dir(), module.gpu_run_dir()


def slowed_pair(run_dir: Path, root: Path, factor: float, middle: bool = False) -> tuple[Path, Path, str]:
    """The reporting tests' A/B pair: ``run_dir`` and a copy with one case ``factor`` x slower (conftest.py)."""
    return _report_conftest().slowed_pair(run_dir, root, factor, middle)


def many_series_run(run_dir: Path, root: Path, copies: int = 3) -> Path:
    """The reporting tests' run with more throughput series than a 10-colour palette (conftest.py)."""
    return _report_conftest().many_series_run(run_dir, root, copies)
