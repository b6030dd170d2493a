"""tests/support/browser.py, the browser the web console's tests drive: Debian's headless
chromium through its chromedriver opens a page served here, clicks, sees the page change, saves
a screenshot of the size asked for, and is gone afterwards, also when the test fails in the
middle. Skipped, with the install command, where chromium is not installed (`make browser`).
No LocalStack, no database."""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.support import browser

PAGE = b"""<!doctype html>
<html><head><title>browser tooling</title></head><body>
<button id="go" onclick="document.getElementById('status').textContent = 'clicked'">Go</button>
<p id="status">waiting</p>
</body></html>"""


class Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, format: str, *args: object) -> None:  # keep the test's output clean
        pass


@pytest.fixture
def page_url() -> Iterator[str]:
    """PAGE on a free loopback port, served from a thread for the length of the test."""
    browser.require()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])  # the IHDR chunk's width and height


def test_click_changes_the_page_and_the_screenshot_is_the_window(page_url: str,
                                                                 tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with browser.chromium(window=(800, 600)) as driver:
        driver.get(page_url)
        status = driver.find_element(By.ID, "status")
        assert status.text == "waiting"
        driver.find_element(By.ID, "go").click()
        WebDriverWait(driver, 5).until(lambda _: status.text == "clicked")
        shot = browser.screenshot(driver, tmp_path / "shots" / "clicked.png")
    assert png_size(shot) == (800, 600)


def test_the_browser_is_quit_when_the_test_fails_inside(page_url: str) -> None:
    with pytest.raises(RuntimeError, match="a failing test"), browser.chromium() as driver:
        driver.get(page_url)
        raise RuntimeError("a failing test")
    assert driver.service.process.poll() is not None, "chromedriver still runs"
