"""The history package's import rules, read from the source: rendering imports no measuring code, and
the run record is read in one place (so the run-record package can replace ``bench.runs`` there alone)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "bench" / "history"
MEASURING = ("bench.runs", "bench.analysis.stats", "bench.case.cases", "bench.instruments.timing", "bench.engine.runner", "bench.instruments.env", "bench.limits.ceiling",
             "bench.instruments.clocks", "bench.model.phases", "bench.gate", "torch", "mlp")


def imports_of(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved against bench.history)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ["bench", "history"][: 2 - node.level + 1] if node.level else []
            out.add(".".join(base + ([node.module] if node.module else [])))
    return out


def test_the_reader_resolves_relative_imports():
    assert "bench.runs" in imports_of(PACKAGE / "ingest.py")
    assert "bench.history.detect" in imports_of(PACKAGE / "render.py")


def test_rendering_imports_no_measuring_code():
    bad = {m for m in imports_of(PACKAGE / "render.py") if m.startswith(MEASURING)}
    assert not bad and imports_of(PACKAGE / "render.py") & {"bench.history.detect"}, bad


def test_the_run_record_is_read_in_one_module():
    """ingest.py reads run folders; another module may only ask the output guard (bench.runs.outputs) about a path."""
    runs = {p.name: {m for m in imports_of(p) if m == "bench.runs" or m.startswith("bench.runs.")}
            for p in PACKAGE.glob("*.py")}
    assert {name for name, modules in runs.items() if modules - {"bench.runs.outputs"}} == {"ingest.py"}


def test_no_history_module_imports_torch_or_the_cli():
    for path in PACKAGE.glob("*.py"):
        assert not {m for m in imports_of(path) if m.startswith(("torch", "bench.cli"))}, path.name
