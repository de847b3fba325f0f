"""Network checks on the real engine: conflicts, the start's refusal, host
routes, cleanup, validation, health, and the commands' exit status.

Environments are copies of demo on a /21 of 198.18.0.0/15 of their own
(see networks_world.py); operations run the production way, through the
service functions or the commands, with an RQ burst worker or inline.
"""

import io
import ipaddress
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone
from docker.types import IPAMConfig, IPAMPool

from portal.choices import OperationStatus, Role
from portal.models import Operation, RoleAssignment
from portal.operations import PlanError
from stacks.config import network_plan
from stacks.engine import labels as portal_labels
from stacks.engine.hostnet import BUILTIN_ADDRESS_POOLS
from stacks.models import Environment, HealthProbe, Network, Service, Stack
from stacks.networks.operations import cleanup_networks
from stacks.operations import start_stack
from tests.conftest import RUN_ID, TEST_LABEL
from tests.stacks.networks_world import *  # noqa: F403  (fixtures)
from tests.stacks.networks_world import BUSYBOX, free_test_pool, taken
from tests.stacks.test_lifecycle import assert_succeeded, lines, run

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


def call(name, *args):
    """Run a management command; return (output, CommandError or None)."""
    out = io.StringIO()
    try:
        call_command(name, *args, stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def last(kind):
    return Operation.objects.filter(kind=kind).order_by("-created").first()


def planned(env, network):
    return network_plan(env)[network]


def make_network(client, name, subnet, labels):
    """Create a bridge network on ``subnet``; return its id."""
    return client.api.create_network(
        name,
        driver="bridge",
        ipam=IPAMConfig(pool_configs=[IPAMPool(subnet=subnet)]),
        labels=labels,
    )["Id"]


def is_free_on_host(client, subnet):
    """Return whether ``subnet`` overlaps no network, route or default pool."""
    net = ipaddress.ip_network(subnet)
    pools = [ipaddress.ip_network(base) for base, _ in BUILTIN_ADDRESS_POOLS]
    return not any(
        net.overlaps(other)
        for other in [*taken(client), *pools]
        if other.version == net.version
    )


# --------------------------------------------------------------------------
# Conflicts


def test_foreign_network_is_reported_with_a_free_suggestion_and_a_start_refuses(
    docker_client, docker_labels, net_environment, net_operator, run_jobs
):
    env = net_environment()
    core_net = planned(env, "multimodal-core-net")
    inside = str(list(ipaddress.ip_network(core_net.subnet).subnets(new_prefix=25))[1])
    foreign = f"foreign-{RUN_ID}"
    make_network(docker_client, foreign, inside, docker_labels)

    output, error = call(
        "check_network_conflicts", "--env", env.name, "--user", net_operator.username
    )
    assert error is not None, output
    check = last("network.check")
    assert check.status == OperationStatus.FAILED
    text = lines(check)
    conflict = next(line for line in text.splitlines() if "conflict:" in line)
    assert (
        f"network multimodal-{env.name}-core_multimodal-core-net ({core_net.subnet}, "
        f"environment {env.name}, stack core) overlaps Docker network {foreign} "
        f"({inside}, not the portal's); free instead: " in conflict
    )
    suggestion = conflict.split("free instead: ")[1].split()[0]
    # Free on every count the check knows, and Docker agrees.
    assert ipaddress.ip_network(suggestion).prefixlen == 24
    assert is_free_on_host(docker_client, suggestion)
    assert not any(
        ipaddress.ip_network(suggestion).overlaps(ipaddress.ip_network(p.subnet))
        for p in network_plan(env).values()
    )
    probe = make_network(docker_client, f"probe-{RUN_ID}", suggestion, docker_labels)
    docker_client.api.remove_network(probe)

    operation = run(
        start_stack(env, Stack.objects.get(name="core"), user=net_operator), run_jobs
    )
    assert operation.status == OperationStatus.FAILED
    message = conflict.split("conflict: ", 1)[1]
    assert message in operation.error
    assert f"Cannot start stack core in {env.name}: 1 network conflict(s)" in (
        operation.error
    )
    assert "Pool overlaps" not in operation.error
    # Refused before anything was created.
    assert not docker_client.api.networks(
        filters={"label": f"{portal_labels.ENVIRONMENT}={env.name}"}
    )


def test_host_route_into_a_planned_subnet_is_reported(
    docker_client, net_environment, net_operator, routes
):
    env = net_environment()
    ai_net = planned(env, "multimodal-ai-net")
    route = str(list(ipaddress.ip_network(ai_net.subnet).subnets(new_prefix=26))[1])
    routes(route)

    output, error = call(
        "check_network_conflicts", "--env", env.name, "--user", net_operator.username
    )
    assert error is not None and "1 conflict(s)" in str(error), output
    text = lines(last("network.check"))
    assert (
        f"network multimodal-{env.name}-ai_multimodal-ai-net ({ai_net.subnet}, "
        f"environment {env.name}, stack ai) overlaps host route blackhole {route}"
    ) in text
    suggestion = text.split("free instead: ")[1].split()[0]
    assert not ipaddress.ip_network(suggestion).overlaps(ipaddress.ip_network(route))


def test_running_stack_is_neither_a_conflict_nor_an_orphan(
    docker_client, net_environment, net_operator, run_jobs
):
    env = net_environment()
    operation = run(
        start_stack(env, Stack.objects.get(name="core"), user=net_operator), run_jobs
    )
    assert_succeeded(operation)
    assert "network check: " in lines(operation)

    output, error = call(
        "check_network_conflicts", "--env", env.name, "--user", net_operator.username
    )
    assert error is None, output
    assert f"No conflicts: 6 planned network(s) of {env.name} are clear" in output

    output, error = call(
        "cleanup_networks",
        "--env",
        env.name,
        "--dry-run",
        "--user",
        net_operator.username,
    )
    assert error is None, output
    core = f"multimodal-{env.name}-core_multimodal-core-net"
    assert f"kept {core}: in the plan" in output
    assert "orphan " not in output
    assert last("network.cleanup").result["orphans"] == []

    # A second start finds its network in place and reads no routes.
    operation = run(
        start_stack(env, Stack.objects.get(name="core"), user=net_operator), run_jobs
    )
    assert_succeeded(operation)
    assert "network check: " not in lines(operation)


def test_pool_exhaustion_is_a_clear_error(net_environment, net_operator, docker_client):
    pool = free_test_pool(docker_client)
    small = str(list(ipaddress.ip_network(pool).subnets(new_prefix=22))[0])
    env = net_environment(subnet_pool=small)

    with pytest.raises(
        PlanError,
        match=(
            rf"Configuration of stack core in {env.name}: subnet pool {small} has room "
            r"for 4 /24 networks, 6 are needed"
        ),
    ):
        start_stack(env, Stack.objects.get(name="core"), user=net_operator)

    output, error = call(
        "check_network_conflicts", "--env", env.name, "--user", net_operator.username
    )
    assert error is not None and "1 plan problem(s)" in str(error)
    text = lines(last("network.check"))
    assert (
        f"environment {env.name} cannot place its networks: subnet pool {small} has "
        f"room for 4 /24 networks, 6 are needed (widen environments.{env.name}."
        "subnet_pool); a free /21 on this host: "
    ) in text
    suggestion = text.split("a free /21 on this host: ")[1].split()[0]
    assert is_free_on_host(docker_client, suggestion)


def test_without_env_every_permitted_environment_and_non_zero_on_one_conflict(
    net_environment, make_user, docker_client, docker_labels
):
    env = net_environment()
    other = net_environment("b")
    user = make_user_with_role(make_user, env)
    RoleAssignment.objects.create(user=user, role=Role.OPERATOR, environment=other)
    subnet = planned(other, "multimodal-ui-net").subnet
    make_network(docker_client, f"in-the-way-{RUN_ID}", subnet, docker_labels)

    output, error = call("check_network_conflicts", "--user", user.username)
    assert error is not None
    assert str(error) == (
        f"network.check did not succeed in 1 of 2 environment(s): {other.name}."
    )
    assert output.startswith("Not in this run (")
    assert "demo" in output.splitlines()[0] and env.name not in output.splitlines()[0]
    assert f"== {env.name}" in output and f"== {other.name}" in output
    assert f"  {env.name:<20} ok      operation " in output
    assert f"  {other.name:<20} FAILED  " in output
    assert Operation.objects.filter(kind="network.check").count() == 2


# --------------------------------------------------------------------------
# Cleanup


def test_cleanup_removes_only_unused_unplanned_portal_networks(
    docker_client, docker_labels, net_environment, net_operator, run_jobs
):
    env = net_environment()
    pool = list(ipaddress.ip_network(env.subnet_pool).subnets(new_prefix=24))
    project = env.project_name(Stack.objects.get(name="core"))
    portal = {
        **portal_labels.base_labels(env, Stack.objects.get(name="core")),
        portal_labels.COMPOSE_PROJECT: project,
    }
    names = {
        "orphan": f"{project}_retired-net",
        "foreign": f"{project}_not-ours",
        "helper": f"{project}_helper-net",
        "stopped": f"{project}_stopped-net",
    }
    make_network(
        docker_client,
        names["orphan"],
        str(pool[6]),
        {**portal, portal_labels.COMPOSE_NETWORK: "retired-net"},
    )
    # Named like ours, but without the portal's labels: never touched.
    make_network(docker_client, names["foreign"], str(pool[7]), docker_labels)
    spare = free_test_pool(docker_client, [env.subnet_pool])
    for key, subnet in zip(
        ("helper", "stopped"),
        ipaddress.ip_network(spare).subnets(new_prefix=24),
        strict=False,
    ):
        make_network(
            docker_client,
            names[key],
            str(subnet),
            {**portal, portal_labels.COMPOSE_NETWORK: key},
        )
    # A helper created on a network and never started uses it ...
    docker_client.api.create_container(
        BUSYBOX,
        command=["true"],
        labels={**portal_labels.helper_labels(env.name, "test.job"), **docker_labels},
        host_config=docker_client.api.create_host_config(network_mode=names["helper"]),
        name=f"helper-{RUN_ID}",
    )
    # ... and so does a container that ran and stopped.
    stopped = docker_client.containers.run(
        BUSYBOX,
        ["true"],
        network=names["stopped"],
        labels=docker_labels,
        name=f"stopped-{RUN_ID}",
        detach=True,
    )
    stopped.wait(timeout=30)

    def present():
        existing = {n["Name"] for n in docker_client.api.networks()}
        return {key for key, name in names.items() if name in existing}

    dry = run(cleanup_networks(env, user=net_operator, dry_run=True), run_jobs)
    assert_succeeded(dry)
    assert [o["network"] for o in dry.result["orphans"]] == [names["orphan"]]
    assert sorted(o["network"] for o in dry.result["in_use"]) == sorted(
        [names["helper"], names["stopped"]]
    )
    assert present() == set(names)  # the dry run removed nothing
    assert "would be removed (dry run)" in lines(dry)

    real = run(cleanup_networks(env, user=net_operator, dry_run=False), run_jobs)
    assert_succeeded(real)
    assert present() == {"foreign", "helper", "stopped"}
    text = lines(real)
    assert f"removed {names['orphan']}" in text
    assert f"kept {names['helper']}: used by helper-{RUN_ID}" in text
    assert f"kept {names['stopped']}: used by stopped-{RUN_ID}" in text
    assert names["foreign"] not in text
    # Listed before the first removal.
    assert text.index(f"orphan {names['orphan']}") < text.index(
        f"removed {names['orphan']}"
    )


# --------------------------------------------------------------------------
# Validation: two small stacks of busybox sleepers


@pytest.fixture
def tiny(settings, docker_client, make_user):
    """Stacks base (service db) and app (service web, depends on db) in an
    environment of their own; returns (environment, user)."""
    settings.PORTAL_EXTRA_LABELS = {TEST_LABEL: RUN_ID}
    pool = free_test_pool(docker_client)
    blocks = list(ipaddress.ip_network(pool).subnets(new_prefix=24))
    env = Environment.objects.create(name=f"v{RUN_ID}", subnet_pool=pool)
    base = Stack.objects.create(name="base", order=0)
    app = Stack.objects.create(name="app", order=1)
    app.depends_on.add(base)
    Network.objects.create(name="base-net", stack=base, subnet=str(blocks[0]))
    Network.objects.create(name="app-net", stack=app, subnet=str(blocks[1]))
    sleep = ["sleep", "600"]
    db = Service.objects.create(
        stack=base,
        name="db",
        image=BUSYBOX,
        command=sleep,
        extra={"init": True},
    )
    web = Service.objects.create(
        stack=app,
        name="web",
        image=BUSYBOX,
        command=sleep,
        environment={"DB_URL": "http://db:5432/x"},
        extra={"init": True},
    )
    web.depends_on.add(db)
    return env, make_user_with_role(make_user, env)


def make_user_with_role(make_user, env):
    return make_user(f"u{RUN_ID}{env.pk}", "operator", env)


@pytest.fixture
def make_user(db):
    def make(username, role, environment):
        user = get_user_model().objects.create_user(username=username, password="x")
        RoleAssignment.objects.create(
            user=user, role=Role(role), environment=environment
        )
        return user

    return make


def start_tiny(env, user, run_jobs):
    operation = run(
        start_stack(
            env, Stack.objects.get(name="app"), user=user, with_dependencies=True
        ),
        run_jobs,
    )
    assert_succeeded(operation)


def test_validation_passes_and_names_resolve_across_stacks(
    tiny, run_jobs, docker_client
):
    env, user = tiny
    start_tiny(env, user, run_jobs)
    output, error = call(
        "validate_networks", "--env", env.name, "--user", user.username
    )
    assert error is None, output
    findings = last("network.validate").result["findings"]
    assert all(f["ok"] for f in findings)
    subjects = {f["subject"] for f in findings}
    assert {
        f"multimodal-{env.name}-base_base-net",
        f"multimodal-{env.name}-app_app-net",
        f"multimodal-{env.name}-base-db-1",
        f"multimodal-{env.name}-app-web-1",
        "web -> db",
    } <= subjects
    db_ip = docker_client.api.inspect_container(f"multimodal-{env.name}-base-db-1")[
        "NetworkSettings"
    ]["Networks"][f"multimodal-{env.name}-base_base-net"]["IPAddress"]
    resolved = next(f for f in findings if f["subject"] == "web -> db")
    assert resolved["text"] == f"web resolves db (depends_on) to {db_ip}"


def test_container_on_a_network_it_should_not_be_on_fails_validation(
    tiny, run_jobs, docker_client, docker_labels
):
    env, user = tiny
    start_tiny(env, user, run_jobs)
    pool = list(ipaddress.ip_network(env.subnet_pool).subnets(new_prefix=24))
    stray = f"stray-{RUN_ID}"
    make_network(docker_client, stray, str(pool[5]), docker_labels)
    docker_client.api.connect_container_to_network(
        f"multimodal-{env.name}-base-db-1", stray
    )

    output, error = call(
        "validate_networks", "--env", env.name, "--user", user.username
    )
    assert error is not None
    assert "1 of " in str(error) and "check(s) failed" in str(error)
    text = lines(last("network.validate"))
    assert (
        f"FAILED: container multimodal-{env.name}-base-db-1 (db): attached to {stray}, "
        "which the plan does not say"
    ) in text


# --------------------------------------------------------------------------
# Health


def test_health_probes_core_from_inside_its_network_and_keeps_them(
    docker_client, net_environment, net_operator, run_jobs, client
):
    env = net_environment()
    assert_succeeded(
        run(
            start_stack(env, Stack.objects.get(name="core"), user=net_operator),
            run_jobs,
        )
    )
    # A probe older than the history kept (NETWORK_HEALTH_KEEP_DAYS, 14).
    expired = HealthProbe.objects.create(
        environment=env,
        stack="core",
        service="retired",
        kind="tcp",
        target="retired:1",
        ok=True,
        checked=timezone.now() - timedelta(days=15),
    )
    output, error = call(
        "check_network_health", "--env", env.name, "--user", net_operator.username
    )
    assert error is None, output
    assert not HealthProbe.objects.filter(pk=expired.pk).exists()
    assert "1 probe(s) older than 14 day(s) removed from the history" in lines(
        last("network.health")
    )
    rows = {r.service: r for r in HealthProbe.objects.filter(environment=env)}
    assert sorted(rows) == ["minio", "postgres", "qdrant", "redis"]
    assert all(r.ok and r.seconds > 0 for r in rows.values()), rows
    assert rows["postgres"].target == "postgres:5432"
    assert "accepting connections" in rows["postgres"].detail
    assert rows["redis"].detail == "PONG"
    assert rows["qdrant"].target == "http://qdrant:6333/healthz"
    assert rows["minio"].target == "http://minio:9000/minio/health/live"
    core_net = planned(env, "multimodal-core-net")
    assert all(
        ipaddress.ip_address(r.address) in ipaddress.ip_network(core_net.subnet)
        for r in rows.values()
    )

    client.force_login(net_operator)
    page = client.get(env.get_absolute_url()).content.decode()
    assert 'data-probe="postgres"' in page and "accepting connections" in page

    # Redis gone: the probe fails, the command exits non-zero, history grows.
    docker_client.api.stop(f"multimodal-{env.name}-core-redis-1", timeout=2)
    output, error = call(
        "check_network_health", "--env", env.name, "--user", net_operator.username
    )
    assert error is not None and "core/redis" in str(error)
    assert HealthProbe.objects.filter(environment=env, service="redis").count() == 2
    latest = HealthProbe.objects.filter(environment=env, service="redis").first()
    assert not latest.ok
