"""The operation log WebSocket, through portal.asgi.application and channels_redis."""

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client
from django.utils import timezone

from portal.asgi import application
from portal.choices import OperationStatus, Role
from portal.consumers import CLOSE_FORBIDDEN, CLOSE_UNAUTHENTICATED
from portal.models import Operation, OperationLogLine
from portal.operations import OperationLog, finish_operation, request_operation
from portal.publish import publish
from tests.websockets import Communicator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def operation(redis_conn, operator, environment, stack):
    return request_operation(
        "test.steps", user=operator, environment=environment, stack=stack, enqueue=False
    )


def session_cookie(user):
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def communicator(operation, cookie=None, after=None):
    path = f"/ws/operations/{operation.pk}/"
    if after is not None:
        path += f"?after={after}"
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if cookie:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return Communicator(application, path, headers=headers)


def write_lines(operation, count):
    """Log ``count`` lines the way a runner does: save, then publish."""
    operation.refresh_from_db()
    log = OperationLog(operation)
    for _ in range(count):
        log.info("line %d", log.seq + 1)
    log.flush()
    Operation.objects.filter(pk=operation.pk).update(last_seq=log.seq)
    return log


async def receive_until(comm, predicate, timeout=10):
    """Collect frames until ``predicate(frames)`` holds; return them."""
    frames = []
    while not predicate(frames):
        frames.append(await comm.receive_json_from(timeout=timeout))
    return frames


def seqs(frames):
    return [line["seq"] for f in frames if f["type"] == "lines" for line in f["lines"]]


async def test_anonymous_is_refused(operation):
    comm = communicator(operation)
    connected, code = await comm.connect()
    assert not connected
    assert code == CLOSE_UNAUTHENTICATED


async def test_user_without_role_is_refused(operation, stranger):
    cookie = await sync_to_async(session_cookie)(stranger)
    comm = communicator(operation, cookie)
    connected, code = await comm.connect()
    assert not connected
    assert code == CLOSE_FORBIDDEN


async def test_role_on_other_environment_is_refused(
    operation, make_user, other_environment
):
    user = await sync_to_async(make_user)("otto", Role.ADMIN, other_environment)
    cookie = await sync_to_async(session_cookie)(user)
    connected, code = await communicator(operation, cookie).connect()
    assert (connected, code) == (False, CLOSE_FORBIDDEN)


async def test_viewer_gets_backlog_after_seq_then_live_lines_then_status(
    operation, viewer
):
    await sync_to_async(write_lines)(operation, 10)
    cookie = await sync_to_async(session_cookie)(viewer)
    comm = communicator(operation, cookie, after=4)
    connected, _ = await comm.connect()
    assert connected
    frames = await receive_until(comm, lambda f: f and f[-1]["type"] == "status")
    assert seqs(frames) == list(range(5, 11))
    assert frames[-1]["status"] == OperationStatus.QUEUED

    await sync_to_async(write_lines)(operation, 5)
    frames = await receive_until(comm, lambda f: seqs(f)[-1:] == [15])
    assert seqs(frames) == list(range(11, 16))
    assert frames[0]["lines"][0]["text"] == "line 11"

    await sync_to_async(finish_operation)(operation, OperationStatus.SUCCEEDED)
    frames = await receive_until(comm, lambda f: f and f[-1]["type"] == "status")
    assert frames[-1]["status"] == OperationStatus.SUCCEEDED
    await comm.disconnect()


async def test_lost_broadcast_is_filled_from_the_database(operation, viewer):
    """Lines saved but never broadcast reach the client before later ones."""
    await sync_to_async(write_lines)(operation, 2)
    cookie = await sync_to_async(session_cookie)(viewer)
    comm = communicator(operation, cookie)
    assert (await comm.connect())[0]
    await receive_until(comm, lambda f: f and f[-1]["type"] == "status")

    def save_silently_then_publish_one():
        now = timezone.now()
        OperationLogLine.objects.bulk_create(
            OperationLogLine(
                operation=operation, seq=seq, text=f"line {seq}", created=now
            )
            for seq in (3, 4, 5)
        )
        OperationLogLine.objects.create(operation=operation, seq=6, text="line 6")
        publish(
            operation.group_name,
            {
                "type": "operation.log",
                "lines": [{"seq": 6, "level": "info", "text": "line 6", "created": ""}],
            },
        )

    await sync_to_async(save_silently_then_publish_one)()
    frames = await receive_until(comm, lambda f: seqs(f)[-1:] == [6])
    assert seqs(frames) == [3, 4, 5, 6]
    await comm.disconnect()


async def test_client_reconnecting_at_n_gets_the_rest_exactly_once(
    worker_process, redis_conn, operator, environment, viewer
):
    """A live run on a worker: read some, drop, resume with ?after=N."""
    await sync_to_async(worker_process)()
    operation = await sync_to_async(request_operation)(
        "test.flood",
        user=operator,
        environment=environment,
        parameters={"lines": 3000, "pause_every": 100, "pause": 0.02},
    )
    cookie = await sync_to_async(session_cookie)(viewer)

    first = communicator(operation, cookie, after=0)
    assert (await first.connect())[0]
    frames = await receive_until(first, lambda f: len(seqs(f)) >= 200, timeout=30)
    got = seqs(frames)
    assert got == list(range(1, len(got) + 1))
    await first.disconnect()

    n = got[-1]
    second = communicator(operation, cookie, after=n)
    assert (await second.connect())[0]

    def finished(f):
        return bool(f) and f[-1]["type"] == "status" and f[-1]["status"] == "succeeded"

    frames = await receive_until(second, finished, timeout=60)
    rest = seqs(frames)
    assert rest == list(range(n + 1, 3001))
    assert frames[-1]["last_seq"] == 3000
    await second.disconnect()


@pytest.mark.parametrize(
    "path",
    [
        "/ws/logs/../../etc/passwd/",
        "/ws/logs/démo/core/",
        "/ws/operations/not-a-uuid/",
        "/ws/" + "x" * 5000 + "/",
        "/nothing/here",
    ],
)
async def test_websocket_path_without_a_route_gets_a_4404_and_why(redis_conn, path):
    """A path that matches no route (traversal, non-ASCII, very long) is
    answered with an error message and close code 4404, not a server error."""
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    comm = Communicator(application, path, headers=headers)
    connected, _ = await comm.connect()
    assert connected
    message = await comm.receive_json_from(timeout=10)
    closed = await comm.receive_output(timeout=10)
    await comm.disconnect(code=closed["code"])
    assert message["type"] == "error"
    assert message["message"].startswith("No WebSocket endpoint at '")
    assert len(message["message"]) < 120
    assert closed == {
        "type": "websocket.close",
        "code": 4404,
        "reason": message["message"],
    }
