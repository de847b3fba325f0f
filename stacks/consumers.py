"""Container logs in the browser.

Routes (``stacks/routing.py``): ``ws/logs/<env>/<stack>/`` follows every
service of the stack, ``ws/logs/<env>/<stack>/<service>/`` one service.

Query parameters of the connect URL:

``tail``
    Lines of history to send first, merged across the containers by their
    Docker timestamps (default 200, at most the buffer size).
``since``
    Resume after a reconnect: a Docker timestamp
    (``2026-01-31T12:00:00.123456789Z``) or Unix seconds. No tail is sent;
    every line with a timestamp at or after ``since`` is. A client that
    tracks the last timestamp per service sends the smallest of them and
    drops the lines it already holds (same service, timestamp below its
    last one, or equal to it with the same text), which gives a stream
    without gaps or duplicates. ``static/js/container_logs.js`` does so.
``grep``
    Only lines containing this text (case-insensitive), tail and live.

Messages from the server (JSON text frames):

``{"type": "hello", "environment", "stack", "service", "services",
"containers", "tail", "since", "buffer", "window"}``
    Once, after the connection is accepted.
``{"type": "lines", "seq": n, "lines": [[timestamp, service, text], ...]}``
    A batch of at most ``BATCH_LINES`` lines, sent when full or
    ``BATCH_INTERVAL`` seconds after its first line arrived; lines inside a
    batch are in timestamp order. ``seq`` counts batches from 1.
``{"type": "tail.done", "count": n}``
    Everything before this message is history; live lines follow.
``{"type": "dropped", "count": n, "first": ts, "last": ts}``
    The client fell behind and ``n`` lines with timestamps in
    ``[first, last]`` were dropped at this point of the stream.
``{"type": "containers", "containers": [{"id", "name", "service",
"state", "status"}, ...]}``
    The set of containers followed changed (started, stopped, new).
``{"type": "error", "message": text}``
    Docker could not be asked (the consumer keeps retrying), or the request
    was refused (the connection is then closed with a 44xx code).
``{"type": "pong"}``
    Reply to a ping.

Messages from the client:

``{"type": "ack", "seq": n}``
    Batch ``n`` (and every one before it) was handled. At most ``WINDOW``
    batches are unacknowledged at a time. While the window is full, lines
    wait in a buffer of ``BUFFER_LINES`` lines per client; when that is full
    the followers stop reading from Docker (which keeps the log), so a
    client that keeps up loses nothing. Only a client that acknowledges
    nothing for ``STALL_SECONDS`` while the buffer is full has lines
    dropped, reported with a ``dropped`` message. The window is what makes a
    slow browser visible to the server: the WebSocket transport itself
    buffers without limit.
``{"type": "ping"}``

Refusals: before the handshake is accepted, 4401 (not logged in) and 4403
(no ``view`` role on the environment). After it, with an ``error`` message
naming the problem: 4404 (unknown environment, stack or service) and 4400
(a bad query parameter).

Followers: one thread per container reads its log through
:class:`stacks.engine.LogStream` (large chunks, split in bulk) and hands
whole chunks to the event loop through the buffer. The container list is
read again every ``RELIST_INTERVAL`` seconds (and when group
``logs.<env>.<stack>[.<service>]`` receives ``{"type": "logs.rescan"}``,
which the stack runners send when they end), so containers started or
recreated after the connect are followed too. On disconnect the streams are
closed, which ends the threads.
"""

import asyncio
import calendar
import heapq
import json
import logging
import math
import re
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from operator import itemgetter
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings

from portal.consumers import (
    CLOSE_BAD_REQUEST,
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    RefusingConsumerMixin,
)
from portal.permissions import user_can

from . import engine
from .engine import labels
from .groups import logs_group
from .models import Environment, Stack

__all__ = [
    "ContainerLogConsumer",
    "LineBuffer",
    "QueryError",
    "get_config",
    "parse_since",
]

logger = logging.getLogger(__name__)

