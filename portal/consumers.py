"""Live data over WebSockets, and the one helper that publishes it.

:func:`publish` is how sync code (runners, the reaper, views) sends an event
to a Channels group, AWX's ``emit_channel_notification``. Lines are saved
before they are published, so a consumer can always fill a gap from the
database: :class:`OperationConsumer` joins the group *then* sends the stored
backlog, and afterwards forwards live lines by ``seq``, dropping what it has
already sent and reading what it missed (a dropped or expired Channels
message) back from the database. A client therefore gets every line exactly
once, in order, also after a reconnect with ``?after=<seq>``.
"""

import asyncio
import atexit
import logging
import os
import threading
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer

__all__ = ["OperationConsumer", "drain_published", "publish"]

logger = logging.getLogger(__name__)

# Lines per WebSocket frame when sending stored lines.
BACKLOG_CHUNK = 1000
# Close codes: the handshake is refused with these before accept().
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403


class _Publisher:
    """A private event loop thread that sends events in order, off the caller.

    ``async_to_sync`` would build a new event loop, and so new Redis
    connections, for every event. One loop per process is reused instead
    (a forked child, such as an RQ work horse, makes its own). Events go
    through one queue and one sending task, so they reach Redis in the order
    they were published, and the caller does not wait for Redis: a runner
    logging lines is never slowed down by a slow broadcast.
    """

    _instance = None
    _instance_lock = threading.Lock()
    # Beyond this many unsent events (Redis down or slow), new ones are
    # dropped; clients read what they missed from the database.
    MAX_PENDING = 10_000

    def __init__(self):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue = None
        self.pending = 0
        self.dropped = 0
        self.idle = threading.Condition()
        ready = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(ready,), name="portal-publisher", daemon=True
        )
        self.thread.start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue()
        self.loop.create_task(self._send_forever())
        ready.set()
        self.loop.run_forever()

    async def _send_forever(self):
        while True:
            group, event = await self.queue.get()
            try:
                layer = get_channel_layer()
                await asyncio.wait_for(layer.group_send(group, event), timeout=10)
            except Exception as exc:  # noqa: BLE001  (clients catch up from the DB)
                logger.warning(
                    "Could not publish %s to %s: %s", event.get("type"), group, exc
                )
            finally:
                with self.idle:
                    self.pending -= 1
                    if not self.pending:
                        self.idle.notify_all()

    @classmethod
    def get(cls):
        instance = cls._instance
        if instance is None or instance.pid != os.getpid():
            with cls._instance_lock:
                instance = cls._instance
                if instance is None or instance.pid != os.getpid():
                    instance = cls._instance = cls()
        return instance

    def submit(self, group, event):
        with self.idle:
            if self.pending >= self.MAX_PENDING:
                self.dropped += 1
                return False
            self.pending += 1
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (group, event))
        return True

    def drain(self, timeout):
        with self.idle:
            return self.idle.wait_for(lambda: not self.pending, timeout)


def _forget_publisher_after_fork():
    # The loop thread does not survive fork(); the child must not wait on it.
    _Publisher._instance = None


os.register_at_fork(after_in_child=_forget_publisher_after_fork)


def publish(group, event, *, wait=False, timeout=5):
    """Send ``event`` to the Channels ``group`` from sync code.

    Events are sent in the order they are published, by a background
    thread; with ``wait=True`` return only once this and every earlier
    event has been sent (or ``timeout`` passed). Return whether the event
    was accepted. Never raise: what is published has been saved first, and
    clients catch up from the database.
    """
    if get_channel_layer() is None:
        return False
    publisher = _Publisher.get()
    accepted = publisher.submit(group, event)
    if wait:
        publisher.drain(timeout)
    return accepted


def drain_published(timeout=5):
    """Wait until this process has sent every published event; return whether it has.

    Call before a process ends without running ``atexit`` handlers (an RQ
    work horse leaves with ``os._exit``).
    """
    publisher = _Publisher._instance
    if publisher is None or publisher.pid != os.getpid():
        return True
    return publisher.drain(timeout)


atexit.register(drain_published)


class OperationConsumer(AsyncJsonWebsocketConsumer):
    """Stream one operation's log lines and status to a browser.

    URL ``ws/operations/<uuid>/?after=<seq>``. Frames sent: ``{"type":
    "lines", "lines": [{seq, level, text, created}, ...]}`` and ``{"type":
    "status", status, progress, progress_message, last_seq, error, ...}``.
    """

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        operation_id = self.scope["url_route"]["kwargs"]["operation_id"]
        self.operation = await database_sync_to_async(self._load_operation)(
            user, operation_id
        )
        if self.operation is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = self.operation.group_name
        self.sent = self._after()
        # Join first, then read the backlog: a line saved after the backlog
        # query is published after the join, so nothing falls in between.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._send_stored(self.sent + 1, None)
        status = await database_sync_to_async(self._status_event)()
        await self._forward_status(status)

    async def disconnect(self, code):
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """Ignore client frames; the stream is one-way."""

    async def operation_log(self, event):
        """Forward live lines the client has not had, filling gaps first."""
        lines = event.get("lines")
        if lines is None:
            lines = [event]
        fresh = [line for line in lines if line["seq"] > self.sent]
        if not fresh:
            return
        if fresh[0]["seq"] > self.sent + 1:
            await self._send_stored(self.sent + 1, fresh[0]["seq"] - 1)
            fresh = [line for line in fresh if line["seq"] > self.sent]
        if fresh:
            await self.send_json({"type": "lines", "lines": fresh})
            self.sent = fresh[-1]["seq"]

    async def operation_status(self, event):
        """Forward a status change after every line it counts."""
        await self._forward_status(event)

    async def _forward_status(self, event):
        last_seq = event.get("last_seq") or 0
        if last_seq > self.sent:
            await self._send_stored(self.sent + 1, last_seq)
        payload = {key: value for key, value in event.items() if key != "type"}
        await self.send_json({"type": "status", **payload})

    async def _send_stored(self, first, last):
        """Send the saved lines ``first``..``last`` (open-ended if None)."""
        while True:
            chunk = await database_sync_to_async(self._read_lines)(first, last)
            if not chunk:
                return
            await self.send_json({"type": "lines", "lines": chunk})
            self.sent = chunk[-1]["seq"]
            first = self.sent + 1
            if len(chunk) < BACKLOG_CHUNK:
                return

    def _after(self):
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            return max(0, int(query.get("after", ["0"])[0]))
        except ValueError:
            return 0

    def _load_operation(self, user, operation_id):
        from .models import Operation
        from .permissions import user_can

        operation = (
            Operation.objects.select_related("environment")
            .filter(pk=operation_id)
            .first()
        )
        if operation is None or not user_can(user, "view", operation.environment):
            return None
        return operation

    def _read_lines(self, first, last):
        from .models import OperationLogLine

        lines = OperationLogLine.objects.filter(
            operation_id=self.operation.pk, seq__gte=first
        )
        if last is not None:
            lines = lines.filter(seq__lte=last)
        return [
            {
                "seq": seq,
                "level": level,
                "text": text,
                "created": created.isoformat(),
            }
            for seq, level, text, created in lines.order_by("seq").values_list(
                "seq", "level", "text", "created"
            )[:BACKLOG_CHUNK]
        ]

    def _status_event(self):
        self.operation.refresh_from_db()
        return self.operation.status_event()
