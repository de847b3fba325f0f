"""Commands run inside containers, their output streamed, never held whole.

:func:`exec_stream` runs a command with ``docker exec`` and yields its
stdout in chunks as they arrive (``pg_dump`` of a large database goes
through in constant memory); stderr is kept up to a limit for the error
message. With ``stdin`` (an iterable of bytes) the command reads that
stream (``pg_restore`` from a backup). :func:`exec_run` is the short form
for commands with little output. :class:`ExecSession` is an interactive
command with a terminal (the console page): raw output read as it comes,
input written as typed, the terminal resized.
"""

import socket
import threading
import time

from docker.errors import APIError, NotFound

from .errors import EngineError, api_error_text
from .streams import Demuxer, close_response

__all__ = [
    "ExecResult",
    "ExecSession",
    "ExecStream",
    "HijackedStream",
    "exec_run",
    "exec_session",
    "exec_stream",
]

# Bytes read from the engine at a time.
CHUNK = 1 << 20
# Stderr kept for the error message.
STDERR_LIMIT = 64 * 1024


class ExecResult:
    """How an exec ended: exit code, stderr (capped), stdout (exec_run only)."""

    def __init__(self, exit_code, stderr=b"", stdout=b""):
        self.exit_code = exit_code
        self.stderr = stderr
        self.stdout = stdout

    @property
    def ok(self):
        return self.exit_code == 0

    def stderr_text(self, limit=2000):
        """Return the end of stderr as text (the part that says what failed)."""
        text = self.stderr.decode("utf-8", "replace").strip()
        return text[-limit:]

    def __repr__(self):
        return f"<ExecResult exit={self.exit_code}>"


class HijackedStream:
    """Output of a process on a hijacked engine connection, and its input.

    The shared part of :class:`ExecStream` (``docker exec``) and
    :class:`stacks.engine.helpers.HelperStream` (a helper container's main
    process, attached): iterate for stdout chunks, then read :attr:`result`.
    Subclasses open the connection (:meth:`_open` with the engine's
    response) and say how the process ended (:meth:`_exit_code`).

    Use as a context manager so the connection is closed when the caller
    stops early (a cancel); the process then gets EOF/SIGPIPE on its output.
    """

    def __init__(
        self,
        client,
        container_id,
        cmd,
        *,
        stdin=None,
        chunk_size=CHUNK,
        stderr_limit=STDERR_LIMIT,
    ):
        self.client = client
        self.container_id = container_id
        self.cmd = list(cmd)
        self.chunk_size = chunk_size
        self.stderr_limit = stderr_limit
        self.stdin = stdin
        self.result = None
        self.bytes_out = 0
        self._stderr = bytearray()
        self._writer = None
        self._write_error = None
        self._response = None

    def _open(self, response, name):
        """Take over the hijacked connection of ``response``; start feeding."""
        api = self.client.api
        self._response = response
        # The hijacked connection: no HTTP framing from here on.
        self._sock = api._get_raw_response_socket(response)
        api._disable_socket_timeout(self._sock)
        fp = response.raw._fp.fp
        # Read through the buffered reader: it may already hold the first
        # bytes of output that arrived with the response headers.
        self._read = fp.read1 if hasattr(fp, "read1") else self._sock.read
        if self.stdin is not None:
            self._writer = threading.Thread(
                target=self._feed, name=f"stdin-{name}", daemon=True
            )
            self._writer.start()

    def _raw_socket(self):
        return getattr(self._sock, "_sock", self._sock)

    def _feed(self):
        raw = self._raw_socket()
        try:
            for chunk in self.stdin:
                if chunk:
                    raw.sendall(chunk)
        except OSError as exc:
            # The command exited without reading all of its input.
            self._write_error = exc
        except BaseException as exc:  # noqa: BLE001  (reported after the exec)
            self._write_error = exc
        finally:
            try:
                raw.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def __iter__(self):
        demux = Demuxer()
        read, size = self._read, self.chunk_size
        stderr, limit = self._stderr, self.stderr_limit
        try:
            while True:
                data = read(size)
                if not data:
                    break
                out, err = demux.feed(data)
                if err:
                    # Keep the end: the last lines say what failed.
                    stderr.extend(err)
                    if len(stderr) > limit:
                        del stderr[: len(stderr) - limit]
                if out:
                    self.bytes_out += len(out)
                    yield out
        finally:
            self.close()
        self.result = self._finish()

    def _exit_code(self):
        raise NotImplementedError

    def _finish(self):
        if self._writer is not None:
            self._writer.join()
        result = ExecResult(self._exit_code(), bytes(self._stderr))
        if self._write_error is not None and result.exit_code == 0:
            raise EngineError(
                f"{self.cmd[0]} in container {self.container_id[:12]}: writing its "
                f"input failed: {self._write_error}"
            )
        return result

    def close(self):
        """Close the connection (the command sees its output closed)."""
        if self._response is not None:
            close_response(self._response)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class ExecStream(HijackedStream):
    """A running exec: iterate for stdout chunks, then read :attr:`result`."""

    def __init__(
        self,
        client,
        container_id,
        cmd,
        *,
        user="",
        environment=None,
        workdir=None,
        stdin=None,
        chunk_size=CHUNK,
        stderr_limit=STDERR_LIMIT,
    ):
        super().__init__(
            client,
            container_id,
            cmd,
            stdin=stdin,
            chunk_size=chunk_size,
            stderr_limit=stderr_limit,
        )
        api = client.api
        try:
            created = api.exec_create(
                container_id,
                self.cmd,
                stdout=True,
                stderr=True,
                stdin=stdin is not None,
                user=user or "",
                environment=environment,
                workdir=workdir,
            )
        except NotFound as exc:
            raise EngineError(
                f"Container {container_id[:12]} not found for {self.cmd[0]}"
            ) from exc
        except APIError as exc:
            raise EngineError(
                f"Cannot run {self.cmd[0]} in container {container_id[:12]}: "
                f"{api_error_text(exc)}"
            ) from exc
        self.exec_id = created["Id"]
        response = api._post_json(
            api._url("/exec/{0}/start", self.exec_id),
            headers={"Connection": "Upgrade", "Upgrade": "tcp"},
            data={"Tty": False, "Detach": False},
            stream=True,
        )
        self._open(response, f"exec-{self.exec_id[:12]}")

    def _exit_code(self):
        # The stream ends before the engine records the exit code.
        deadline = time.monotonic() + 30
        while True:
            info = self.client.api.exec_inspect(self.exec_id)
            if not info.get("Running") or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        return info.get("ExitCode")


