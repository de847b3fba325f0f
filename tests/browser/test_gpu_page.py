"""The GPU page in chromium: a viewer sees the stored sample rendered (cards,
gauges, history chart, who holds the memory) and the next sample live."""

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from gpu.history import save_and_publish
from tests.browser.conftest import browser, live_server_url, screenshot  # noqa: F401
from tests.gpu.conftest import load_sample
from tests.stacks.live import *  # noqa: F403

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(180),
]


@pytest.fixture
def viewer_cookie(redis_conn, make_environment, make_stack, make_service, make_user):
    """Return the environment and a viewer's session cookie; store two
    samples (idle, then loaded with its process on inference/vllm)."""
    env = make_environment("gpupage")
    stack = make_stack("inference")
    make_service(stack, "vllm", gpu=True)
    user = make_user("vera", "viewer", env)
    save_and_publish(load_sample(env.name, state="idle"))
    sample = load_sample(env.name)
    process = sample.processes[0]
    process.container_name = f"multimodal-{env.name}-inference-vllm-1"
    process.environment, process.stack, process.service = env.name, "inference", "vllm"
    save_and_publish(sample)
    client = Client()
    client.force_login(user)
    return env, client.cookies[settings.SESSION_COOKIE_NAME].value


def test_gpu_page_renders_the_sample_then_follows_live(
    viewer_cookie,
    live_server_url,  # noqa: F811
    browser,  # noqa: F811
    screenshot,  # noqa: F811
):
    env, cookie = viewer_cookie
    context = browser.new_context(viewport={"width": 1300, "height": 1100})
    session = settings.SESSION_COOKIE_NAME
    context.add_cookies([{"name": session, "value": cookie, "url": live_server_url}])
    page = context.new_page()
    page.goto(f"{live_server_url}/environments/{env.name}/gpus/")
    card = page.locator('section[data-gpu="0"]')
    expect(card.locator("h2")).to_have_text("GPU 0 · NVIDIA H200")
    util = card.locator('[data-gauge="utilisation"] [data-field="figure"]')
    expect(util).to_have_text("100 %")
    expect(card.locator('[data-gauge="memory"] [data-field="figure"]')).to_have_text(
        "41.1 GiB"
    )
    expect(card.locator('[data-gauge="power"] [data-field="figure"]')).to_have_text(
        "692 W"
    )
    expect(card.locator(".gpu-facts")).to_contain_text("XID errors n/a")
    # The history chart has a point per stored sample: idle, then loaded.
    points = card.locator('polyline[data-series="utilization"]')
    expect(points).to_have_attribute("points", "0.0,90.0 360.0,0.0")
    holder = page.locator('tr[data-holder="inference/vllm"]')
    expect(holder).to_contain_text("41.1 GiB")
    expect(page.locator('[data-field="connection"]')).to_have_text("live")
    screenshot(page, "gpu-page")

    save_and_publish(load_sample(env.name, state="idle"))
    expect(util).to_have_text("0 %")
    expect(page.locator('[data-field="holders"]')).to_contain_text(
        "No process holds GPU memory."
    )
    context.close()
