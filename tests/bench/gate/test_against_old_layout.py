"""``check --against`` a commit from before issue 48's move (flat bench/ modules): the worker of this tree imports
the tree under test's modules by their new path first, then by the pre-move one (``gate.worker.tree_module``).

Checked end to end against the last pre-move commit: the same code, so every exact counter must be identical,
counted by the old tree's own ``bench.cases``/``bench.timing``.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PRE_MOVE = "1c18da5"  # main just before the move (bench/cases.py, bench/timing.py, bench/gate/counters.py)


def _has_commit(ref: str) -> bool:
    return subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{ref}^{{commit}}"],
                          capture_output=True).returncode == 0


def test_the_pre_move_commit_has_the_flat_layout():
    if not _has_commit(PRE_MOVE):
        pytest.skip(f"{PRE_MOVE} is not in this clone (a shallow clone)")
    files = subprocess.run(["git", "-C", str(REPO), "ls-tree", "--name-only", PRE_MOVE, "bench/"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert {"bench/cases.py", "bench/timing.py"} <= set(files) and "bench/case" not in files


@pytest.mark.e2e  # two workers importing torch, one per tree: ~1 min on a loaded 2-core machine
def test_check_against_a_pre_move_commit_counts_identical_counters():
    if not _has_commit(PRE_MOVE):
        pytest.skip(f"{PRE_MOVE} is not in this clone (a shallow clone)")
    proc = subprocess.run([sys.executable, "-m", "bench", "check", "--against", PRE_MOVE, "--layers", "counters"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert re.search(r"All \d+ counters of \d+ cases are identical\.", proc.stdout), proc.stdout[-2000:]
