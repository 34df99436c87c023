"""The architecture's import rules, read from the source with ``ast`` (no module is imported).

The rules apply to folders, by path (docs/layout.md): a new module falls under its folder's rule with no edit here,
and a test fails when a module lies in no folder the rules know.

Every ``import`` counts, at the top of a module or inside a function, because a lazy
import still ties two modules together (the old cycle through cli.py was made of lazy ones).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mlp", "bench", "tools")
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


# bench's own top level: the public entry points and what every module may share (at most 12).
TOP_LEVEL = ("bench", "bench.__main__", "bench.api", "bench.pytest_plugin", "bench.errors", "bench.format", "bench.cli")
MAX_TOP_LEVEL = 12
RENDERING = ("matplotlib", "tabulate", "plotly")


@dataclass(frozen=True)
class Rule:
    """What the modules of one folder may import: ``only`` (when set) lists every project prefix allowed besides the
    folder itself; ``never`` lists forbidden prefixes; ``no_torch``/``no_rendering`` forbid those packages."""
    role: str
    only: tuple[str, ...] | None = None
    never: tuple[str, ...] = ()
    no_torch: bool = False
    no_rendering: bool = False


COMMANDS = "bench.commands"
COMMAND_INTERNALS = ("bench.gate", "bench.ddp", "bench.profile", "bench.loader", "bench.history")
RULES = {
    "bench.commands": Rule("one module per sub-command; only bench.cli (and tools/) imports it"),
    "bench.model": Rule("the case as plain data", only=("bench.errors", "bench.format"), no_torch=True,
                        no_rendering=True),
    "bench.runs": Rule("the run record", only=("bench.model", "bench.errors", "bench.format"), no_torch=True,
                       no_rendering=True),
    "bench.analysis": Rule("statistics and the noise model", only=("bench.model", "bench.runs", "bench.errors",
                                                                   "bench.format"), no_torch=True, no_rendering=True),
    "bench.case": Rule("a runnable case", never=("bench.engine", "bench.limits", "bench.report", "bench.instruments",
                                                  COMMANDS) + COMMAND_INTERNALS),
    "bench.instruments": Rule("clocks, timing, counters, telemetry, env", never=(
        "bench.engine", "bench.limits", "bench.report", COMMANDS) + COMMAND_INTERNALS),
    "bench.limits": Rule("the measured limits", never=("bench.engine", "bench.report", COMMANDS) + COMMAND_INTERNALS),
    "bench.engine": Rule("the sweep", never=("bench.report", COMMANDS) + COMMAND_INTERNALS),
    "bench.report": Rule("renders run folders; never measures", only=("bench.model", "bench.runs", "bench.analysis",
                                                                     "bench.format", "bench.errors"), no_torch=True),
    "bench.gate": Rule("the gate's internals", never=("bench.report", "bench.engine", COMMANDS)),
    "bench.ddp": Rule("the DDP internals", never=("bench.report", COMMANDS)),
    "bench.profile": Rule("the profiler's internals", never=("bench.report", "bench.engine", COMMANDS)),
    "bench.loader": Rule("the DataLoader loop's internals", never=("bench.report", "bench.engine", COMMANDS)),
    "bench.history": Rule("the history database", never=("bench.instruments", "bench.engine", "bench.limits",
                                                          "bench.case", COMMANDS)),
    "mlp": Rule("the networks and the step", only=(), ),
    "tools": Rule("checkout-only code (not in the wheel)"),
}
# Loaded by path inside a gate worker next to another tree: the project imports they may make. The worker
# imports the *tree under test's* mlp and bench.case / bench.instruments (absolute, on purpose, via
# tree_module: new layout first, then the old); counters.py only bench.model.phases, relatively, so that the
# worker's private package gives it the measuring tree's copy.
INSTRUMENTS_ALLOWED = {
    "bench.instruments.clocks": set(), "bench.model.phases": set(), "bench.gate.worker": {"mlp"},
    "bench.instruments.counters": {"bench.model.phases", "mlp"},
}


def _rule_of(name: str) -> str | None:
    """The folder rule that covers module ``name`` (the longest matching prefix), or None."""
    matches = [prefix for prefix in RULES if _inside(name, (prefix,))]
    return max(matches, key=len) if matches else None


def _violations(graph: dict[str, set[str]], externals: dict[str, set[str]]) -> list[str]:
    bad = []
    for name, deps in graph.items():
        key = _rule_of(name)
        if key is None:
            continue
        rule = RULES[key]
        for dep in deps:
            if _inside(dep, (key,)):
                continue
            if rule.only is not None and not _inside(dep, rule.only):
                bad.append(f"{name} imports {dep} ({key}/ imports only {', '.join(rule.only) or 'itself'})")
            if _inside(dep, rule.never):
                bad.append(f"{name} imports {dep} ({key}/ never imports it)")
            if _inside(dep, ("tools",)) and not _inside(name, ("tools",)):
                bad.append(f"{name} imports {dep} (nothing outside tools/ imports tools/)")
            if _inside(dep, (COMMANDS,)) and name != "bench.cli" and key not in (COMMANDS, "tools"):
                bad.append(f"{name} imports {dep} (only bench.cli imports bench.commands)")
        ext = externals.get(name, set())
        if rule.no_torch and "torch" in ext:
            bad.append(f"{name} imports torch ({key}/ imports no torch)")
        if rule.no_rendering and ext & set(RENDERING):
            bad.append(f"{name} imports {sorted(ext & set(RENDERING))} ({key}/ renders nothing)")
    return sorted(bad)


def test_the_reader_sees_real_modules():
    graph = _graph()
    assert {"bench.cli", "bench.report.markdown", "bench.commands.check", "mlp.train"} <= set(graph)
    assert "bench.errors" in graph["bench.cli"] and "bench.model.phases" in graph["bench.instruments.counters"]


def test_the_import_graph_has_no_cycle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_lies_in_a_folder_with_a_rule():
    unruled = [name for name in _modules() if _rule_of(name) is None and name not in TOP_LEVEL]
    assert unruled == [], f"modules outside every folder rule (add the folder to RULES, or move them): {unruled}"


def test_bench_has_at_most_twelve_top_level_modules():
    top = sorted(p.stem for p in (REPO / "bench").glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top
    assert {f"bench.{stem}" for stem in top} | {"bench"} <= set(TOP_LEVEL) | {"bench.__init__"}, top


def test_each_folder_keeps_its_rule():
    modules = _modules()
    known = set(modules)
    externals = {name: _imports(name, path, known, external=True) for name, path in modules.items()}
    assert _violations(_graph(), externals) == []


def test_the_folder_rules_see_violations():
    graph = {"bench.report.new_page": {"bench.instruments.timing", "bench.runs"},
             "bench.model.new_field": {"bench.case.cases"},
             "bench.engine.new_pass": {"bench.commands.run"},
             "bench.limits.new_limit": {"tools.gpuref.plan", "bench.instruments.clocks"},
             "bench.analysis.new_stat": set()}
    externals = {"bench.analysis.new_stat": {"torch", "numpy"}, "bench.model.new_field": {"matplotlib"}}
    bad = _violations(graph, externals)
    assert bad == sorted([
        "bench.analysis.new_stat imports torch (bench.analysis/ imports no torch)",
        "bench.engine.new_pass imports bench.commands.run (bench.engine/ never imports it)",
        "bench.engine.new_pass imports bench.commands.run (only bench.cli imports bench.commands)",
        "bench.limits.new_limit imports tools.gpuref.plan (nothing outside tools/ imports tools/)",
        "bench.model.new_field imports ['matplotlib'] (bench.model/ renders nothing)",
        "bench.model.new_field imports bench.case.cases (bench.model/ imports only bench.errors, bench.format)",
        "bench.report.new_page imports bench.instruments.timing (bench.report/ imports only bench.model, "
        "bench.runs, bench.analysis, bench.format, bench.errors)",
    ])


def test_nothing_imports_the_cli():
    importers = {name for name, deps in _graph().items() if "bench.cli" in deps}
    assert importers <= {"bench.__main__"}, importers


def test_the_gate_instruments_import_only_what_a_worker_can_load_by_path():
    graph = _graph()
    for name, allowed in INSTRUMENTS_ALLOWED.items():
        assert graph[name] <= allowed, (name, graph[name] - allowed)


def test_no_private_name_is_imported_across_modules():
    bad = [line for name, path in _modules().items() for line in _private_imports(name, path)]
    assert not bad, bad


def test_the_private_rule_sees_a_violation(tmp_path):
    module = tmp_path / "scaling.py"
    module.write_text("from .markdown import _ms, PLOTS_DIR\nfrom ..format import ms as _ms2\n"
                      "from __future__ import annotations\n")
    assert _private_imports("bench.report.scaling", module) == ["bench.report.scaling: from bench.report.markdown "
                                                                "import _ms"]


def test_the_wheel_carries_no_checkout_only_code():
    """tools/ (the GPU kit, experiments) needs the checkout; the wheel packs bench* and mlp* only."""
    text = (REPO / "pyproject.toml").read_text()
    assert re.search(r'include = \["bench\*", "mlp\*"\]', text)
    assert not list((REPO / "bench").rglob("*.sh"))


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


def test_the_shared_top_level_modules_stay_light():
    """errors and format are imported by every folder: they import no project module and no torch."""
    modules = _modules()
    known = set(modules)
    for name in ("bench.errors", "bench.format"):
        assert _imports(name, modules[name], known) == set(), name
        assert "torch" not in _imports(name, modules[name], known, external=True), name


def test_docs_layout_lists_exactly_the_modules_on_disk():
    """docs/layout.md is the one description of the tree: it names every module, and nothing that is gone."""
    text = (REPO / "docs" / "layout.md").read_text()
    listed = set(re.findall(r"^- `((?:bench|mlp|tools)/[\w/]+\.py)`", text, flags=re.M))
    on_disk = {str(p.relative_to(REPO)) for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")
               if p.name != "__init__.py"}
    assert sorted(on_disk - listed) == [], "modules docs/layout.md does not list"
    assert sorted(listed - on_disk) == [], "docs/layout.md lists modules that are gone"
