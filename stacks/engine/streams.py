"""Docker's stream formats, split in bulk.

A container without a TTY sends its output (logs, exec) as frames: an
8-byte header (stream type 1 stdout / 2 stderr, three zero bytes, a
big-endian 32-bit length) and the payload. docker-py turns every frame into
a Python object of its own, which costs more than the daemon spends on the
line. :class:`Demuxer` takes whatever bytes arrived (tens of kilobytes at a
time) and returns the payloads of every complete frame joined per stream, so
the per-frame work is one ``unpack_from`` and one slice.

A followed log comes as an HTTP response in chunked transfer coding, and the
engine flushes every frame as a chunk of its own: one line, one chunk.
Reading it through ``http.client`` (``read1``) returns one chunk per call,
which made every line a trip through urllib3 and ``http.client``.
:func:`read_chunks` reads the connection in large pieces instead and
:class:`Dechunker` removes the chunk framing in bulk, as the Demuxer does
for Docker's.
"""

import socket
import struct

from docker.utils.socket import read as socket_read

__all__ = [
    "STDERR",
    "STDOUT",
    "Dechunker",
    "Demuxer",
    "close_response",
    "read_chunks",
    "read_socket_chunks",
]

STDOUT = 1
STDERR = 2

_HEADER = struct.Struct(">BxxxL")
_HEADER_SIZE = _HEADER.size


class Demuxer:
    """Split a multiplexed stream fed in arbitrary pieces."""

    __slots__ = ("_rest",)

    def __init__(self):
        self._rest = b""

    @property
    def pending(self):
        """Bytes of an incomplete frame waiting for more input."""
        return len(self._rest)

    # Hot path: called once per chunk read from the engine.
    def feed(self, data):
        """Return ``(stdout, stderr)``: the payloads of the complete frames.

        Frames of other types (stdin echo, 0) count as stdout, as docker-py
        does.
        """
        if self._rest:
            data = self._rest + data
        unpack = _HEADER.unpack_from
        end = len(data)
        pos = 0
        out, err = [], []
        while end - pos >= _HEADER_SIZE:
            kind, size = unpack(data, pos)
            start = pos + _HEADER_SIZE
            stop = start + size
            if stop > end:
                break
            (err if kind == STDERR else out).append(data[start:stop])
            pos = stop
        self._rest = data[pos:] if pos < end else b""
        return b"".join(out), b"".join(err)

    # Hot path: called once per chunk of a log stream.
    def payloads(self, data):
        """Return the payloads of the complete frames joined in stream order.

        For logs, where stdout and stderr lines interleave and both count.
        """
        if self._rest:
            data = self._rest + data
        unpack = _HEADER.unpack_from
        end = len(data)
        pos = 0
        parts = []
        while end - pos >= _HEADER_SIZE:
            size = unpack(data, pos)[1]
            start = pos + _HEADER_SIZE
            stop = start + size
            if stop > end:
                break
            parts.append(data[start:stop])
            pos = stop
        self._rest = data[pos:] if pos < end else b""
        return b"".join(parts)


class Dechunker:
    """Decode HTTP/1.1 chunked transfer coding fed in arbitrary pieces.

    ``feed`` returns the body bytes of what it was given; ``done`` turns true
    at the last (empty) chunk. Trailers after it are ignored.
    """

    __slots__ = ("_rest", "_left", "_skip", "done")

    # The longest chunk-size line accepted (size and extensions).
    MAX_SIZE_LINE = 4096

    def __init__(self):
        self._rest = b""
        self._left = 0  # bytes of the current chunk's data still to come
        self._skip = 0  # bytes of the CRLF after it still to come
        self.done = False

    # Hot path: called once per piece read from the connection; loops once
    # per chunk, i.e. once per log line of a followed container.
    def feed(self, data):
        """Return the body bytes in ``data`` (the chunk framing removed)."""
        if self._rest:
            data = self._rest + data
            self._rest = b""
        out = []
        pos, end = 0, len(data)
        if self._left or self._skip:
            pos = self._finish_chunk(data, out)
        find = data.find
        while pos < end and not self.done:
            eol = find(b"\r\n", pos)
            if eol < 0:
                if end - pos > self.MAX_SIZE_LINE:
                    raise ValueError("chunked response: chunk size line too long")
                self._rest = data[pos:]
                break
            size = _chunk_size(data[pos:eol])
            start = eol + 2
            stop = start + size
            if not size:
                self.done = True
            elif stop + 2 <= end:
                # The usual case: the whole chunk and its CRLF are here.
                out.append(data[start:stop])
                pos = stop + 2
            else:
                self._left = size
                pos = self._finish_chunk(data, out, start)
                break
        return b"".join(out)

    def _finish_chunk(self, data, out, pos=0):
        """Take what ``data`` holds of the current chunk from ``pos``; return
        where it ends."""
        end = len(data)
        if self._left:
            stop = min(end, pos + self._left)
            out.append(data[pos:stop])
            self._left -= stop - pos
            pos = stop
            if self._left:
                return pos
            self._skip = 2
        stop = min(end, pos + self._skip)
        self._skip -= stop - pos
        return stop


def _chunk_size(line):
    try:
        size = int(line, 16)
    except ValueError:
        # Chunk extensions (";name=value"), which the engine does not send.
        size = int(line.split(b";", 1)[0], 16)
    if size < 0:
        raise ValueError(f"chunked response: bad chunk size {line[:20]!r}")
    return size


def _chunked_body(response):
    """Return the buffered socket reader of a chunked ``response`` not read yet.

    None when the response is not chunked, or ``http.client`` has started
    reading its body (then only it knows where the chunk framing stands).
    """
    message = getattr(response.raw, "_fp", None)  # http.client.HTTPResponse
    if not getattr(message, "chunked", False) or message.chunk_left is not None:
        return None
    return getattr(message, "fp", None)


def read_chunks(response, size=1 << 16):
    """Yield what arrives on an HTTP ``response`` (urllib3 raw), as it comes.

    Each read returns after one read from the connection, so a quiet stream
    delivers its bytes at once while a busy one fills large pieces. A
    chunked body is read from the connection directly and de-chunked here
    (see the module docstring); the response is closed at its end, since
    ``http.client`` no longer knows where the connection stands.
    """
    body = _chunked_body(response)
    if body is None:
        raw = response.raw
        while True:
            data = raw.read1(size)
            if not data:
                return
            yield data
    dechunk = Dechunker()
    try:
        while not dechunk.done:
            data = body.read1(size)
            if not data:
                return
            data = dechunk.feed(data)
            if data:
                yield data
    finally:
        close_response(response)


def read_socket_chunks(sock, size=1 << 20):
    """Yield what arrives on a hijacked socket (exec, attach) until EOF."""
    while True:
        data = socket_read(sock, size)
        if not data:
            return
        yield data


def close_response(response):
    """Close a streaming ``response``, also while another thread reads it.

    Closing the response alone waits for the reading thread to let go of
    the buffered reader, which it does only when data arrives; shutting the
    socket down first makes that read return at once (as docker-py's
    ``CancellableStream.close`` does).
    """
    fp = getattr(getattr(response.raw, "_fp", None), "fp", None)
    raw = getattr(fp, "raw", None)
    sock = getattr(raw, "_sock", None) or getattr(raw, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    try:
        response.close()
    except Exception:  # noqa: BLE001  (closing a broken stream)
        pass
