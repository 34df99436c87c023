"""The ``mlp_step`` pytest fixture (a ``pytest11`` entry point): a user's test measures their model's step.

    def test_ffn_step(mlp_step):
        mlp_step(make_ffn, batch=256)

``mlp_step(model_or_factory, batch=..., **fields)`` measures one case with the engine's protocol
(``bench.api.measure``), fails the test with the case's reason if it did not measure, and returns the
``Result``. Where pytest-benchmark is active, the engine's raw block samples (each a per-step time) become that
test's ``benchmark`` stats, so ``pytest --benchmark-autosave`` stores them and ``pytest --benchmark-compare
--benchmark-compare-fail=median:10%`` gates them; the case id, label and FLOPs go in its ``extra_info``.
``--mlpbench-out DIR`` keeps each test's run folder under ``DIR/<test name>`` (``mlpbench show`` reads it).

pytest loads every installed pytest11 plugin in every session, so this module imports only pytest at its top:
torch and the engine are imported when a test asks for the fixture.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

OUT_OPTION = "--mlpbench-out"
LIMITS_OPTION = "--mlpbench-limits"
EXTRA_COLUMNS = ("case_id", "label", "matmul_flops", "flops_source", "parameters", "model_source_sha")


def pytest_addoption(parser):
    group = parser.getgroup("mlpbench", "mlpbench's mlp_step fixture")
    group.addoption(OUT_OPTION, metavar="DIR", default=None,
                    help="keep each mlp_step test's run folder under DIR/<test name>")
    group.addoption(LIMITS_OPTION, action="store_true", default=False,
                    help="also measure the matmul ceiling and floors (MFU, speed of light; ~10 s per test on a CPU)")


@pytest.fixture
def mlp_step(request):
    """Measure a model's training step: ``mlp_step(make_ffn, batch=256, width=1024, ...)`` returns the Result."""
    used = []

    def step(model_or_factory, *, batch: int = 64, **fields):
        if used:
            raise RuntimeError("mlp_step measures one case per test (a test is one benchmark); "
                               "use bench.sweep for a grid")
        used.append(True)
        from bench.api import measure  # torch: only when a test measures

        out = request.config.getoption(OUT_OPTION)
        folder = Path(out) / re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name) if out else None
        fields.setdefault("limits", request.config.getoption(LIMITS_OPTION))
        result = measure(model_or_factory, batch=batch, out=folder, **fields)
        row = result.step.iloc[0]
        if row["status"] != "ok":
            pytest.fail(f"mlp_step: the case did not measure ({row['status']}): {row['reason']}", pytrace=False)
        seconds = result.samples[(result.samples["case_id"] == row["case_id"])
                                 & (result.samples["phase"] == "step")]["seconds"]
        _record(request, row, seconds.tolist())
        return result

    return step


def _record(request, row, seconds: list[float]) -> None:
    """The samples as the test's pytest-benchmark stats (each block's per-step time is one round)."""
    try:
        benchmark = request.getfixturevalue("benchmark")
    except pytest.FixtureLookupError:  # pytest-benchmark is not installed (or -p no:benchmark)
        return
    for column in EXTRA_COLUMNS:
        if column in row.index:
            value = row[column]
            benchmark.extra_info[column] = value.item() if hasattr(value, "item") else value
    if not benchmark.enabled:
        return
    # pytest-benchmark 5.x has no public way to add outside timings: the fixture's own path is _make_stats
    # (what pedantic() calls) and Metadata.update(duration), which divides by iterations (1: already per step).
    benchmark._mode = "mlp_step(...)"
    stats = benchmark._make_stats(1)
    for value in seconds:
        stats.update(value)
