"""The operator's console in chromium, against a live daphne server, a real
worker and the real engine, on a copy of the demo environment (the real
configs/stacks.yaml, stand-in images):

- an operator logs in, sees the dashboard, starts core and watches the live
  log reach healthy, restarts one service alone, opens its logs and its
  stats, and views the compose diff;
- a viewer sees no action buttons and, posting one anyway, gets the 403
  page with its reason;
- an admin opens a console on a demo container, runs a command, and the
  session and the command are in the audit log.

Each step saves a screenshot (.state/screenshots/ui/journey-*.png).
"""

import re

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from portal.choices import Role
from portal.models import AuditEntry, RoleAssignment
from portal.operations import run_inline
from stacks.models import Service, Stack
from stacks.operations import start_stack
from tests.browser.conftest import browser, live_server_url  # noqa: F401
from tests.browser.pages import cookie_of, in_thread, new_page, shoot, worker_labels
from tests.stacks.test_lifecycle import configs, make_environment  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(900),
]

SECRET = "demo-postgres-password"  # a value from demo's settings.variables


@pytest.fixture
def world(make_environment, monkeypatch):  # noqa: F811
    """Return a copy of demo and a user per role (password pw-<name>)."""
    # The web process and the worker label what they create as this
    # process does: teardown removes it, and config hashes match.
    monkeypatch.setenv("PORTAL_TEST_LABELS", worker_labels()["PORTAL_TEST_LABELS"])
    env = make_environment()
    User = get_user_model()
    users = {}
    for name, role in (("olga", Role.OPERATOR), ("vic", Role.VIEWER)):
        users[role] = User.objects.create_user(name, password=f"pw-{name}")
        RoleAssignment.objects.create(user=users[role], role=role, environment=env)
    admin = User.objects.create_superuser("ada", password="pw-ada")
    RoleAssignment.objects.create(user=admin, role=Role.ADMIN, environment=env)
    users[Role.ADMIN] = admin
    return env, users


def login(page, base_url, username, next_path="/"):
    page.goto(f"{base_url}/accounts/login/?next={next_path}")
    page.fill("#id_username", username)
    page.fill("#id_password", f"pw-{username}")
    page.click("form.login-form button[type=submit]")


