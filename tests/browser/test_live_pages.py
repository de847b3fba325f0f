"""The environment page and the logs page in a real browser, against a live
daphne server and real containers."""

import re

import pytest
from playwright.sync_api import expect

from tests.stacks.live import *  # noqa: F403

pytestmark = [
    pytest.mark.browser,
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]

HEALTHY = {"test": ["CMD", "true"], "interval": 1_000_000_000, "retries": 1}


def script(name, count=600, pause="0.2"):
    return (
        f'i=0; while [ $i -lt {count} ]; do echo "{name} request $i"; '
        f"i=$((i+1)); sleep {pause}; done; sleep 60"
    )


@pytest.fixture
def world(make_environment, make_stack, make_service, make_user, make_container):
    env = make_environment("browser", description="browser test environment")
    web = make_stack("web", description="web tier")
    for name in ("api", "worker", "cron"):
        make_service(web, name)
    user = make_user("opal", "operator", env, is_staff=True)
    containers = {
        "api": make_container(
            env, web, "api", script("api"), ports={"8080/tcp": ("127.0.0.1", None)}
        ),
        # Lines for 5 minutes: the worker must still be writing when the
        # logs page opens, however long daphne and chromium took to start.
        "worker": make_container(
            env,
            web,
            "worker",
            script("worker", count=3000, pause="0.1"),
            healthcheck=HEALTHY,
        ),
    }
    return env, web, user, containers


def login(page, base_url, user, next_path):
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-" + user.username)
    page.click("form.login-form button[type=submit]")


def test_environment_page_and_logs_page_live(
    world, live_server_url, browser, screenshot
):
    """The environment page follows container state without a reload, and
    the logs page shows history and new lines of both services."""
    env, web, user, containers = world
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    login(page, live_server_url, user, f"/environments/{env.name}/")
    expect(page).to_have_url(re.compile(rf"/environments/{env.name}/$"))

    card = page.locator('.stack-card[data-stack="web"]')
    api = card.locator('tr[data-service="api"]')
    worker = card.locator('tr[data-service="worker"]')
    expect(api.locator('[data-field="state"]')).to_have_text("running")
    expect(api.locator('[data-field="ports"]')).to_contain_text("->8080/tcp")
    expect(card.locator('tr[data-service="cron"] [data-field="state"]')).to_have_text(
        "missing"
    )
    # Health turns healthy through polling (it starts as "starting").
    expect(worker.locator('[data-field="health"]')).to_have_text(
        "healthy", timeout=30_000
    )
    expect(card.locator('summary [data-field="state"]')).to_have_text("partial")
    # A partial stack offers all three; each service what fits its state.
    stack_actions = card.locator('[data-actions="stack"]')
    for action in ("Start", "Restart", "Stop"):
        expect(
            stack_actions.get_by_role("button", name=action, exact=True)
        ).to_be_visible()
    expect(api.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    expect(api.get_by_role("button", name="Start", exact=True)).to_be_hidden()
    screenshot(page, "environment_detail")

    containers["api"].stop(timeout=1)
    expect(api.locator('[data-field="state"]')).to_have_text("exited")
    # Its buttons follow without a reload; a stop on request is no alarm.
    expect(api.get_by_role("button", name="Start", exact=True)).to_be_visible()
    expect(api.get_by_role("button", name="Stop", exact=True)).to_be_hidden()
    expect(api.locator('[data-field="state"]')).not_to_have_class(
        re.compile("tone-bad")
    )
    expect(card.locator('summary [data-field="count"]')).to_have_text("1/3 running")

    # api has stopped; its lines reach the page only through the tail, which
    # must reach back past the worker lines written since.
    page.goto(f"{live_server_url}/environments/{env.name}/stacks/web/logs/?tail=1000")
    output = page.locator("#container-logs [data-output]")
    expect(page.locator("#container-logs [data-state]")).to_have_text("live")
    expect(output.locator(".line", has_text="api request")).not_to_have_count(0)
    first = int(
        re.search(
            r"worker request (\d+)",
            output.locator(".line", has_text="worker request").last.inner_text(),
        ).group(1)
    )
    # New worker lines keep arriving.
    expect(
        output.locator(".line", has_text=f"worker request {first + 5}")
    ).to_have_count(1)
    expect(output.locator(".line .svc", has_text="worker").first).to_be_visible()

    page.fill('#container-logs input[name="filter"]', "api request")
    expect(output.locator(".line", has_text="worker request")).to_have_count(0)
    expect(output.locator(".line", has_text="api request")).not_to_have_count(0)
    page.fill('#container-logs input[name="filter"]', "")
    page.uncheck('#container-logs input[name="service"][value="api"]')
    expect(output.locator(".line", has_text="api request")).to_have_count(0)
    page.check('#container-logs input[name="service"][value="api"]')

    # Pause holds new lines back; resume shows them.
    page.click('#container-logs [data-action="pause"]')
    shown = output.locator(".line").count()
    expect(page.locator("#container-logs [data-counts]")).to_contain_text(
        "held while paused"
    )
    page.wait_for_timeout(500)
    assert output.locator(".line").count() == shown
    page.click('#container-logs [data-action="pause"]')
    expect(output.locator(".line")).not_to_have_count(shown)

    with page.expect_download() as download:
        page.click('#container-logs [data-action="download"]')
    text = open(download.value.path()).read()
    assert "worker | worker request" in text and "api | api request" in text
    screenshot(page, "stack_logs")
    page.close()
