"""pid -> cgroup -> container -> labels, with real containers' real cgroups.

The compute-apps capture's process (pid 416 on the H200) is given the pid
of a container started here, so its cgroup file is the kernel's own and
its labels are the engine's listing of a real container.
"""

from pathlib import Path

import pytest

from gpu.attribution import attribute, container_id_from_cgroup, read_cgroups
from gpu.parsing import parse_compute_apps
from stacks import engine
from tests.gpu.conftest import CAPTURED_PID, apps_capture
from tests.stacks.live import *  # noqa: F403

ID = "aa4df7a74bfa1c1192c0f252f53e1f5fdc0aa5687157054cc3778078eabec064"
OTHER = "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "text",
    [
        # cgroup v1 (one line per controller), as on this machine.
        f"12:pids:/docker/{ID}\n4:memory:/docker/{ID}\n0::/docker/{ID}\n",
        f"4:memory:/docker/{ID}\n1:name=systemd:/docker/{ID}\n",
        # cgroup v2 with the systemd driver, and with cgroupfs.
        f"0::/system.slice/docker-{ID}.scope\n",
        f"0::/docker/{ID}\n",
        # Rootless Docker.
        f"0::/user.slice/user-1000.slice/user@1000.service/app.slice/docker-{ID}.scope",
        # Docker in Docker: the innermost container.
        f"0::/docker/{OTHER}/docker/{ID}\n",
        # Kubernetes with containerd.
        f"0::/kubepods.slice/kubepods-pod1.slice/cri-containerd-{ID}.scope\n",
    ],
)
def test_cgroup_names_the_container(text):
    assert container_id_from_cgroup(text) == ID


@pytest.mark.parametrize(
    "text",
    [
        "0::/\n",  # a private cgroup namespace hides the path
        "0::/user.slice/user-1000.slice/session-2.scope\n",  # a login shell
        f"0::/docker/{ID[:12]}\n",  # a short id is not a cgroup name
        "",
    ],
)
def test_cgroup_without_a_container(text):
    assert container_id_from_cgroup(text) is None


@pytest.fixture
def gpu_container(make_environment, make_stack, make_service, make_container):
    """Return (environment, container) of a running service inference/vllm."""
    env = make_environment("gpu")
    stack = make_stack("inference")
    make_service(stack, "vllm")
    container = make_container(env, stack, "vllm", "sleep 300")
    container.reload()
    return env, container


@pytest.mark.docker
@pytest.mark.django_db
def test_captured_process_maps_to_a_real_containers_service(gpu_container):
    env, container = gpu_container
    pid = container.attrs["State"]["Pid"]
    (process,) = parse_compute_apps(apps_capture())
    assert process.pid == CAPTURED_PID
    # The captured process, given the real container's kernel cgroup.
    cgroups = {CAPTURED_PID: Path(f"/proc/{pid}/cgroup").read_text()}
    containers = engine.running_containers(engine.client_for(env), env)
    attribute([process], cgroups, containers)
    assert process.container_id == container.id
    assert process.container_name == container.name
    assert (process.environment, process.stack, process.service) == (
        env.name,
        "inference",
        "vllm",
    )


@pytest.mark.docker
@pytest.mark.django_db
def test_cgroups_read_from_this_proc(gpu_container):
    env, container = gpu_container
    pid = container.attrs["State"]["Pid"]
    processes = parse_compute_apps(apps_capture(pid))
    cgroups = read_cgroups([pid, 2**22 + 7])  # the second pid does not exist
    assert list(cgroups) == [pid]
    attribute(
        processes, cgroups, engine.running_containers(engine.client_for(env), env)
    )
    assert processes[0].service == "vllm"


@pytest.mark.docker
@pytest.mark.django_db
def test_process_outside_any_container_stays_unattributed(gpu_container):
    env, _ = gpu_container
    processes = parse_compute_apps(apps_capture(1))
    cgroups = read_cgroups([1])
    attribute(
        processes, cgroups, engine.running_containers(engine.client_for(env), env)
    )
    assert (processes[0].container_id, processes[0].service) == (None, None)


def test_container_of_another_engine_keeps_only_its_id():
    (process,) = parse_compute_apps(apps_capture())
    attribute([process], {CAPTURED_PID: f"0::/docker/{ID}\n"}, {})
    assert (process.container_id, process.container_name, process.service) == (
        ID,
        None,
        None,
    )
