"""A real browser for the tests: Debian's chromium, headless, driven through Debian's
chromedriver by Selenium.

Both binaries come from the distribution (`make browser`, which `make test` runs, installs them
as root), never from Selenium Manager: given the driver's path in a Service, Selenium does not
run it, so nothing is downloaded (the project's machines reach the package registries only).
A machine without them skips the browser tests with the command that installs them:

    def test_page(tmp_path):
        browser.require()
        with browser.chromium() as driver:
            driver.get(url)
            browser.screenshot(driver, tmp_path / "page.png")
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # selenium is imported when a browser starts, so that missing() can say why
    from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = ("sudo apt-get update && sudo apt-get install -y --no-install-recommends "
           "chromium chromium-driver")

# A page that never finishes loading fails its test instead of holding it until pytest-timeout.
PAGE_LOAD_TIMEOUT = 30


def missing() -> str | None:
    """None when a browser can start here; else why not and how to fix it (a skip reason)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            return f"{path} is not installed; the browser tests need it: {INSTALL}"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (the test extra): .venv/bin/pip install -e '.[test]'"
    return None


def require() -> None:
    """Skip the calling test (or fixture) with missing()'s reason when there is no browser."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)


@contextmanager
def chromium(window: tuple[int, int] = (1400, 900)) -> Iterator[WebDriver]:
    """A headless Chromium whose page is `window` (width, height) pixels, quit on the way out
    even when the test fails (a chromium left behind outlives the test run)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",  # a container's small /dev/shm crashes tabs; use /tmp
        "--disable-gpu",
        f"--window-size={window[0]},{window[1]}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)),
                              options=options)
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
        # --window-size is the outer window, of which headless Chromium's (invisible) toolbar
        # takes ~140 pixels: grow it by that, so the page and a screenshot are `window`.
        ui = driver.execute_script("return [outerWidth - innerWidth, outerHeight - innerHeight]")
        if any(ui):
            driver.set_window_size(window[0] + ui[0], window[1] + ui[1])
        yield driver
    finally:
        driver.quit()


def screenshot(driver: WebDriver, path: Path | str) -> Path:
    """Save what the browser shows as a PNG at `path` (its folder made), for a person to look
    at; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not driver.save_screenshot(str(path)):
        raise RuntimeError(f"the browser could not save a screenshot to {path}")
    return path
