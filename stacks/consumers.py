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
    Docker could not be asked; the consumer keeps retrying.
``{"type": "pong"}``
    Reply to a ping.

Messages from the client:

``{"type": "ack", "seq": n}``
    Batch ``n`` (and every one before it) was handled. At most ``WINDOW``
    batches are unacknowledged at a time; while the window is full, lines
    wait in a buffer of ``BUFFER_LINES`` lines per client, and what does not
    fit is dropped and reported with a ``dropped`` message. The window is
    what makes a slow browser visible to the server: the WebSocket transport
    itself buffers without limit.
``{"type": "ping"}``

Close codes before acceptance: 4401 not logged in, 4403 no ``view`` role on
the environment, 4404 unknown environment, stack or service, 4400 bad
query parameter.

Followers: one thread per container runs docker-py's
``logs(stream=True, follow=True, timestamps=True)`` and hands lines to the
event loop through the buffer and ``loop.call_soon_threadsafe``. The
container list is read again every ``RELIST_INTERVAL`` seconds (and when
group ``logs.<env>.<stack>[.<service>]`` receives ``{"type":
"logs.rescan"}``, which the stack runners of ``stacks.jobs`` send when they
end), so containers started or recreated after the connect are followed
too. On disconnect the streams are closed, which ends the threads.
"""

import asyncio
import calendar
import hashlib
import heapq
import json
import logging
import re
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from docker.errors import DockerException
from requests.exceptions import RequestException

from portal.permissions import user_can

from .docker import StackError, client_for
from .models import Environment, Stack
from .status import COMPOSE_SERVICE_LABEL, ENV_LABEL, SERVICE_LABEL, STACK_LABEL

__all__ = ["ContainerLogConsumer", "LineBuffer", "get_config", "logs_group"]

logger = logging.getLogger(__name__)

DEFAULTS = {
    # Lines of history sent on connect when the client does not say.
    "TAIL": 200,
    # Lines waiting for a slow client before lines are dropped.
    "BUFFER_LINES": 5000,
    # A batch is sent when it has this many lines...
    "BATCH_LINES": 200,
    # ...or this many seconds after its first line arrived.
    "BATCH_INTERVAL": 0.1,
    # Batches sent and not yet acknowledged by the client.
    "WINDOW": 8,
    # Seconds between two readings of the container list.
    "RELIST_INTERVAL": 3.0,
}

_TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def get_config():
    """Return the log streaming settings: DEFAULTS updated by
    ``settings.PORTAL_CONTAINER_LOGS``."""
    return {**DEFAULTS, **getattr(settings, "PORTAL_CONTAINER_LOGS", {})}


def logs_group(environment, stack, service=None):
    """Return the Channels group name of a stack's (or a service's) logs."""
    name = f"logs.{environment}.{stack}" + (f".{service}" if service else "")
    if len(name) > 90:
        # Group names are limited to 100 characters.
        name = f"logs.{hashlib.sha1(name.encode()).hexdigest()}"
    return name


def docker_ts_to_unix(ts):
    """Return Unix seconds (float) of a Docker RFC 3339 UTC timestamp."""
    seconds, _, fraction = ts.rstrip("Z").partition(".")
    whole = calendar.timegm(time.strptime(seconds, "%Y-%m-%dT%H:%M:%S"))
    return whole + (float(f"0.{fraction}") if fraction else 0.0)


def unix_to_docker_ts(value):
    """Return the Docker timestamp string of Unix seconds ``value``."""
    whole = int(value)
    nanos = round((value - whole) * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{nanos:09d}Z"


class LineBuffer:
    """A bounded, thread-safe queue of log lines and in-order events.

    Follower threads ``put`` lines; the consumer ``take``s batches. When
    ``capacity`` lines are waiting, new lines are counted instead of kept,
    and a ``dropped`` event takes their place in the stream.
    """

    def __init__(self, capacity, wake):
        self.capacity = capacity
        self._wake = wake
        self._lock = threading.Lock()
        self._items = deque()
        self._lines = 0
        self._events = 0
        self._notified = False
        self._dropped = 0
        self._dropped_first = self._dropped_last = None

    def __len__(self):
        return self._lines

    # Hot path: called once per log line from the follower threads.
    def put(self, line):
        with self._lock:
            if self._lines >= self.capacity:
                if not self._dropped:
                    self._dropped_first = line[0]
                self._dropped += 1
                self._dropped_last = line[0]
                return
            if self._dropped:
                self._items.append(self._drop_event())
                self._events += 1
            self._items.append(line)
            self._lines += 1
            if self._notified:
                return
            self._notified = True
        self._wake()

    def put_event(self, event):
        """Queue a message (a dict) after the lines queued so far."""
        with self._lock:
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
        with self._lock:
            self._notified = False

    def pending_event(self):
        """Return whether an event (or unreported drop) waits to be sent."""
        with self._lock:
            return self._dropped > 0 or self._events > 0

    def take(self, max_lines):
        """Return ``(lines, event)``: up to ``max_lines`` lines, then the
        event that stopped the batch (or None)."""
        lines = []
        with self._lock:
            items = self._items
            while items and len(lines) < max_lines:
                item = items.popleft()
                if isinstance(item, dict):
                    self._lines -= len(lines)
                    self._events -= 1
                    return lines, item
                lines.append(item)
            self._lines -= len(lines)
            if not items and self._dropped and len(lines) < max_lines:
                return lines, self._drop_event()
        return lines, None

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


class ContainerLogConsumer(AsyncWebsocketConsumer):
    """Stream the logs of a stack's containers to one browser."""

    async def connect(self):
        self.config = get_config()
        kwargs = self.scope["url_route"]["kwargs"]
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        try:
            self.params = self._parse_query()
        except ValueError:
            await self.close(code=4400)
            return
        found = await self._authorize(
            user, kwargs["environment"], kwargs["stack"], kwargs.get("service")
        )
        if isinstance(found, int):
            await self.close(code=found)
            return
        self.environment_row, self.stack, self.services = found
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
        )
        self.followers = {}
        self.followers_lock = threading.Lock()
        self.sent_seq = 0
        self.acked_seq = 0
        self.tasks = []

        if self.channel_layer is not None:
            await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        self.tasks = [
            asyncio.create_task(self._send_loop()),
            asyncio.create_task(self._follow_loop()),
        ]

    async def disconnect(self, code):
        if not hasattr(self, "stopping"):
            return
        self.stopping.set()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await asyncio.to_thread(self._stop_followers)
        if self.channel_layer is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        try:
            message = json.loads(text_data or "{}")
        except ValueError:
            return
        kind = message.get("type")
        if kind == "ack":
            try:
                seq = int(message.get("seq", 0))
            except (TypeError, ValueError):
                return
            if self.acked_seq < seq <= self.sent_seq:
                self.acked_seq = seq
                self.wake.set()
        elif kind == "ping":
            await self.send(text_data='{"type": "pong"}')

    async def logs_rescan(self, event):
        """Read the container list now (an operation changed the stack)."""
        self.rescan.set()

    # -- set-up ---------------------------------------------------------------

    def _parse_query(self):
        query = parse_qs(self.scope.get("query_string", b"").decode())
        params = {"tail": self.config["TAIL"], "since": None, "grep": None}
        if "tail" in query:
            params["tail"] = max(0, int(query["tail"][0]))
        params["tail"] = min(params["tail"], self.config["BUFFER_LINES"])
        if query.get("since", [""])[0]:
            since = query["since"][0]
            if _TS_RE.match(since):
                params["since"] = since
            else:
                params["since"] = unix_to_docker_ts(float(since))
        if query.get("grep", [""])[0]:
            params["grep"] = query["grep"][0].lower()
        return params

    @database_sync_to_async
    def _authorize(self, user, env_name, stack_name, service_name):
        environment = Environment.objects.filter(name=env_name).first()
        if environment is None:
            return 4404
        if not user_can(user, "view", environment):
            return 4403
        stack = Stack.objects.filter(name=stack_name).first()
        if stack is None:
            return 4404
        services = list(stack.services.values_list("name", flat=True))
        if service_name is not None and service_name not in services:
            return 4404
        return environment, stack.name, services

    def _docker(self):
        # The process-wide client of the environment's host. Each follower
        # holds one of its connections while it runs; closing the stream
        # (not the client) ends it.
        return client_for(self.environment_row)

    def _list(self):
        filters = [f"{ENV_LABEL}={self.environment}", f"{STACK_LABEL}={self.stack}"]
        if self.service:
            filters.append(f"{SERVICE_LABEL}={self.service}")
        found = self._docker().api.containers(all=True, filters={"label": filters})
        containers = []
        for attrs in sorted(found, key=lambda c: c.get("Created") or 0):
            labels = attrs.get("Labels") or {}
            names = attrs.get("Names") or ["/?"]
            containers.append(
                {
                    "id": attrs["Id"],
                    "name": names[0].lstrip("/"),
                    "service": labels.get(SERVICE_LABEL)
                    or labels.get(COMPOSE_SERVICE_LABEL)
                    or names[0].lstrip("/"),
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
            raw = self._docker().api.logs(
                container["id"], timestamps=True, tail=tail, stream=False
            )
            lines = []
            for chunk in raw.split(b"\n"):
                if not chunk:
                    continue
                ts, _, text = chunk.partition(b" ")
                lines.append(
                    (
                        ts.decode("ascii", "replace"),
                        container["service"],
                        text.decode("utf-8", "replace").rstrip("\r"),
                    )
                )
            return container, lines

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
        merged = list(heapq.merge(*per_container, key=lambda line: line[0]))
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
            # Docker's `since` is inclusive and reaches docker-py as a float
            # (microseconds); the exact cut is made on the timestamp strings.
            kwargs = {"since": max(docker_ts_to_unix(since) - 1e-6, 1e-6)}
            after = since
            known = follower.last_texts if since == follower.last_ts else set()
        try:
            stream = self._docker().api.logs(
                follower.container_id,
                stream=True,
                follow=True,
                timestamps=True,
                **kwargs,
            )
            with self.followers_lock:
                follower.stream = stream
            if self.stopping.is_set():
                self._close_stream(follower)
                return
            pending = b""
            # Hot path: one iteration per log line (docker-py yields a frame
            # per line).
            for chunk in stream:
                if pending:
                    chunk, pending = pending + chunk, b""
                parts = chunk.split(b"\n")
                if parts[-1]:
                    pending = parts[-1]
                for raw in parts[:-1]:
                    if not raw:
                        continue
                    ts, _, text = raw.partition(b" ")
                    ts = ts.decode("ascii", "replace")
                    text = text.decode("utf-8", "replace").rstrip("\r")
                    if after is not None:
                        if ts < after or (ts == after and text in known):
                            continue
                        after = None
                    follower.last_ts = ts
                    if grep and grep not in text.lower():
                        continue
                    buffer.put((ts, service, text))
        except (DockerException, RequestException, OSError, ValueError) as exc:
            if not self.stopping.is_set():
                logger.info(
                    "log follow of %s ended: %s", follower.container_id[:12], exc
                )
        finally:
            with self.followers_lock:
                follower.last_texts = set()
                follower.active = False
                follower.stream = None

    @staticmethod
    def _close_stream(follower):
        stream = follower.stream
        if stream is None:
            return
        try:
            stream.close()
        except (DockerException, OSError, AttributeError):
            pass

    def _stop_followers(self):
        with self.followers_lock:
            followers = list(self.followers.values())
        for follower in followers:
            self._close_stream(follower)
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
            except (StackError, DockerException, RequestException, OSError) as exc:
                self.buffer.put_event({"type": "error", "message": f"Docker: {exc}"})
            except Exception:  # noqa: BLE001 - keep following; say so.
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
            for line in lines:
                self.buffer.put(line)
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
                    lines.sort(key=_by_timestamp)
                    self.sent_seq += 1
                    await self.send(
                        text_data=json.dumps(
                            {"type": "lines", "seq": self.sent_seq, "lines": lines},
                            separators=(",", ":"),
                        )
                    )
                if event is not None:
                    await self.send(text_data=json.dumps(event))
                if not lines and event is None:
                    break


def _by_timestamp(line):
    return line[0]


def _public(containers):
    return [{**c, "id": c["id"][:12]} for c in containers]
