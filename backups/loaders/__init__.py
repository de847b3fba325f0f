"""Loaders: how each kind of backed-up data goes back into a container.

The counterpart of :mod:`backups.strategies` (how data is read). A loader
takes a :class:`Source` (a snapshot, its strategy and the manifest taken
when it was read) and a :class:`Target` (a container of the service: a
restore drill's throw-away copy, or the live service) and

- ``load()``: puts the snapshot's data into the target;
- ``measure()``: reads what the target holds now with the strategy's own
  manifest code (the same counting that made the manifest);
- ``compare(found)``: the manifest against that, fact by fact
  (``{"what", "expected", "found", "ok"}``).

=====================  ============  ========================================
method                 loader        load
=====================  ============  ========================================
``pg_dump``            postgres      ``pg_restore --clean --if-exists
                                     --single-transaction`` in the container
``rdb``, ``aof``       redis         the server stopped, its RDB file or AOF
                                     folder replaced in its data volume,
                                     started again
``collection_backup``  qdrant        snapshots copied into the container,
                                     recovered through the API
``mc_mirror``          minio         objects put back through the S3 API
``filesystem``,        volumes       volumes emptied, files restored by
``snapshot``                         restic next to them
(environment-wide)     config        hashed, compared; never loaded live
=====================  ============  ========================================
"""

from ..choices import BackupMethod
from ..strategies.config import CONFIG_SERVICE
from .base import Loader, RestoreRefused, Source, Target, item
from .config import ConfigLoader
from .minio import MinioLoader
from .postgres import PostgresLoader
from .qdrant import QdrantLoader
from .redis import RedisLoader
from .volumes import VolumesLoader

__all__ = [
    "Loader",
    "RestoreRefused",
    "Source",
    "Target",
    "item",
    "loader_class",
    "loader_for",
]

_CLASSES = {
    BackupMethod.PG_DUMP: PostgresLoader,
    BackupMethod.RDB: RedisLoader,
    BackupMethod.AOF: RedisLoader,
    BackupMethod.COLLECTION_BACKUP: QdrantLoader,
    BackupMethod.MC_MIRROR: MinioLoader,
    BackupMethod.FILESYSTEM: VolumesLoader,
    BackupMethod.SNAPSHOT: VolumesLoader,
}


def loader_class(service_name, strategy_row):
    """Return the loader class of a service's backups (``config``: the
    environment's configuration)."""
    if service_name == CONFIG_SERVICE and strategy_row is None:
        return ConfigLoader
    if strategy_row is None:
        raise RestoreRefused(
            f"Service {service_name} has no backup strategy (services in "
            "configs/backup-strategies.yaml), so nothing says how its data loads."
        )
    return _CLASSES[BackupMethod(strategy_row.method)]


def loader_for(source, target):
    """Return the loader of ``source`` into ``target``, checked (raises
    RestoreRefused when it cannot be loaded there)."""
    cls = loader_class(target.name, target.strategy_row)
    loader = cls(source, target)
    loader.check()
    return loader
