"""ws/gpu/<env>/ against the real Redis channel layer: history, then live
samples, for the Viewer role only."""

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from django.contrib.auth.models import AnonymousUser

from gpu.history import save_and_publish
from gpu.routing import websocket_urlpatterns
from tests.gpu.conftest import load_sample
from tests.stacks.live import *  # noqa: F403
from tests.websockets import Communicator

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]


@pytest.fixture
def world(redis_conn, make_environment, make_user):
    env = make_environment("gpus")
    other = make_environment("gpus-other")
    users = {
        "viewer": make_user("viewer", "viewer", env),
        "nobody": make_user("nobody"),
        "elsewhere": make_user("elsewhere", "admin", other),
    }
    return env, users


def communicator(env_name, user):
    comm = Communicator(URLRouter(websocket_urlpatterns), f"/ws/gpu/{env_name}/")
    comm.scope["user"] = user
    return comm


async def test_viewer_gets_history_then_live_samples(world):
    env, users = world
    stored = await sync_to_async(save_and_publish)(load_sample(env.name, state="idle"))
    comm = communicator(env.name, users["viewer"])
    assert (await comm.connect())[0]
    history = await comm.receive_json_from(timeout=10)
    assert history["type"] == "history"
    assert [s["seq"] for s in history["samples"]] == [stored.seq]
    assert history["samples"][0]["gpus"][0]["utilization_gpu"] == 0

    live = await sync_to_async(save_and_publish)(load_sample(env.name))
    message = await comm.receive_json_from(timeout=10)
    assert message["type"] == "sample"
    sample = message["sample"]
    assert sample["seq"] == live.seq == stored.seq + 1
    assert sample["gpus"][0]["utilization_gpu"] == 100
    assert sample["gpus"][0]["fan_percent"] is None
    assert sample["summary"] == ("GPUs: 1 × NVIDIA H200, 41.1 GiB of 140.4 GiB in use")
    assert [(h["label"], h["text"]) for h in sample["holders"]] == [
        ("pid 416 (python3), not in a container", "41.1 GiB")
    ]
    await comm.disconnect()


async def test_anonymous_refused(world):
    env, _ = world
    connected, code = await communicator(env.name, AnonymousUser()).connect()
    assert (connected, code) == (False, 4401)


async def test_user_without_role_refused(world):
    env, users = world
    connected, code = await communicator(env.name, users["nobody"]).connect()
    assert (connected, code) == (False, 4403)


async def test_role_on_another_environment_refused(world):
    env, users = world
    connected, code = await communicator(env.name, users["elsewhere"]).connect()
    assert (connected, code) == (False, 4403)


async def test_unknown_environment_named(world):
    _, users = world
    comm = communicator("nowhere", users["viewer"])
    assert (await comm.connect())[0]
    message = await comm.receive_json_from(timeout=10)
    closed = await comm.receive_output(timeout=10)
    await comm.disconnect(code=closed["code"])
    assert message == {"type": "error", "message": "No environment 'nowhere'."}
    assert closed["code"] == 4404
