"""The cleaners: measure and delete one item's data, next to the data.

Every cleaner has two steps, :func:`measure` (what is older than the
cutoff and what stays; reads only) and :func:`remove` (delete what the
measure found old, in batches). A dry run calls :func:`measure` only.

==============  ============================================================
kind            how
==============  ============================================================
rows            ``psql`` in the service's container: counts, bytes
                (``pg_column_size``), oldest and newest by the date column;
                deletes about ``batch_size`` rows per statement, a range of
                pages at a time (its own transaction: row locks are held for
                one batch only, the table is never locked)
keys            one Lua script per ``SCAN`` step in the Redis container: a
                key's age is its idle time (``OBJECT IDLETIME``), its bytes
                ``MEMORY USAGE``; old keys are ``UNLINK``\\ ed, younger keys
                without a TTL get one for the rest of their days (the
                seed's ``EXPIRE``)
files           ``find`` in a helper container with the volume mounted (not
                file by file over the API): ``-mmin +<days * 1440>``, the
                item's path, name patterns, and the paths and patterns of
                more specific items left out; GNU find measures and deletes
                in its walk (``-printf``, ``-delete``), BusyBox's through
                ``stat`` and ``rm`` per batch of names
collections     Qdrant's API (``GET /collections``, ``DELETE
                /collections/{name}``) from a helper on the service's
                network; a collection's age is the time since the portal
                first saw it (:class:`~retention.models.CollectionSighting`:
                Qdrant reports no creation time)
indices         Elasticsearch's ``_cat/indices`` (creation dates, store
                sizes) and ``DELETE /<index>``, the same way
objects         S3 ``ListObjectsV2`` by ``LastModified`` and
                ``DeleteObject``, with the backups' MinIO client (boto3)
snapshots       the service's backup records older than its
                ``backup_retention_days`` (the newest of each tier and
                strategy always stays, tapes are left to their rotation):
                ``restic forget`` and ``prune`` in each tier's repository;
                the records are marked pruned
==============  ============================================================
"""

import json

from ..choices import ItemKind
from .apis import (
    measure_collections,
    measure_indices,
    remove_collections,
    remove_indices,
)
from .base import CleanupError, Context, NotThere
from .files import measure_files, remove_files
from .keys import measure_keys, remove_keys
from .objects import measure_objects, remove_objects, s3_client
from .rows import RowsArchive, measure_rows, remove_rows
from .snapshots import measure_snapshots, remove_snapshots

__all__ = [
    "CleanupError",
    "Context",
    "NotThere",
    "RowsArchive",
    "measure",
    "remove",
    "s3_client",
]


def measure(ctx, item, cutoff):
    """Return what ``item`` holds older than ``cutoff`` and what stays."""
    handler = _CLEANERS.get(item.kind)
    if handler is None:
        return {"skipped": f"cleaning {item.kind} is not built yet"}
    return handler[0](ctx, item, cutoff)


def remove(ctx, item, cutoff, measured):
    """Delete ``item``'s data older than ``cutoff``; return removed and freed."""
    return _CLEANERS[item.kind][1](ctx, item, cutoff, measured)


_CLEANERS = {
    ItemKind.ROWS: (measure_rows, remove_rows),
    ItemKind.KEYS: (measure_keys, remove_keys),
    ItemKind.FILES: (measure_files, remove_files),
    ItemKind.COLLECTIONS: (measure_collections, remove_collections),
    ItemKind.INDICES: (measure_indices, remove_indices),
    ItemKind.OBJECTS: (measure_objects, remove_objects),
    ItemKind.SNAPSHOTS: (measure_snapshots, remove_snapshots),
}


def describe(measured):
    """Return a measure in a few words (for the log)."""
    if measured.get("skipped"):
        return f"skipped: {measured['skipped']}"
    return json.dumps(
        {k: measured.get(k) for k in ("matched", "matched_bytes", "kept", "oldest")}
    )
