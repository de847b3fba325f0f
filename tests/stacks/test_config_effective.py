"""A service, a network and a port as they are in one environment."""

import ipaddress
import re
from itertools import combinations

import pytest

from stacks.config import (
    effective_service,
    import_configs,
    network_plan,
    published_ports,
    resolve_service,
)
from stacks.models import (
    Environment,
    Network,
    NetworkOverride,
    Service,
    ServiceOverride,
)
from stacks.schema.values import (
    PlannedNetwork,
    PublishedPort,
    allocate_subnets,
    merge_service,
    parse_port,
    publish,
)
from stacks.secrets import MissingSecret, environ_for

from .test_config_support import CONFIG_DIR, minimal, write_config


@pytest.fixture
def real(db):
    """Import the real configuration files."""
    import_configs()


def env(name):
    return Environment.objects.get(name=name)


def service(name):
    return Service.objects.get(name=name)


# -- pure helpers


def test_parse_port_forms():
    assert parse_port("8080:80") == [(None, 8080, 80, "tcp")]
    assert parse_port("127.0.0.1:5432:5432") == [("127.0.0.1", 5432, 5432, "tcp")]
    assert parse_port("514:514/udp") == [(None, 514, 514, "udp")]
    assert parse_port("6333") == [(None, None, 6333, "tcp")]
    assert parse_port("[::1]:80:80") == [("::1", 80, 80, "tcp")]
    assert parse_port("9000-9001:9000-9001") == [
        (None, 9000, 9000, "tcp"),
        (None, 9001, 9001, "tcp"),
    ]


def test_publish_applies_offset_bind_address_and_defaults():
    ports = ["${PG_PORT:-5432}:5432", "0.0.0.0:80:80", "514:514/udp", "6333"]
    assert publish(ports, offset=20000, bind_address="127.0.0.1", environ={}) == [
        PublishedPort(5432, 25432, "127.0.0.1", "tcp"),
        PublishedPort(80, 20080, "0.0.0.0", "tcp"),
        PublishedPort(514, 20514, "127.0.0.1", "udp"),
        PublishedPort(6333, None, "127.0.0.1", "tcp"),
    ]
    assert publish(["${PG_PORT:-5432}:5432"], environ={"PG_PORT": "6000"}) == [
        PublishedPort(5432, 6000, "127.0.0.1", "tcp")
    ]


def test_publish_refuses_ports_beyond_65535():
    with pytest.raises(ValueError, match="plus offset 60000 is 68000"):
        publish(["8000:8000"], offset=60000)


def test_published_port_short_syntax():
    assert PublishedPort(5432, 25432, "127.0.0.1", "tcp").short_syntax() == (
        "127.0.0.1:25432:5432/tcp"
    )
    assert PublishedPort(80, None, "::1", "tcp").short_syntax() == "[::1]::80/tcp"


def test_allocate_subnets_from_a_pool_in_order():
    networks = [("a", "172.30.0.0/24", "172.30.0.1"), ("b", "172.31.0.0/24", "")]
    assert allocate_subnets(networks) == {
        "a": PlannedNetwork("172.30.0.0/24", "172.30.0.1"),
        "b": PlannedNetwork("172.31.0.0/24", "172.31.0.1"),
    }
    assert allocate_subnets(networks, "10.231.0.0/20") == {
        "a": PlannedNetwork("10.231.0.0/24", "10.231.0.1"),
        "b": PlannedNetwork("10.231.1.0/24", "10.231.1.1"),
    }
    assert allocate_subnets(
        networks, "10.231.0.0/20", {"b": ("192.168.5.0/24", "192.168.5.254")}
    )["b"] == ("192.168.5.0/24", "192.168.5.254")


def test_allocate_subnets_refuses_a_small_pool():
    with pytest.raises(ValueError, match="room for 1 /24 networks, 2 are needed"):
        allocate_subnets([("a", "", ""), ("b", "", "")], "10.0.0.0/24")


def test_allocations_from_distinct_pools_never_overlap():
    networks = [(f"n{i}", "", "") for i in range(16)]
    pools = ["10.210.0.0/20", "10.220.0.0/20", "10.230.0.0/20", "10.231.0.0/20"]
    plans = [allocate_subnets(networks, pool) for pool in pools]
    for a, b in combinations(plans, 2):
        for x in a.values():
            for y in b.values():
                assert not ipaddress.ip_network(x.subnet).overlaps(
                    ipaddress.ip_network(y.subnet)
                )


