"""Fixtures of the browser tests: a headless Chromium, a merged report, a history site.

These tests never skip: where Chromium, chromedriver or selenium is missing they fail with one line
saying what to install (`make test-browser` installs Chromium first with .ci/chromium). They carry the
marker ``browser`` and are left out of `make test`. Screenshots go to ``$MLPBENCH_SCREENSHOTS``
(default: a temporary folder, printed in the test header).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import chromium  # noqa: E402  (tests/browser/chromium.py)

SCREENSHOTS = Path(os.environ.get("MLPBENCH_SCREENSHOTS") or tempfile.mkdtemp(prefix="mlpbench-screenshots-"))


def pytest_ignore_collect(collection_path, config):
    """Without selenium: where a marker expression leaves the browser tests out (`make test`, the GPU kit's
    `pytest -m 'cuda or torchvision'`) they are not imported; where they are selected (`-m browser`, no -m) the
    run stops with one line. Never a silent skip."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        markexpr = config.getoption("markexpr") or ""
        if markexpr and "browser" not in markexpr.replace("not browser", ""):
            return True
        raise pytest.UsageError(f"NO BROWSER: {chromium.missing()}; the browser tests cannot run") from None
    return None


def pytest_report_header(config):
    return f"browser tests: screenshots in {SCREENSHOTS}"


@pytest.fixture(scope="session")
def driver():
    reason = chromium.missing()
    if reason:
        pytest.fail(f"NO BROWSER: {reason}; the browser tests cannot run", pytrace=False)
    d = chromium.start()
    yield d
    d.quit()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
