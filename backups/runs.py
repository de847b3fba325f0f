"""What every backup run does, whatever it reads: the first tier's snapshot,
copies into the colder tiers, a record per tier.

:class:`BackupRun` is the base of the backup runners (``backup.service`` in
:mod:`backups.jobs`, ``backup.config`` in :mod:`backups.config_backup`):

1. open the first tier's repository (created on first use, stale locks of
   dead restic processes removed) and write a running record;
2. take the manifest (what the data holds now), then stream the data into
   restic through the run's strategy; the snapshot is tagged so restic
   alone can find it;
3. copy the snapshot into each colder repository tier (``restic copy``)
   and archive it onto a tape tier, a record per tier.

A worker killed in the middle leaves no successful record: restic writes
its snapshot last, and records left ``running`` by an operation that has
ended are failed by the next backup of the environment (and shown failed
meanwhile).
"""

import time

from django.utils import timezone

from portal.choices import Verb
from portal.operations import OperationFailed, OperationRunner, PlanError
from stacks import engine

from . import tapes
from .choices import RecordStatus, TierKind
from .models import ABANDONED_ERROR, BackupPolicy, BackupRecord, StorageTier
from .restic import ResticError
from .schema import BACKUP_TYPES
from .tiers import BackupError, repository, snapshot_host

__all__ = ["BackupRun", "fail_abandoned_records", "policy_parts", "snapshot_tags"]


def snapshot_tags(record, *, stack, backup_type):
    """Return the restic tags of ``record``'s snapshot (no ``stack=`` for an
    environment-wide one)."""
    return [
        "portal",
        f"env={record.environment.name}",
        *([f"stack={stack}"] if stack else []),
        f"service={record.service_name}",
        f"strategy={record.strategy}",
        f"type={backup_type}",
        f"record={record.pk}",
    ]


def fail_abandoned_records(environment):
    """Fail the records of ``environment`` left running by an ended operation."""
    stale = BackupRecord.objects.filter(
        environment=environment, status=RecordStatus.RUNNING
    ).exclude(operation__status__in=("pending", "queued", "running"))
    return stale.update(
        status=RecordStatus.FAILED,
        finished=timezone.now(),
        error=ABANDONED_ERROR,
    )


def policy_parts(environment, parameters):
    """Return the environment's tiers (hottest first) and the backup type."""
    policy = BackupPolicy.objects.filter(environment=environment).first()
    if policy is None or not policy.tiers:
        raise PlanError(
            f"Environment {environment.name} has no backup storage tiers "
            "(environments in configs/backup-strategies.yaml)."
        )
    backup_type = parameters.get("backup_type") or "incremental"
    if backup_type not in BACKUP_TYPES:
        raise PlanError(
            f"Unknown backup type {backup_type!r} (one of: {', '.join(BACKUP_TYPES)})."
        )
    tiers = {t.name: t for t in StorageTier.objects.filter(name__in=policy.tiers)}
    missing = [name for name in policy.tiers if name not in tiers]
    if missing:
        raise PlanError(f"Unknown storage tier(s): {', '.join(missing)}.")
    return [tiers[n] for n in policy.tiers], backup_type


