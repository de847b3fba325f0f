"""Backup strategies: how each kind of service's data is read.

=====================  =============  =========================================
method (the file's)    strategies     what is read
=====================  =============  =========================================
``pg_dump``            full, schema,  ``pg_dump -Fc`` in the container
                       data
``rdb``, ``aof``       rdb, aof       ``BGSAVE`` then ``dump.rdb``; or
                                      ``BGREWRITEAOF`` then the append-only
                                      directory as a tar
``collection_backup``  collection     Qdrant's snapshot API, every collection,
                                      from a helper on the stack's network
``mc_mirror``          bucket         every bucket through the S3 API (boto3),
                                      objects as members of one tar
``filesystem``,        volumes        every named volume of the service, read
``snapshot``                          as files by restic in a helper next to
                                      them (the first tier: a folder)
(environment-wide)     config         rendered compose files and configs/,
                                      secrets redacted (``backup.config``)
=====================  =============  =========================================

:func:`strategy_for` returns the strategy of a service for a name (the
``BACKUP_TYPE`` of ``make backup-service``; default: the method's first).
"""

from ..choices import BackupMethod
from ..schema import STRATEGIES
from ..tiers import BackupError
from .base import BackupContext, Strategy
from .config import ConfigStrategy
from .minio import MinioStrategy
from .postgres import PostgresStrategy
from .qdrant import QdrantStrategy
from .redis import RedisStrategy
from .volumes import VolumesStrategy

__all__ = [
    "ENVIRONMENT_STRATEGIES",
    "BackupContext",
    "Strategy",
    "default_strategy",
    "strategy_for",
]

_CLASSES = {
    BackupMethod.PG_DUMP: PostgresStrategy,
    BackupMethod.RDB: RedisStrategy,
    BackupMethod.AOF: RedisStrategy,
    BackupMethod.COLLECTION_BACKUP: QdrantStrategy,
    BackupMethod.MC_MIRROR: MinioStrategy,
    BackupMethod.FILESYSTEM: VolumesStrategy,
    BackupMethod.SNAPSHOT: VolumesStrategy,
}

#: Strategies of the environment rather than of a service: no backup method
#: of ``backup-strategies.yaml`` names them, an operation of their own runs
#: them (``config``: :mod:`backups.config_backup`).
ENVIRONMENT_STRATEGIES = {"config": ConfigStrategy}


def default_strategy(method):
    """Return the default strategy name of a backup method."""
    return STRATEGIES[BackupMethod(method)][0]


def strategy_for(context, name=None):
    """Return the strategy ``name`` of the context's service."""
    method = BackupMethod(context.strategy.method)
    names = STRATEGIES[method]
    name = name or names[0]
    if name not in names:
        raise BackupError(
            f"Service {context.service.name} ({method}) has no {name!r} backup "
            f"(it has: {', '.join(names)})."
        )
    cls = _CLASSES.get(method)
    if cls is None:
        raise BackupError(f"Backups by {method} are not available yet.")
    return cls(context, name)
