"""Stack lifecycle end to end: operations, a real worker, the real engine.

Each test imports the real ``configs/stacks.yaml`` and runs its stacks in an
environment of its own, ``t<run id>...``, a copy of ``demo`` (the stand-in
images, GPUs off) with a free subnet pool and port offset, so test runs and a
running demo never collide. Operations go the production way:
``stacks.operations.start_stack`` (permission, plan, line, queue) and an RQ
``SimpleWorker`` burst, or ``run_inline`` as the commands use it.
"""

import ipaddress
import random
import socket
import time
import uuid

import pytest
from django.contrib.auth import get_user_model

from portal.choices import OperationStatus
from portal.models import Operation
from portal.operations import run_inline
from stacks import engine
from stacks.compose import compose_dict, stack_plan
from stacks.config import import_configs, network_plan, published_ports
from stacks.models import Environment, Service, ServiceOverride, Stack
from stacks.operations import restart_stack, start_stack, stop_stack
from tests.conftest import RUN_ID, TEST_LABEL

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


# --------------------------------------------------------------------------
# World


def taken_subnets(client):
    return [
        ipaddress.ip_network(c["Subnet"])
        for net in client.api.networks()
        for c in ((net.get("IPAM") or {}).get("Config") or [])
        if c.get("Subnet")
    ]


def free_pool(client, exclude=(), within="10.240.0.0/12"):
    """Return a /20 of ``within`` that no network (and nothing in exclude) overlaps."""
    taken = taken_subnets(client) + [ipaddress.ip_network(e) for e in exclude]
    candidates = list(ipaddress.ip_network(within).subnets(new_prefix=20))
    random.shuffle(candidates)
    for candidate in candidates:
        if not any(candidate.overlaps(t) for t in taken):
            return str(candidate)
    raise RuntimeError(f"no free /20 in {within}")


def _bindable(port):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_offset(base_ports, exclude=()):
    """Return a port offset under which every one of ``base_ports`` is free.

    The ports must also differ from those of the offsets in ``exclude``
    (environments made earlier in the test, not started yet).
    """
    planned = {port + other for other in exclude for port in base_ports}
    for _ in range(200):
        # Below the kernel's ephemeral range (32768+ by default): an
        # outgoing connection cannot take a port between check and start.
        offset = random.randrange(11000, 23000)
        ports = {port + offset for port in base_ports}
        if not ports & planned and all(_bindable(port) for port in ports):
            return offset
    raise RuntimeError("no free port offset")


@pytest.fixture
def configs(settings, docker_client):
    """Import the real configuration; label what the portal creates."""
    settings.PORTAL_EXTRA_LABELS = {TEST_LABEL: RUN_ID}
    import_configs()
    return Environment.objects.get(name="demo")


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_superuser(f"op{uuid.uuid4().hex[:6]}")


@pytest.fixture
def make_environment(configs, docker_client):
    """Return a function creating a copy of demo with its own pool and offset."""
    demo = configs
    base_ports = {
        p.published - demo.port_offset
        for service in Service.objects.all()
        for p in published_ports(service, demo)
        if p.published is not None
    }
    made = []

    def make(suffix=""):
        env = Environment.objects.create(
            name=f"t{RUN_ID}{suffix}",
            description=f"test copy of demo ({RUN_ID})",
            docker_host=demo.docker_host,
            subnet_pool=free_pool(docker_client, [e.subnet_pool for e in made]),
            port_offset=free_offset(base_ports, [e.port_offset for e in made]),
            bind_address=demo.bind_address,
            gpu_enabled=demo.gpu_enabled,
            settings=demo.settings,
        )
        for override in demo.service_overrides.all():
            ServiceOverride.objects.create(
                environment=env, service=override.service, values=override.values
            )
        made.append(env)
        return env

    return make


@pytest.fixture
def env(make_environment):
    return make_environment()


def stack(name):
    return Stack.objects.get(name=name)


