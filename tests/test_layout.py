"""The architecture's import rules, read from the source with ``ast`` (no module is imported).

Every ``import`` counts, at the top of a module or inside a function, because a lazy
import still ties two modules together (the old cycle through cli.py was made of lazy ones).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mlp", "bench")
# The measuring side: what times, runs and stores cases, and the gate's instruments.
MEASUREMENT = ("bench.cases", "bench.case_fields", "bench.sweep_file", "bench.timing", "bench.clocks", "bench.phases", "bench.runner",
               "bench.ceiling", "bench.headroom", "bench.env", "bench.runs", "bench.runs.columns", "bench.runs.folder",
               "bench.runs.meta", "bench.runs.outputs", "bench.runs.reader", "bench.runs.status", "bench.runs.writer",
               "bench.resume",
               "bench.stats", "bench.errors", "bench.flags", "bench.format", "bench.crosscheck",
               "bench.gate.worker", "bench.gate.counters", "bench.gate.ab", "bench.gate.stats",
               "bench.loader.measure", "bench.loader.tables", "bench.bandwidth", "bench.dispatch",
               "bench.peak", "bench.core_clock", "bench.speed_of_light", "bench.plugin", "bench.keyvalues",
               "bench.case_accounting", "bench.api", "bench.noise", "bench.numerics", "bench.pytest_plugin")
# Reporting reads run folders (bench.runs) and formats (bench.format); it never imports a measuring wing,
# so that a report renders on a machine without the measuring code's dependencies and cannot change a number.
REPORTING = ("bench.report",)
MEASURING_WINGS = ("bench.cases", "bench.timing", "bench.clocks", "bench.runner", "bench.ceiling", "bench.headroom",
                   "bench.crosscheck", "bench.ddp", "bench.gate", "bench.profile", "bench.loader", "bench.bandwidth",
                   "bench.dispatch", "bench.peak", "bench.core_clock", "bench.speed_of_light", "bench.numerics", "mlp")
# Shared by both sides, so they stay light: no torch, and nothing of the measuring wings.
LIGHT = ("bench.runs", "bench.case_fields", "bench.sweep_file", "bench.format", "bench.errors", "bench.phases",
         "bench.webpage", "bench.keyvalues")
ENTRY_POINTS = ("bench.__main__",)  # `python -m bench` runs the CLI
# Loaded by path inside a gate worker next to another tree: the project imports they may make. The worker
# imports the *tree under test's* mlp, bench.cases and bench.timing (absolute, on purpose); counters.py only
# bench.phases, relatively, so that the worker's private package gives it the measuring tree's copy.
INSTRUMENTS_ALLOWED = {
    "bench.clocks": set(), "bench.phases": set(), "bench.gate.worker": {"bench.cases", "bench.timing", "bench.plugin", "mlp"},
    "bench.gate.counters": {"bench.phases", "mlp"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _from_module(name: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module of ``from ... import``, relative imports resolved."""
    if not node.level:
        return node.module or ""
    base = name.split(".")[: len(name.split(".")) - node.level + (1 if path.name == "__init__.py" else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str, path: Path, known: set[str], external: bool = False) -> set[str]:
    """The project modules ``name`` imports (relative imports resolved; ``from pkg import mod`` is the module).

    ``external=True``: the top-level names of every module it imports (``torch``, ``pandas``, ``bench``).
    """
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _from_module(name, path, node)
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        if external:
            out |= {t.split(".")[0] for t in targets}
        else:
            out |= {t for t in targets if t.split(".")[0] in PACKAGES and t in known}
    return out - {name}


def _private_imports(name: str, path: Path) -> list[str]:
    """``from module import _name`` where module is another project module (``import x as _x`` is fine)."""
    bad = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module != "__future__":
            module = _from_module(name, path, node)
            if module.split(".")[0] in PACKAGES and module != name:
                bad += [f"{name}: from {module} import {alias.name}" for alias in node.names
                        if alias.name.startswith("_") and not alias.name.startswith("__")]
    return bad


def _inside(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(name, path, known) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, or None (depth-first search with three colours)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_reader_sees_real_modules():
    graph = _graph()
    assert {"bench.cli", "bench.report.markdown", "bench.gate.command", "mlp.train"} <= set(graph)
    assert "bench.errors" in graph["bench.cli"] and "bench.phases" in graph["bench.gate.counters"]


def test_the_import_graph_has_no_cycle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_measurement_never_imports_reporting_or_the_profiler():
    graph = _graph()
    for name in MEASUREMENT:
        bad = {m for m in graph[name] if m.startswith(("bench.report", "bench.profile", "bench.gate.report"))}
        assert not bad, (name, bad)


def test_nothing_imports_the_cli():
    importers = {name for name, deps in _graph().items() if "bench.cli" in deps}
    assert importers <= set(ENTRY_POINTS), importers


def test_mlp_never_imports_bench():
    graph = _graph()
    assert not {(n, m) for n, deps in graph.items() if n.startswith("mlp") for m in deps if m.startswith("bench")}


def test_the_gate_instruments_import_only_what_a_worker_can_load_by_path():
    graph = _graph()
    for name, allowed in INSTRUMENTS_ALLOWED.items():
        assert graph[name] <= allowed, (name, graph[name] - allowed)


def test_reporting_never_imports_a_measuring_wing():
    graph = _graph()
    bad = {(n, m) for n, deps in graph.items() if _inside(n, REPORTING) for m in deps if _inside(m, MEASURING_WINGS)}
    assert not bad, sorted(bad)


def test_the_wing_rule_sees_a_violation():
    graph = {"bench.report.x": {"bench.ddp.merge", "bench.runs"}, "bench.runs": set()}
    bad = {(n, m) for n, deps in graph.items() if _inside(n, REPORTING) for m in deps if _inside(m, MEASURING_WINGS)}
    assert bad == {("bench.report.x", "bench.ddp.merge")}


def test_no_private_name_is_imported_across_modules():
    bad = [line for name, path in _modules().items() for line in _private_imports(name, path)]
    assert not bad, bad


def test_the_private_rule_sees_a_violation(tmp_path):
    module = tmp_path / "scaling.py"
    module.write_text("from .markdown import _ms, PLOTS_DIR\nfrom ..format import ms as _ms2\n"
                      "from __future__ import annotations\n")
    assert _private_imports("bench.report.scaling", module) == ["bench.report.scaling: from bench.report.markdown "
                                                                "import _ms"]


def test_the_run_record_and_the_formatter_stay_light():
    """Readers (report, compare, show) load no torch and no measuring code through the shared modules."""
    modules = _modules()
    known = set(modules)
    for name in (n for n in modules if _inside(n, LIGHT)):
        external = _imports(name, modules[name], known, external=True)
        assert "torch" not in external, name
        assert not {m for m in _imports(name, modules[name], known) if _inside(m, MEASURING_WINGS)}, name


# --------------------------------------------------------------------------- the tests' own rules

CUDA_SKIP_CONDITION = re.compile(r"not torch\.cuda\.is_available\(\)|torch\.cuda\.device_count\(\) <")


def _cuda_skips_without_cuda_mark(text: str, name: str) -> list[str]:
    """Tests (functions, or pytest.param marks) skipped without CUDA that do not also carry ``pytest.mark.cuda``."""
    tree = ast.parse(text)
    skip_aliases = {target.id for node in tree.body if isinstance(node, ast.Assign)
                    and CUDA_SKIP_CONDITION.search(ast.unparse(node.value)) for target in node.targets
                    if isinstance(target, ast.Name)}

    def is_skip(expr: ast.expr) -> bool:
        text = ast.unparse(expr)
        return bool(CUDA_SKIP_CONDITION.search(text)) or text in skip_aliases

    def has_mark(exprs) -> bool:
        return any(ast.unparse(e) == "pytest.mark.cuda" for e in exprs)

    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
            if any(is_skip(d) for d in node.decorator_list) and not has_mark(node.decorator_list):
                missing.append(f"{name}::{node.name}")
        elif isinstance(node, (ast.List, ast.Tuple)) and any(is_skip(e) for e in node.elts) \
                and not has_mark(node.elts):
            missing.append(f"{name}:{node.lineno} (marks list)")
    return missing


def test_every_cuda_test_carries_the_cuda_marker():
    """`pytest -m cuda` on a GPU machine must select every test that needs CUDA."""
    files = sorted((REPO / "tests").rglob("test_*.py"))
    assert [m for f in files for m in _cuda_skips_without_cuda_mark(f.read_text(), f.name)] == []
    unmarked = "import pytest, torch\nneeds = pytest.mark.skipif(not torch.cuda.is_available(), reason='x')\n" \
               "@needs\ndef test_x(): pass\nP = [pytest.param(1, marks=[needs])]\n"
    assert _cuda_skips_without_cuda_mark(unmarked, "t.py") == ["t.py::test_x", "t.py:5 (marks list)"]
