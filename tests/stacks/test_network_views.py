"""The network page, its buttons and the health history: the four
permission cases for each, then what the permitted user gets."""

import ipaddress
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from docker.types import IPAMConfig, IPAMPool

from portal.models import Operation
from stacks.models import HealthProbe, Network
from tests.conftest import RUN_ID
from tests.stacks.live import *  # noqa: F403
from tests.stacks.networks_world import free_test_pool

pytestmark = [pytest.mark.docker, pytest.mark.django_db]


@pytest.fixture
def world(make_environment, make_stack, make_service, make_user, docker_client):
    pool = ipaddress.ip_network(free_test_pool(docker_client))
    blocks = list(pool.subnets(new_prefix=24))
    env = make_environment("netpage")
    other = make_environment("netpage-other")
    web = make_stack("web")
    make_service(web, "api")
    Network.objects.create(stack=web, name="web-net", subnet=str(blocks[0]))
    users = {
        "nobody": make_user("nobody"),
        "viewer": make_user("viewer", "viewer", env),
        "operator": make_user("operator", "operator", env),
        "elsewhere": make_user("elsewhere", "operator", other),
    }
    return env, other, users, blocks


def test_map_anonymous_redirects_to_login(client, world):
    response = client.get(reverse("stacks:network_map"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_map_without_role_shows_no_environment(client, world):
    _env, _other, users, _ = world
    client.force_login(users["nobody"])
    response = client.get(reverse("stacks:network_map"))
    assert response.status_code == 200
    assert "No environment to show." in response.content.decode()


def test_map_shows_only_the_environments_of_the_role(client, world):
    env, other, users, _ = world
    client.force_login(users["elsewhere"])
    page = client.get(reverse("stacks:network_map")).content.decode()
    assert f"environment {other.name}" in page
    assert f"environment {env.name}" not in page


def test_map_for_a_viewer_shows_subnets_and_no_buttons(client, world):
    env, _other, users, blocks = world
    client.force_login(users["viewer"])
    page = client.get(reverse("stacks:network_map")).content.decode()
    assert "<svg" in page and f"environment {env.name}" in page
    assert f"web        {str(blocks[0]):<18} web-net" in page
    assert "Check conflicts" not in page


def test_map_marks_a_conflict_and_names_both_sides(
    client, world, docker_client, docker_labels
):
    env, _other, users, blocks = world
    inside = str(list(blocks[0].subnets(new_prefix=26))[2])
    name = f"page-foreign-{RUN_ID}"
    docker_client.api.create_network(
        name,
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=inside)]),
        labels=docker_labels,
    )
    client.force_login(users["operator"])
    page = client.get(reverse("stacks:network_map")).content.decode()
    section = page[page.index(f'data-environment="{env.name}"') - 4000 :]
    assert re.search(
        r'<rect [^>]*class="net conflict"><title>network multimodal-', page
    )
    assert '<path d="M' in page and 'class="link conflict"' in page
    assert (
        f"network multimodal-{env.name}-web_web-net ({blocks[0]}, environment "
        f"{env.name}, stack web) overlaps Docker network {name} ({inside}, not the "
        "portal&#x27;s); free instead: "
    ) in page
    assert "Check conflicts" in section and "Remove orphans" in section


ACTIONS = ["conflicts", "validate", "health", "orphans", "cleanup"]


def _action(env, action):
    return reverse("stacks:network_action", args=[env.name, action])


@pytest.mark.parametrize("action", ACTIONS)
def test_action_anonymous_redirects_to_login(client, world, action):
    env, *_ = world
    response = client.post(_action(env, action))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert not Operation.objects.exists()


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("who", ["nobody", "viewer", "elsewhere"])
def test_action_without_the_verb_forbidden(client, world, action, who):
    env, _other, users, _ = world
    client.force_login(users[who])
    assert client.post(_action(env, action)).status_code == 403
    assert not Operation.objects.exists()


@pytest.mark.parametrize(
    ("action", "kind", "parameters"),
    [
        ("conflicts", "network.check", {"strict": False}),
        ("validate", "network.validate", {}),
        ("health", "network.health", {}),
        ("orphans", "network.cleanup", {"dry_run": True, "include_unknown": False}),
        ("cleanup", "network.cleanup", {"dry_run": False, "include_unknown": False}),
    ],
)
def test_action_as_operator_queues_the_operation(
    client, world, action, kind, parameters
):
    env, _other, users, _ = world
    client.force_login(users["operator"])
    response = client.post(_action(env, action))
    operation = Operation.objects.get()
    assert response.status_code == 302 and response.url == operation.get_absolute_url()
    assert (operation.kind, operation.environment, operation.parameters) == (
        kind,
        env,
        parameters,
    )
    assert operation.requested_by == users["operator"]


def test_action_refuses_get(client, world):
    env, _other, users, _ = world
    client.force_login(users["operator"])
    assert client.get(_action(env, "conflicts")).status_code == 405


def test_health_history_four_cases(client, world):
    env, _other, users, _ = world
    url = reverse("stacks:network_health", args=[env.name])
    assert client.get(url).status_code == 302
    for who, status in (("nobody", 403), ("elsewhere", 403), ("viewer", 200)):
        client.force_login(users[who])
        assert client.get(url).status_code == status, who


def test_health_history_and_environment_page_show_probes(client, world):
    env, _other, users, _ = world
    now = timezone.now()
    for ok, seconds in ((False, 0.5), (True, 0.0123)):
        HealthProbe.objects.create(
            environment=env,
            stack="web",
            service="api",
            kind="http",
            target="http://api:8080/health",
            ok=ok,
            seconds=seconds,
            detail="HTTP 200" if ok else "connection refused",
            checked=now if ok else now - timedelta(minutes=5),
        )
    client.force_login(users["viewer"])
    history = client.get(reverse("stacks:network_health", args=[env.name]))
    text = history.content.decode()
    assert text.index("HTTP 200") < text.index("connection refused")
    assert "12 ms" in text and "500 ms" in text
    page = client.get(env.get_absolute_url()).content.decode()
    section = page[page.index('id="network-health"') :]
    assert 'data-probe="api"' in section and "HTTP 200" in section
    assert "connection refused" not in section  # only the newest per service


def test_unknown_action_is_not_found(client, world):
    env, _other, users, _ = world
    client.force_login(users["operator"])
    assert client.post(_action(env, "explode")).status_code == 404
    assert not Operation.objects.exists()