def run(operation, run_jobs):
    """Run queued jobs; return the operation reloaded."""
    run_jobs("default")
    operation.refresh_from_db()
    return operation


def lines(operation):
    return "\n".join(operation.lines.order_by("seq").values_list("text", flat=True))


def assert_succeeded(operation):
    assert operation.status == OperationStatus.SUCCEEDED, (
        f"{operation.status}: {operation.error}\n{lines(operation)}"
    )


def containers(client, env, stack_name):
    """Return {service: inspect dict} of a stack's containers."""
    project = env.project_name(stack(stack_name))
    return {
        s.service: client.api.inspect_container(s.id)
        for s in engine.service_states(client, project).values()
    }


def exec_out(client, container_id, argv):
    result = client.containers.get(container_id).exec_run(argv)
    return result.exit_code, result.output.decode().strip()


# --------------------------------------------------------------------------
# Tests


def test_core_starts_healthy_on_planned_subnet(docker_client, env, operator, run_jobs):
    operation = start_stack(env, stack("core"), user=operator)
    assert operation.plan["levels"] == [["postgres", "redis", "qdrant", "minio"]]
    operation = run(operation, run_jobs)
    assert_succeeded(operation)
    assert operation.result["stacks"]["core"] == {
        "postgres": "created",
        "redis": "created",
        "qdrant": "created",
        "minio": "created",
    }

    project = f"multimodal-{env.name}-core"
    found = containers(docker_client, env, "core")
    assert sorted(found) == ["minio", "postgres", "qdrant", "redis"]
    for name, attrs in found.items():
        assert attrs["Name"] == f"/{project}-{name}-1"
        assert attrs["State"]["Health"]["Status"] == "healthy"
        labels = attrs["Config"]["Labels"]
        assert labels["com.docker.compose.project"] == project
        assert labels["com.docker.compose.service"] == name
        assert labels["portal.environment"] == env.name
        assert labels["portal.stack"] == "core"
        assert labels["portal.service"] == name
        assert len(labels["com.docker.compose.config-hash"]) == 64

    planned = network_plan(env)["multimodal-core-net"]
    assert ipaddress.ip_network(planned.subnet).subnet_of(
        ipaddress.ip_network(env.subnet_pool)
    )
    network = docker_client.api.inspect_network(f"{project}_multimodal-core-net")
    assert network["IPAM"]["Config"] == [
        {"Subnet": planned.subnet, "Gateway": planned.gateway}
    ]
    ip = found["postgres"]["NetworkSettings"]["Networks"][network["Name"]]["IPAddress"]
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(planned.subnet)

    volume = docker_client.api.inspect_volume(f"{project}_postgres_data")
    assert volume["Labels"]["portal.data-type"] == "db"
    port = found["postgres"]["HostConfig"]["PortBindings"]["5432/tcp"][0]
    assert port == {"HostIp": "127.0.0.1", "HostPort": str(5432 + env.port_offset)}
    # Secrets are resolved into the container, never into the log.
    assert (
        "POSTGRES_PASSWORD=demo-postgres-password" in found["postgres"]["Config"]["Env"]
    )
    assert "demo-postgres-password" not in lines(operation)


