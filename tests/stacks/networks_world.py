"""Fixtures of the network tests: environments on subnets of their own,
foreign networks and host routes that are removed afterwards.

Subnets come from 198.18.0.0/15 (the benchmarking range, RFC 2544), which
no configuration and no other test uses; the /21 of a test run starts at an
offset derived from its run id and moves on past anything the Docker host
already has there, so concurrent runs keep apart. Every Docker object a
test makes carries ``portal.test=<run id>``; every host route is removed by
the fixture that added it.
"""

import ipaddress
import subprocess
import uuid

import pytest
from django.contrib.auth import get_user_model

from stacks.config import import_configs, published_ports
from stacks.models import Environment, Service, ServiceOverride
from tests.conftest import RUN_ID, TEST_LABEL
from tests.stacks.test_lifecycle import free_offset

__all__ = [
    "BUSYBOX",
    "TEST_RANGE",
    "free_test_pool",
    "host_routes",
    "net_configs",
    "net_environment",
    "net_operator",
    "routes",
    "taken",
]

BUSYBOX = "stackportal/busybox:local"
TEST_RANGE = "198.18.0.0/15"


def host_routes():
    """Return the destinations of the host's routes (every table)."""
    output = subprocess.run(
        ["ip", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for line in output.splitlines():
        words = line.split()
        if words and words[0] in ("blackhole", "unreachable", "prohibit"):
            words = words[1:]
        if words and "/" in words[0]:
            found.append(ipaddress.ip_network(words[0], strict=False))
    return found


def taken(client):
    """Return every subnet the Docker host's networks and routes hold."""
    nets = [
        ipaddress.ip_network(c["Subnet"])
        for net in client.api.networks()
        for c in ((net.get("IPAM") or {}).get("Config") or [])
        if c.get("Subnet")
    ]
    return nets + host_routes()


def free_test_pool(client, exclude=()):
    """Return a /21 of 198.18.0.0/15 that nothing on the host overlaps."""
    used = taken(client) + [ipaddress.ip_network(e) for e in exclude if e]
    candidates = list(ipaddress.ip_network(TEST_RANGE).subnets(new_prefix=21))
    start = int(RUN_ID, 16) % len(candidates)
    for candidate in candidates[start:] + candidates[:start]:
        if not any(candidate.overlaps(u) for u in used if u.version == 4):
            return str(candidate)
    raise RuntimeError(f"no free /21 in {TEST_RANGE}")


@pytest.fixture
def net_configs(settings, docker_client):
    """Import the real configuration; label what the portal creates."""
    settings.PORTAL_EXTRA_LABELS = {TEST_LABEL: RUN_ID}
    import_configs()
    return Environment.objects.get(name="demo")


@pytest.fixture
def net_operator(db):
    return get_user_model().objects.create_superuser(f"op{uuid.uuid4().hex[:6]}")


@pytest.fixture
def net_environment(net_configs, docker_client):
    """Return a function making a copy of demo on a free /21 of the test range."""
    demo = net_configs
    base_ports = {
        p.published - demo.port_offset
        for service in Service.objects.all()
        for p in published_ports(service, demo)
        if p.published is not None
    }
    made = []

    def make(suffix="", **fields):
        fields.setdefault(
            "subnet_pool",
            free_test_pool(docker_client, [e.subnet_pool for e in made]),
        )
        env = Environment.objects.create(
            name=f"n{RUN_ID}{suffix}",
            description=f"network test copy of demo ({RUN_ID})",
            docker_host=demo.docker_host,
            port_offset=free_offset(base_ports, [e.port_offset for e in made]),
            bind_address=demo.bind_address,
            gpu_enabled=demo.gpu_enabled,
            settings=demo.settings,
            **fields,
        )
        for override in demo.service_overrides.all():
            ServiceOverride.objects.create(
                environment=env, service=override.service, values=override.values
            )
        made.append(env)
        return env

    return make


def _ip_route(client, labels, *argv):
    client.containers.run(
        BUSYBOX,
        ["ip", "route", *argv],
        network_mode="host",
        cap_add=["NET_ADMIN"],
        remove=True,
        labels=labels,
    )


@pytest.fixture
def routes(docker_client, docker_labels):
    """Return a function adding a blackhole route on the Docker host.

    The route is added by a helper in the host's network namespace (so it
    lands on the Docker host, wherever the test runs) and deleted at
    teardown, also when the test fails.
    """
    added = []

    def add(subnet):
        _ip_route(docker_client, docker_labels, "add", "blackhole", subnet)
        added.append(subnet)
        return subnet

    yield add
    for subnet in added:
        try:
            _ip_route(docker_client, docker_labels, "del", "blackhole", subnet)
        except Exception:  # noqa: BLE001  (gone already)
            pass
