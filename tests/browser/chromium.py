"""Headless Chromium for the browser tests (Debian's ``chromium`` and ``chromium-driver``), driven by selenium.

The browser runs with no network of its own (``--disable-background-networking`` and friends) and a fresh
profile; pages are opened from ``file://``. ``python -m tests.browser.chromium PAGE.html OUT.png [WIDTH HEIGHT]``
saves a screenshot of one page (how the ones under docs/ were made).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

CHROMIUM = os.environ.get("MLPBENCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("MLPBENCH_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage")
WINDOW = (1400, 1000)
PLOT_WAIT_S = 60  # a loaded 2-core machine parses the 4.8 MB of plotly.js slowly


def missing() -> str | None:
    """Why the browser tests cannot run here (one line), or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} is missing: install Debian's {package} (bash .ci/chromium)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -c constraints.txt 'selenium')"
    return None


def start(window: tuple[int, int] = WINDOW):
    """A headless Chromium with a fresh --user-data-dir (removed when the driver quits)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mlpbench-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={window[0]},{window[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    quit_ = driver.quit

    def quit_and_clean():
        try:
            quit_()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_clean
    return driver


def open_page(driver, path: Path, plots: int | None = None) -> None:
    """Load ``path`` from file:// and wait until ``plots`` plotly figures (default: every one) are drawn."""
    driver.get(Path(path).resolve().as_uri())
    deadline = time.monotonic() + PLOT_WAIT_S
    while time.monotonic() < deadline:
        state = driver.execute_script(
            "return [document.readyState, document.querySelectorAll('.figure, td.spark[id]').length,"
            " document.querySelectorAll('.js-plotly-plot').length];")
        if state[0] == "complete" and state[2] >= (state[1] if plots is None else plots):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{path}: figures not drawn in {PLOT_WAIT_S} s (state {state})")


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot(driver, out: Path, full_height: bool = True) -> Path:
    if full_height:
        height = driver.execute_script("return document.documentElement.scrollHeight;")
        driver.set_window_size(driver.get_window_size()["width"], min(int(height) + 40, 6000))
    out.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(out))
    return out


def main(argv: list[str]) -> int:
    page, out = Path(argv[0]), Path(argv[1])
    window = (int(argv[2]), int(argv[3])) if len(argv) >= 4 else WINDOW
    driver = start(window)
    try:
        open_page(driver, page)
        time.sleep(0.5)
        screenshot(driver, out, full_height=len(argv) < 4)
        errors = console_errors(driver)
    finally:
        driver.quit()
    print(f"{out} ({'no console errors' if not errors else errors})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
