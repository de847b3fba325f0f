"""ws/logs/<env>/<stack>/[<service>/] against real containers and the real
Redis channel layer."""

import asyncio
import threading
import time

import pytest
from channels.routing import URLRouter
from django.contrib.auth.models import AnonymousUser

from stacks.routing import websocket_urlpatterns
from tests.stacks.live import *  # noqa: F403
from tests.websockets import Communicator

pytestmark = [
    pytest.mark.docker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(120),
]


def counter(name, count=400, pause="0.05", then="sleep 60"):
    """Return a script printing ``<name> <n>`` for n = 0.., bounded."""
    return (
        f'i=0; while [ $i -lt {count} ]; do echo "{name} $i"; i=$((i+1)); '
        f"sleep {pause}; done; {then}"
    )


@pytest.fixture
def world(redis_conn, make_environment, make_stack, make_service, make_user):
    env = make_environment("logs")
    other = make_environment("logs-other")
    web = make_stack("web")
    for name in ("alpha", "beta", "gamma"):
        make_service(web, name)
    users = {
        "viewer": make_user("viewer", "viewer", env),
        "nobody": make_user("nobody"),
        "elsewhere": make_user("elsewhere", "operator", other),
    }
    return env, web, users


def communicator(env, stack, user, query="", service=None):
    path = f"/ws/logs/{env.name}/{stack.name}/" + (f"{service}/" if service else "")
    comm = Communicator(
        URLRouter(websocket_urlpatterns), path + (f"?{query}" if query else "")
    )
    comm.scope["user"] = user
    return comm


class Client:
    """A test client of the log protocol: keeps what arrives, acks batches."""

    def __init__(self, comm, ack=True):
        self.comm = comm
        self.ack = ack
        self.messages = []
        self.lines = []

    async def receive(self):
        message = await self.comm.receive_json_from(timeout=10)
        self.messages.append(message)
        if message["type"] == "lines":
            self.lines.extend(message["lines"])
            if self.ack:
                await self.comm.send_json_to({"type": "ack", "seq": message["seq"]})
        return message

    async def until(self, predicate, timeout=20):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                recent = [m["type"] for m in self.messages[-5:]]
                raise AssertionError(f"timed out; last messages: {recent}")
            await self.receive()

    def types(self):
        return [m["type"] for m in self.messages]


def numbers(lines, service):
    return [int(text.split()[1]) for _, svc, text in lines if svc == service]


async def logged(container, count):
    """Wait until ``container`` has written at least ``count`` log lines."""

    def enough():
        return len(container.logs().splitlines()) >= count

    await asyncio.to_thread(
        wait_for,  # noqa: F405
        enough,
        what=f"{count} log lines of {container.name}",
    )


async def test_logs_anonymous_refused(world):
    env, web, _ = world
    connected, code = await communicator(env, web, AnonymousUser()).connect()
    assert (connected, code) == (False, 4401)


async def test_logs_user_without_role_refused(world):
    env, web, users = world
    connected, code = await communicator(env, web, users["nobody"]).connect()
    assert (connected, code) == (False, 4403)


async def test_logs_user_with_role_on_other_environment_refused(world):
    env, web, users = world
    connected, code = await communicator(env, web, users["elsewhere"]).connect()
    assert (connected, code) == (False, 4403)


async def refused(comm):
    """Connect and return the error message and close code the server sent."""
    assert (await comm.connect())[0]
    message = await comm.receive_json_from(timeout=10)
    closed = await comm.receive_output(timeout=10)
    # The consumer ends when the client answers the close.
    await comm.disconnect(code=closed["code"])
    assert message["type"] == "error"
    assert closed["type"] == "websocket.close"
    return message["message"], closed["code"]


async def test_logs_unknown_service_refused_with_its_name(world):
    env, web, users = world
    comm = communicator(env, web, users["viewer"], service="nope")
    assert await refused(comm) == ("No service 'nope' in stack web.", 4404)


async def test_logs_unknown_environment_refused_with_its_name(world):
    _env, web, users = world
    comm = Communicator(
        URLRouter(websocket_urlpatterns), f"/ws/logs/no-such-env/{web.name}/"
    )
    comm.scope["user"] = users["viewer"]
    assert await refused(comm) == ("No environment 'no-such-env'.", 4404)


async def test_logs_very_long_names_refused_with_a_short_message(world):
    env, _web, users = world
    long_name = "s" * 5000
    comm = Communicator(
        URLRouter(websocket_urlpatterns), f"/ws/logs/{env.name}/{long_name}/"
    )
    comm.scope["user"] = users["viewer"]
    message, code = await refused(comm)
    assert code == 4404
    assert message.startswith("No stack 'ssss") and len(message) < 100


