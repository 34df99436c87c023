"""tools/ (checkout-only code: the GPU kit, the experiments behind results/) imports: a smoke test per module.

The experiments ran once and wrote the data under results/; nothing runs them in CI. Without this test, a rename
in bench/ breaks them unseen (results/baselines/experiments/3-instructions/native_time.py imported a module that
no longer existed for months). results/ itself holds no code.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = sorted(p for p in (REPO / "tools").rglob("*.py") if p.name != "__main__.py")


def _name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_tools_has_the_experiments_and_the_kit():
    names = {_name(p) for p in TOOLS}
    assert {"tools.gpuref.command", "tools.experiments.yourchange_eval", "tools.experiments.noise_eval.analyse"} <= names


@pytest.mark.parametrize("module", [_name(p) for p in TOOLS])
def test_each_tool_imports(module):
    importlib.import_module(module)


def test_results_holds_no_code():
    code = [str(p.relative_to(REPO)) for p in (REPO / "results").rglob("*")
            if p.suffix in (".py", ".sh") and ".model_source" not in p.parts]
    assert code == []
