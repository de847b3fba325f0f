"""Compose rendering: valid files for every stack of every environment.

Every file rendered from the real ``configs/stacks.yaml`` must validate
against the Compose Specification schema (``../shared/specs/
compose-spec.json``), and describe what the adapter creates.
"""

import json
from io import StringIO
from pathlib import Path

import jsonschema
import pytest
import yaml
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from stacks.compose import render_compose, stack_plan, start_levels
from stacks.config import import_configs
from stacks.models import Environment, Stack

SPEC = Path(settings.BASE_DIR).parent / "shared" / "specs" / "compose-spec.json"


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SPEC.read_text())
    return jsonschema.Draft7Validator(schema)


@pytest.fixture
def configs(db):
    import_configs()


def rendered(env_name, stack_name):
    env = Environment.objects.get(name=env_name)
    plan = stack_plan(env, Stack.objects.get(name=stack_name))
    return yaml.safe_load(render_compose(plan))


def test_every_rendered_file_validates(configs, validator):
    count = 0
    for env in Environment.objects.all():
        for stack in Stack.objects.all():
            document = yaml.safe_load(render_compose(stack_plan(env, stack)))
            errors = [
                f"{'/'.join(map(str, e.path))}: {e.message}"
                for e in validator.iter_errors(document)
            ]
            assert not errors, f"{env.name}/{stack.name}: {errors}"
            assert document["name"] == env.project_name(stack)
            count += 1
    assert count == Environment.objects.count() * Stack.objects.count() >= 30


def test_references_are_kept_never_resolved(configs):
    document = rendered("demo", "core")
    env = document["services"]["postgres"]["environment"]
    assert env["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD}"
    demo = Environment.objects.get(name="demo")
    text = render_compose(stack_plan(demo, Stack.objects.get(name="core")))
    secrets = [
        v for k, v in demo.settings["variables"].items() if "PASSWORD" in k and v
    ]
    assert secrets
    for value in secrets:
        assert value not in text


def test_ports_carry_offset_and_bind_address(configs):
    document = rendered("demo", "core")
    assert document["services"]["postgres"]["ports"] == [
        {
            "target": 5432,
            "published": "25432",
            "host_ip": "127.0.0.1",
            "protocol": "tcp",
        }
    ]
    production = rendered("production", "ui")
    assert {
        "target": 80,
        "published": "80",
        "host_ip": "0.0.0.0",
        "protocol": "tcp",
    } in production["services"]["nginx"]["ports"]


def test_dependency_networks_are_external_with_docker_names(configs):
    document = rendered("demo", "ai")
    networks = document["networks"]
    assert networks["multimodal-ai-net"]["ipam"]["config"] == [
        {"subnet": "10.231.2.0/24", "gateway": "10.231.2.1"}
    ]
    assert networks["multimodal-core-net"] == {
        "name": "multimodal-demo-core_multimodal-core-net",
        "external": True,
    }
    assert networks["multimodal-inference-net"] == {
        "name": "multimodal-demo-inference_multimodal-inference-net",
        "external": True,
    }
    worker = document["services"]["multimodal-worker"]
    assert set(worker["networks"]) == set(networks)
    assert all(
        n["aliases"] == ["multimodal-worker"] for n in worker["networks"].values()
    )
    assert document["x-portal"]["dependencies"] == ["core", "inference"]


def test_depends_on_keeps_same_stack_only(configs):
    services = rendered("demo", "ai")["services"]
    proxy = services["retrieval-proxy"]
    assert proxy["depends_on"] == {
        "multimodal-worker": {"condition": "service_healthy"}
    }
    assert proxy["x-portal-depends-on"] == [
        "core/postgres",
        "core/qdrant",
        "core/redis",
    ]
    assert "depends_on" not in services["search-engine"]


def test_gpu_services_reserve_devices_where_gpus_are_on(configs):
    development = rendered("development", "inference")["services"]["vllm"]
    assert development["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}
    ]
    staging = rendered("staging", "inference")["services"]["vllm"]
    devices = staging["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["count"] == 2
    assert staging["shm_size"] == "10gb"
    demo = rendered("demo", "inference")["services"]["vllm"]
    assert "deploy" not in demo


def test_volumes_and_healthchecks(configs):
    document = rendered("demo", "core")
    assert document["volumes"]["postgres_data"]["labels"]["portal.data-type"] == "db"
    assert document["services"]["postgres"]["volumes"] == [
        {
            "type": "volume",
            "target": "/var/lib/postgresql/data",
            "source": "postgres_data",
        }
    ]
    health = document["services"]["redis"]["healthcheck"]
    assert health["test"] == ["CMD-SHELL", "redis-cli -h 127.0.0.1 ping | grep -q PONG"]
    assert (health["interval"], health["retries"], health["start_period"]) == (
        "2s",
        5,
        "60s",
    )


def test_start_levels_follow_depends_on(configs):
    demo = Environment.objects.get(name="demo")
    plan = stack_plan(demo, Stack.objects.get(name="ai"))
    levels = [[s.name for s in level] for level in start_levels(plan.services)]
    assert levels == [
        ["multimodal-worker", "search-engine", "memory-system", "user-management"],
        ["retrieval-proxy"],
        ["ai-agents"],
    ]


def test_render_compose_command_writes_one_file_per_stack(configs, tmp_path, validator):
    out = StringIO()
    call_command(
        "render_compose", "--env", "demo", "--output", str(tmp_path), stdout=out
    )
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(f"compose.{s.name}.yml" for s in Stack.objects.all())
    assert sorted(out.getvalue().split()) == [str(tmp_path / n) for n in written]
    for path in tmp_path.iterdir():
        assert not list(validator.iter_errors(yaml.safe_load(path.read_text())))

    one = tmp_path / "one"
    call_command(
        "render_compose",
        "--env",
        "dev",
        "--stack",
        "core",
        "--output",
        str(one),
        stdout=StringIO(),
    )
    assert [p.name for p in one.iterdir()] == ["compose.core.yml"]
    assert yaml.safe_load((one / "compose.core.yml").read_text())["name"] == (
        "multimodal-development-core"
    )


def test_render_compose_command_unset_variable_writes_nothing(configs, tmp_path):
    """An unset variable in a port of a later stack's service is a
    CommandError naming the variable and the service; no file is written,
    not even those of the stacks before it."""
    from stacks.models import Service, ServiceOverride

    demo = Environment.objects.get(name="demo")
    grafana = Service.objects.get(name="grafana")
    override, _ = ServiceOverride.objects.get_or_create(
        environment=demo, service=grafana
    )
    override.values = {**override.values, "ports": ["${PORTAL_TEST_UNSET_PORT}:3000"]}
    override.save()
    folder = tmp_path / "out"
    with pytest.raises(CommandError) as excinfo:
        call_command(
            "render_compose",
            "--env",
            "demo",
            "--output",
            str(folder),
            stdout=StringIO(),
        )
    assert str(excinfo.value) == (
        "Cannot render the compose files of demo: variable PORTAL_TEST_UNSET_PORT "
        "is not set (service grafana) and the reference has no default"
    )
    assert not folder.exists()