@pytest.mark.parametrize(
    "query, expected",
    [
        ("since=inf", "since='inf' is out of range"),
        ("since=-inf", "since='-inf' is out of range"),
        ("since=1e400", "since='1e400' is out of range"),
        ("since=nan", "since='nan' is out of range"),
        ("since=-5", "since='-5' is out of range"),
        ("since=yesterday", "since='yesterday' is not a Docker timestamp"),
        ("since=2026-13-45T99:99:99Z", "is not a valid date"),
        ("tail=1e400", "tail='1e400' is not a number of lines"),
        ("tail=-3", "tail='-3' is not a number of lines"),
        ("grep=" + "x" * 201, "grep is longer than 200 characters"),
    ],
)
async def test_logs_bad_query_refused_with_the_reason(world, query, expected):
    """Bad parameters get a 4400 and a message naming the parameter, never a
    server error."""
    env, web, users = world
    message, code = await refused(communicator(env, web, users["viewer"], query))
    assert code == 4400
    assert message.startswith("Bad request: ") and expected in message, message


async def test_logs_viewer_gets_tail_then_live_lines_interleaved(world, make_container):
    """History comes first, merged by timestamp; live lines of both services
    follow with service labels, without a gap or a repeat at the seam."""
    env, web, users = world
    alpha = make_container(env, web, "alpha", counter("alpha"))
    beta = make_container(env, web, "beta", counter("beta"))
    # Each has a history to merge; a tail of 40 of two services writing 20
    # lines a second reaches back about a second, so both are in it even if
    # one of them is held up for a moment on a busy machine.
    await logged(alpha, 20)
    await logged(beta, 20)

    comm = communicator(env, web, users["viewer"], "tail=40")
    assert (await comm.connect())[0]
    client = Client(comm)
    hello = await client.receive()
    assert hello["type"] == "hello"
    assert hello["services"] == ["alpha", "beta", "gamma"]
    assert sorted(c["service"] for c in hello["containers"]) == ["alpha", "beta"]

    await client.until(lambda: "tail.done" in client.types())
    tail = list(client.lines)
    done = next(m for m in client.messages if m["type"] == "tail.done")
    assert done["count"] == len(tail) == 40
    assert [line[0] for line in tail] == sorted(line[0] for line in tail)
    assert {line[1] for line in tail} == {"alpha", "beta"}

    # About 20 of each came with the tail; at least 25 more of each are live.
    await client.until(
        lambda: (
            len(numbers(client.lines, "alpha")) >= 45
            and len(numbers(client.lines, "beta")) >= 45
        )
    )
    await comm.disconnect()
    for service in ("alpha", "beta"):
        seen = numbers(client.lines, service)
        assert seen == list(range(seen[0], seen[0] + len(seen))), service
        assert all(text.startswith(svc) for _, svc, text in client.lines)
    # Every line carries the Docker timestamp of its container.
    assert all(ts.endswith("Z") and len(ts) == 30 for ts, _, _ in client.lines)


async def test_logs_single_service_route(world, make_container):
    env, web, users = world
    make_container(env, web, "alpha", counter("alpha"))
    make_container(env, web, "beta", counter("beta"))
    await asyncio.sleep(0.5)
    comm = communicator(env, web, users["viewer"], "tail=5", service="beta")
    assert (await comm.connect())[0]
    client = Client(comm)
    await client.until(lambda: len(client.lines) >= 15)
    await comm.disconnect()
    assert {svc for _, svc, _ in client.lines} == {"beta"}


async def test_logs_grep_filters_history_and_live(world, make_container):
    """grep keeps only matching lines (case-insensitive)."""
    env, web, users = world
    make_container(env, web, "alpha", counter("alpha"))
    make_container(env, web, "beta", counter("beta"))
    await asyncio.sleep(0.5)
    comm = communicator(env, web, users["viewer"], "tail=50&grep=BETA%201")
    assert (await comm.connect())[0]
    client = Client(comm)
    await client.until(lambda: len(client.lines) >= 3)
    await comm.disconnect()
    assert all(text.startswith("beta 1") for _, _, text in client.lines)


