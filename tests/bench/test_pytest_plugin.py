"""The mlp_step fixture's module (a pytest11 entry point) as pytest loads it in every session of a user's.

The fixture itself is tried end to end in tests/test_wheel.py (a throw-away project using the installed wheel).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_loading_the_plugin_imports_nothing_heavy():
    """pytest imports every installed pytest11 plugin at start: this one must not pull in torch or pandas."""
    code = ("import sys, bench.pytest_plugin\n"
            "heavy = sorted(m for m in ('torch', 'pandas', 'numpy', 'bench.api', 'bench.engine.runner') if m in sys.modules)\n"
            "print(','.join(heavy))")
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_the_entry_point_names_the_plugin_module():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"mlpbench": "bench.pytest_plugin"}
