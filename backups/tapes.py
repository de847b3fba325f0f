"""Tape tiers: a self-describing sequential archive of one snapshot.

A tape cannot hold a restic repository (restic needs random access), so a
tape tier receives archives: ``restic dump --archive tar <snapshot> /``
re-written member by member into one tar stream that starts with
``PORTAL-MANIFEST.json`` (environment, service, strategy, record, snapshot
id, tags and the data's manifest) and ends with ``PORTAL-SHA256SUMS`` (a
checksum of every file, computed while it passed). Everything is streamed:
nothing is held but one block. A folder (an LTFS mount, or a plain folder)
gets one ``.tar`` file per archive; a device path is written to as it is.
"""

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

from django.utils import timezone

from .tarstream import ChunkReader
from .tiers import BackupError, tape_path

__all__ = ["ARCHIVE_FORMAT", "MANIFEST_NAME", "SUMS_NAME", "write_archive"]

ARCHIVE_FORMAT = "stack-portal tape archive 1"
MANIFEST_NAME = "PORTAL-MANIFEST.json"
SUMS_NAME = "PORTAL-SHA256SUMS"


class _Hashing:
    """Read from ``fileobj`` and keep the sha256 of what passed."""

    def __init__(self, fileobj):
        self.fileobj = fileobj
        self.digest = hashlib.sha256()

    def read(self, size=-1):
        data = self.fileobj.read(size)
        self.digest.update(data)
        return data


def _member(name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o644
    return info, io.BytesIO(data)


def archive_path(tier, environment, record):
    """Return where the archive of ``record`` goes on ``tier``."""
    target = tape_path(tier, environment)
    if target.exists() and not target.is_dir():
        return target  # a device (or a file standing in for one)
    name = (
        f"{environment.name}-{record.service_name}-{record.strategy}-"
        f"{record.pk}-{record.snapshot_id[:8]}.tar"
    )
    return target / name


def write_archive(source, record, tier, environment):
    """Archive ``record``'s snapshot from repository ``source`` onto ``tier``.

    Return the path written.
    """
    path = archive_path(tier, environment, record)
    if path.parent != path and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format": ARCHIVE_FORMAT,
        "environment": environment.name,
        "service": record.service_name,
        "strategy": record.strategy,
        "record": record.pk,
        "snapshot": record.snapshot_id,
        "tags": record.tags,
        "repository": source.url,
        "manifest": record.manifest,
        "written": timezone.now().isoformat(),
    }
    sums = []
    try:
        with (
            open(path, "wb") as out,
            source.dump(record.snapshot_id, "/", archive="tar") as stream,
        ):
            writer = tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)
            writer.addfile(
                *_member(MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
            )
            reader = tarfile.open(fileobj=ChunkReader(stream), mode="r|")
            for member in reader:
                if member.isfile():
                    data = _Hashing(reader.extractfile(member))
                    writer.addfile(member, data)
                    sums.append(f"{data.digest.hexdigest()}  {member.name}")
                else:
                    writer.addfile(member)
            writer.addfile(*_member(SUMS_NAME, ("\n".join(sums) + "\n").encode()))
            writer.close()
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(
            f"Tape tier {tier.name}: writing {path} failed: {exc}"
        ) from exc
    return Path(path)