async def test_logs_prompt_client_loses_nothing(world, make_container, settings):
    """A client that acknowledges every batch gets every line of a burst far
    larger than its buffer: the followers wait for room instead of dropping."""
    settings.PORTAL_CONTAINER_LOGS = {
        "BUFFER_LINES": 100,
        "BATCH_LINES": 20,
        "WINDOW": 1,
        "STALL_SECONDS": 5,
    }
    total = 50_000
    env, web, users = world
    make_container(env, web, "alpha", f"sleep 2; seq 1 {total}; sleep 60")
    comm = communicator(env, web, users["viewer"], "tail=0")
    assert (await comm.connect())[0]
    client = Client(comm)
    await client.until(lambda: len(client.lines) >= total, timeout=90)
    await comm.disconnect()
    assert "dropped" not in client.types()
    assert [int(text) for _, _, text in client.lines] == list(range(1, total + 1))


async def test_logs_slow_client_gets_dropped_marker(world, make_container, settings):
    """A client that does not acknowledge falls behind: the server keeps a
    bounded buffer and reports the lines it dropped, so lines received plus
    lines reported dropped is exactly what the container wrote."""
    settings.PORTAL_CONTAINER_LOGS = {
        "BUFFER_LINES": 100,
        "BATCH_LINES": 20,
        "WINDOW": 1,
        "STALL_SECONDS": 0.2,
    }
    total = 200_000
    env, web, users = world
    make_container(env, web, "alpha", f"sleep 2; seq 1 {total}; sleep 60")
    comm = communicator(env, web, users["viewer"], "tail=0")
    assert (await comm.connect())[0]
    client = Client(comm, ack=False)
    await client.until(lambda: "tail.done" in client.types())
    # The first batch, unacknowledged: with a window of 1 nothing follows
    # it, so wait for the batch, not for a number of lines it may not hold.
    await client.until(lambda: "lines" in client.types())
    await asyncio.sleep(1.0)  # not acknowledging: the buffer fills up

    client.ack = True
    await comm.send_json_to({"type": "ack", "seq": client.messages[-1].get("seq", 1)})

    def accounted():
        dropped = sum(m["count"] for m in client.messages if m["type"] == "dropped")
        return len(client.lines) + dropped

    await client.until(lambda: accounted() >= total, timeout=60)
    await comm.disconnect()
    drops = [m for m in client.messages if m["type"] == "dropped"]
    assert sum(m["count"] for m in drops) > 1000
    assert accounted() == total
    values = [int(text) for _, _, text in client.lines]
    assert values == sorted(values) and len(set(values)) == len(values)
    # Each marker sits where its gap is: the next line after it is the line
    # before it plus the count it reports. (A marker may also be the last
    # message, when the lines dropped were the container's last ones.)
    checked = 0
    last = 0  # the container writes 1, 2, ...
    pending = None
    for message in client.messages:
        if message["type"] == "dropped":
            pending = (pending or 0) + message["count"]
        elif message["type"] == "lines" and message["lines"]:
            first = int(message["lines"][0][2])
            if pending is not None:
                assert first == last + pending + 1, (last, pending, first)
                checked += 1
                pending = None
            last = int(message["lines"][-1][2])
    if pending is not None:
        # The lines dropped were the container's last ones (on a fast host
        # the whole burst outruns the unacknowledged second).
        assert last + pending == total, (last, pending, total)
        checked += 1
    assert checked >= 1


async def test_logs_disconnect_stops_follow_threads(world, make_container):
    env, web, users = world
    alpha = make_container(env, web, "alpha", counter("alpha"))
    beta = make_container(env, web, "beta", counter("beta"))
    names = {f"logs-follow-{c.id[:12]}" for c in (alpha, beta)}

    def running():
        return {t.name for t in threading.enumerate()} & names

    comm = communicator(env, web, users["viewer"], "tail=1")
    assert (await comm.connect())[0]
    client = Client(comm)
    await client.until(lambda: len(client.lines) >= 5)
    assert running() == names
    await comm.disconnect()
    # Without the stop they would follow for the container's whole life.
    deadline = time.monotonic() + 15
    while running() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert running() == set()


async def test_logs_follow_container_started_after_connect(
    world, make_container, settings
):
    """Containers that appear after the connect are found by the periodic
    re-listing and followed from their first line."""
    settings.PORTAL_CONTAINER_LOGS = {"RELIST_INTERVAL": 0.2}
    env, web, users = world
    make_container(env, web, "alpha", counter("alpha"))
    comm = communicator(env, web, users["viewer"], "tail=1")
    assert (await comm.connect())[0]
    client = Client(comm)
    await client.until(lambda: "tail.done" in client.types())
    await asyncio.to_thread(
        make_container, env, web, "gamma", counter("gamma", pause="0.02")
    )
    await client.until(lambda: len(numbers(client.lines, "gamma")) >= 10)
    await comm.disconnect()
    assert numbers(client.lines, "gamma")[:10] == list(range(10))
    assert "containers" in client.types()


