"""stacks.status against the real engine: one list request per refresh."""

import json

import docker
import pytest

from stacks.models import Stack
from stacks.status import environment_status, environments_status
from tests.stacks.live import *  # noqa: F403

pytestmark = [pytest.mark.docker, pytest.mark.django_db]

HEALTHY = {"test": ["CMD", "true"], "interval": 200_000_000, "retries": 1}
UNHEALTHY = {"test": ["CMD", "false"], "interval": 200_000_000, "retries": 1}
SLEEP = "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"


@pytest.fixture
def counting_client(docker_session_client):
    """Yield a fresh Docker client that records every HTTP request it sends."""
    client = docker.from_env(version=docker_session_client.api.api_version)
    client.requests = []
    client.api.hooks["response"].append(
        lambda response, *args, **kwargs: client.requests.append(
            f"{response.request.method} {response.request.path_url.split('?')[0]}"
        )
    )
    yield client
    client.close()


@pytest.fixture
def world(make_environment, make_stack, make_service, make_container):
    """An environment whose stack `web` has 5 services in every state."""
    env = make_environment("status")
    web = make_stack("web")
    for name in ("api", "cache", "broken", "worker", "ghost"):
        make_service(web, name)
    make_stack("idle")
    containers = {
        "api": make_container(
            env, web, "api", SLEEP, ports={"8080/tcp": ("127.0.0.1", None)}
        ),
        "cache": make_container(env, web, "cache", SLEEP, healthcheck=HEALTHY),
        "broken": make_container(env, web, "broken", SLEEP, healthcheck=UNHEALTHY),
        "worker": make_container(env, web, "worker", "echo done; exit 3"),
    }
    wait_for(  # noqa: F405
        lambda: (
            _health(containers["cache"]) == "healthy"
            and _health(containers["broken"]) == "unhealthy"
            and _state(containers["worker"]) == "exited"
        ),
        what="health checks and the worker's exit",
    )
    return env, containers


def _state(container):
    container.reload()
    return container.status


def _health(container):
    container.reload()
    return container.attrs["State"].get("Health", {}).get("Status")


def _services(status, stack):
    found = next(s for s in status["stacks"] if s["name"] == stack)
    return found, {s["name"]: s for s in found["services"]}


def test_environment_status_states_from_one_list_call(world, counting_client):
    """Every configured service gets its state, health, ports and uptime from
    a single container-list request."""
    env, containers = world
    status = environment_status(env, client=counting_client)

    assert len(counting_client.requests) == 1
    assert counting_client.requests[0].startswith("GET /v")
    assert counting_client.requests[0].endswith("/containers/json")
    web, services = _services(status, "web")
    api = services["api"]
    assert api["state"] == "running"
    assert api["health"] is None
    assert api["uptime"]
    port = containers["api"].attrs["NetworkSettings"]["Ports"]["8080/tcp"][0][
        "HostPort"
    ]
    assert api["ports"] == [f"127.0.0.1:{port}->8080/tcp"]
    assert api["container_id"] == containers["api"].id[:12]
    assert api["image"] == BUSYBOX  # noqa: F405
    assert services["cache"]["health"] == "healthy"
    assert services["broken"]["health"] == "unhealthy"
    assert services["worker"]["state"] == "exited"
    assert services["worker"]["exit_code"] == 3
    assert services["worker"]["uptime"] is None
    assert services["ghost"]["state"] == "missing"
    assert (web["state"], web["health"], web["running"], web["total"]) == (
        "partial",
        "unhealthy",
        3,
        5,
    )
    idle, _ = _services(status, "idle")
    assert idle["state"] == "missing"
    assert status["error"] is None
    assert status["summary"]["containers"] == 4
    json.dumps(status)  # plain data all the way down


def test_environment_status_reports_unconfigured_containers(
    world, make_container, counting_client
):
    """A container labelled for the environment but absent from the
    configuration is listed under `unknown`, not dropped."""
    env, _ = world
    web = Stack.objects.get(name="web")
    make_container(env, web, "leftover", SLEEP)
    status = environment_status(env, client=counting_client)
    assert [(c["stack"], c["name"], c["state"]) for c in status["unknown"]] == [
        ("web", "leftover", "running")
    ]
    assert len(counting_client.requests) == 1


def test_environments_status_one_list_call_per_docker_host(
    world, make_environment, make_container, counting_client
):
    """Two environments on one Docker host cost one request together, and
    each gets only its own containers."""
    env, _ = world
    other = make_environment("status-other")
    web = Stack.objects.get(name="web")
    make_container(other, web, "api", SLEEP)

    result = environments_status(
        [env, other], get_client=lambda environment: counting_client
    )

    assert len(counting_client.requests) == 1
    _, mine = _services(result[env.name], "web")
    _, theirs = _services(result[other.name], "web")
    assert mine["worker"]["state"] == "exited"
    assert theirs["api"]["state"] == "running"
    assert theirs["worker"]["state"] == "missing"
    assert result[other.name]["summary"]["containers"] == 1


def test_environment_status_unreachable_host(
    make_environment, make_stack, make_service
):
    """An engine that cannot be reached gives an error and unknown states,
    not an exception."""
    env = make_environment("status-down", docker_host="tcp://127.0.0.1:9")
    make_service(make_stack("web"), "api")
    status = environment_status(env)
    assert "127.0.0.1:9" in status["error"]
    web, services = _services(status, "web")
    assert web["state"] == "unknown"
    assert services["api"]["state"] == "unknown"
