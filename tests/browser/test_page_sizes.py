"""Every page, for each role, at a laptop's and a phone's width: no
horizontal scrollbar at 420 px, no page taller than the limit for the demo
data (pages.HEIGHT_LIMITS). Each page is saved as a screenshot at both
widths under .state/screenshots/ui/ for people to look at.

The world is the real configuration (configs/stacks.yaml) in a copy of the
demo environment with its core stack started, one operation done, and three
users: a viewer, an operator and an admin.
"""

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from portal.choices import Role
from portal.models import RoleAssignment
from portal.operations import run_inline
from stacks.models import Service, ServiceOverride, Stack
from stacks.operations import start_stack
from tests.browser.conftest import browser, live_server_url  # noqa: F401
from tests.browser.pages import (
    HEIGHT_LIMITS,
    WIDTHS,
    cookie_of,
    measure,
    new_page,
    shoot,
    worker_labels,
)
from tests.stacks.test_lifecycle import configs, make_environment  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(900),
]


@pytest.fixture
def world(make_environment, monkeypatch):  # noqa: F811
    """Return the environment, the pages of each role and their cookies."""
    # The web process labels as this one does (its config hashes match).
    monkeypatch.setenv("PORTAL_TEST_LABELS", worker_labels()["PORTAL_TEST_LABELS"])
    env = make_environment()
    User = get_user_model()
    admin = User.objects.create_superuser("ada", password="pw-ada")
    RoleAssignment.objects.create(user=admin, role=Role.ADMIN, environment=env)
    users = {"admin": admin}
    for role in ("viewer", "operator"):
        users[role] = User.objects.create_user(role, password=f"pw-{role}")
        RoleAssignment.objects.create(user=users[role], role=role, environment=env)
    core = Stack.objects.get(name="core")
    operation = start_stack(env, core, user=admin, enqueue=False)
    operation = run_inline(operation)
    assert operation.status == "succeeded", operation.error
    base = f"/environments/{env.name}"
    common = {
        "dashboard": "/",
        "environments": "/environments/",
        "environment": f"{base}/",
        "logs": f"{base}/stacks/core/logs/?service=postgres",
        "stats": f"{base}/stacks/core/stats/",
        "diff": f"{base}/stacks/core/compose/",
        "compose": f"{base}/stacks/core/compose/?show=yaml",
        "impact": f"{base}/stacks/core/impact/",
        "operations": "/operations/",
        "operation": operation.get_absolute_url(),
        "backups": f"{base}/backups/",
        "not-found": "/no/such/page/",
    }
    redis = Service.objects.get(name="redis")
    override = ServiceOverride.objects.get(environment=env, service=redis)
    console = f"{base}/stacks/core/services/redis/console/"
    pages = {
        "viewer": {**common, "forbidden": console},
        "operator": dict(common),
        "admin": {
            **common,
            "console": console,
            "admin": "/admin/",
            "audit": "/admin/portal/auditentry/",
            "admin-environment": f"/admin/stacks/environment/{env.pk}/change/",
            "admin-service": f"/admin/stacks/service/{redis.pk}/change/",
            "admin-override": f"/admin/stacks/serviceoverride/{override.pk}/change/",
        },
    }
    cookies = {role: cookie_of(user) for role, user in users.items()}
    return env, pages, cookies


def test_every_page_fits_a_phone_and_a_height_per_role(
    world,
    live_server_url,  # noqa: F811
    browser,  # noqa: F811
):
    env, pages, cookies = world
    problems = []
    for role, urls in pages.items():
        for size, width in WIDTHS.items():
            page = new_page(browser, live_server_url, cookies[role], width=width)
            for name, url in urls.items():
                response = page.goto(live_server_url + url)
                expected = {"not-found": 404, "forbidden": 403}.get(name, 200)
                assert response.status == expected, f"{role} {name} {url}"
                # Let live scripts draw their first data.
                if name == "stats":
                    page.wait_for_function("window.containerStats?.samples >= 1")
                if name == "console":
                    expect(page.locator('[data-field="state"]')).to_have_text(
                        "connected"
                    )
                page.wait_for_load_state("networkidle")
                found = measure(page)
                shoot(page, f"{name}-{role}-{width}")
                if found["width"] > found["viewport"]:
                    problems.append(
                        f"{role} {name} at {width}px: {found['width']}px wide "
                        "(horizontal scrollbar)"
                    )
                if found["height"] > HEIGHT_LIMITS[size]:
                    problems.append(
                        f"{role} {name} at {width}px: {found['height']}px tall "
                        f"(limit {HEIGHT_LIMITS[size]})"
                    )
            page.context.close()
    assert not problems, "\n".join(problems)
