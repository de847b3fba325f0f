"""Docker's multiplexed stream format, split in bulk.

A container without a TTY sends its output (logs, exec) as frames: an
8-byte header (stream type 1 stdout / 2 stderr, three zero bytes, a
big-endian 32-bit length) and the payload. docker-py turns every frame into
a Python object of its own, which costs more than the daemon spends on the
line. :class:`Demuxer` takes whatever bytes arrived (tens of kilobytes at a
time) and returns the payloads of every complete frame joined per stream, so
the per-frame work is one ``unpack_from`` and one slice.
"""

import socket
import struct

from docker.utils.socket import read as socket_read

__all__ = [
    "STDERR",
    "STDOUT",
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


def read_chunks(response, size=1 << 16):
    """Yield what arrives on an HTTP ``response`` (urllib3 raw), as it comes.

    ``read1`` returns after one read from the connection, so a quiet stream
    delivers its bytes at once while a busy one fills large chunks.
    """
    raw = response.raw
    while True:
        data = raw.read1(size)
        if not data:
            return
        yield data


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
