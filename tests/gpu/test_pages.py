"""The GPU page (four permission cases), the GPU figures on the environment
page and in the blast radius of a stop or restart, and the metrics."""

import re

import pytest
from django.test import Client

from gpu.history import save_and_publish
from gpu.readings import MIB
from stacks.operations import blast_radius
from tests.gpu.conftest import load_sample
from tests.stacks.live import *  # noqa: F403

pytestmark = [pytest.mark.django_db]


@pytest.fixture
def world(redis_conn, make_environment, make_stack, make_service, make_user):
    env = make_environment("pages")
    other = make_environment("pages-other")
    inference = make_stack("inference")
    make_service(inference, "vllm", gpu=True)
    make_service(inference, "litellm")
    users = {
        "viewer": make_user("viewer", "viewer", env),
        "operator": make_user("operator", "operator", env),
        "nobody": make_user("nobody"),
        "elsewhere": make_user("elsewhere", "admin", other),
    }
    return env, other, inference, users


def held_by_vllm(env):
    """Return the load sample with its process attributed to inference/vllm
    (as gpu.attribution does from the cgroup, tested in test_attribution)."""
    sample = load_sample(env.name)
    process = sample.processes[0]
    process.container_id = "c" * 64
    process.container_name = "multimodal-x-inference-vllm-1"
    process.environment, process.stack, process.service = env.name, "inference", "vllm"
    return sample


