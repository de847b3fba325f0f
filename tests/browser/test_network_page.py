"""The network page in a real browser: the picture is drawn by the server
and readable with JavaScript off; a conflict is marked on both sides."""

import ipaddress

import pytest
from docker.types import IPAMConfig, IPAMPool
from playwright.sync_api import expect

from stacks.models import Network
from tests.conftest import RUN_ID
from tests.stacks.live import *  # noqa: F403
from tests.stacks.networks_world import free_test_pool

pytestmark = [
    pytest.mark.browser,
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]


@pytest.fixture
def world(make_environment, make_stack, make_user, docker_client, docker_labels):
    """A planned network in conflict with a foreign one, and one not created."""
    blocks = list(
        ipaddress.ip_network(free_test_pool(docker_client)).subnets(new_prefix=24)
    )
    env = make_environment("netmap")
    web = make_stack("web")
    Network.objects.create(stack=web, name="web-net", subnet=str(blocks[0]))
    Network.objects.create(stack=web, name="edge-net", subnet=str(blocks[1]))
    foreign = f"map-foreign-{RUN_ID}"
    docker_client.api.create_network(
        foreign,
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=str(blocks[0]))]),
        labels=docker_labels,
    )
    user = make_user("mapper", "operator", env)
    return user, blocks, foreign


def test_network_page_draws_the_conflict_without_javascript(
    world, live_server_url, browser, screenshot
):
    user, blocks, foreign = world
    context = browser.new_context(
        java_script_enabled=False, viewport={"width": 1500, "height": 900}
    )
    page = context.new_page()
    page.goto(f"{live_server_url}/accounts/login/?next=/networks/")
    page.fill("#id_username", user.username)
    page.fill("#id_password", "pw-" + user.username)
    page.click("form.login-form button[type=submit]")

    host = page.locator("section.network-host")
    expect(host.locator("svg")).to_be_visible()
    expect(host.locator('[data-field="conflicts"]')).to_have_text("1 conflict(s)")
    planned = host.locator("svg rect.net.conflict").first
    expect(planned).to_be_visible()
    expect(
        host.locator("svg text", has_text=f"web        {str(blocks[0]):<18} web-net")
    ).to_be_visible()
    expect(host.locator("svg rect.net.planned")).to_have_count(1)  # edge-net
    expect(host.locator("svg path.link.conflict")).to_have_count(1)
    expect(host.locator("svg text", has_text=foreign)).to_be_visible()
    expect(host.locator("table.conflicts")).to_contain_text(
        f"overlaps Docker network {foreign} ({blocks[0]}, not the portal's)"
    )
    box = planned.bounding_box()
    assert box["width"] > 100 and box["height"] > 10
    screenshot(page, "network_map")
    context.close()
