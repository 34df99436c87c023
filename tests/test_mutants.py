"""tests/mutants.py, the campaign's registry: every target test exists and every mutant can be applied.

The campaign itself (``python -m tests.mutants``, its own CI step) runs each mutant's tests in a
fresh process; these checks are cheap and catch a refactor that moves a mutant's target early.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import mutants

REPO = Path(__file__).resolve().parents[1]


def _test_functions(path: Path) -> set[str]:
    return {n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.FunctionDef)}


@pytest.mark.parametrize("mutant", list(mutants.MUTANTS.values()), ids=list(mutants.MUTANTS))
def test_each_mutant_names_real_tests_and_applies(mutant, monkeypatch):
    assert mutant.targets and mutant.bug
    for target in mutant.targets:
        file, _, function = target.partition("::")
        assert function in _test_functions(REPO / file), target
    mutants.apply(mutant.name, monkeypatch)  # raises when what it patches has moved


def test_a_patch_of_nothing_is_an_error(monkeypatch):
    with pytest.raises(RuntimeError, match="bound nowhere"):
        mutants.replace_everywhere(monkeypatch, object(), None)
    with pytest.raises(ValueError, match="unknown mutant 'nope'"):
        mutants.apply("nope", monkeypatch)


def test_the_kill_rate_leaves_out_what_needs_cuda():
    outcomes = [mutants.Outcome("a", "killed", 1.0), mutants.Outcome("b", "survived", 1.0),
                mutants.Outcome("c", "needs CUDA", 0.0)]
    assert mutants.kill_rate(outcomes) == (1, 2)