DEFAULTS = {
    # Lines of history sent on connect when the client does not say.
    "TAIL": 200,
    # Lines waiting for a client before the followers stop reading.
    "BUFFER_LINES": 20000,
    # A batch is sent when it has this many lines...
    "BATCH_LINES": 1000,
    # ...or this many seconds after its first line arrived.
    "BATCH_INTERVAL": 0.05,
    # Batches sent and not yet acknowledged by the client.
    "WINDOW": 8,
    # With the buffer full, a client that acknowledges nothing for this long
    # has fallen behind: lines are dropped for it instead of waiting.
    "STALL_SECONDS": 2.0,
    # Seconds between two readings of the container list.
    "RELIST_INTERVAL": 3.0,
}

_TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")
# The longest grep text accepted.
MAX_GREP = 200
# Unix seconds accepted for since: 1970 up to the year 9999.
MAX_UNIX = 253402300799

by_timestamp = itemgetter(0)


class QueryError(ValueError):
    """A query parameter of the connect URL is not acceptable."""


def get_config():
    """Return the log streaming settings: DEFAULTS updated by
    ``settings.PORTAL_CONTAINER_LOGS``."""
    return {**DEFAULTS, **getattr(settings, "PORTAL_CONTAINER_LOGS", {})}


def docker_ts_to_unix(ts):
    """Return Unix seconds (float) of a Docker RFC 3339 UTC timestamp."""
    seconds, _, fraction = ts.rstrip("Z").partition(".")
    whole = calendar.timegm(time.strptime(seconds, "%Y-%m-%dT%H:%M:%S"))
    return whole + (float(f"0.{fraction}") if fraction else 0.0)


def unix_to_docker_ts(value):
    """Return the Docker timestamp string of Unix seconds ``value``."""
    whole = int(value)
    nanos = min(999_999_999, round((value - whole) * 1e9))
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{nanos:09d}Z"


def parse_since(text):
    """Return ``since`` as a Docker timestamp, or raise QueryError saying why."""
    expected = (
        "a Docker timestamp such as 2026-01-31T12:00:00.123456789Z or Unix seconds"
    )
    shown = text if len(text) <= 40 else text[:40] + "…"
    if _TS_RE.match(text):
        try:
            docker_ts_to_unix(text)
        except ValueError:
            raise QueryError(f"since={shown!r} is not a valid date ({expected})")
        return text
    try:
        value = float(text)
    except ValueError:
        raise QueryError(f"since={shown!r} is not {expected}") from None
    if not math.isfinite(value) or not 0 <= value <= MAX_UNIX:
        raise QueryError(
            f"since={shown!r} is out of range: Unix seconds from 0 to {MAX_UNIX} "
            f"({expected})"
        )
    return unix_to_docker_ts(value)


def parse_query(query_string, config):
    """Return the ``tail``, ``since`` and ``grep`` of a connect URL's query."""
    try:
        query = parse_qs(query_string.decode("utf-8"), strict_parsing=False)
    except UnicodeDecodeError:
        raise QueryError("the query string is not valid UTF-8") from None
    params = {"tail": config["TAIL"], "since": None, "grep": None}
    if query.get("tail", [""])[0]:
        text = query["tail"][0]
        if not text.isdigit() or len(text) > 9:
            shown = text if len(text) <= 40 else text[:40] + "…"
            raise QueryError(f"tail={shown!r} is not a number of lines (0 or more)")
        params["tail"] = int(text)
    params["tail"] = min(params["tail"], config["BUFFER_LINES"])
    if query.get("since", [""])[0]:
        params["since"] = parse_since(query["since"][0])
    if query.get("grep", [""])[0]:
        grep = query["grep"][0]
        if len(grep) > MAX_GREP:
            raise QueryError(f"grep is longer than {MAX_GREP} characters")
        params["grep"] = grep.lower()
    return params