def test_dependent_stack_reaches_core_and_stop_leaves_core(
    docker_client, env, operator, run_jobs
):
    operation = run(
        start_stack(env, stack("inference"), user=operator, with_dependencies=True),
        run_jobs,
    )
    assert_succeeded(operation)
    assert list(operation.result["stacks"]) == ["core", "inference"]

    core = containers(docker_client, env, "core")
    inference = containers(docker_client, env, "inference")
    litellm = inference["litellm"]
    # The stand-in's health answers 200 only if postgres:5432 connects.
    assert litellm["State"]["Health"]["Status"] == "healthy"
    core_net = f"multimodal-{env.name}-core_multimodal-core-net"
    assert set(litellm["NetworkSettings"]["Networks"]) == {
        core_net,
        f"multimodal-{env.name}-inference_multimodal-inference-net",
    }
    postgres_ip = core["postgres"]["NetworkSettings"]["Networks"][core_net]["IPAddress"]
    code, out = exec_out(docker_client, litellm["Id"], ["getent", "hosts", "postgres"])
    assert code == 0 and out.split()[0] == postgres_ip
    code, out = exec_out(
        docker_client,
        litellm["Id"],
        [
            "python3",
            "-c",
            "import urllib.request as u; print(u.urlopen('http://127.0.0.1:4000/health').read().decode())",
        ],
    )
    assert code == 0 and '"postgres:5432": true' in out

    stop = stop_stack(env, stack("inference"), user=operator)
    assert stop.plan["order"] == ["litellm", "vllm"]
    stop = run(stop, run_jobs)
    assert_succeeded(stop)
    assert stop.result["stacks"]["inference"] == ["litellm", "vllm"]
    states = engine.service_states(docker_client, env.project_name(stack("core")))
    assert {s: states[s].ready for s in states} == dict.fromkeys(core, True)
    stopped = engine.service_states(docker_client, env.project_name(stack("inference")))
    assert {s.state for s in stopped.values()} == {"exited"}


def test_start_fails_naming_dependency_stacks_not_running(env, operator, run_jobs):
    operation = run(start_stack(env, stack("inference"), user=operator), run_jobs)
    assert operation.status == OperationStatus.FAILED
    assert "depends on stacks that are not running" in operation.error
    assert "core (postgres missing" in operation.error


def test_stop_plan_shows_blast_radius(docker_client, env, operator, run_jobs):
    assert_succeeded(
        run(
            start_stack(env, stack("inference"), user=operator, with_dependencies=True),
            run_jobs,
        )
    )
    operation = stop_stack(env, stack("core"), user=operator)
    radius = operation.plan["blast_radius"]
    assert radius["stops"] == ["postgres", "redis", "qdrant", "minio"]
    assert {"stack": "inference", "service": "litellm", "depends_on": ["postgres"]} in (
        radius["dependents"]
    )
    assert "inference" in radius["dependent_stacks"]
    operation = run(operation, run_jobs)
    assert_succeeded(operation)
    assert "inference/litellm is running and depends on postgres" in lines(operation)


def test_postgres_row_survives_restart_and_removal(
    docker_client, env, operator, run_jobs
):
    assert_succeeded(run(start_stack(env, stack("core"), user=operator), run_jobs))
    postgres = containers(docker_client, env, "core")["postgres"]["Id"]
    psql = ["psql", "-U", "multimodal", "-d", "multimodal", "-tAc"]
    code, out = exec_out(
        docker_client,
        postgres,
        [*psql, "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('survives')"],
    )
    assert code == 0, out

    operation = run(restart_stack(env, stack("core"), user=operator), run_jobs)
    assert_succeeded(operation)
    assert operation.result["stopped"] == ["minio", "qdrant", "redis", "postgres"]
    assert set(operation.result["stacks"]["core"].values()) == {"started"}
    assert containers(docker_client, env, "core")["postgres"]["Id"] == postgres
    assert exec_out(docker_client, postgres, [*psql, "SELECT v FROM kept"]) == (
        0,
        "survives",
    )

    # Down and up again: new containers, same named volume.
    assert_succeeded(
        run(stop_stack(env, stack("core"), user=operator, remove=True), run_jobs)
    )
    assert containers(docker_client, env, "core") == {}
    assert_succeeded(run(start_stack(env, stack("core"), user=operator), run_jobs))
    fresh = containers(docker_client, env, "core")["postgres"]["Id"]
    assert fresh != postgres
    assert exec_out(docker_client, fresh, [*psql, "SELECT v FROM kept"]) == (
        0,
        "survives",
    )


