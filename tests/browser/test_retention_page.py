"""The retention page in chromium: an operator runs a dry run of a real
PostgreSQL's retention from the page, a worker runs it, and the plan of the
next run shows what would go; nothing was deleted."""

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from portal.choices import Role
from portal.models import RoleAssignment
from retention.models import EnvironmentRetention
from stacks import engine
from stacks.models import Service
from tests.backups.conftest import (  # noqa: F401  (fixtures)
    backup_environment,
    backup_variables,
    configs,
    operator,
    running,
    s3_server,
    sshd,
)
from tests.backups.test_postgres import psql
from tests.browser.conftest import browser, live_server_url, screenshot  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]

ROWS = (
    "CREATE TABLE logs (id serial, created_at timestamptz, body text);"
    "INSERT INTO logs (created_at, body) SELECT now() - interval '30 days', 'o' "
    "FROM generate_series(1, 17) i;"
    "INSERT INTO logs (created_at, body) SELECT now(), 'n' "
    "FROM generate_series(1, 5) i;"
)


@pytest.fixture
def ready(running, worker_process, django_user_model, docker_client):  # noqa: F811
    env = running("postgres")
    EnvironmentRetention.objects.create(environment=env, backup_before_cleanup=False)
    service = Service.objects.get(name="postgres")
    container = engine.service_states(docker_client, env.project_name(service.stack))[
        "postgres"
    ].id
    psql(docker_client, container, ROWS)
    user = django_user_model.objects.create_user("opal", password="pw-opal")
    RoleAssignment.objects.create(user=user, role=Role.OPERATOR, environment=env)
    worker_process(kind="long", imports=())
    client = Client()
    client.force_login(user)
    return env, client.cookies[settings.SESSION_COOKIE_NAME].value, container


def test_a_dry_run_from_the_page_fills_the_plan_and_deletes_nothing(
    ready,
    docker_client,
    live_server_url,  # noqa: F811
    browser,  # noqa: F811
    screenshot,  # noqa: F811
):
    env, cookie, container = ready
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
    url = f"{live_server_url}/environments/{env.name}/retention/"
    page.goto(url)
    logs = page.locator('tr[data-item="postgres/tables/logs"]')
    expect(logs.locator('[data-field="days"]')).to_have_text("7 days (the item)")
    expect(logs).to_contain_text("not measured yet")

    page.locator('button[data-action="dry-run"]').click()
    # The operation page follows the run to its end.
    expect(page.locator("body")).to_contain_text("succeeded", timeout=120_000)
    page.goto(url)
    expect(logs.locator('[data-field="matched"]')).to_have_text("17")
    expect(logs.locator('[data-field="kept"]')).to_contain_text("5")
    expect(page.locator('[data-section="runs"]')).to_contain_text("dry run")
    screenshot(page, "retention_dry_run")
    assert psql(docker_client, container, "SELECT count(*) FROM logs") == "22"
    context.close()