def test_operator_starts_core_restarts_a_service_and_inspects_it(
    world,
    worker_process,
    live_server_url,  # noqa: F811
    browser,  # noqa: F811
):
    env, users = world
    worker_process(imports=(), environ=worker_labels())
    page = new_page(browser, live_server_url, height=1000)
    login(page, live_server_url, "olga")

    # The dashboard: the environment and its stacks at a glance.
    card = page.locator(f'[data-panel="environments"] [data-environment="{env.name}"]')
    expect(card).to_be_visible()
    expect(card.locator('[data-stack="core"]')).to_contain_text("missing")
    expect(page.locator('[data-panel="operations"]')).to_be_visible()
    shoot(page, "journey-1-dashboard")

    # The environment page: core is missing, so only Start is offered.
    card.locator(".card-head a").first.click()
    expect(page).to_have_url(re.compile(rf"/environments/{env.name}/$"))
    core = page.locator('details.stack-card[data-stack="core"]')
    actions = core.locator('[data-actions="stack"]')
    expect(actions.locator('[data-action="start"] button')).to_be_visible()
    expect(actions.locator('[data-action="stop"]')).to_be_hidden()
    expect(actions.locator('[data-action="restart"]')).to_be_hidden()
    # The operation page is served with the "Queued operation" message. Read
    # it from the response: the page drops it as soon as the worker starts
    # the operation, which may be before the browser could be asked.
    with page.expect_response(re.compile(r"/operations/[0-9a-f-]+/$")) as served:
        actions.locator('[data-action="start"] button').click()
    assert "Queued operation" in served.value.text()

    # The operation page follows the worker's log live to healthy.
    expect(page).to_have_url(re.compile(r"/operations/[0-9a-f-]+/$"))
    expect(page.locator('[data-field="status"]')).to_have_text(
        "succeeded", timeout=300_000
    )
    log = page.locator('[data-field="log"]')
    for service in ("postgres", "redis", "qdrant", "minio"):
        expect(log).to_contain_text(f"{service}: healthy after")
    # "Queued" stopped being true: the message is gone.
    expect(page.locator(".messages")).to_have_count(0)
    result = page.locator('[data-field="result"]')
    expect(result.locator('tr[data-key="redis"]')).to_contain_text("created")
    expect(page.locator('[data-field="plan"] tr[data-key="levels"]')).to_contain_text(
        "postgres"
    )
    shoot(page, "journey-2-start-core")

    # Back to the stack through the operation's target link.
    page.locator('[data-field="target"] [data-link="stack"]').click()
    core = page.locator('details.stack-card[data-stack="core"]')
    expect(core).to_have_attribute("open", "")
    expect(core.locator('summary [data-field="state"]')).to_have_text("running")
    actions = core.locator('[data-actions="stack"]')
    expect(actions.locator('[data-action="start"]')).to_be_hidden()
    expect(actions.locator('[data-action="stop"] button')).to_be_visible()
    redis = core.locator('tr[data-service="redis"]')
    expect(redis.locator('[data-field="health"]')).to_have_text("healthy")
    expect(redis.locator('[data-action="start"]')).to_be_hidden()
    shoot(page, "journey-3-environment")

    # Restart redis alone: a confirm, then its own operation.
    page.once("dialog", lambda dialog: dialog.accept())
    redis.locator('[data-action="restart"] button').click()
    expect(page).to_have_url(re.compile(r"/operations/[0-9a-f-]+/$"))
    expect(page.locator('[data-field="target"] [data-link="service"]')).to_have_text(
        "redis"
    )
    expect(page.locator('[data-field="status"]')).to_have_text(
        "succeeded", timeout=180_000
    )
    expect(page.locator('[data-field="log"]')).to_contain_text("redis: stopped")
    services = page.locator('[data-field="plan"] tr[data-key="services"]')
    expect(services).to_have_text(re.compile(r"^\s*Services\s*redis\s*$"))
    expect(page.locator('[data-field="result"] [data-key="stopped"]')).to_contain_text(
        "redis"
    )
    shoot(page, "journey-4-restart-redis")

    # Its logs, from its row.
    page.locator('[data-field="target"] [data-link="service"]').click()
    redis = page.locator('details[data-stack="core"] tr[data-service="redis"]')
    expect(redis.locator('[data-field="state"]')).to_have_text("running")
    redis.locator('[data-link="logs"]').click()
    expect(page).to_have_url(re.compile(r"/stacks/core/logs/\?service=redis$"))
    expect(page.locator("#container-logs [data-state]")).to_have_text("live")
    expect(
        page.locator("#container-logs .line", has_text="Ready to accept connections")
    ).not_to_have_count(0)
    shoot(page, "journey-5-redis-logs")

    # Its stats: a sample, then live ones.
    page.go_back()
    page.locator(
        'details[data-stack="core"] tr[data-service="redis"] [data-link="stats"]'
    ).click()
    page.wait_for_function(
        "window.containerStats && window.containerStats.samples >= 1"
    )
    row = page.locator('#container-stats tr[data-service="redis"]')
    expect(row.locator('[data-field="cpu"]')).to_contain_text("%")
    expect(row.locator('[data-field="memory"]')).to_contain_text("/")
    shoot(page, "journey-6-redis-stats")

    # The compose diff: everything runs as configured; no secret shown.
    page.locator('.tabs a:text-is("Diff")').click()
    for service in ("postgres", "redis", "qdrant", "minio"):
        row = page.locator(f'table.diff-summary tr[data-service="{service}"]')
        expect(row.locator('[data-field="verdict"]')).to_have_text("unchanged")
    assert SECRET not in page.content()
    shoot(page, "journey-7-compose-diff")
    page.locator('.tabs a:text-is("Compose file")').click()
    yaml = page.locator('[data-field="yaml"]')
    expect(yaml).to_contain_text("POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}")
    assert SECRET not in page.content()
    page.context.close()


