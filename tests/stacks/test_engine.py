"""The Docker engine layer against the real engine, with hand-made specs.

These tests exercise ``stacks.engine`` one step at a time; the lifecycle
tests (test_lifecycle.py) run whole stacks from the real configuration.
Every object carries ``portal.test=<run id>`` (PORTAL_EXTRA_LABELS), so the
conftest's teardown removes it.
"""

import ipaddress
import logging
import random
import socket
from functools import partial

import pytest

from stacks import engine
from stacks.compose import resolve_spec
from stacks.engine.images import _log_pull_event as log_pull_event
from stacks.engine.labels import COMPOSE_PROJECT, COMPOSE_SERVICE, base_labels
from stacks.engine.specs import (
    HealthSpec,
    MountSpec,
    NetworkSpec,
    PortSpec,
    ServiceSpec,
    StackPlan,
    VolumeSpec,
    network_docker_name,
    volume_docker_name,
)
from stacks.models import Environment, Stack
from stacks.secrets import resolve_all
from tests.conftest import RUN_ID, TEST_LABEL
from tests.stacks.live import wait_for

pytestmark = pytest.mark.docker

BUSYBOX = "stackportal/busybox:local"
POSTGRES = "stackportal/postgres:local"
log = logging.getLogger("tests.stacks.engine")


def free_subnet(client, prefix=24, within="10.200.0.0/13"):
    """Return a subnet of ``within`` that no network on the engine overlaps.

    Picked at random, not first-fit, so that two test runs sharing the
    engine do not both go for the same one.
    """
    taken = [
        ipaddress.ip_network(c["Subnet"])
        for net in client.api.networks()
        for c in ((net.get("IPAM") or {}).get("Config") or [])
        if c.get("Subnet")
    ]
    candidates = list(ipaddress.ip_network(within).subnets(new_prefix=prefix))
    random.shuffle(candidates)
    for candidate in candidates:
        if not any(candidate.overlaps(t) for t in taken):
            return candidate
    raise RuntimeError(f"no free /{prefix} in {within}")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def labelled(settings):
    settings.PORTAL_EXTRA_LABELS = {TEST_LABEL: RUN_ID}


@pytest.fixture
def world(docker_client, labelled):
    """Return (environment, stack, project, network spec) for one test."""
    env = Environment(name=f"t{RUN_ID}")
    stack = Stack(name="adapter")
    project = f"multimodal-t{RUN_ID}-adapter"
    subnet = free_subnet(docker_client)
    net = NetworkSpec(
        key="adapter-net",
        docker_name=network_docker_name(project, "adapter-net"),
        stack=stack.name,
        project=project,
        subnet=str(subnet),
        gateway=str(next(subnet.hosts())),
        labels=base_labels(env, stack),
    )
    return env, stack, project, net


def service(world, name, **kwargs):
    env, stack, project, net = world
    labels = {
        **base_labels(env, stack),
        COMPOSE_PROJECT: project,
        COMPOSE_SERVICE: name,
        "portal.service": name,
    }
    kwargs.setdefault("image", BUSYBOX)
    kwargs.setdefault("command", ["sleep", "600"])
    kwargs.setdefault("extra", {"init": True})
    return ServiceSpec(
        name=name,
        stack=stack.name,
        project=project,
        networks={net.docker_name: net.key},
        aliases=[name],
        labels=labels,
        **kwargs,
    )


def apply(client, spec, net_id, net):
    image_id = engine.ensure_image(client, spec.image, service=spec.name, log=log)
    return engine.reconcile_service(
        client,
        spec,
        image_id=image_id,
        network_ids={net.docker_name: net_id},
        log=log,
    )


def test_ensure_network_creates_planned_subnet_and_labels(docker_client, world):
    env, stack, project, net = world
    net_id = engine.ensure_network(docker_client, net, log=log)
    attrs = docker_client.api.inspect_network(net_id)
    assert attrs["Name"] == f"{project}_adapter-net"
    assert attrs["IPAM"]["Config"] == [{"Subnet": net.subnet, "Gateway": net.gateway}]
    assert attrs["Labels"][COMPOSE_PROJECT] == project
    assert attrs["Labels"]["com.docker.compose.network"] == "adapter-net"
    assert attrs["Labels"]["portal.environment"] == env.name
    assert attrs["Labels"][TEST_LABEL] == RUN_ID
    # A second call finds it by label instead of creating another.
    assert engine.ensure_network(docker_client, net, log=log) == net_id