class LineBuffer:
    """A bounded, thread-safe queue of log lines and in-order events.

    Follower threads ``put_many`` the lines of a chunk; the consumer
    ``take``s batches. While ``capacity`` lines are waiting a follower waits
    for room, so the engine's stream is not read and nothing is lost. Only
    when nothing has been taken for ``stall`` seconds (the client stopped
    acknowledging) are new lines counted instead of kept; a ``dropped``
    event then takes their place in the stream.
    """

    def __init__(self, capacity, wake, stall=2.0):
        self.capacity = capacity
        self.stall = stall
        self._wake = wake
        self._cond = threading.Condition()
        self._items = deque()  # lists of lines (one per chunk) and dict events
        self._lines = 0
        self._events = 0
        self._notified = False
        self._last_take = time.monotonic()
        self._closed = False
        self._dropped = 0
        self._dropped_first = self._dropped_last = None

    def __len__(self):
        return self._lines

    def close(self):
        """Release every waiting follower; later puts are ignored."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    # Hot path: called once per chunk from the follower threads.
    def put_many(self, lines):
        """Queue ``lines`` (``(ts, service, text)`` tuples), waiting for room."""
        if not lines:
            return
        with self._cond:
            while self._lines >= self.capacity and not self._closed:
                idle = time.monotonic() - self._last_take
                if idle >= self.stall:
                    if not self._dropped:
                        self._dropped_first = lines[0][0]
                    self._dropped += len(lines)
                    self._dropped_last = lines[-1][0]
                    return
                self._cond.wait(self.stall - idle)
            if self._closed:
                return
            if self._dropped:
                self._items.append(self._drop_event())
                self._events += 1
            self._items.append(lines)
            self._lines += len(lines)
            if self._notified:
                return
            self._notified = True
        self._wake()

    def put(self, line):
        """Queue one line (see :meth:`put_many`)."""
        self.put_many([line])

    def put_event(self, event):
        """Queue a message (a dict) after the lines queued so far."""
        with self._cond:
            if self._dropped:
                self._items.append(self._drop_event())
                self._events += 1
            self._items.append(event)
            self._events += 1
            notify, self._notified = not self._notified, True
        if notify:
            self._wake()

    def rearm(self):
        """Ask to be woken again by the next put."""
        with self._cond:
            self._notified = False

    def pending_event(self):
        """Return whether an event (or unreported drop) waits to be sent."""
        with self._cond:
            return self._dropped > 0 or self._events > 0

    def take(self, max_lines):
        """Return ``(lines, event)``: up to ``max_lines`` lines, then the
        event that stopped the batch (or None)."""
        batch = []
        event = None
        with self._cond:
            items = self._items
            while items and len(batch) < max_lines:
                item = items.popleft()
                if item.__class__ is dict:
                    self._events -= 1
                    event = item
                    break
                room = max_lines - len(batch)
                if len(item) > room:
                    items.appendleft(item[room:])
                    item = item[:room]
                batch.extend(item)
            self._lines -= len(batch)
            if event is None and not items and self._dropped:
                if len(batch) < max_lines:
                    event = self._drop_event()
            self._last_take = time.monotonic()
            self._cond.notify_all()
        return batch, event

    def _drop_event(self):
        event = {
            "type": "dropped",
            "count": self._dropped,
            "first": self._dropped_first,
            "last": self._dropped_last,
        }
        self._dropped = 0
        self._dropped_first = self._dropped_last = None
        return event


class _Follower:
    """One container followed by one thread."""

    def __init__(self, container_id, service):
        self.container_id = container_id
        self.service = service
        self.thread = None
        self.stream = None
        self.active = False
        # Timestamp of the last line seen; lines at or before it are known.
        self.last_ts = None
        self.last_texts = set()
        # Its log was empty when the history was read: all of it is new.
        self.empty_at_connect = False


class ContainerLogConsumer(RefusingConsumerMixin, AsyncWebsocketConsumer):
    """Stream the logs of a stack's containers to one browser."""

    # The channel layer is joined by hand once the connection is accepted
    # (see _listen), so a refused connection never waits on it.
    channel_layer_alias = None

    async def connect(self):
        self.config = get_config()
        kwargs = self.scope["url_route"]["kwargs"]
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        found = await self._authorize(
            user, kwargs["environment"], kwargs["stack"], kwargs.get("service")
        )
        if found[0] == CLOSE_FORBIDDEN:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if found[0] == CLOSE_NOT_FOUND:
            await self.refuse(CLOSE_NOT_FOUND, found[1])
            return
        try:
            self.params = parse_query(self.scope.get("query_string", b""), self.config)
        except QueryError as exc:
            await self.refuse(CLOSE_BAD_REQUEST, f"Bad request: {exc}.")
            return
        self.environment_row, self.stack, self.services = found[1:]
        self.environment = self.environment_row.name
        self.service = kwargs.get("service")
        self.group = logs_group(self.environment, self.stack, self.service)

        self.loop = asyncio.get_running_loop()
        self.stopping = threading.Event()
        self.wake = asyncio.Event()
        self.rescan = asyncio.Event()
        self.buffer = LineBuffer(
            self.config["BUFFER_LINES"],
            lambda: self.loop.call_soon_threadsafe(self.wake.set),
            stall=float(self.config["STALL_SECONDS"]),
        )
        self.followers = {}
        self.followers_lock = threading.Lock()
        self.sent_seq = 0
        self.acked_seq = 0
        self.tasks = []
        self.layer = get_channel_layer()
        self.listener = None

        await self.accept()
        if self.layer is not None:
            self.channel_name = await self.layer.new_channel()
            await self.layer.group_add(self.group, self.channel_name)
            self.listener = asyncio.create_task(self._listen())
        self.tasks = [
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._follow_loop()),
        ]

    async def disconnect(self, code):
        if not hasattr(self, "stopping"):
            return
        self.stopping.set()
        self.buffer.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.to_thread(self._stop_followers)
        if self.listener is not None:
            # Not awaited: a receive of channels_redis can take seconds to
            # notice the cancel, and nothing waits on it.
            self.listener.cancel()
            await self.layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            message = json.loads(text_data or "{}")
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        kind = message.get("type")
        if kind == "ack":
            seq = message.get("seq", 0)
            if isinstance(seq, int) and self.acked_seq < seq <= self.sent_seq:
                self.acked_seq = seq
                self.wake.set()
        elif kind == "ping":
            await self.send(text_data='{"type": "pong"}')

    async def _listen(self):
        """Receive the group's events: ``logs.rescan`` from the runners."""
        while True:
            event = await self.layer.receive(self.channel_name)
            if event.get("type") == "logs.rescan":
                # An operation changed the stack: read the container list now.
                self.rescan.set()

    # -- set-up ---------------------------------------------------------------

    @database_sync_to_async
    def _authorize(self, user, env_name, stack_name, service_name):
        environment = Environment.objects.filter(name=env_name).first()
        if environment is None:
            return CLOSE_NOT_FOUND, f"No environment {_shown(env_name)}."
        if not user_can(user, "view", environment):
            return (CLOSE_FORBIDDEN,)
        stack = Stack.objects.filter(name=stack_name).first()
        if stack is None:
            return CLOSE_NOT_FOUND, f"No stack {_shown(stack_name)}."
        services = list(stack.services.values_list("name", flat=True))
        if service_name is not None and service_name not in services:
            return (
                CLOSE_NOT_FOUND,
                f"No service {_shown(service_name)} in stack {stack.name}.",
            )
        return None, environment, stack.name, services

    def _docker(self):
        # The process-wide client of the environment's host. Each follower
        # holds one of its connections while it runs; closing the stream
        # (not the client) ends it.
        return engine.client_for(self.environment_row)

    def _list(self):
        found = engine.list_containers(
            self._docker(),
            environment=self.environment,
            stack=self.stack,
            service=self.service,
        )
        containers = []
        for attrs in sorted(found, key=lambda c: c.get("Created") or 0):
            names = attrs.get("Names") or ["/?"]
            name = names[0].lstrip("/")
            containers.append(
                {
                    "id": attrs["Id"],
                    "name": name,
                    "service": labels.service_of(attrs.get("Labels") or {}, name),
                    "state": attrs.get("State"),
                    "status": attrs.get("Status"),
                }
            )
        return containers

    # -- the history ----------------------------------------------------------

    def _tail(self, containers, tail):
        """Fetch each container's last lines and merge them by timestamp."""
        grep = self.params["grep"]

        def fetch(container):
            lines = engine.read_log(self._docker(), container["id"], tail=tail)
            service = container["service"]
            return container, [
                (ts, service, text)
                for ts, _, text in (line.partition(" ") for line in lines)
            ]

        with ThreadPoolExecutor(max_workers=min(8, len(containers) or 1)) as pool:
            results = list(pool.map(fetch, containers))
        per_container = []
        for container, lines in results:
            follower = self._follower(container)
            if lines:
                follower.last_ts = lines[-1][0]
                follower.last_texts = {
                    t for ts, _, t in lines if ts == follower.last_ts
                }
            else:
                follower.empty_at_connect = True
            if grep:
                lines = [line for line in lines if grep in line[2].lower()]
            per_container.append(lines)
        merged = list(heapq.merge(*per_container, key=by_timestamp))
        return merged[-tail:] if tail else []

    def _follower(self, container):
        with self.followers_lock:
            follower = self.followers.get(container["id"])
            if follower is None:
                follower = _Follower(container["id"], container["service"])
                self.followers[container["id"]] = follower
            return follower

    # -- following ------------------------------------------------------------

    def _start_follower(self, follower, since):
        with self.followers_lock:
            if follower.active or self.stopping.is_set():
                return
            follower.active = True
        follower.thread = threading.Thread(
            target=self._follow,
            args=(follower, since),
            name=f"logs-follow-{follower.container_id[:12]}",
            daemon=True,
        )
        follower.thread.start()

    def _follow(self, follower, since):
        """Thread: feed one container's new lines into the buffer."""
        buffer, grep, service = self.buffer, self.params["grep"], follower.service
        after = known = None
        if since is None:
            kwargs = {"tail": 0}
        elif since == "all":
            kwargs = {}
        else:
            # Docker's `since` is inclusive and has microseconds at best;
            # the exact cut is made on the timestamp strings.
            kwargs = {"since": max(docker_ts_to_unix(since) - 1e-6, 1e-6)}
            after = since
            known = follower.last_texts if since == follower.last_ts else set()
        try:
            stream = engine.LogStream(
                self._docker(), follower.container_id, follow=True, **kwargs
            )
            with self.followers_lock:
                follower.stream = stream
            if self.stopping.is_set():
                stream.close()
                return
            # Hot path: one iteration per chunk of lines.
            for chunk in stream:
                rows = [
                    (ts, service, text)
                    for ts, _, text in (line.partition(" ") for line in chunk)
                ]
                if after is not None:
                    rows = _after(rows, after, known)
                    if rows:
                        after = None
                if not rows:
                    continue
                follower.last_ts = rows[-1][0]
                if grep:
                    rows = [row for row in rows if grep in row[2].lower()]
                buffer.put_many(rows)
                if self.stopping.is_set():
                    break
        except (engine.EngineError, OSError, ValueError) as exc:
            if not self.stopping.is_set():
                logger.info(
                    "log follow of %s ended: %s", follower.container_id[:12], exc
                )
        finally:
            with self.followers_lock:
                follower.last_texts = set()
                follower.active = False
                follower.stream = None

    def _stop_followers(self):
        with self.followers_lock:
            followers = list(self.followers.values())
        for follower in followers:
            if follower.stream is not None:
                follower.stream.close()
        for follower in followers:
            if follower.thread is not None:
                follower.thread.join(timeout=5)

    async def _follow_loop(self):
        """Send the history, then follow containers as they come and go."""
        known = None  # container (id, state) pairs of the previous reading
        while not self.stopping.is_set():
            try:
                containers = await asyncio.to_thread(self._list)
                if known is None:
                    await self._hello(containers)
                    await self._history(containers)
                for container in containers:
                    follower = self._follower(container)
                    if container["state"] in ("running", "restarting", "paused"):
                        is_new = known is not None and container["id"] not in {
                            cid for cid, _ in known
                        }
                        since = self._since(follower, is_new, first=known is None)
                        self._start_follower(follower, since)
                state = [(c["id"], c["state"]) for c in containers]
                if known is not None and state != known:
                    self.buffer.put_event(
                        {"type": "containers", "containers": _public(containers)}
                    )
                known = state
            except engine.EngineError as exc:
                self.buffer.put_event({"type": "error", "message": f"Docker: {exc}"})
            except Exception as exc:  # noqa: BLE001 - keep following; say so.
                if isinstance(exc, asyncio.CancelledError):
                    raise
                logger.exception("log stream of %s failed", self.group)
                self.buffer.put_event(
                    {"type": "error", "message": "Internal error; see the server log."}
                )
            self.rescan.clear()
            try:
                await asyncio.wait_for(
                    self.rescan.wait(), self.config["RELIST_INTERVAL"]
                )
            except TimeoutError:
                pass

    async def _history(self, containers):
        count = 0
        if self.params["since"] is None and self.params["tail"]:
            lines = await asyncio.to_thread(self._tail, containers, self.params["tail"])
            self.buffer.put_many(lines)
            count = len(lines)
        self.buffer.put_event({"type": "tail.done", "count": count})

    def _since(self, follower, is_new, first):
        """Return where a follower starts: a Docker timestamp, "all" or None
        (from now on)."""
        if follower.last_ts is not None:
            return follower.last_ts  # continue after the last line seen
        if is_new or follower.empty_at_connect:
            return "all"  # everything in its log is new to the client
        if self.params["since"] is not None:
            return self.params["since"]
        return None if first else self.connected_at

    async def _hello(self, containers):
        self.connected_at = unix_to_docker_ts(time.time())
        await self.send(
            text_data=json.dumps(
                {
                    "type": "hello",
                    "environment": self.environment,
                    "stack": self.stack,
                    "service": self.service,
                    "services": self.services if not self.service else [self.service],
                    "containers": _public(containers),
                    "tail": self.params["tail"],
                    "since": self.params["since"],
                    "buffer": self.config["BUFFER_LINES"],
                    "window": self.config["WINDOW"],
                }
            )
        )

    # -- sending --------------------------------------------------------------

    async def _send_loop(self):
        cfg = self.config
        batch, interval, window = (
            cfg["BATCH_LINES"],
            cfg["BATCH_INTERVAL"],
            cfg["WINDOW"],
        )
        buffer = self.buffer
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        while True:
            await self.wake.wait()
            self.wake.clear()
            buffer.rearm()
            if self.sent_seq - self.acked_seq >= window:
                continue  # the next ack wakes this loop
            if len(buffer) < batch and not buffer.pending_event():
                # Let a batch fill up; at most `interval` of added latency.
                await asyncio.sleep(interval)
            while self.sent_seq - self.acked_seq < window:
                lines, event = buffer.take(batch)
                if lines:
                    # Chunks of several containers interleave: order by time
                    # (already sorted runs cost one pass).
                    lines.sort(key=by_timestamp)
                    self.sent_seq += 1
                    await self.send(
                        text_data=dumps(
                            {"type": "lines", "seq": self.sent_seq, "lines": lines}
                        )
                    )
                if event is not None:
                    await self.send(text_data=json.dumps(event))
                if not lines and event is None:
                    break


def _after(rows, after, known):
    """Return ``rows`` without those at or before the resume point ``after``."""
    for i, (ts, _, text) in enumerate(rows):
        if ts < after or (ts == after and text in known):
            continue
        return rows[i:]
    return []


def _shown(name):
    """Return a name for a message, cut when very long."""
    return repr(name if len(name) <= 60 else name[:60] + "…")


def _public(containers):
    return [{**c, "id": c["id"][:12]} for c in containers]
