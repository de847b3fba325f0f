"""sample_gpus (once, and supervised in a real process that is killed) and
probe_gpus / scripts/gpu_probe, on this machine without a GPU and with the
stand-in nvidia-smi."""

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from gpu.history import history
from tests.conftest import TEST_REDIS_URL, _die_with_test_process
from tests.stacks.live import *  # noqa: F403

ROOT = Path(__file__).resolve().parents[2]


def test_sample_once_stores_and_prints(
    redis_conn, make_environment, standin_smi, settings
):
    settings.PORTAL_GPU = {"NVIDIA_SMI": str(standin_smi())}
    env = make_environment("smi", settings={"gpu_source": "nvidia-smi"})
    out = io.StringIO()
    call_command("sample_gpus", "--once", "--env", env.name, stdout=out)
    assert out.getvalue().splitlines() == [
        f"{env.name}: GPUs: 1 × NVIDIA H200, 41.1 GiB of 140.4 GiB in use",
        "    41.1 GiB  pid 416 (python3), not in a container (GPU 0)",
    ]
    (stored,) = history(env.name)
    assert stored["seq"] == 1
    assert stored["source"] == "nvidia-smi"
    assert stored["gpus"][0]["memory_used_bytes"] == 42099 * 1048576


def test_sample_once_without_gpu_says_so(redis_conn, make_environment):
    env = make_environment("bare", settings={"gpu_source": "nvml"})
    out = io.StringIO()
    call_command("sample_gpus", "--once", "--env", env.name, stdout=out)
    assert out.getvalue() == (
        f"{env.name}: GPUs: none. No NVIDIA GPU found on the Docker host "
        f"unix:///var/run/docker.sock of environment {env.name}: NVML: NVML "
        "Shared Library Not Found.\n"
    )
    assert history(env.name)[0]["gpus"] == []


def test_sample_unknown_environment(redis_conn, db):
    with pytest.raises(CommandError, match="No environment 'nope'."):
        call_command("sample_gpus", "--once", "--env", "nope")


def _children(pid):
    """Return the pids whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _wait(predicate, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return value


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(180)
def test_sampler_is_supervised_and_publishes(
    redis_conn, make_environment, standin_smi, tmp_path
):
    """The sampler process, SIGKILLed, comes back and samples on; SIGTERM
    ends the supervisor and its sampler."""
    env = make_environment("loop", settings={"gpu_source": "nvidia-smi"})
    smi = standin_smi()
    log_path = tmp_path / "sampler.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "sample_gpus", "--env", env.name]
            + ["--interval", "0.5"],
            cwd=ROOT,
            env={
                **os.environ,
                "PATH": f"{smi.parent}:{os.environ['PATH']}",
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "PORTAL_TEST_DB": str(settings.DATABASES["default"]["NAME"]),
                "PORTAL_TEST_REDIS_URL": TEST_REDIS_URL,
                "REDIS_URL": settings.REDIS_URL,
                "CHANNELS_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"][
                    "prefix"
                ],
            },
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_test_process,
        )
    try:

        def seq():
            samples = history(env.name, limit=1)
            return samples[-1]["seq"] if samples else 0

        _wait(lambda: seq() >= 2, "two samples")
        (child,) = _wait(lambda: _children(proc.pid), "the sampler process")
        os.kill(child, signal.SIGKILL)
        _wait(lambda: child not in _children(proc.pid), "the sampler to die")
        before = seq()
        _wait(lambda: seq() >= before + 2, "samples of the restarted sampler")
        (again,) = _children(proc.pid)
        assert again != child
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    output = log_path.read_text()
    assert f"{env.name}: GPUs: 1 × NVIDIA H200, 41.1 GiB of 140.4 GiB" in output
    assert "The GPU sampler exited with -9; restarting it in 1 s." in output
    latest = history(env.name)[-1]
    assert latest["processes"][0]["used_memory_bytes"] == 42090 * 1048576


@pytest.mark.docker
def test_probe_without_gpu_says_so_plainly():
    out = io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("probe_gpus", stdout=out)
    assert str(caught.value) == (
        "No NVIDIA GPU here: neither NVML nor nvidia-smi on this machine, nor a "
        "GPU container on unix:///var/run/docker.sock found one."
    )
    assert out.getvalue().splitlines() == [
        "== NVML (this machine)",
        "no GPU: NVML: NVML Shared Library Not Found",
        "== nvidia-smi (this machine, nvidia-smi)",
        "no GPU: nvidia-smi: nvidia-smi not found",
        "== nvidia-smi in a GPU container on unix:///var/run/docker.sock",
        "no GPU: GPU container: the Docker host unix:///var/run/docker.sock of "
        "environment probe cannot give containers GPUs (no NVIDIA container "
        'toolkit there): could not select device driver "" with capabilities: '
        "[[gpu utility]]",
    ]


@pytest.mark.docker
def test_probe_prints_the_sample_of_a_source_that_answers(standin_smi, settings):
    smi = standin_smi()
    settings.PORTAL_GPU = {"NVIDIA_SMI": str(smi)}
    out = io.StringIO()
    call_command("probe_gpus", "--json", stdout=out)
    text = out.getvalue()
    assert (
        f"== nvidia-smi (this machine, {smi})\n"
        "nvidia-smi -L: GPU 0: NVIDIA H200 (UUID: "
        "GPU-3eb6a623-0b8a-16f1-9d65-348d766271f3)\n"
        "GPU 0 NVIDIA H200 GPU-3eb6a623-0b8a-16f1-9d65-348d766271f3: utilisation "
        "100 %, memory 41.1 GiB of 140.4 GiB, 57 °C, power 692.3 W of 700.0 W, "
        "SM 1470 MHz, memory clock 3201 MHz, P0, uncorrected ECC 0, XID n/a, "
        "driver 580.159.04\n"
        "    41.1 GiB held by pid 416 (python3), not in a container (GPU 0)\n"
    ) in text
    assert text.endswith("1 of 3 sources found GPUs.\n")
    payload = json.loads(text.split("GPU 0)\n", 1)[1].split("\n== ", 1)[0])
    assert payload["source"] == "nvidia-smi"


@pytest.mark.docker
def test_gpu_probe_script_exits_1_without_gpu():
    done = subprocess.run(
        [str(ROOT / "scripts" / "gpu_probe")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
    )
    assert done.returncode == 1
    assert "no GPU: NVML: NVML Shared Library Not Found" in done.stdout
    assert done.stderr.strip().endswith(
        "CommandError: No NVIDIA GPU here: neither NVML nor nvidia-smi on this "
        "machine, nor a GPU container on unix:///var/run/docker.sock found one."
    )