async def test_logs_resume_with_since_has_no_gap(world, make_container):
    """A reconnect with `since` (the smallest last timestamp per service)
    continues where the first connection stopped; the client drops the
    lines it already holds."""
    env, web, users = world
    make_container(env, web, "alpha", counter("alpha", pause="0.02"))
    make_container(env, web, "beta", counter("beta", pause="0.03"))
    await asyncio.sleep(0.5)

    comm = communicator(env, web, users["viewer"], "tail=4")
    assert (await comm.connect())[0]
    first = Client(comm)
    await first.until(lambda: len(first.lines) >= 30)
    await comm.disconnect()
    await asyncio.sleep(1.0)

    last = {}
    for ts, svc, _ in first.lines:
        last[svc] = max(ts, last.get(svc, ts))
    since = min(last.values())
    comm = communicator(env, web, users["viewer"], f"since={since}")
    assert (await comm.connect())[0]
    second = Client(comm)
    await second.until(lambda: len(second.lines) >= 60)
    await comm.disconnect()
    assert "tail.done" in second.types()

    held = {(ts, svc, text) for ts, svc, text in first.lines}
    fresh = [
        line
        for line in second.lines
        if tuple(line) not in held and line[0] >= last.get(line[1], "")
    ]
    combined = first.lines + fresh
    for service in ("alpha", "beta"):
        seen = numbers(combined, service)
        assert seen == list(range(seen[0], seen[0] + len(seen))), service


async def test_logs_rescan_event_on_group(world, make_container, settings):
    """`logs.rescan` sent to group logs.<env>.<stack> makes the consumer read
    the container list at once (an operation just started a container)."""
    from channels.layers import get_channel_layer

    from stacks.groups import logs_group

    settings.PORTAL_CONTAINER_LOGS = {"RELIST_INTERVAL": 60}
    env, web, users = world
    make_container(env, web, "alpha", counter("alpha"))
    comm = communicator(env, web, users["viewer"], "tail=1")
    assert (await comm.connect())[0]
    client = Client(comm)
    await client.until(lambda: "tail.done" in client.types())
    await asyncio.to_thread(make_container, env, web, "beta", counter("beta"))
    await get_channel_layer().group_send(
        logs_group(env.name, web.name), {"type": "logs.rescan"}
    )
    # Well under RELIST_INTERVAL: only the rescan can have listed beta.
    await client.until(lambda: len(numbers(client.lines, "beta")) >= 3, timeout=20)
    await comm.disconnect()
    assert logs_group(env.name, web.name) == f"logs.{env.name}.web"


@pytest.fixture
def ops_world(world, make_stack, make_service, make_user):
    """Return (environment, stack "ops" with a counting service, operator)."""
    env, _, _ = world
    ops = make_stack("ops")
    # $$: the portal resolves ${VAR} references in a service's command.
    script = counter("ticker").replace("$", "$$")
    make_service(ops, "ticker", command=["sh", "-c", script])
    return env, ops, make_user("operator", "operator", env)


async def test_logs_follow_container_started_by_an_operation(
    ops_world, docker_client, settings
):
    """A stack.start tells the log pages of its stack and of each service it
    started to list the containers again (`logs.rescan`), so a page open
    before the start follows the new container at once, without waiting for
    the periodic re-listing."""
    from django.db import connection

    from portal.choices import OperationStatus
    from portal.operations import run_inline
    from stacks.operations import start_stack
    from tests.conftest import RUN_ID, TEST_LABEL

    settings.PORTAL_CONTAINER_LOGS = {"RELIST_INTERVAL": 60}
    settings.PORTAL_EXTRA_LABELS = {TEST_LABEL: RUN_ID}
    env, ops, operator = ops_world

    clients = {}
    for service in (None, "ticker"):
        comm = communicator(env, ops, operator, "tail=0", service=service)
        assert (await comm.connect())[0]
        clients[service] = client = Client(comm)
        await client.until(lambda c=client: "tail.done" in c.types())

    def start():
        try:
            return run_inline(start_stack(env, ops, user=operator, enqueue=False))
        finally:
            connection.close()

    operation = await asyncio.to_thread(start)
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    finished = time.monotonic()
    for client in clients.values():
        # The periodic re-listing comes 60 s after the connect; a ceiling of
        # 20 s tells the rescan from it without timing a busy machine.
        await client.until(lambda c=client: numbers(c.lines, "ticker"), timeout=20)
        assert time.monotonic() - finished < 20
        assert numbers(client.lines, "ticker")[0] == 0
        assert "containers" in client.types()
        await client.comm.disconnect()
