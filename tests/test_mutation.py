"""tests/mutation.py (`make mutation`): its module -> tests table names real files and tests, bad input is one line.

The table in pyproject.toml is the one place to re-point when bench/ is re-laid out; a stale path there
would make mutmut mutate nothing or run no test, so it is checked here, against the files on disk.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.mutation import ROOT, main, module_tests


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