def test_merge_service_replaces_keys_and_merges_environment():
    base = {
        "image": "a",
        "build": "./a",
        "environment": {"KEEP": "1", "CHANGE": "x", "DROP": "y"},
        "volumes": ["data:/data", "./conf:/conf"],
        "healthcheck": {"template": "standard", "test": ["CMD", "true"]},
        "gpu": True,
        "extra": {"build": {"context": "./a"}},
    }
    merged = merge_service(
        base,
        {
            "image": "b",
            "environment": {"CHANGE": "z", "DROP": None, "NEW": "n"},
            "volumes": ["data:/data"],
        },
        gpu_enabled=False,
    )
    assert merged["image"] == "b"
    assert merged["build"] == ""
    assert merged["extra"] == {}
    assert merged["environment"] == {"KEEP": "1", "CHANGE": "z", "NEW": "n"}
    assert merged["volumes"] == ["data:/data"]
    assert merged["healthcheck"] == {"test": ["CMD", "true"]}
    assert merged["gpu"] is False
    assert base["environment"]["DROP"] == "y"


# -- on the imported real configuration


def test_effective_service_without_environment_is_the_base(real):
    postgres = effective_service(service("postgres"), None)
    assert postgres["image"] == "postgres:16-alpine"
    assert postgres["stack"] == "core"
    assert "template" not in postgres["healthcheck"]
    assert postgres["healthcheck"]["interval"] == "30s"


def test_effective_service_demo_uses_stand_ins(real):
    demo = env("demo")
    postgres = effective_service(service("postgres"), demo)
    assert postgres["image"] == "stackportal/postgres:local"
    assert postgres["volumes"] == ["postgres_data:/var/lib/postgresql/data"]
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD}"
    assert postgres["healthcheck"] == {
        "interval": "2s",
        "timeout": "3s",
        "retries": 5,
        "start_period": "60s",
        "test": ["CMD-SHELL", "pg_isready -q -h 127.0.0.1 -p 5432"],
    }
    litellm = effective_service(service("litellm"), demo)
    assert litellm["image"] == "stackportal/httpstub:local"
    assert litellm["command"] is None
    assert litellm["volumes"] == []
    assert litellm["environment"]["STANDIN_DEPENDS"] == "postgres:5432,vllm:8000"
    worker = effective_service(service("multimodal-worker"), demo)
    assert worker["build"] == ""
    assert worker["image"] == "stackportal/httpstub:local"


def test_demo_binds_no_host_paths(real):
    demo = env("demo")
    for row in Service.objects.all():
        effective = effective_service(row, demo)
        assert effective["image"].startswith("stackportal/"), row.name
        sources = [v.split(":")[0] for v in effective["volumes"]]
        assert not [s for s in sources if s.startswith((".", "/"))], row.name
        assert effective["gpu"] is False


def test_effective_service_production_vllm(real):
    vllm = effective_service(service("vllm"), env("production"))
    assert vllm["image"] == "vllm/vllm-openai:v0.6.3"
    assert vllm["shm_size"] == "10gb"
    assert (vllm["gpu"], vllm["gpu_count"]) == (True, "2")
    assert vllm["environment"]["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert vllm["environment"]["VLLM_TENSOR_PARALLEL_SIZE"] == (
        "${VLLM_TENSOR_PARALLEL_SIZE:-2}"
    )
    assert vllm["command"][-2:] == [
        "--tensor-parallel-size",
        "${VLLM_TENSOR_PARALLEL_SIZE:-2}",
    ]


def test_network_plan_production_uses_default_subnets(real):
    plan = network_plan(env("production"))
    assert plan["multimodal-core-net"] == ("172.30.0.0/24", "172.30.0.1")
    assert plan["multimodal-monitoring-net"] == ("172.35.0.0/24", "172.35.0.1")


def test_network_plan_demo_allocates_from_its_pool_in_stack_order(real):
    plan = network_plan(env("demo"))
    assert list(plan.items()) == [
        ("multimodal-core-net", ("10.231.0.0/24", "10.231.0.1")),
        ("multimodal-inference-net", ("10.231.1.0/24", "10.231.1.1")),
        ("multimodal-ai-net", ("10.231.2.0/24", "10.231.2.1")),
        ("multimodal-ui-net", ("10.231.3.0/24", "10.231.3.1")),
        ("multimodal-testing-net", ("10.231.4.0/24", "10.231.4.1")),
        ("multimodal-monitoring-net", ("10.231.5.0/24", "10.231.5.1")),
    ]


def test_network_plan_override_wins(real):
    demo = env("demo")
    NetworkOverride.objects.create(
        environment=demo,
        network=Network.objects.get(name="multimodal-ui-net"),
        subnet="192.168.77.0/24",
    )
    plan = network_plan(demo)
    assert plan["multimodal-ui-net"] == ("192.168.77.0/24", "192.168.77.1")
    assert plan["multimodal-testing-net"] == ("10.231.4.0/24", "10.231.4.1")


