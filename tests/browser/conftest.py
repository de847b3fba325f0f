"""A live daphne server on the test database, and Debian's chromium."""

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / ".state" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_server_url(transactional_db, redis_url, tmp_path):
    """Yield the URL of a daphne process serving the portal on the test DB.

    The tests that use it must be ``django_db(transaction=True)``: the
    server is another process and sees committed rows only.
    """
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PORTAL_TEST_DB": str(settings.DATABASES["default"]["NAME"]),
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "daphne.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "portal.asgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        # Django, Channels and daphne import for seconds on a busy machine.
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/admin/login/", timeout=2).close()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "daphne did not start:\n" + log_path.read_text()[-3000:]
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# Ceiling for expect(): the pages follow daphne, Redis, Docker and worker
# processes that share two busy CPUs with the test; Playwright's default of
# 5 s is a guess about a quiet machine. A passing expect() returns at once.
EXPECT_TIMEOUT_MS = 20_000


@pytest.fixture
def browser():
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS
            )
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        expect.set_options(timeout=None)  # back to Playwright's default


@pytest.fixture
def screenshot():
    """Return a function saving a full-page screenshot for human review."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(page, name):
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return save