def exec_stream(client, container_id, cmd, **kwargs):
    """Start ``cmd`` in ``container_id``; return an :class:`ExecStream`.

    Iterating it yields stdout chunks (bytes) as they arrive; afterwards
    ``.result`` holds the :class:`ExecResult`. Keyword arguments: ``user``,
    ``environment`` (dict or list), ``workdir``, ``stdin`` (an iterable of
    bytes written to the command's standard input), ``chunk_size``.
    """
    return ExecStream(client, container_id, cmd, **kwargs)


def exec_run(client, container_id, cmd, *, limit=16 << 20, **kwargs):
    """Run ``cmd`` and return its :class:`ExecResult` with stdout (capped).

    For commands with small output (``redis-cli BGSAVE``, ``psql -c``);
    stdout beyond ``limit`` bytes is an EngineError rather than a memory
    spike.
    """
    stream = ExecStream(client, container_id, cmd, **kwargs)
    out = bytearray()
    with stream:
        for chunk in stream:
            out.extend(chunk)
            if len(out) > limit:
                raise EngineError(
                    f"{stream.cmd[0]} in container {container_id[:12]} wrote more "
                    f"than {limit} bytes; use exec_stream"
                )
    result = stream.result
    result.stdout = bytes(out)
    return result


class ExecSession:
    """An interactive command in a container, with a terminal (a console).

    With a TTY the engine sends one raw stream (stdout and stderr merged, no
    multiplexing) and echoes input itself. :meth:`read` blocks until output
    arrives (call it from a thread) and returns ``b""`` when the command has
    ended; :meth:`write` sends input; :meth:`resize` sets the terminal's
    size; :meth:`close` ends the connection, which hangs up the command.
    """

    def __init__(
        self,
        client,
        container_id,
        cmd,
        *,
        user="",
        environment=None,
        workdir=None,
        cols=80,
        rows=24,
    ):
        self.client = client
        self.container_id = container_id
        self.cmd = list(cmd)
        api = client.api
        try:
            created = api.exec_create(
                container_id,
                self.cmd,
                stdout=True,
                stderr=True,
                stdin=True,
                tty=True,
                user=user or "",
                environment=environment,
                workdir=workdir,
            )
        except NotFound as exc:
            raise EngineError(f"Container {container_id[:12]} not found") from exc
        except APIError as exc:
            raise EngineError(
                f"Cannot run {self.cmd[0]} in container {container_id[:12]}: "
                f"{api_error_text(exc)}"
            ) from exc
        self.exec_id = created["Id"]
        try:
            self._response = api._post_json(
                api._url("/exec/{0}/start", self.exec_id),
                headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                data={"Tty": True, "Detach": False},
                stream=True,
            )
            api._raise_for_status(self._response)
        except APIError as exc:
            raise EngineError(
                f"Cannot start {self.cmd[0]} in container {container_id[:12]}: "
                f"{api_error_text(exc)}"
            ) from exc
        self._sock = api._get_raw_response_socket(self._response)
        api._disable_socket_timeout(self._sock)
        fp = self._response.raw._fp.fp
        self._read = fp.read1 if hasattr(fp, "read1") else self._sock.read
        self._write_lock = threading.Lock()
        self.closed = False
        self.resize(cols, rows)

    def _raw_socket(self):
        return getattr(self._sock, "_sock", self._sock)

    def read(self, size=CHUNK):
        """Return the next output (bytes); ``b""`` when the command ended."""
        try:
            return self._read(size)
        except (OSError, ValueError):
            # Closed from another thread (the console went away).
            return b""

    def write(self, data):
        """Send ``data`` (bytes) to the command's terminal."""
        if self.closed or not data:
            return
        with self._write_lock:
            try:
                self._raw_socket().sendall(data)
            except OSError as exc:
                raise EngineError(f"The console's command has ended: {exc}") from exc

    def resize(self, cols, rows):
        """Set the terminal to ``cols`` x ``rows`` characters."""
        try:
            self.client.api.exec_resize(
                self.exec_id, height=max(1, int(rows)), width=max(1, int(cols))
            )
        except (APIError, ValueError):
            # The command may not run yet, or has ended: nothing to resize.
            pass

    def exit_code(self):
        """Return the command's exit code, or None while it runs."""
        try:
            info = self.client.api.exec_inspect(self.exec_id)
        except APIError:
            return None
        return None if info.get("Running") else info.get("ExitCode")

    def close(self):
        """Hang up: close the connection (the shell gets SIGHUP)."""
        if self.closed:
            return
        self.closed = True
        try:
            self._raw_socket().shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        close_response(self._response)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def exec_session(client, container_id, cmd, **kwargs):
    """Start ``cmd`` in ``container_id`` with a terminal; return an
    :class:`ExecSession`. Keyword arguments: ``user``, ``environment``,
    ``workdir``, ``cols``, ``rows``."""
    return ExecSession(client, container_id, cmd, **kwargs)