def test_viewer_sees_no_buttons_and_gets_the_403_page_with_its_reason(
    world,
    live_server_url,  # noqa: F811
    browser,  # noqa: F811
):
    env, users = world
    page = new_page(browser, live_server_url)
    login(page, live_server_url, "vic", f"/environments/{env.name}/")
    expect(page.locator('details[data-stack="core"]')).to_be_visible()
    expect(page.locator("form.action-form")).to_have_count(0)
    expect(page.locator('[data-link="logs"]').first).to_be_attached()

    # Posting a start anyway, as a crafted form would.
    url = f"/environments/{env.name}/stacks/core/start/"
    page.evaluate(
        """(url) => {
          const form = document.createElement("form");
          form.method = "post";
          form.action = url;
          const token = document.createElement("input");
          token.name = "csrfmiddlewaretoken";
          token.value = document.querySelector("[name=csrfmiddlewaretoken]").value;
          form.appendChild(token);
          document.body.appendChild(form);
          form.submit();
        }""",
        url,
    )
    expect(page.locator('[data-error-page="403"]')).to_be_visible()
    expect(page.locator('[data-field="reason"]')).to_have_text(
        f"vic may not start in environment {env.name}."
    )
    expect(page.locator('nav [data-nav="dashboard"]')).to_be_visible()
    # DEBUG is off (no Django debug page above) and the styles still come:
    # the ASGI app serves static files itself.
    assert page.request.get(f"{live_server_url}/static/css/portal.css").ok
    assert page.request.get(f"{live_server_url}/static/vendor/xterm/xterm.js").ok
    assert (
        page.evaluate(
            "getComputedStyle(document.querySelector('.topbar')).backgroundColor"
        )
        == "rgb(27, 37, 51)"
    )
    shoot(page, "journey-8-viewer-403")
    page.context.close()


@pytest.fixture
def redis_running(world):
    """Start redis alone in the copy of demo; return the world."""
    env, users = world
    redis = Service.objects.get(name="redis")
    operation = start_stack(
        env,
        Stack.objects.get(name="core"),
        user=users[Role.ADMIN],
        service=redis,
        enqueue=False,
    )
    operation = run_inline(operation)
    assert operation.status == "succeeded", operation.error
    return env, users, cookie_of(users[Role.ADMIN])


def test_admin_console_on_a_demo_container_is_audited(
    redis_running,
    live_server_url,  # noqa: F811
    browser,  # noqa: F811
):
    env, users, cookie = redis_running
    page = new_page(browser, live_server_url, cookie)
    page.goto(f"{live_server_url}/environments/{env.name}/#service-core-redis")
    page.locator('tr[data-service="redis"] [data-link="console"]').click()
    expect(page.locator('#console [data-field="state"]')).to_have_text("connected")
    page.wait_for_function("window.portalConsole.hello !== null")
    session = page.evaluate("window.portalConsole.hello.session")
    page.locator("#console .xterm").click()
    page.keyboard.type("echo portal-$((6*7))")
    page.keyboard.press("Enter")
    page.wait_for_function(
        """() => {
          const buffer = window.portalConsole.term.buffer.active;
          for (let i = 0; i < buffer.length; i++) {
            const line = buffer.getLine(i);
            if (line && line.translateToString(true).trim() === "portal-42") {
              return true;
            }
          }
          return false;
        }"""
    )
    shoot(page, "journey-9-console")
    page.click('#console [data-action="disconnect"]')
    page.wait_for_function("window.portalConsole.closed === true")

    def entries():
        return list(
            AuditEntry.objects.filter(action__startswith="console.")
            .order_by("id")
            .values_list("action", "actor_name", "environment_name", "data")
        )

    found = in_thread(entries)
    actions = [action for action, *_ in found]
    assert actions == ["console.opened", "console.command", "console.closed"]
    for _action, actor, environment, data in found:
        assert (actor, environment, data["session"]) == ("ada", env.name, session)
    assert found[0][3]["container"] == f"multimodal-{env.name}-core-redis-1"
    assert found[1][3] == {
        "session": session,
        "line": "echo portal-$((6*7))",
        "edited": False,
    }
    assert found[2][3]["why"] == "disconnected" and found[2][3]["commands"] == 1

    # The admin's audit list shows the session.
    page.goto(f"{live_server_url}/admin/portal/auditentry/?action=console.command")
    expect(page.locator("#result_list")).to_contain_text("echo portal-$((6*7))")
    page.context.close()
