"""ws/console/<env>/<stack>/<service>/: a shell in a real container, for
Admins, refused on protected environments unless their policy allows it,
every session and line in the audit log."""

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from django.contrib.auth.models import AnonymousUser
from django.urls import reverse

from portal.models import AuditEntry
from stacks.console import LineRecorder
from stacks.routing import websocket_urlpatterns
from tests.stacks.live import *  # noqa: F403
from tests.websockets import Communicator

pytestmark = [
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]

SLEEP = "i=0; while [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"


@pytest.fixture
def world(make_environment, make_stack, make_service, make_user):
    env = make_environment("console")
    prod = make_environment("console-prod", protected=True)
    web = make_stack("web")
    make_service(web, "api")
    make_service(web, "idle")
    users = {
        "admin": make_user("ada", "admin", env),
        "prod-admin": make_user("pam", "admin", prod),
        "operator": make_user("olga", "operator", env),
        "viewer": make_user("vic", "viewer", env),
        "nobody": make_user("nobody"),
    }
    return env, prod, web, users


def communicator(env, stack, service, user, query=""):
    path = f"/ws/console/{env.name}/{stack.name}/{service}/"
    comm = Communicator(URLRouter(websocket_urlpatterns), path + query)
    comm.scope["user"] = user
    return comm


async def refused(comm):
    """Return (message or None, close code) of a refused connection."""
    connected, code = await comm.connect()
    if not connected:
        return None, code
    message = await comm.receive_json_from(timeout=10)
    close = await comm.receive_output(timeout=10)
    return message.get("message"), close.get("code")


async def read_until(comm, text, timeout=15):
    """Collect output frames until ``text`` shows; return all of it."""
    seen = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while text.encode() not in seen:
        frame = await comm.receive_output(timeout=max(0.1, deadline - loop.time()))
        if frame.get("bytes"):
            seen += frame["bytes"]
        elif frame.get("text"):
            seen += frame["text"].encode()
    return seen.decode("utf-8", "replace")


async def test_console_anonymous_refused_before_accept(world):
    env, _, web, _ = world
    assert await refused(communicator(env, web, "api", AnonymousUser())) == (None, 4401)


async def test_console_without_role_refused_silently(world):
    env, _, web, users = world
    assert await refused(communicator(env, web, "api", users["nobody"])) == (None, 4403)


@pytest.mark.parametrize("role", ["viewer", "operator"])
async def test_console_needs_the_admin_role(world, role):
    env, _, web, users = world
    message, code = await refused(communicator(env, web, "api", users[role]))
    assert code == 4403
    assert message == (
        f"{users[role].username} may not open a console in environment "
        f"{env.name}: consoles are for the Admin role."
    )


async def test_console_refused_on_a_protected_environment_without_policy(
    world, make_container
):
    _, prod, web, users = world
    await sync_to_async(make_container)(prod, web, "api", SLEEP)
    message, code = await refused(communicator(prod, web, "api", users["prod-admin"]))
    assert code == 4403
    assert message.startswith(
        f"Environment {prod.name} is protected and its host_policy does not allow "
        "consoles (add 'console' to "
    )


async def test_console_on_a_protected_environment_its_policy_allows(
    world, make_container
):
    _, prod, web, users = world
    prod.host_policy = {"allow": ["console"]}
    await sync_to_async(prod.save)()
    await sync_to_async(make_container)(prod, web, "api", SLEEP)
    comm = communicator(prod, web, "api", users["prod-admin"])
    connected, _ = await comm.connect()
    assert connected
    hello = await comm.receive_json_from(timeout=10)
    assert hello["type"] == "hello"
    await comm.disconnect()


async def test_console_without_a_running_container(world):
    env, _, web, users = world
    message, code = await refused(communicator(env, web, "idle", users["admin"]))
    assert code == 4404
    assert message == (
        f"Service idle of web has no running container in {env.name}: start it first."
    )


async def test_console_unknown_service(world):
    env, _, web, users = world
    message, code = await refused(communicator(env, web, "nope", users["admin"]))
    assert (message, code) == ("No service 'nope' in stack web.", 4404)


async def test_console_runs_commands_and_audits_the_session(world, make_container):
    """A shell: input in, output out, the exit code at the end; the audit
    log has the session, each line entered and the end."""
    env, _, web, users = world
    container = await sync_to_async(make_container)(env, web, "api", SLEEP)
    comm = communicator(env, web, "api", users["admin"], "?cols=100&rows=30")
    connected, _ = await comm.connect()
    assert connected
    hello = await comm.receive_json_from(timeout=10)
    assert hello["container"] == container.name and hello["shell"] == "sh"
    session = hello["session"]

    await comm.send_json_to({"type": "resize", "cols": 120, "rows": 40})
    await comm.send_json_to({"type": "input", "data": "stty size; echo to"})
    # A typo fixed with Backspace, then Enter.
    await comm.send_json_to({"type": "input", "data": "tal-x\x7f$((6*7))\r"})
    output = await read_until(comm, "total-42")
    assert "40 120" in output
    await comm.send_json_to({"type": "input", "data": "exit 3\r"})
    frames = []
    while True:
        frame = await comm.receive_output(timeout=10)
        if frame["type"] == "websocket.close":
            break
        if frame.get("text"):
            frames.append(json.loads(frame["text"]))
    assert {"type": "exit", "code": 3} in frames

    def entries():
        return list(
            AuditEntry.objects.filter(action__startswith="console.")
            .order_by("id")
            .values_list("action", "actor_name", "object_repr", "data")
        )

    found = await sync_to_async(entries)()
    assert [(a, actor, obj) for a, actor, obj, _ in found] == [
        ("console.opened", "ada", "web/api"),
        ("console.command", "ada", "web/api"),
        ("console.command", "ada", "web/api"),
        ("console.closed", "ada", "web/api"),
    ]
    assert all(data["session"] == session for *_, data in found)
    assert found[0][3]["container"] == container.name
    assert found[1][3]["line"] == "stty size; echo total-$((6*7))"
    assert found[2][3]["line"] == "exit 3"
    closed = found[3][3]
    assert (closed["why"], closed["exit_code"], closed["commands"]) == ("exited", 3, 2)


def test_line_recorder_turns_keystrokes_into_lines():
    recorder = LineRecorder()
    assert recorder.feed("ls -l\r") == [("ls -l", False)]
    assert recorder.feed("rm x\x03") == []  # Ctrl-C drops the line
    assert recorder.feed("abc\x7f\x7fd\n") == [("ad", False)]
    # Cursor keys and completion: recorded as typed, marked edited (what
    # ran is the shell's business).
    assert recorder.feed("\x1b[Agit sta\tus\r") == [("git staus", True)]
    assert recorder.feed("\r\r") == []


def test_console_page_for_admins_only(client, world):
    """The page says why it is refused, in the site's 403 page."""
    env, prod, web, users = world
    url = reverse("stacks:service_console", args=[env.name, web.name, "api"])
    client.force_login(users["admin"])
    html = client.get(url).content.decode()
    assert f'data-ws-path="/ws/console/{env.name}/web/api/"' in html
    assert "vendor/xterm/xterm.js" in html
    client.force_login(users["operator"])
    response = client.get(url)
    assert response.status_code == 403
    assert "consoles are for the Admin role" in response.content.decode()
    client.force_login(users["prod-admin"])
    url = reverse("stacks:service_console", args=[prod.name, web.name, "api"])
    response = client.get(url)
    assert response.status_code == 403
    assert "does not allow consoles" in response.content.decode()
