"""``git`` in a throw-away repository of a test, with a committer identity of its own (the gate's tests build
source and user repositories; tests/bench/gate/ is on sys.path, as tests/bench/ is for sleeping_step)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          check=True, capture_output=True, text=True).stdout