def test_ensure_volume_labels_data_type(docker_client, world):
    env, stack, project, _ = world
    spec = VolumeSpec(
        key="pgdata",
        docker_name=volume_docker_name(project, "pgdata"),
        stack=stack.name,
        project=project,
        data_type="db",
        labels={**base_labels(env, stack), "portal.data-type": "db"},
    )
    engine.ensure_volume(docker_client, spec, log=log)
    labels = docker_client.api.inspect_volume(spec.docker_name)["Labels"]
    assert labels["portal.data-type"] == "db"
    assert labels["com.docker.compose.volume"] == "pgdata"
    assert labels[COMPOSE_PROJECT] == project


def test_reconcile_is_idempotent_and_recreates_on_change(docker_client, world):
    net = world[3]
    net_id = engine.ensure_network(docker_client, net, log=log)
    spec = service(world, "sleeper", environment={"MODE": "a"})

    action, first = apply(docker_client, spec, net_id, net)
    assert action == "created"
    action, again = apply(docker_client, spec, net_id, net)
    assert (action, again) == ("unchanged", first)

    docker_client.api.stop(first, timeout=1)
    action, restarted = apply(docker_client, spec, net_id, net)
    assert (action, restarted) == ("started", first)

    changed = service(world, "sleeper", environment={"MODE": "b"})
    action, second = apply(docker_client, changed, net_id, net)
    assert action == "recreated"
    assert second != first
    containers = engine.project_containers(docker_client, spec.project, "sleeper")
    assert [c["Id"] for c in containers] == [second]
    assert containers[0]["Names"] == [f"/{spec.project}-sleeper-1"]


def test_config_hash_follows_resolved_values(world):
    spec = service(
        world, "hashed", environment={"PASSWORD": "${PW}"}, command=["run", "${MODE}"]
    )

    def hashed(spec, image_id="sha256:1", **environ):
        resolved = resolve_spec(spec, partial(resolve_all, environ=environ))
        return engine.config_hash(resolved, image_id=image_id)

    one = hashed(spec, PW="a", MODE="x")
    assert hashed(spec, PW="a", MODE="x") == one
    assert hashed(spec, PW="b", MODE="x") != one  # rotated secret
    assert hashed(spec, PW="a", MODE="y") != one  # variable in the command
    assert hashed(spec, "sha256:2", PW="a", MODE="x") != one  # rebuilt image
    # Only resolved values count: literals equal to the references' values
    # are no change.
    literal = service(
        world, "hashed", environment={"PASSWORD": "a"}, command=["run", "x"]
    )
    assert hashed(literal) == one


def test_wait_ready_fails_naming_unhealthy_service(docker_client, world):
    net = world[3]
    net_id = engine.ensure_network(docker_client, net, log=log)
    spec = service(
        world,
        "sick",
        healthcheck=HealthSpec(
            test=("CMD-SHELL", "echo probe-says-no; exit 1"),
            interval=0.5,
            timeout=2,
            retries=1,
        ),
    )
    _, cid = apply(docker_client, spec, net_id, net)
    with pytest.raises(engine.EngineError) as excinfo:
        engine.wait_ready(docker_client, {"sick": cid}, timeout=30)
    assert "Service sick is unhealthy" in str(excinfo.value)
    assert "probe-says-no" in str(excinfo.value)


def test_wait_ready_times_out_naming_service(docker_client, world):
    net = world[3]
    net_id = engine.ensure_network(docker_client, net, log=log)
    spec = service(
        world,
        "slow",
        healthcheck=HealthSpec(
            test=("CMD-SHELL", "exit 1"), interval=0.5, timeout=1, start_period=60
        ),
    )
    _, cid = apply(docker_client, spec, net_id, net)
    with pytest.raises(engine.EngineError, match=r"Service slow is not healthy after"):
        engine.wait_ready(docker_client, {"slow": cid}, timeout=2)