def test_real_environments_share_a_host_without_overlapping_subnets(real):
    plans = {e.name: network_plan(e) for e in Environment.objects.all()}
    assert len({e.docker_host for e in Environment.objects.all()}) == 1
    for (name_a, a), (name_b, b) in combinations(plans.items(), 2):
        for x in a.values():
            for y in b.values():
                overlap = ipaddress.ip_network(x.subnet).overlaps(
                    ipaddress.ip_network(y.subnet)
                )
                assert not overlap, (name_a, x, name_b, y)


def test_real_environments_share_a_host_without_port_clashes(real):
    seen = {}
    for environment in Environment.objects.all():
        for row in Service.objects.all():
            for port in published_ports(row, environment, environ={}):
                key = (port.published, port.protocol)
                assert key not in seen, (environment.name, row.name, seen.get(key))
                seen[key] = (environment.name, row.name)


def test_published_ports_demo_avoid_the_portal(real):
    demo = env("demo")
    ports = [p for row in Service.objects.all() for p in published_ports(row, demo, {})]
    assert {p.published for p in ports}.isdisjoint({6379, 8000})
    assert published_ports(service("postgres"), demo, {}) == [
        PublishedPort(5432, 25432, "127.0.0.1", "tcp")
    ]
    assert published_ports(service("nginx"), demo, {}) == [
        PublishedPort(8080, 20080, "127.0.0.1", "tcp"),
        PublishedPort(8443, 20443, "127.0.0.1", "tcp"),
    ]


def test_published_ports_resolve_variables(real):
    ports = published_ports(
        service("redis"), env("development"), {"REDIS_PORT": "7000"}
    )
    assert ports == [PublishedPort(6379, 17000, "127.0.0.1", "tcp")]


def test_published_ports_production_nginx_is_public(real):
    assert published_ports(service("nginx"), env("production"), {}) == [
        PublishedPort(80, 80, "0.0.0.0", "tcp"),
        PublishedPort(443, 443, "0.0.0.0", "tcp"),
    ]
    assert published_ports(service("postgres"), env("production"), {}) == [
        PublishedPort(5432, 5432, "127.0.0.1", "tcp")
    ]


def test_every_demo_service_resolves_without_any_variable_set(real, settings, tmp_path):
    settings.PORTAL_CONFIG_DIR = tmp_path
    demo = env("demo")
    environ = environ_for(demo, process={})
    for row in Service.objects.all():
        resolved = resolve_service(row, demo, environ)
        assert "${" not in repr(resolved["environment"]), row.name
    postgres = resolve_service(service("postgres"), demo, environ)
    assert postgres["environment"]["POSTGRES_PASSWORD"] == "demo-postgres-password"


def test_resolve_service_names_the_missing_secret(real):
    with pytest.raises(MissingSecret) as info:
        resolve_service(service("postgres"), env("development"), environ={})
    assert str(info.value) == (
        "variable POSTGRES_PASSWORD is not set (service postgres) and the reference "
        "has no default"
    )


def test_resolve_service_keeps_the_stored_references(real):
    resolve_service(
        service("postgres"), env("development"), {"POSTGRES_PASSWORD": "pw"}
    )
    assert (
        service("postgres").environment["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD}"
    )


def test_effective_service_override_removes_variables(tmp_path, db):
    data = minimal()
    data["environments"]["development"]["overrides"] = {
        "vllm": {"environment": {"CUDA_VISIBLE_DEVICES": None, "X": "1"}}
    }
    import_configs(write_config(tmp_path, data))
    assert ServiceOverride.objects.get().values["environment"] == {
        "CUDA_VISIBLE_DEVICES": None,
        "X": "1",
    }
    vllm = effective_service(service("vllm"), env("development"))
    assert vllm["environment"] == {"X": "1"}
    assert vllm["gpu"] is True


@pytest.mark.parametrize("name", ["development", "staging", "production", "testing"])
def test_env_example_names_every_required_variable(real, name, settings, tmp_path):
    settings.PORTAL_CONFIG_DIR = tmp_path
    example = CONFIG_DIR / "env" / f"{name}.env.example"
    names = re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", example.read_text(), flags=re.M)
    environ = {variable: "set" for variable in names}
    environment = env(name)
    for row in Service.objects.all():
        resolve_service(row, environment, environ)


def test_env_examples_hold_no_values():
    for example in (CONFIG_DIR / "env").glob("*.env.example"):
        for line in example.read_text().splitlines():
            assert not line or line.startswith("#"), (example.name, line)
