"""The sources on this machine (no GPU, no NVIDIA toolkit) and, with the
stand-in nvidia-smi replaying the H200 captures, the whole path of a sample:
the program run here or in a GPU helper container on the Docker host (host
PID and cgroup namespaces), parsed, and attributed to a real container."""

from pathlib import Path

import pytest

from gpu.parsing import parse_query_gpu, parse_smi_xml
from gpu.readings import MIB
from gpu.sampling import HostSampler
from gpu.sources import (
    DockerSmiSource,
    GpuUnavailable,
    LocalSmiSource,
    NvmlSource,
    parse_helper_output,
)
from stacks import engine
from tests.gpu.conftest import capture
from tests.stacks.live import *  # noqa: F403

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def vllm(make_environment, make_stack, make_service, make_container):
    """Return (environment, host pid of a running inference/vllm container)."""
    env = make_environment("gpu")
    stack = make_stack("inference")
    make_service(stack, "vllm")
    container = make_container(env, stack, "vllm", "sleep 300")
    container.reload()
    return env, container.attrs["State"]["Pid"]


def test_nvml_without_a_driver_says_so():
    with pytest.raises(GpuUnavailable) as caught:
        NvmlSource().read()
    assert str(caught.value) == "NVML: NVML Shared Library Not Found"


def test_nvidia_smi_not_installed_says_so(tmp_path):
    missing = tmp_path / "nvidia-smi"
    with pytest.raises(GpuUnavailable) as caught:
        LocalSmiSource(str(missing)).read()
    assert str(caught.value) == f"nvidia-smi: {missing} not found"


def test_nvidia_smi_failing_says_what_it_printed(tmp_path):
    broken = tmp_path / "nvidia-smi"
    broken.write_text(
        "#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate "
        'with the NVIDIA driver."\nexit 9\n'
    )
    broken.chmod(0o755)
    with pytest.raises(GpuUnavailable) as caught:
        LocalSmiSource(str(broken)).read()
    assert str(caught.value) == (
        "nvidia-smi: exit 9: NVIDIA-SMI has failed because it couldn't "
        "communicate with the NVIDIA driver."
    )


@pytest.mark.docker
def test_local_nvidia_smi_sample_attributed_to_the_service(vllm, standin_smi):
    env, pid = vllm
    sampler = HostSampler(env, sources=[LocalSmiSource(str(standin_smi(pid)))])
    (sample,) = sampler.sample([env])
    assert sample.error is None
    assert sample.source == "nvidia-smi"
    assert sample.gpus == parse_query_gpu(capture("query-gpu-load.csv"))
    (process,) = sample.processes
    assert (process.pid, process.name, process.used_memory_bytes) == (
        pid,
        "python3",
        42090 * MIB,
    )
    assert (process.environment, process.stack, process.service) == (
        env.name,
        "inference",
        "vllm",
    )


@pytest.mark.docker
def test_local_nvidia_smi_xml_sample_attributed_to_the_service(vllm, standin_smi):
    """``settings.gpu_query: xml``: one ``nvidia-smi -q -x`` run."""
    env, pid = vllm
    env.settings = {"gpu_source": "nvidia-smi", "gpu_query": "xml"}
    (source,) = HostSampler(env).sources
    source.nvidia_smi = str(standin_smi(pid))
    (sample,) = HostSampler(env, sources=[source]).sample([env])
    assert sample.gpus == parse_smi_xml(capture("nvidia-smi-q-load.xml"))[0]
    assert [(p.pid, p.used_memory_bytes, p.service) for p in sample.processes] == [
        (pid, 42090 * MIB, "vllm")
    ]


@pytest.mark.docker
def test_gpu_container_on_a_host_without_gpu_support(make_environment):
    env = make_environment("nogpu")
    client = engine.client_for(env)
    with pytest.raises(GpuUnavailable) as caught:
        DockerSmiSource(env).read()
    assert str(caught.value) == (
        f"GPU container: the Docker host unix:///var/run/docker.sock of "
        f"environment {env.name} cannot give containers GPUs (no NVIDIA "
        'container toolkit there): could not select device driver "" with '
        "capabilities: [[gpu utility]]"
    )
    assert engine.list_helpers(client, purpose="gpu.sample", environment=env) == []


