"""The operation page in chromium: live log from a worker, resumed after a drop."""

import re

import pytest
from django.conf import settings
from django.test import Client

from portal.choices import OperationStatus
from portal.operations import request_operation
from tests.browser.conftest import browser, live_server_url, screenshot  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

LINES = 1500
HOLD_AT = 200


@pytest.fixture
def running(worker_process, operator, viewer, environment, tmp_path):
    """Start a worker and a flooding operation; return it, a viewer's cookie
    and the file whose creation lets the operation go on after line HOLD_AT.

    Database work happens here, before the browser fixture starts
    Playwright's event loop in this thread.
    """
    worker_process()
    release = tmp_path / "release-flood"
    operation = request_operation(
        "test.flood",
        user=operator,
        environment=environment,
        parameters={
            "lines": LINES,
            "pause_every": 25,
            "pause": 0.05,
            "hold_at": HOLD_AT,
            "hold": str(release),
        },
    )
    client = Client()
    client.force_login(viewer)
    return operation, client.cookies[settings.SESSION_COOKIE_NAME].value, release


def test_operation_page_follows_log_and_resumes_after_a_drop(
    running,
    live_server_url,  # noqa: F811  (fixtures from tests/browser/conftest.py)
    browser,  # noqa: F811
    screenshot,  # noqa: F811
):
    """Every line shows once, in order, though the socket drops mid-run."""
    operation, cookie, release = running
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": cookie,
                "url": live_server_url,
            }
        ]
    )
    page = context.new_page()
    page.goto(f"{live_server_url}{operation.get_absolute_url()}")

    # The operation holds after line HOLD_AT until `release` exists, so the
    # drop and the reconnect happen mid-run however long the page and the
    # server took to start.
    page.wait_for_function(
        "window.operationLog && window.operationLog.lastSeq >= 100", timeout=60_000
    )
    assert not page.evaluate("window.operationLog.done")
    # Drop the connection mid-run; the page reconnects with ?after=<last seq>.
    page.evaluate("window.operationLog.socket.close()")
    page.wait_for_function("window.operationLog.connects === 2", timeout=30_000)
    assert not page.evaluate("window.operationLog.done")
    release.touch()
    page.wait_for_function("window.operationLog.done === true", timeout=60_000)

    seqs = page.evaluate(
        "Array.from(document.querySelectorAll('span.line')).map(e => +e.dataset.seq)"
    )
    assert seqs == list(range(1, LINES + 1))
    assert page.evaluate("window.operationLog.connects") == 2
    assert page.text_content('[data-field="status"]') == OperationStatus.SUCCEEDED
    # The result, rendered by the server as a table, replaces the placeholder.
    page.wait_for_function("window.operationLog.resultShown === true")
    assert page.text_content(
        '[data-field="result"] tr[data-key="lines"] td'
    ).strip() == str(LINES)
    assert page.text_content('[data-field="percent"]') == "100"
    screenshot(page, "operation_detail")
    context.close()


@pytest.fixture
def queued(redis_conn, operator, environment, stack):
    """Queue an operation with no worker yet; return it and an operator's cookie."""
    operation = request_operation(
        "test.steps",
        user=operator,
        environment=environment,
        stack=stack,
        parameters={"steps": 5, "sleep": 0.2},
    )
    client = Client()
    client.force_login(operator)
    return operation, client.cookies[settings.SESSION_COOKIE_NAME].value


def test_operation_page_loaded_while_queued_fills_facts_and_hides_cancel(
    queued,
    worker_process,
    live_server_url,  # noqa: F811
    browser,  # noqa: F811
    screenshot,  # noqa: F811
):
    """Started, queue wait, worker, finished and duration fill in live, and
    Cancel goes away once the operation has finished, without a reload."""
    from playwright.sync_api import expect

    operation, cookie = queued
    context = browser.new_context(viewport={"width": 1300, "height": 900})
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": cookie,
                "url": live_server_url,
            }
        ]
    )
    page = context.new_page()
    page.goto(f"{live_server_url}{operation.get_absolute_url()}")
    cancel = page.locator('[data-field="cancel-form"] button')
    expect(page.locator('[data-field="status"]')).to_have_text("queued")
    expect(cancel).to_be_visible()
    for name in ("started", "worker", "finished", "duration"):
        assert page.text_content(f'[data-field="{name}"]').strip() == ""
    page.evaluate("window.loadedOnce = true")

    worker = worker_process()
    page.wait_for_function("window.operationLog.done === true", timeout=30_000)

    expect(page.locator('[data-field="status"]')).to_have_text(
        OperationStatus.SUCCEEDED
    )
    expect(cancel).to_be_hidden()
    expect(page.locator('[data-field="worker"]')).to_have_text(worker.name)
    started = page.text_content('[data-field="started"]')
    finished = page.text_content('[data-field="finished"]')
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", started), started
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", finished), finished
    assert started <= finished
    assert re.fullmatch(r"\d+\.\d s", page.text_content('[data-field="duration"]'))
    assert re.fullmatch(
        r"\d+(\.\d)? (ms|s)|\d+ min \d\d s",
        page.text_content('[data-field="queue_wait"]'),
    )
    assert page.evaluate("window.loadedOnce") is True
    screenshot(page, "operation_detail_finished")
    context.close()
