"""Container stats: one sample per container from the engine layer, the
stats page and its JSON (the four permission cases), against real
containers."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from stacks import engine
from tests.stacks.live import *  # noqa: F403

pytestmark = [pytest.mark.docker, pytest.mark.django_db]

# Busy enough to show CPU; bounded (60 s).
BUSY = "i=0; while [ $i -lt 600 ]; do i=$((i+1)); head -c 20000 /dev/zero | wc -c >/dev/null; sleep 0.1; done"  # noqa: E501


@pytest.fixture
def world(make_environment, make_stack, make_service, make_user):
    env = make_environment("stats")
    other = make_environment("stats-other")
    web = make_stack("web")
    make_service(web, "api")
    make_service(web, "worker")
    users = {
        "nobody": make_user("nobody"),
        "viewer": make_user("viewer", "viewer", env),
        "elsewhere": make_user("elsewhere", "operator", other),
    }
    return env, web, users


def test_container_stats_reads_one_sample(docker_client, world, make_container):
    env, web, _ = world
    container = make_container(env, web, "api", BUSY)
    sample = engine.container_stats(docker_client, container.id)
    assert set(sample) == {
        "cpu_percent",
        "cpus",
        "memory_bytes",
        "memory_limit_bytes",
        "memory_percent",
        "net_rx_bytes",
        "net_tx_bytes",
        "block_read_bytes",
        "block_write_bytes",
        "pids",
        "read",
    }
    assert sample["cpus"] >= 1 and sample["cpu_percent"] >= 0
    assert 0 < sample["memory_bytes"] <= sample["memory_limit_bytes"]
    assert sample["pids"] >= 2  # init and the shell


def test_sample_stats_reports_a_gone_container_and_keeps_the_others(
    docker_client, world, make_container
):
    env, web, _ = world
    alive = make_container(env, web, "api", BUSY)
    samples = engine.sample_stats(docker_client, [alive.id, "0" * 64])
    assert samples[alive.id]["memory_bytes"] > 0
    assert samples["0" * 64] == {"error": "Container 000000000000 not found"}


def test_summarize_computes_like_docker_stats():
    """CPU against the host's time over the interval times the CPUs, memory
    without the page cache, I/O summed over devices and networks."""
    sample = engine.stats.summarize(
        {
            "cpu_stats": {
                "cpu_usage": {"total_usage": 3_000_000},
                "system_cpu_usage": 20_000_000,
                "online_cpus": 4,
            },
            "precpu_stats": {
                "cpu_usage": {"total_usage": 1_000_000},
                "system_cpu_usage": 10_000_000,
            },
            "memory_stats": {
                "usage": 1000,
                "limit": 4000,
                "stats": {"inactive_file": 200},
            },
            "networks": {
                "eth0": {"rx_bytes": 5, "tx_bytes": 7},
                "eth1": {"rx_bytes": 1},
            },
            "blkio_stats": {
                "io_service_bytes_recursive": [
                    {"op": "read", "value": 10},
                    {"op": "Write", "value": 20},
                    {"op": "read", "value": 1},
                ]
            },
            "pids_stats": {"current": 3},
        }
    )
    assert sample["cpu_percent"] == 80.0  # 2e6 / 1e7 * 4 CPUs
    assert (sample["memory_bytes"], sample["memory_percent"]) == (800, 20.0)
    assert (sample["net_rx_bytes"], sample["net_tx_bytes"]) == (6, 7)
    assert (sample["block_read_bytes"], sample["block_write_bytes"]) == (11, 20)


# -- pages ------------------------------------------------------------------------


def _urls(env, stack):
    return {
        "page": reverse("stacks:stack_stats", args=[env.name, stack.name]),
        "json": reverse("stacks:stack_stats_json", args=[env.name, stack.name]),
        "diff": reverse("stacks:stack_compose", args=[env.name, stack.name]),
        "yaml": reverse("stacks:stack_compose", args=[env.name, stack.name])
        + "?show=yaml",
        "file": reverse("stacks:stack_compose_file", args=[env.name, stack.name]),
    }


VIEWS = ["page", "json", "diff", "yaml", "file"]


@pytest.mark.parametrize("view", VIEWS)
def test_container_pages_anonymous_redirects_to_login(client, world, view):
    env, web, _ = world
    response = client.get(_urls(env, web)[view])
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


@pytest.mark.parametrize("view", VIEWS)
def test_container_pages_without_role_forbidden(client, world, view):
    env, web, users = world
    client.force_login(users["nobody"])
    assert client.get(_urls(env, web)[view]).status_code == 403


@pytest.mark.parametrize("view", VIEWS)
def test_container_pages_role_elsewhere_forbidden(client, world, view):
    env, web, users = world
    client.force_login(users["elsewhere"])
    assert client.get(_urls(env, web)[view]).status_code == 403


@pytest.mark.parametrize("view", VIEWS)
def test_container_pages_viewer_ok(client, world, view):
    env, web, users = world
    client.force_login(users["viewer"])
    assert client.get(_urls(env, web)[view]).status_code == 200


def test_stats_json_samples_running_containers_and_names_stopped_ones(
    client, world, make_container
):
    env, web, users = world
    make_container(env, web, "api", BUSY)
    make_container(env, web, "worker", "exit 0").wait(timeout=20)
    client.force_login(users["viewer"])
    data = client.get(_urls(env, web)["json"]).json()
    assert data["error"] is None
    rows = {c["service"]: c for c in data["containers"]}
    assert rows["api"]["state"] == "running"
    assert rows["api"]["stats"]["memory_bytes"] > 0
    assert rows["worker"]["state"] == "exited" and rows["worker"]["stats"] is None
    # One service only.
    data = client.get(_urls(env, web)["json"] + "?service=worker").json()
    assert [c["service"] for c in data["containers"]] == ["worker"]


def test_stats_page_renders_a_first_sample(client, world, make_container):
    env, web, users = world
    make_container(env, web, "api", BUSY)
    client.force_login(users["viewer"])
    html = client.get(_urls(env, web)["page"]).content.decode()
    assert 'data-service="api"' in html and 'data-field="cpu"' in html
    assert " %" in html and "js/container_stats.js" in html


def test_stack_stats_command_prints_one_sample(world, make_container):
    env, web, users = world
    make_container(env, web, "api", BUSY)
    out = io.StringIO()
    call_command(
        "stack", "stats", "web", "--env", env.name, "--user", "viewer", stdout=out
    )
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["SERVICE", "STATE", "CPU"]
    assert lines[1].split()[:2] == ["api", "running"] and "MiB" in lines[1]
    with pytest.raises(CommandError, match="may not view"):
        call_command("stack", "stats", "web", "--env", env.name, "--user", "nobody")
