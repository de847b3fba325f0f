"""Tar archives written as a stream, member by member.

A strategy that reads many things (Qdrant collections, MinIO objects,
configuration files) hands restic one tar stream: each member's header
(PAX, so long names and exact keys survive) is written when its size is
known, then its bytes as they arrive; nothing is held but one chunk and
nothing touches a disk. A member whose bytes do not add up to the size its
header announced fails the archive, so restic writes no snapshot of it.
"""

import io
import tarfile
import time

from .tiers import BackupError

__all__ = ["BLOCK", "ChunkReader", "directory", "member", "tar_stream"]

BLOCK = tarfile.BLOCKSIZE


class ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte chunks (a stream read as a
    tar with ``tarfile.open(fileobj=..., mode="r|")``)."""

    def __init__(self, chunks):
        self._chunks = iter(chunks)
        self._rest = b""

    def readable(self):
        return True

    def readinto(self, buffer):
        while not self._rest:
            self._rest = next(self._chunks, b"")
            if not self._rest:
                return 0
        size = min(len(buffer), len(self._rest))
        buffer[:size] = self._rest[:size]
        self._rest = self._rest[size:]
        return size


def member(name, size, *, mtime=None, mode=0o644, pax=None):
    """Return the TarInfo of a regular file ``name`` of ``size`` bytes.

    ``pax`` adds PAX header records (strings), e.g. the exact object key.
    """
    info = tarfile.TarInfo(name)
    info.size = int(size)
    info.mtime = int(time.time() if mtime is None else mtime)
    info.mode = mode
    info.type = tarfile.REGTYPE
    if pax:
        info.pax_headers = {str(k): str(v) for k, v in pax.items()}
    return info


def directory(name, *, mtime=None, mode=0o755, pax=None):
    """Return the TarInfo of a directory ``name`` (give it no chunks)."""
    info = member(name, 0, mtime=mtime, mode=mode, pax=pax)
    info.type = tarfile.DIRTYPE
    return info


def tar_stream(members):
    """Yield the bytes of a tar archive of ``members``.

    ``members`` yields ``(TarInfo, chunks)`` pairs; the chunks of each (an
    iterable of bytes) must add up to ``TarInfo.size``. Members are asked
    for one at a time, so a generator can open each source only when its
    turn comes.
    """
    for info, chunks in members:
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        written = 0
        for chunk in chunks:
            if not chunk:
                continue
            written += len(chunk)
            if written > info.size:
                raise BackupError(
                    f"{info.name}: more than the {info.size} bytes announced; it "
                    "changed while it was read"
                )
            yield chunk
        if written != info.size:
            raise BackupError(
                f"{info.name}: {written} bytes instead of the {info.size} announced; "
                "it changed while it was read"
            )
        padding = -written % BLOCK
        if padding:
            yield bytes(padding)
    # The end of an archive: two zero blocks.
    yield bytes(2 * BLOCK)