def test_unchanged_start_keeps_containers_and_override_recreates_one(
    docker_client, env, operator, run_jobs
):
    assert_succeeded(run(start_stack(env, stack("core"), user=operator), run_jobs))
    before = {s: a["Id"] for s, a in containers(docker_client, env, "core").items()}

    again = run(start_stack(env, stack("core"), user=operator), run_jobs)
    assert_succeeded(again)
    assert set(again.result["stacks"]["core"].values()) == {"unchanged"}
    assert {
        s: a["Id"] for s, a in containers(docker_client, env, "core").items()
    } == before

    override = ServiceOverride.objects.get(environment=env, service__name="redis")
    override.values = {
        **override.values,
        "environment": {**override.values.get("environment", {}), "EXTRA": "1"},
    }
    override.save()
    changed = run(start_stack(env, stack("core"), user=operator), run_jobs)
    assert_succeeded(changed)
    assert changed.result["stacks"]["core"] == {
        "postgres": "unchanged",
        "redis": "recreated",
        "qdrant": "unchanged",
        "minio": "unchanged",
    }
    after = {s: a["Id"] for s, a in containers(docker_client, env, "core").items()}
    assert after["redis"] != before["redis"]
    assert {s: i for s, i in after.items() if s != "redis"} == {
        s: i for s, i in before.items() if s != "redis"
    }
    redis = containers(docker_client, env, "core")["redis"]
    assert "EXTRA=1" in redis["Config"]["Env"]
    assert redis["State"]["Health"]["Status"] == "healthy"


def test_two_environments_side_by_side(
    docker_client, make_environment, operator, run_jobs
):
    first, second = make_environment("a"), make_environment("b")
    for env in (first, second):
        assert_succeeded(run(start_stack(env, stack("core"), user=operator), run_jobs))
    one = containers(docker_client, first, "core")
    two = containers(docker_client, second, "core")
    assert not {a["Name"] for a in one.values()} & {a["Name"] for a in two.values()}
    subnets = []
    for env in (first, second):
        name = f"multimodal-{env.name}-core_multimodal-core-net"
        subnets.append(
            ipaddress.ip_network(
                docker_client.api.inspect_network(name)["IPAM"]["Config"][0]["Subnet"]
            )
        )
    assert not subnets[0].overlaps(subnets[1])
    for found in (one, two):
        code, out = exec_out(
            docker_client, found["postgres"]["Id"], ["pg_isready", "-h", "127.0.0.1"]
        )
        assert code == 0, out
    ports = {
        found["redis"]["HostConfig"]["PortBindings"]["6379/tcp"][0]["HostPort"]
        for found in (one, two)
    }
    assert len(ports) == 2


def test_missing_image_fails_naming_image_and_service(env, operator, run_jobs):
    override = ServiceOverride.objects.get(environment=env, service__name="minio")
    override.values = {**override.values, "image": "stackportal/does-not-exist:1"}
    override.save()
    operation = run(start_stack(env, stack("core"), user=operator), run_jobs)
    assert operation.status == OperationStatus.FAILED
    assert "stackportal/does-not-exist:1" in operation.error
    assert "service minio" in operation.error


def test_port_in_use_fails_naming_service_port_and_holder(
    docker_client, env, operator, run_jobs
):
    port = 6379 + env.port_offset
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        operation = run(start_stack(env, stack("core"), user=operator), run_jobs)
    assert operation.status == OperationStatus.FAILED
    assert f"service redis: port {port}/tcp on 127.0.0.1 is in use" in operation.error
    assert "process python" in operation.error
    # Preflight fails before anything is created.
    assert containers(docker_client, env, "core") == {}


