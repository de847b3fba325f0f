"""Enumerations of the retention app: kinds of data, strategies, sources.

An item of ``retention-policies.yaml`` is a piece of one service's data: a
PostgreSQL table, a Redis key pattern, a Qdrant collection, a bucket or
prefix, files inside a volume, Elasticsearch indices. Its *kind* follows
from the map it is listed in (``services.<svc>.tables.<item>`` is a table);
a ``volumes.<vol>`` entry is the files of a whole volume, and a service's
``backup_retention_days`` is the retention of its backup snapshots.
"""

from django.db import models

__all__ = [
    "FILE_STRATEGIES",
    "GROUP_KINDS",
    "KIND_STRATEGIES",
    "ItemKind",
    "RecordStatus",
    "SERVICE_VOLUME_STRATEGIES",
    "Source",
    "default_strategy",
]


class ItemKind(models.TextChoices):
    """What an item's data is, and so which cleaner handles it."""

    ROWS = "rows", "Table rows (PostgreSQL)"
    KEYS = "keys", "Keys (Redis)"
    COLLECTIONS = "collections", "Collections (Qdrant)"
    OBJECTS = "objects", "Objects (S3, MinIO)"
    INDICES = "indices", "Indices (Elasticsearch)"
    FILES = "files", "Files in a volume"
    METRICS = "metrics", "Metrics (Prometheus keeps its own retention)"
    SNAPSHOTS = "snapshots", "Backup snapshots (restic)"


#: The item maps of ``services.<svc>`` and the kind of their items.
GROUP_KINDS = {
    "tables": ItemKind.ROWS,
    "keys": ItemKind.KEYS,
    "collections": ItemKind.COLLECTIONS,
    "buckets": ItemKind.OBJECTS,
    "indices": ItemKind.INDICES,
    "cache_types": ItemKind.FILES,
    "log_types": ItemKind.FILES,
    "report_types": ItemKind.FILES,
    "result_types": ItemKind.FILES,
    "metric_types": ItemKind.METRICS,
}

#: Strategies that delete files by age (the seed's ``find -mtime +N -delete``).
FILE_STRATEGIES = (
    "delete_old_models",
    "delete_old_reports",
    "delete_old_results",
    "delete_old_cache",
    "rotate_logs",
)

#: The strategies the portal runs for each kind, the default first.
KIND_STRATEGIES = {
    ItemKind.ROWS: ("delete_old_rows", "archive_then_delete"),
    ItemKind.KEYS: ("expire_keys",),
    ItemKind.COLLECTIONS: ("delete_old_collections",),
    ItemKind.OBJECTS: ("delete_old_objects",),
    ItemKind.INDICES: ("delete_old_indices",),
    ItemKind.FILES: FILE_STRATEGIES,
    ItemKind.METRICS: ("delete_old_metrics",),
    ItemKind.SNAPSHOTS: ("backup_retention",),
}

#: Strategies of a ``volumes.<vol>`` entry that the service's own items
#: carry out (the volume holds that service's data in its own format).
SERVICE_VOLUME_STRATEGIES = (
    "expire_keys",
    "delete_old_collections",
    "delete_old_objects",
    "delete_old_indices",
    "delete_old_metrics",
)


def default_strategy(kind):
    """Return the strategy an item of ``kind`` uses when none is named."""
    return KIND_STRATEGIES[ItemKind(kind)][0]


class Source(models.TextChoices):
    """Where an item's retention comes from: the precedence, first wins."""

    ITEM = "item", "the item"
    SERVICE = "service", "its service"
    ENVIRONMENT = "environment", "the environment's default"
    GLOBAL = "global", "the global default"


class RecordStatus(models.TextChoices):
    """What a cleanup did with one item."""

    PLANNED = "planned", "Planned (dry run)"
    REMOVED = "removed", "Removed"
    NOTHING = "nothing", "Nothing to remove"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"