def client_for(user):
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def test_gpu_page_anonymous_goes_to_login(world):
    env, *_ = world
    response = client_for(None).get(f"/environments/{env.name}/gpus/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_gpu_page_without_role_forbidden(world):
    env, _, _, users = world
    response = client_for(users["nobody"]).get(f"/environments/{env.name}/gpus/")
    assert response.status_code == 403


def test_gpu_page_with_role_elsewhere_forbidden(world):
    env, _, _, users = world
    for path in ("gpus/", "gpus/history.json"):
        response = client_for(users["elsewhere"]).get(
            f"/environments/{env.name}/{path}"
        )
        assert response.status_code == 403


def test_gpu_page_viewer_sees_the_sample(world):
    env, _, _, users = world
    save_and_publish(held_by_vllm(env))
    response = client_for(users["viewer"]).get(f"/environments/{env.name}/gpus/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "GPUs: 1 × NVIDIA H200, 41.1 GiB of 140.4 GiB in use" in html
    assert re.search(
        r'<tr data-holder="inference/vllm"><td>inference/vllm</td><td>0</td>'
        r"<td>1</td><td>41.1 GiB</td></tr>",
        html,
    )
    assert f'data-ws-path="/ws/gpu/{env.name}/"' in html
    data = client_for(users["viewer"]).get(
        f"/environments/{env.name}/gpus/history.json"
    )
    (sample,) = data.json()["samples"]
    assert sample["services"] == {"inference/vllm": "41.1 GiB · GPU 0 100 %"}


def test_gpu_page_without_gpu_says_why(world):
    env, _, _, users = world
    sample = load_sample(env.name, state="idle")
    sample.gpus, sample.error = [], "No NVIDIA GPU found on the Docker host x: NVML."
    save_and_publish(sample)
    html = client_for(users["viewer"]).get(f"/environments/{env.name}/gpus/").content
    assert b"GPUs: none. No NVIDIA GPU found on the Docker host x: NVML." in html


def test_gpu_page_before_any_sample(world):
    env, _, _, users = world
    html = client_for(users["viewer"]).get(f"/environments/{env.name}/gpus/").content
    assert b"GPUs: no sample yet (is manage.py sample_gpus running?)" in html


def test_environment_page_shows_gpu_figures_beside_the_service(world):
    env, _, _, users = world
    save_and_publish(held_by_vllm(env))
    html = (
        client_for(users["viewer"]).get(f"/environments/{env.name}/").content.decode()
    )
    assert (
        '<td data-label="GPU" data-gpu-service="inference/vllm">'
        "41.1 GiB · GPU 0 100 %</td>"
    ) in html
    assert '<td data-label="GPU" data-gpu-service="inference/litellm"></td>' in html
    assert "GPUs: 1 × NVIDIA H200, 41.1 GiB of 140.4 GiB in use" in html


def test_restart_preview_shows_the_gpu_memory_it_frees(world):
    """The stop and restart confirmations read the stack's impact as JSON."""
    env, _, _, users = world
    save_and_publish(held_by_vllm(env))
    response = client_for(users["operator"]).get(
        f"/environments/{env.name}/stacks/inference/impact/",
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 200
    assert response.json()["text"] == (
        "stops litellm, vllm. frees 41.1 GiB of GPU memory (vllm 41.1 GiB)."
    )


def test_dashboard_shows_the_gpu_summary_of_each_environment(world):
    env, other, _, users = world
    save_and_publish(held_by_vllm(env))
    html = client_for(users["viewer"]).get("/").content.decode()
    assert '<section class="card" data-panel="gpus">' in html
    assert (
        f'<li data-environment="{env.name}"><a href="/environments/{env.name}/gpus/">'
        f"{env.name}</a>: GPUs: 1 × NVIDIA H200, 41.1 GiB of 140.4 GiB in use</li>"
    ) in html
    assert other.name not in html  # not the viewer's environment
    env.gpu_enabled = False
    env.save()
    html = client_for(users["viewer"]).get("/").content.decode()
    assert 'data-panel="gpus"' not in html


def test_blast_radius_counts_the_stopping_services_memory(world):
    env, other, inference, _ = world
    sample = held_by_vllm(env)
    save_and_publish(sample)
    radius = blast_radius(env, inference)
    assert radius["gpu_memory"] == {
        "bytes": 42090 * MIB,
        "services": [{"service": "vllm", "bytes": 42090 * MIB}],
        "taken": sample.taken,
        "text": "frees 41.1 GiB of GPU memory (vllm 41.1 GiB)",
    }
    litellm = inference.services.get(name="litellm")
    assert "gpu_memory" not in blast_radius(env, inference, litellm)
    # Another environment's sample says nothing about this one.
    assert "gpu_memory" not in blast_radius(other, inference)


def test_blast_radius_ignores_an_old_sample(world):
    env, _, inference, _ = world
    sample = held_by_vllm(env)
    sample.taken -= 3600
    save_and_publish(sample)
    assert "gpu_memory" not in blast_radius(env, inference)


def test_metrics_per_gpu_and_per_service(world, settings):
    env, other, _, _ = world
    settings.PORTAL_METRICS_TOKEN = "t0ken"
    save_and_publish(held_by_vllm(env))
    bare = load_sample(other.name)
    bare.gpus, bare.processes, bare.error = [], [], "No NVIDIA GPU found."
    save_and_publish(bare)
    text = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer t0ken").content.decode()
    gpu = (
        f'environment="{env.name}",gpu="0",'
        'name="NVIDIA H200",uuid="GPU-3eb6a623-0b8a-16f1-9d65-348d766271f3"'
    )
    assert f"portal_gpu_memory_used_bytes{{{gpu}}} 4.4144001024e+10" in text
    assert f"portal_gpu_utilization_percent{{{gpu}}} 100.0" in text
    assert f"portal_gpu_power_draw_watts{{{gpu}}} 692.3" in text
    assert f"portal_gpu_ecc_uncorrected_errors{{{gpu}}} 0.0" in text
    # Not reported by this board or source: no sample at all, never a zero.
    assert "portal_gpu_xid_errors{" not in text
    service = f'environment="{env.name}",service="vllm",stack="inference"'
    assert f"portal_gpu_service_memory_bytes{{{service}}} 4.413456384e+10" in text
    assert f"portal_gpu_service_processes{{{service}}} 1.0" in text
    assert f'portal_gpu_available{{environment="{env.name}"}} 1.0' in text
    assert f'portal_gpu_available{{environment="{other.name}"}} 0.0' in text


def test_metrics_of_a_viewer_cover_only_their_environment(world):
    env, other, _, users = world
    save_and_publish(held_by_vllm(env))
    save_and_publish(load_sample(other.name))
    text = client_for(users["viewer"]).get("/metrics").content.decode()
    assert f'portal_gpu_available{{environment="{env.name}"}} 1.0' in text
    assert other.name not in text
