"""Helpers of the console tests in chromium: sessions, page size checks,
screenshots at the two widths, database reads beside Playwright's loop."""

import json
import threading
from pathlib import Path

from django.conf import settings
from django.db import connections
from django.test import Client

from tests.conftest import RUN_ID, TEST_LABEL

__all__ = [
    "HEIGHT_LIMITS",
    "SHOTS",
    "WIDTHS",
    "cookie_of",
    "in_thread",
    "measure",
    "new_page",
    "shoot",
    "worker_labels",
]

ROOT = Path(__file__).resolve().parents[2]
#: Every page of the walk is saved here at both widths, for people to look at.
SHOTS = ROOT / ".state" / "screenshots" / "ui"
#: The two widths every page is shown at: a laptop and a phone.
WIDTHS = {"wide": 1400, "phone": 420}
#: The tallest a page may be with the demo data (pixels): the demo
#: environment has six stacks and 20-odd services; a page that needs more
#: than this has lost its layout (a table of JSON, every stack unfolded).
HEIGHT_LIMITS = {"wide": 3000, "phone": 6500}


def cookie_of(user):
    """Return the session cookie value of a fresh login of ``user``.

    Call it before the browser fixture starts Playwright's event loop in
    the test's thread (the ORM refuses to run inside it).
    """
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def new_page(browser, base_url, cookie=None, *, width=1400, height=900):
    """Return a page of a new browser context, signed in with ``cookie``."""
    context = browser.new_context(viewport={"width": width, "height": height})
    if cookie:
        context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base_url}]
        )
    return context.new_page()


def measure(page):
    """Return the page's content width, viewport width and height."""
    return page.evaluate(
        "() => ({width: document.documentElement.scrollWidth,"
        " viewport: window.innerWidth,"
        " height: document.documentElement.scrollHeight})"
    )


def shoot(page, name):
    """Save a full-page screenshot as ``.state/screenshots/ui/<name>.png``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def in_thread(function, *args):
    """Run ``function`` in a thread of its own and return its result.

    Playwright's sync API keeps an event loop running in the test's thread,
    where Django refuses database access; a plain thread has none (and its
    own connection, closed afterwards).
    """
    box = {}

    def run():
        try:
            box["value"] = function(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            box["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(120)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def worker_labels():
    """Return the environment that has a worker label what it creates."""
    return {"PORTAL_TEST_LABELS": json.dumps({TEST_LABEL: RUN_ID})}
