"""Container logs, read in bulk: the one log streamer of the portal.

The log pages (``stacks.consumers``) and ``manage.py stack logs`` both read
logs through :class:`LogStream`. It asks the engine for a container's log
(history and/or follow, with timestamps), reads the response in chunks of
tens of kilobytes, splits Docker's frames with :class:`~.streams.Demuxer`,
decodes each chunk once and splits it into lines with ``str.split``: per
line, Python touches nothing but the resulting string.
"""

import heapq
import queue
import threading

from docker.errors import APIError, NotFound
from requests.exceptions import RequestException

from .containers import ContainerState, list_containers
from .errors import EngineError, api_error_text
from .streams import Demuxer, close_response, read_chunks

__all__ = ["LogStream", "read_log", "split_timestamp", "stream_logs"]

# Bytes asked of the connection at a time.
CHUNK = 1 << 16


def split_timestamp(line):
    """Return ``(timestamp, text)`` of a line read with timestamps."""
    ts, _, text = line.partition(" ")
    return ts, text


class LogStream:
    """One container's log as an iterator of line lists.

    Each item is the list of complete lines that arrived in one chunk
    (``"<RFC 3339 timestamp> <text>"`` with timestamps, the text without),
    in the order the engine sent them. ``close()`` (from any thread) ends a
    follow.

    Args:
        follow: keep the stream open for new lines.
        tail: lines of history ("all" or a number; 0 for none).
        since: Unix seconds (float); only lines at or after it.
    """

    def __init__(
        self,
        client,
        container_id,
        *,
        follow=False,
        tail="all",
        since=None,
        timestamps=True,
        chunk_size=CHUNK,
    ):
        api = client.api
        self.container_id = container_id
        self.chunk_size = chunk_size
        params = {
            "stdout": 1,
            "stderr": 1,
            "follow": int(bool(follow)),
            "timestamps": int(bool(timestamps)),
            "tail": str(tail),
        }
        if since is not None and since > 0:
            params["since"] = f"{since:.9f}"
        try:
            # One inspect: a TTY container's log is a plain byte stream.
            self.tty = bool(api.inspect_container(container_id)["Config"].get("Tty"))
            self.response = api._get(
                api._url("/containers/{0}/logs", container_id),
                params=params,
                stream=True,
            )
            api._raise_for_status(self.response)
        except NotFound as exc:
            raise EngineError(f"Container {container_id[:12]} not found") from exc
        except APIError as exc:
            raise EngineError(
                f"Logs of container {container_id[:12]}: {api_error_text(exc)}"
            ) from exc
        if follow:
            # A quiet container must not hit the client's read timeout.
            api._disable_socket_timeout(api._get_raw_response_socket(self.response))

    # Hot path: one iteration per chunk; per line only the split.
    def __iter__(self):
        demux = None if self.tty else Demuxer()
        partial = b""
        try:
            for data in read_chunks(self.response, self.chunk_size):
                payload = data if demux is None else demux.payloads(data)
                if partial:
                    payload = partial + payload
                cut = payload.rfind(b"\n")
                if cut < 0:
                    partial = payload
                    continue
                partial = payload[cut + 1 :]
                text = payload[: cut + 1].decode("utf-8", "replace")
                if "\r" in text:
                    text = text.replace("\r\n", "\n")
                yield text[:-1].split("\n")
        except Exception as exc:  # noqa: BLE001  (closed, or the engine went away)
            if self.response is None:
                return  # close() from another thread
            raise EngineError(
                f"Log stream of container {self.container_id[:12]} broke: {exc}"
            ) from exc
        if partial:
            yield [partial.decode("utf-8", "replace").rstrip("\r")]

    def close(self):
        """End the stream; a thread blocked reading it returns."""
        response, self.response = self.response, None
        if response is not None:
            close_response(response)


def read_log(client, container_id, *, tail="all", since=None, timestamps=True):
    """Return a container's log lines (not following) as one list."""
    lines = []
    for chunk in LogStream(
        client, container_id, tail=tail, since=since, timestamps=timestamps
    ):
        lines.extend(chunk)
    return lines


def stream_logs(client, project, *, services=None, tail=100, follow=False, stop=None):
    """Yield ``(service, text)`` lines of the containers of Compose ``project``.

    Without ``follow`` the lines of all containers come merged by their
    timestamps. With ``follow`` one thread per container reads its stream
    and whole chunks are handed over, until every stream ends or ``stop``
    (a threading.Event) is set.
    """
    states = [ContainerState(s) for s in list_containers(client, project=project)]
    containers = sorted(
        (c for c in states if not services or c.service in services),
        key=lambda c: c.service,
    )
    if not follow:
        per_container = []
        for c in containers:
            lines = read_log(client, c.id, tail=tail)
            per_container.append(
                [(*split_timestamp(line), c.service) for line in lines]
            )
        for _ts, text, service in heapq.merge(*per_container, key=lambda x: x[0]):
            yield service, text
        return
    stop = stop or threading.Event()
    out = queue.Queue(maxsize=256)
    done = object()
    streams = []

    def pump(c):
        try:
            stream = LogStream(client, c.id, follow=True, tail=tail)
            streams.append(stream)
            for lines in stream:
                if stop.is_set():
                    break
                out.put((c.service, lines))
        except (EngineError, RequestException, OSError):
            pass
        finally:
            out.put(done)

    threads = [
        threading.Thread(target=pump, args=(c,), daemon=True) for c in containers
    ]
    for thread in threads:
        thread.start()
    remaining = len(threads)
    try:
        while remaining and not stop.is_set():
            try:
                item = out.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is done:
                remaining -= 1
                continue
            service, lines = item
            for line in lines:
                if stop.is_set():
                    return
                yield service, split_timestamp(line)[1]
    finally:
        stop.set()
        for stream in streams:
            stream.close()
