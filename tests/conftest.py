"""The mutant switch: with ``MLPBENCH_MUTANT=<name>`` the whole session runs with that bug applied.

The bugs live in ``tests/mutants.py`` (``python -m tests.mutants`` runs the campaign). They are
applied by monkeypatching before any test module is imported, and undone at the end.
"""

from __future__ import annotations

import os

import pytest

_PATCH: pytest.MonkeyPatch | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _PATCH
    name = os.environ.get("MLPBENCH_MUTANT", "").strip()
    if not name:
        return
    import mutants  # tests/ is on sys.path: pytest puts a rootdir conftest's folder there

    _PATCH = pytest.MonkeyPatch()
    try:
        mutants.apply(name, _PATCH)
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str | None:
    name = os.environ.get("MLPBENCH_MUTANT", "").strip()
    return f"MUTANT ON: {name} (tests/mutants.py); failures are expected" if name else None


def pytest_unconfigure(config: pytest.Config) -> None:
    if _PATCH is not None:
        _PATCH.undo()
