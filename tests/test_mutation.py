"""tests/mutation.py (`make mutation`): its module -> tests table names real files and tests, bad input is one line.

The table in pyproject.toml is the one place to re-point when bench/ is re-laid out; a stale path there
would make mutmut mutate nothing or run no test, so it is checked here, against the files on disk.
"""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest

from tests.mutation import ROOT, changed_modules, equivalents, function_of, main, module_tests, not_gated, one_line, tally


def _test_names(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}


def test_every_module_and_test_in_the_table_exists():
    table = module_tests()
    assert "bench/analysis/stats.py" in table and "bench/analysis/interleaved.py" in table
    for module, tests in table.items():
        assert (ROOT / module).is_file(), module
        assert tests, f"{module} has no tests"
        for test in tests:
            file, _, name = test.partition("::")
            assert (ROOT / file).is_file(), test
            assert not name or name in _test_names(ROOT / file), test


@pytest.mark.parametrize("argv, message", [
    ([], "error: name the modules to mutate"),
    (["bench/nope.py"], "error: bench/nope.py not in [tool.mlpbench.mutation] of pyproject.toml"),
])
def test_bad_input_is_one_line_and_exit_code_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


# ---- the survivors' one-line form, the equivalence marks, the CI selection ----

DIFF = """--- bench/analysis/stats.py
+++ bench/analysis/stats.py
@@ -1,4 +1,4 @@
 def summarize(samples):
-    iqr = float(q3  - q1)
+    iqr = float(q3 + q1)
     return iqr"""


def test_a_mutant_is_one_line_named_by_its_function():
    assert one_line("bench.analysis.stats.x_summarize__mutmut_36", DIFF) == "summarize: iqr = float(q3 - q1) -> iqr = float(q3 + q1)"
    assert function_of("bench.analysis.stats.xǁSummaryǁas_dict__mutmut_12") == "Summary.as_dict"
    assert function_of("bench.analysis.interleaved.x_compare_samples__mutmut_7") == "compare_samples"
    removed = "--- a\n+++ a\n@@ -1,2 +1,1 @@\n def f():\n-    x = 1\n"
    assert one_line("m.x_f__mutmut_1", removed) == "f: x = 1 -> (removed)"


def test_marked_mutants_are_equivalent_the_rest_survive_and_stale_marks_are_named():
    result = {"statuses": {"a": "killed", "b": "timeout", "c": "survived", "d": "survived", "e": "no tests"},
              "not_killed": [{"name": "c", "status": "survived", "line": "f: x -> y"},
                             {"name": "d", "status": "survived", "line": "f: x -> z"},
                             {"name": "e", "status": "no tests", "line": "g: p -> q"}]}
    counts, survivors, stale = tally("m.py", result, {"f: x -> y": "why", "h: gone -> away": "why"})
    assert counts == {"mutants": 5, "killed": 2, "timeout": 1, "equivalent": 1, "survived": 1, "no tests": 1}
    assert [m["name"] for m in survivors] == ["d", "e"] and stale == ["h: gone -> away"]


def test_every_equivalence_mark_names_a_module_of_the_table_and_says_why_in_one_line():
    table = module_tests()
    for module, marks in equivalents().items():
        assert module in table, module
        for line, why in marks.items():
            assert re.fullmatch(r"[\w.]+: .+ -> .+", line), line
            assert why.strip() and "\n" not in why, line


def test_ci_picks_the_modules_whose_file_or_tests_the_commit_changed(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    table = {"bench/a.py": ["tests/test_a.py::test_x"], "bench/b.py": ["tests/test_b.py"], "bench/c.py": ["tests/t.py"]}
    for path in ("bench/a.py", "bench/b.py", "bench/c.py", "tests/test_a.py", "tests/test_b.py", "tests/t.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("x = 1\n")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one", "--allow-empty")
    assert changed_modules("HEAD~1", table, tmp_path) is None  # no parent: a shallow clone says so
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "two")
    (tmp_path / "bench/b.py").write_text("x = 2\n")
    (tmp_path / "tests/test_a.py").write_text("x = 2\n")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "three")
    assert changed_modules("HEAD~1", table, tmp_path) == ["bench/a.py", "bench/b.py"]


def test_modules_not_gated_yet_are_modules_of_the_table():
    assert set(not_gated()) <= set(module_tests())