class BackupRun(OperationRunner):
    """The steps every backup runner shares; subclasses plan and pick what
    the first snapshot reads (``run()`` calls :meth:`write_tiers`)."""

    verb = Verb.BACKUP
    queue = "long"
    mutating = True
    job_timeout = 6 * 3600

    def write_tiers(self, environment, tiers, backup_type, first_snapshot):
        """Take the first tier's snapshot (``first_snapshot()``), copy it into
        the colder tiers; return the operation's result."""
        self.started_at = time.monotonic()
        abandoned = fail_abandoned_records(environment)
        if abandoned:
            self.log.warning(
                f"{abandoned} record(s) left running by an ended operation marked "
                "failed"
            )
        try:
            with engine.engine_errors(engine.describe_host(environment)):
                first = first_snapshot()
                copies = [self.copy(first, tier, backup_type) for tier in tiers[1:]]
        except (BackupError, ResticError, engine.EngineError) as exc:
            raise OperationFailed(str(exc)) from exc
        records = [first, *copies]
        failed = [r for r in records if r.status != RecordStatus.SUCCEEDED]
        result = {
            "records": [_record_summary(r) for r in records],
            "seconds": round(time.monotonic() - self.started_at, 2),
        }
        if failed:
            raise OperationFailed(
                f"Backed up to {first.tier.name}, but "
                + "; ".join(f"{r.tier.name}: {r.error}" for r in failed)
            )
        return result

    # -- steps -----------------------------------------------------------------

    def snapshot(
        self,
        environment,
        tier,
        *,
        service,
        service_name,
        stack_name,
        strategy_name,
        backup_type,
        strategy,
    ):
        """Take a snapshot into ``tier`` with the strategy ``strategy(progress)``
        returns: manifest first, then the data; return the record."""
        log = self.log
        repo = repository(tier, environment)
        log.info(f"Repository: {repo.name} ({repo.url})")
        if repo.ensure():
            log.info(f"{repo.name}: created (encrypted, compressed)")
        repo.unlock()
        record = BackupRecord.objects.create(
            environment=environment,
            service=service,
            service_name=service_name,
            strategy=strategy_name,
            tier=tier,
            operation=self.operation,
            repository=repo.url,
        )
        started = time.monotonic()
        progress_state = {"last": 0.0}

        def progress(done):
            now = time.monotonic()
            if now - progress_state["last"] >= 1:
                progress_state["last"] = now
                self.progress(10, f"{done / 2**20:.1f} MiB read")

        try:
            impl = strategy(progress)
            record.manifest = impl.manifest()
            record.save(update_fields=["manifest"])
            log.info(f"Manifest: {_describe_manifest(record.manifest)}")
            record.tags = snapshot_tags(
                record, stack=stack_name, backup_type=backup_type
            )
            summary = impl.backup(
                repo, tags=record.tags, host=snapshot_host(environment)
            )
        except BaseException as exc:
            _fail(record, exc)
            raise
        # restic's summary names the snapshot by its short id; the record
        # keeps the full one, found by the record's own tag.
        found = repo.snapshots(f"record={record.pk}")
        record.snapshot_id = found[-1]["id"] if found else summary["snapshot_id"]
        record.bytes_total = summary.get("total_bytes_processed")
        record.bytes_added = summary.get("data_added")
        record.files = summary.get("total_files_processed")
        record.duration_s = round(time.monotonic() - started, 3)
        record.status = RecordStatus.SUCCEEDED
        record.finished = timezone.now()
        record.save()
        log.info(
            f"{tier.name}: snapshot {record.snapshot_id[:8]}, "
            f"{_size(record.bytes_total)} read, {_size(record.bytes_added)} added, "
            f"{record.duration_s:.1f}s"
        )
        self.progress(60, f"backed up to {tier.name}")
        return record

    def copy(self, source_record, tier, backup_type):
        """Copy ``source_record``'s snapshot into ``tier``; return its record."""
        environment = source_record.environment
        record = BackupRecord.objects.create(
            environment=environment,
            service=source_record.service,
            service_name=source_record.service_name,
            strategy=source_record.strategy,
            tier=tier,
            operation=self.operation,
            copied_from=source_record,
            manifest=source_record.manifest,
            tags=source_record.tags,
        )
        started = time.monotonic()
        self.check_cancel()
        try:
            source = repository(source_record.tier, environment)
            if tier.kind == TierKind.TAPE:
                record.repository = str(
                    tapes.write_archive(source, source_record, tier, environment)
                )
                record.snapshot_id = source_record.snapshot_id
            else:
                target = repository(tier, environment)
                record.repository = target.url
                if target.ensure():
                    self.log.info(f"{target.name}: created (encrypted, compressed)")
                target.unlock()
                target.copy_from(source, [source_record.snapshot_id])
                found = target.snapshots(f"record={source_record.pk}")
                if not found:
                    raise BackupError(
                        f"{target.name}: the copied snapshot is not there"
                    )
                record.snapshot_id = found[-1]["id"]
        except (BackupError, ResticError) as exc:
            _fail(record, exc)
            self.log.error(f"{tier.name}: {exc}")
            return record
        except BaseException as exc:
            _fail(record, exc)
            raise
        record.bytes_total = source_record.bytes_total
        record.files = source_record.files
        record.duration_s = round(time.monotonic() - started, 3)
        record.status = RecordStatus.SUCCEEDED
        record.finished = timezone.now()
        record.save()
        self.log.info(
            f"{tier.name}: copied as {record.snapshot_id[:8]} in "
            f"{record.duration_s:.1f}s"
        )
        return record


def _fail(record, exc):
    record.status = RecordStatus.FAILED
    record.error = str(exc) or exc.__class__.__name__
    record.finished = timezone.now()
    record.save(update_fields=["status", "error", "finished"])


def _record_summary(record):
    return {
        "id": record.pk,
        "tier": record.tier.name,
        "status": record.status,
        "snapshot": record.snapshot_id,
        "bytes": record.bytes_total,
        "added": record.bytes_added,
        "error": record.error,
    }


def _size(value):
    if value is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{value} B"
        value /= 1024
    return f"{value:.1f} TiB"


def _describe_manifest(manifest):
    parts = []
    for key in ("rows", "keys", "points", "objects", "files", "bytes"):
        if key in manifest:
            parts.append(f"{manifest[key]} {key}")
    return ", ".join(parts) or "taken"
