"""Enumerations of the backups app."""

from django.db import models

__all__ = ["BackupMethod", "ProofStatus", "RecordStatus", "TierKind"]


class TierKind(models.TextChoices):
    """How a storage tier keeps its restic repositories."""

    FILESYSTEM = "filesystem", "Directory on the Docker host"
    NFS = "nfs", "Directory on an NFS mount"
    SFTP = "sftp", "SFTP server"
    S3 = "s3", "S3 bucket"
    TAPE = "tape", "Tape (sequential archive of a snapshot)"


# The kinds that are restic repositories (tape holds archives dumped from
# one of them).
TierKind.REPOSITORIES = (TierKind.FILESYSTEM, TierKind.NFS, TierKind.SFTP, TierKind.S3)
# The kinds a helper container on the Docker host can write to directly.
TierKind.HOST_PATHS = (TierKind.FILESYSTEM, TierKind.NFS)


class BackupMethod(models.TextChoices):
    """The seed's ``backup_method`` values: how a service's data is read."""

    PG_DUMP = "pg_dump", "PostgreSQL dump (pg_dump -Fc)"
    RDB = "rdb", "Redis RDB snapshot (BGSAVE)"
    AOF = "aof", "Redis append-only files"
    COLLECTION_BACKUP = "collection_backup", "Qdrant collection snapshots"
    MC_MIRROR = "mc_mirror", "MinIO buckets through the S3 API"
    FILESYSTEM = "filesystem", "Files of the service's named volumes"
    SNAPSHOT = "snapshot", "Files of the service's named volumes"


class RecordStatus(models.TextChoices):
    """Where a backup record is in its life."""

    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ProofStatus(models.TextChoices):
    """The outcome of a repository check or a restore drill."""

    RUNNING = "running", "Running"
    PASSED = "passed", "Passed"
    FAILED = "failed", "Failed"
    ERROR = "error", "Could not run"
