"""The backups page in chromium: an operator backs up a real PostgreSQL from
the page; the running row follows the operation, and the finished backup
appears without a reload."""

import re

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from portal.choices import Role
from portal.models import RoleAssignment
from tests.backups.conftest import (  # noqa: F401  (fixtures)
    backup_environment,
    backup_variables,
    configs,
    operator,
    running,
    s3_server,
    sshd,
)
from tests.browser.conftest import browser, live_server_url, screenshot  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]


@pytest.fixture
def ready(running, worker_process, django_user_model):  # noqa: F811
    """Start postgres and a worker of the long queue; return the environment
    and the session cookie of an operator of it.

    Database work happens here, before the browser fixture starts
    Playwright's event loop in this thread.
    """
    env = running("postgres")
    user = django_user_model.objects.create_user("opal", password="pw-opal")
    RoleAssignment.objects.create(user=user, role=Role.OPERATOR, environment=env)
    worker_process(kind="long", imports=())
    client = Client()
    client.force_login(user)
    return env, client.cookies[settings.SESSION_COOKIE_NAME].value


def test_backup_from_the_page_shows_progress_then_the_result(
    ready,
    live_server_url,  # noqa: F811
    browser,  # noqa: F811
    screenshot,  # noqa: F811
):
    env, cookie = ready
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
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
    page.goto(f"{live_server_url}/environments/{env.name}/backups/")
    local = page.locator('tr[data-row="postgres/full/local"]')
    expect(local.locator('[data-field="state"]')).to_have_text("never")

    row = page.locator('tr[data-service="postgres"]')
    row.locator('select[name="strategy"]').select_option("full")
    row.locator('select[name="backup_type"]').select_option("full")
    row.locator("button[type=submit]").click()

    expect(page.locator(".messages li.success")).to_contain_text(
        "back up postgres (full, full)."
    )
    running_row = page.locator("tr[data-operation]")
    expect(running_row).to_have_count(1)
    expect(running_row.locator(".progress")).to_be_visible()
    screenshot(page, "backups_running")

    # The operation's status frames reach the page, and when it ends the
    # page refreshes its sections: the newest good backup in each tier.
    expect(local.locator('[data-field="state"]')).to_have_text("ok", timeout=120_000)
    assert page.evaluate("window.backupPage.events") >= 1
    assert page.evaluate("window.backupPage.refreshes") >= 1
    for tier in ("local", "remote", "cloud", "tape"):
        cells = page.locator(f'tr[data-row="postgres/full/{tier}"]')
        expect(cells.locator('[data-field="state"]')).to_have_text("ok")
        expect(cells.locator('[data-field="snapshot"]')).to_have_text(
            re.compile(r"^[0-9a-f]{8}$")
        )
    expect(page.locator('[data-section="running"]')).to_contain_text(
        "No backup, verification or drill is running."
    )
    screenshot(page, "backups_done")

    # The record page holds the restore commands.
    local.locator("a").first.click()
    expect(page.locator('[data-field="restore"]')).to_contain_text(
        "restic snapshots --tag record="
    )
    context.close()