def test_wait_ready_reports_exit_with_log_tail(docker_client, world):
    net = world[3]
    net_id = engine.ensure_network(docker_client, net, log=log)
    spec = service(
        world,
        "crasher",
        command=["sh", "-c", "echo cannot-open-config; exit 3"],
        restart="no",
    )
    _, cid = apply(docker_client, spec, net_id, net)
    with pytest.raises(engine.EngineError) as excinfo:
        engine.wait_ready(docker_client, {"crasher": cid}, timeout=30)
    assert "Service crasher stopped during start (exit code 3" in str(excinfo.value)
    assert "cannot-open-config" in str(excinfo.value)


def test_ensure_image_missing_names_image_and_service(docker_client):
    with pytest.raises(engine.EngineError) as excinfo:
        engine.ensure_image(
            docker_client, "stackportal/does-not-exist:1", service="vllm", log=log
        )
    message = str(excinfo.value)
    assert "stackportal/does-not-exist:1" in message
    assert "vllm" in message


def _plan(world, services):
    env, stack, project, net = world
    return StackPlan(
        environment=env,
        stack=stack,
        project=project,
        services=services,
        networks=[net],
    )


def test_check_ports_names_container_of_other_environment(docker_client, world):
    net = world[3]
    net_id = engine.ensure_network(docker_client, net, log=log)
    port = free_port()
    holder = service(
        world,
        "holder",
        ports=[PortSpec(target=8080, published=port, host_ip="127.0.0.1")],
    )
    apply(docker_client, holder, net_id, net)

    env = Environment(name=f"u{RUN_ID}")
    wanting = ServiceSpec(
        name="postgres",
        stack="core",
        project=f"multimodal-u{RUN_ID}-core",
        image=BUSYBOX,
        ports=[PortSpec(target=5432, published=port, host_ip="127.0.0.1")],
    )
    plan = StackPlan(
        environment=env,
        stack=Stack(name="core"),
        project=wanting.project,
        services=[wanting],
    )
    with pytest.raises(engine.EngineError) as excinfo:
        engine.check_ports(docker_client, env, plan)
    message = str(excinfo.value)
    assert f"service postgres: port {port}/tcp on 127.0.0.1" in message
    assert f"{holder.project}-holder-1" in message
    assert f"environment t{RUN_ID}" in message

    # The same project's own container holding the port is no conflict.
    engine.check_ports(docker_client, world[0], _plan(world, [holder]))


def test_check_ports_names_host_process(world):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        spec = service(
            world,
            "web",
            ports=[PortSpec(target=80, published=port, host_ip="127.0.0.1")],
        )
        with pytest.raises(engine.EngineError) as excinfo:
            engine.check_ports(
                engine.client_for(world[0]), world[0], _plan(world, [spec])
            )
    message = str(excinfo.value)
    assert f"service web: port {port}/tcp on 127.0.0.1 is in use on the host" in message
    assert "process python" in message


