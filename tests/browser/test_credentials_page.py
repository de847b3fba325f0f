"""The credential status on the environment page, in a real browser against
a live daphne server (which reads the planted values from its own process
environment, as a portal process reads its worker's)."""

import re

import pytest
from playwright.sync_api import expect

from portal.choices import Role
from tests.browser.test_live_pages import login
from tests.stacks.live import make_user  # noqa: F401 (a fixture)
from tests.stacks.test_credentials import (  # noqa: F401 (fixtures)
    config_dir,
    make_env,
    secrets,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]


@pytest.fixture
def world(make_env, make_user):  # noqa: F811
    # Rows first: Playwright's event loop keeps Django off this thread later.
    env = make_env(protected=True, unset=("JWT_SECRET_KEY",))
    return env, make_user("credo", Role.OPERATOR, env)


def test_operator_sees_each_credential_and_no_value(
    world,
    secrets,  # noqa: F811
    live_server_url,
    browser,
    screenshot,
):
    env, user = world
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    login(page, live_server_url, user, f"/environments/{env.name}/")
    expect(page).to_have_url(re.compile(rf"/environments/{env.name}/$"))

    section = page.locator("section.credentials")
    expect(section.locator("[data-credentials]")).to_have_text("errors")
    expect(section).to_contain_text("a start is refused")
    jwt = section.locator('tr[data-variable="JWT_SECRET_KEY"]')
    expect(jwt).to_contain_text("error")
    expect(jwt).to_contain_text("user-management")
    expect(jwt).to_contain_text("is not set")
    postgres = section.locator('tr[data-variable="POSTGRES_PASSWORD"]')
    expect(postgres.locator(".badge")).to_have_text("ok")
    section.scroll_into_view_if_needed()
    screenshot(page, "environment-credentials")
    html = page.content()
    assert not any(value in html for value in secrets.values())
