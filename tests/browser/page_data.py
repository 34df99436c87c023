"""The runs the browser tests render (a module of its own: `import conftest` is ambiguous across test folders)."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

REPORT_CONFTEST = Path(__file__).resolve().parents[1] / "bench" / "report" / "conftest.py"


@functools.lru_cache(maxsize=None)
def report_runs() -> tuple[Path, Path]:
    """The reporting tests' shared runs: a real tiny CPU sweep and a synthetic GPU run made from it."""
    spec = importlib.util.spec_from_file_location("mlpbench_report_runs", REPORT_CONFTEST)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.cpu_run_dir(), module.gpu_run_dir()