def test_check_gpu_names_service_without_nvidia_runtime(docker_client, world):
    if "nvidia" in (docker_client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime")
    spec = service(world, "vllm", gpu=True)
    with pytest.raises(engine.EngineError) as excinfo:
        engine.check_gpu(docker_client, world[0], [spec, service(world, "cpu-only")])
    message = str(excinfo.value)
    assert "Service vllm needs a GPU" in message
    assert "cpu-only" not in message
    assert "NVIDIA runtime" in message


def test_gpu_service_gets_device_request(docker_client, world):
    spec = service(world, "vllm", gpu=True, gpu_count="2")
    kwargs, _, _ = engine.container_create_options(docker_client, spec, config_hash="h")
    requests = kwargs["host_config"]["DeviceRequests"]
    assert requests == [
        {
            "Driver": "nvidia",
            "Count": 2,
            "DeviceIDs": [],
            "Capabilities": [["gpu"]],
            "Options": {},
        }
    ]


def test_stream_logs_prefixes_service(docker_client, world):
    net = world[3]
    net_id = engine.ensure_network(docker_client, net, log=log)
    for name in ("alpha", "beta"):
        spec = service(
            world, name, command=["sh", "-c", f"echo hello-from-{name}; sleep 600"]
        )
        _, cid = apply(docker_client, spec, net_id, net)
        engine.wait_ready(docker_client, {name: cid}, timeout=30)
        # Running is not yet logged: wait until the engine has the line.
        wait_for(
            lambda cid=cid, name=name: (
                f"hello-from-{name}".encode() in docker_client.api.logs(cid)
            ),
            what=f"{name}'s first line in its log",
        )
    lines = list(engine.stream_logs(docker_client, world[2], tail=10))
    assert ("alpha", "hello-from-alpha") in lines
    assert ("beta", "hello-from-beta") in lines


def test_named_volume_mount_survives_recreate(docker_client, world):
    env, stack, project, net = world
    net_id = engine.ensure_network(docker_client, net, log=log)
    vol = VolumeSpec(
        key="data",
        docker_name=volume_docker_name(project, "data"),
        stack=stack.name,
        project=project,
        data_type="app-data",
        labels=base_labels(env, stack),
    )
    engine.ensure_volume(docker_client, vol, log=log)
    mounts = [MountSpec("volume", "/data", vol.docker_name, key="data")]
    writer = service(
        world,
        "keeper",
        mounts=mounts,
        command=["sh", "-c", "echo kept > /data/file; sleep 600"],
    )
    _, cid = apply(docker_client, writer, net_id, net)
    engine.wait_ready(docker_client, {"keeper": cid}, timeout=30)
    # Running is not yet written: wait for the file before replacing it.
    wait_for(
        lambda: (
            docker_client.containers.get(cid)
            .exec_run(["cat", "/data/file"])
            .output.strip()
            == b"kept"
        ),
        what="the writer's file",
    )
    reader = service(world, "keeper", mounts=mounts, command=["sleep", "601"])
    action, new_id = apply(docker_client, reader, net_id, net)
    assert action == "recreated"
    result = docker_client.containers.get(new_id).exec_run(["cat", "/data/file"])
    assert result.output.strip() == b"kept"


def test_stream_logs_follows_until_stopped(docker_client, world):
    import threading

    net = world[3]
    net_id = engine.ensure_network(docker_client, net, log=log)
    spec = service(
        world,
        "ticker",
        command=[
            "sh",
            "-c",
            "i=0; while [ $i -lt 600 ]; do echo tick-$i; i=$((i+1)); sleep 0.1; done",
        ],
    )
    apply(docker_client, spec, net_id, net)
    stop = threading.Event()
    seen = []
    for name, line in engine.stream_logs(
        docker_client, world[2], follow=True, tail=0, stop=stop
    ):
        seen.append((name, line))
        if len(seen) == 5:
            stop.set()
    assert len(seen) == 5
    assert all(name == "ticker" and line.startswith("tick-") for name, line in seen)
    numbers = [int(line.split("-")[1]) for _, line in seen]
    assert numbers == sorted(numbers)


class Collect:
    """A log with the runner's interface that keeps the lines."""

    def __init__(self):
        self.lines = []

    def info(self, text):
        self.lines.append(text)

    warning = info


def test_pull_progress_is_throttled_per_layer():
    events = [
        {"status": "Pulling from library/x", "id": "latest"},
        {"status": "Pulling fs layer", "id": "0123456789ab"},
        {
            "status": "Downloading",
            "id": "0123456789ab",
            "progressDetail": {"current": 1, "total": 100},
        },
    ]
    events += [
        {
            "status": "Downloading",
            "id": "0123456789ab",
            "progressDetail": {"current": n, "total": 100},
        }
        for n in range(2, 100)
    ]
    events += [
        {"status": "Pull complete", "id": "0123456789ab"},
        {"status": "Digest: sha256:0"},
    ]
    collected, layers = Collect(), {}
    for event in events:
        log_pull_event(event, layers, collected, "vllm", every=60)
    assert collected.lines == [
        "vllm: Pulling from library/x",
        "vllm: layer 0123456789ab Pulling fs layer",
        "vllm: layer 0123456789ab Downloading 1%",
        "vllm: layer 0123456789ab Pull complete",
        "vllm: Digest: sha256:0",
    ]