@pytest.mark.docker
def test_gpu_container_runs_the_queries_in_the_hosts_namespaces(vllm, standin_image):
    """The helper script, run by the engine in a helper with the host's PID
    and cgroup namespaces, reads the real container's cgroup itself."""
    env, pid = vllm
    source = DockerSmiSource(env, image=standin_image(pid), gpus=False)
    reading = source.read()
    assert reading.cgroups == {pid: Path(f"/proc/{pid}/cgroup").read_text().strip()}
    (sample,) = HostSampler(env, sources=[source]).sample([env])
    assert sample.source == "docker"
    assert sample.gpus == parse_query_gpu(capture("query-gpu-load.csv"))
    assert [(p.pid, p.stack, p.service) for p in sample.processes] == [
        (pid, "inference", "vllm")
    ]
    client = engine.client_for(env)
    assert engine.list_helpers(client, purpose="gpu.sample", environment=env) == []


@pytest.mark.docker
def test_gpu_container_xml_query(vllm, standin_image):
    env, pid = vllm
    source = DockerSmiSource(env, image=standin_image(pid), gpus=False, xml=True)
    (sample,) = HostSampler(env, sources=[source]).sample([env])
    assert sample.gpus == parse_smi_xml(capture("nvidia-smi-q-load.xml"))[0]
    assert [(p.pid, p.stack, p.service) for p in sample.processes] == [
        (pid, "inference", "vllm")
    ]


@pytest.mark.docker
def test_gpu_container_image_without_nvidia_smi(make_environment):
    env = make_environment("nosmi")
    source = DockerSmiSource(env, image="stackportal/base:local", gpus=False)
    with pytest.raises(GpuUnavailable) as caught:
        source.read()
    assert str(caught.value) == (
        "GPU container: nvidia-smi is not in image stackportal/base:local (the "
        "NVIDIA container toolkit adds it to glibc-based images; set "
        "settings.gpu_image to one)"
    )


@pytest.mark.docker
def test_host_without_gpu_says_so_plainly(make_environment):
    env = make_environment("plain")
    (sample,) = HostSampler(env).sample([env])
    assert sample.gpus == [] and sample.processes == []
    assert sample.error == (
        f"No NVIDIA GPU found on the Docker host unix:///var/run/docker.sock of "
        f"environment {env.name}: NVML: NVML Shared Library Not Found; "
        "nvidia-smi: nvidia-smi not found; GPU container: the Docker host "
        f"unix:///var/run/docker.sock of environment {env.name} cannot give "
        "containers GPUs (no NVIDIA container toolkit there): could not select "
        'device driver "" with capabilities: [[gpu utility]].'
    )


def test_remote_host_uses_only_the_gpu_container(make_environment):
    env = make_environment("remote", docker_host="tcp://gpu-01.example.org:2376")
    sampler = HostSampler(env)
    assert [s.name for s in sampler.sources] == ["docker"]


def test_gpu_source_off(make_environment):
    env = make_environment("off", settings={"gpu_source": "off"})
    (sample,) = HostSampler(env).sample([env])
    assert sample.error == (
        f"GPU status is off for environment {env.name} (settings.gpu_source: off)."
    )


def test_gpu_source_unknown_names_the_setting(make_environment):
    env = make_environment("typo", settings={"gpu_source": "nvml2"})
    (sample,) = HostSampler(env).sample([env])
    assert sample.error == (
        f"environment {env.name}: settings.gpu_source is 'nvml2'; expected one "
        "of auto, nvml, nvidia-smi, docker, off"
    )


def test_gpu_query_unknown_names_the_setting(make_environment):
    env = make_environment("q", settings={"gpu_query": "json"})
    (sample,) = HostSampler(env).sample([env])
    assert sample.error == (
        f"environment {env.name}: settings.gpu_query is 'json'; expected one of "
        "csv, xml"
    )


def test_helper_output_cut_off_is_an_error():
    with pytest.raises(Exception, match="section apps missing or cut off"):
        parse_helper_output("@@gpus\nNo devices were found\n@@exit 6\n@@apps\n")
