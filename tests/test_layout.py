"""The architecture's import rules, read from the source with ``ast`` (no module is imported).

Every ``import`` counts, at the top of a module or inside a function, because a lazy
import still ties two modules together (the old cycle through cli.py was made of lazy ones).
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mlp", "bench")
# The measuring side: what times, runs and stores cases, and the gate's instruments.
MEASUREMENT = ("bench.cases", "bench.timing", "bench.clocks", "bench.phases", "bench.runner", "bench.ceiling",
               "bench.env", "bench.store", "bench.stats", "bench.errors", "bench.flags", "bench.crosscheck",
               "bench.gate.worker", "bench.gate.counters", "bench.gate.ab", "bench.gate.stats", "bench.bandwidth",
               "bench.dispatch", "bench.peak", "bench.speed_of_light")
ENTRY_POINTS = ("bench.__main__",)  # `python -m bench` runs the CLI
# Loaded by path inside a gate worker next to another tree: the project imports they may make. The worker
# imports the *tree under test's* mlp, bench.cases and bench.timing (absolute, on purpose); counters.py only
# bench.phases, relatively, so that the worker's private package gives it the measuring tree's copy.
INSTRUMENTS_ALLOWED = {
    "bench.clocks": set(), "bench.phases": set(), "bench.gate.worker": {"bench.cases", "bench.timing", "mlp"},
    "bench.gate.counters": {"bench.phases", "mlp"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (relative imports resolved; ``from pkg import mod`` is the module)."""
    is_package = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module
                       for alias in node.names]
        else:
            continue
        out |= {t for t in targets if t.split(".")[0] in PACKAGES and t in known}
    return out - {name}


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