def test_gpu_service_on_host_without_gpu_fails_naming_service(
    docker_client, env, operator, run_jobs
):
    if "nvidia" in (docker_client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime")
    env.gpu_enabled = True
    env.save()
    override = ServiceOverride.objects.get(environment=env, service__name="redis")
    override.values = {**override.values, "gpu": True}
    override.save()
    operation = run(start_stack(env, stack("core"), user=operator), run_jobs)
    assert operation.status == OperationStatus.FAILED
    assert "Service redis needs a GPU" in operation.error
    assert "NVIDIA runtime" in operation.error


def test_start_inline_as_commands_do(docker_client, env, operator):
    operation = start_stack(env, stack("core"), user=operator, enqueue=False)
    echoed = []
    operation = run_inline(operation, echo=lambda *line: echoed.append(line[2]))
    assert_succeeded(operation)
    assert any("postgres: healthy after" in text for text in echoed)
    assert Operation.objects.get(pk=operation.pk).progress == 100


def test_rendered_compose_describes_what_was_created(
    docker_client, env, operator, run_jobs
):
    assert_succeeded(
        run(
            start_stack(env, stack("inference"), user=operator, with_dependencies=True),
            run_jobs,
        )
    )
    for stack_row in Stack.objects.filter(name__in=["core", "inference"]):
        document = compose_dict(stack_plan(env, stack_row))
        project = document["name"]

        def docker_name(key, section, project=project, document=document):
            entry = document[section][key]
            return entry.get("name") or f"{project}_{key}"

        states = engine.service_states(docker_client, project)
        assert set(states) == set(document["services"])
        for name, service in document["services"].items():
            attrs = docker_client.api.inspect_container(states[name].id)
            assert attrs["Name"] == f"/{project}-{name}-1"
            assert attrs["Config"]["Image"] == service["image"]
            assert set(attrs["NetworkSettings"]["Networks"]) == {
                docker_name(key, "networks") for key in service["networks"]
            }
            assert {m["Name"] for m in attrs["Mounts"] if m["Type"] == "volume"} >= {
                docker_name(v["source"], "volumes")
                for v in service.get("volumes", [])
                if v["type"] == "volume"
            }
            bindings = attrs["HostConfig"]["PortBindings"] or {}
            assert {
                (f"{p['target']}/{p['protocol']}", p["host_ip"], p["published"])
                for p in service.get("ports", [])
            } == {
                (key, b["HostIp"], b["HostPort"])
                for key, values in bindings.items()
                for b in values
            }
            labels = attrs["Config"]["Labels"]
            assert service["labels"].items() <= labels.items()
        for key, network in document["networks"].items():
            if network.get("external"):
                continue
            attrs = docker_client.api.inspect_network(docker_name(key, "networks"))
            assert attrs["IPAM"]["Config"] == [
                {"Subnet": c["subnet"], "Gateway": c["gateway"]}
                for c in network["ipam"]["config"]
            ]
            assert network["labels"].items() <= attrs["Labels"].items()


def test_dependents_rejoin_a_recreated_dependency_network(
    docker_client, env, operator, run_jobs
):
    assert_succeeded(
        run(
            start_stack(env, stack("inference"), user=operator, with_dependencies=True),
            run_jobs,
        )
    )
    assert_succeeded(run(stop_stack(env, stack("inference"), user=operator), run_jobs))
    # Down removes core's network; inference's stopped containers still
    # point at the old one.
    assert_succeeded(
        run(stop_stack(env, stack("core"), user=operator, remove=True), run_jobs)
    )
    operation = run(
        start_stack(env, stack("inference"), user=operator, with_dependencies=True),
        run_jobs,
    )
    assert_succeeded(operation)
    assert operation.result["stacks"]["inference"] == {
        "vllm": "recreated",
        "litellm": "recreated",
    }
    assert "network multimodal-" in lines(operation)
    litellm = containers(docker_client, env, "inference")["litellm"]
    assert litellm["State"]["Health"]["Status"] == "healthy"


def test_service_restart_touches_only_that_service(
    docker_client, env, operator, run_jobs
):
    assert_succeeded(run(start_stack(env, stack("core"), user=operator), run_jobs))
    before = {
        s: a["State"]["StartedAt"]
        for s, a in containers(docker_client, env, "core").items()
    }
    redis = Service.objects.get(name="redis")
    operation = run(
        restart_stack(env, stack("core"), user=operator, service=redis), run_jobs
    )
    assert_succeeded(operation)
    assert operation.result["stopped"] == ["redis"]
    assert operation.result["stacks"]["core"] == {"redis": "started"}
    after = {
        s: a["State"]["StartedAt"]
        for s, a in containers(docker_client, env, "core").items()
    }
    assert after["redis"] != before["redis"]
    assert {s: t for s, t in after.items() if s != "redis"} == {
        s: t for s, t in before.items() if s != "redis"
    }


def test_cancel_stops_a_start_between_services(docker_client, env, operator):
    import threading

    from django.db import connection

    from portal.operations import cancel_operation

    operation = start_stack(env, stack("core"), user=operator, enqueue=False)

    def cancel_once_running():
        # Bounded by the run itself, not by a count of polls: on a busy
        # machine the start can take seconds to get going.
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                row = Operation.objects.get(pk=operation.pk)
                if row.status == OperationStatus.RUNNING:
                    cancel_operation(row, user=operator)
                    return
                if row.is_terminal:
                    return
                threading.Event().wait(0.02)
        finally:
            connection.close()

    canceler = threading.Thread(target=cancel_once_running)
    canceler.start()
    operation = run_inline(operation)
    canceler.join()
    assert operation.status == OperationStatus.CANCELED, lines(operation)
    assert operation.error.startswith("Canceled by")
    states = engine.service_states(docker_client, env.project_name(stack("core")))
    assert len(states) < 4 or not all(s.ready for s in states.values())


def test_stop_with_dependents_stops_them_first(docker_client, env, operator, run_jobs):
    assert_succeeded(
        run(
            start_stack(env, stack("inference"), user=operator, with_dependencies=True),
            run_jobs,
        )
    )
    operation = run(
        stop_stack(env, stack("core"), user=operator, with_dependents=True), run_jobs
    )
    assert_succeeded(operation)
    stopped = operation.result["stacks"]
    assert list(stopped).index("inference") < list(stopped).index("core")
    assert stopped["inference"] == ["litellm", "vllm"]
    assert stopped["core"] == ["minio", "qdrant", "redis", "postgres"]
    for name in ("core", "inference"):
        states = engine.service_states(docker_client, env.project_name(stack(name)))
        assert {s.state for s in states.values()} == {"exited"}


def test_service_asking_for_the_portals_secret_key_does_not_get_it(
    docker_client, env, operator, monkeypatch
):
    """A reference to the portal's own SECRET_KEY (set in the process that
    runs the start) fails the start naming the variable; the value appears
    nowhere: not in the log, the error, the audit log or a container."""
    from portal.models import AuditEntry, OperationLogLine

    value = f"portal-secret-{uuid.uuid4().hex}"
    monkeypatch.setenv("SECRET_KEY", value)
    ServiceOverride.objects.update_or_create(
        environment=env,
        service=Service.objects.get(name="redis"),
        defaults={
            "values": {
                **env.service_overrides.get(service__name="redis").values,
                "environment": {"LEAK": "${SECRET_KEY}"},
            }
        },
    )
    operation = run_inline(
        start_stack(env, stack("core"), user=operator, enqueue=False)
    )
    assert operation.status == OperationStatus.FAILED
    assert operation.error.startswith(
        "Cannot resolve the environment: variable SECRET_KEY is not set (service "
        "redis) and the reference has no default (variables of environment "
        f"{env.name} come from its settings.variables"
    )
    texts = [operation.error, str(operation.result), str(operation.plan)]
    texts += list(
        OperationLogLine.objects.filter(operation=operation).values_list(
            "text", flat=True
        )
    )
    texts += [str(data) for data in AuditEntry.objects.values_list("data", flat=True)]
    assert not [text for text in texts if value in text]
    assert any("LEAK=${SECRET_KEY}" in text for text in texts)
    for container in docker_client.containers.list(
        all=True, filters={"label": f"{TEST_LABEL}={RUN_ID}"}
    ):
        assert value not in str(container.attrs["Config"]["Env"])
