"""Backup snapshots: ``restic forget`` and ``prune`` of a service's old records."""

from django.utils import timezone

from backups.models import BackupRecord
from backups.restic import ResticError
from backups.tiers import BackupError, repository
from backups.volumes import clear_stale_locks

from .base import CleanupError


def _snapshot_records(ctx, item, cutoff):
    """Return (old, young) good backup records of the item's service; the
    newest of each tier and strategy always stays."""
    records = list(
        BackupRecord.objects.filter(
            environment=ctx.environment,
            service_name=item.service,
            status="succeeded",
            pruned__isnull=True,
        )
        .exclude(snapshot_id="")
        .select_related("tier", "copied_from")
        .order_by("-created")
    )
    newest = set()
    old, young = [], []
    for record in records:
        group = (record.tier_id, record.strategy)
        if not record.tier.is_repository:
            # A tape is written once and rotated by its own schedule: the
            # portal cannot forget a snapshot on it.
            young.append(record)
        elif group not in newest:
            newest.add(group)
            young.append(record)
        elif record.data_read < cutoff:
            old.append(record)
        else:
            young.append(record)
    return old, young


def measure_snapshots(ctx, item, cutoff):
    old, young = _snapshot_records(ctx, item, cutoff)
    return {
        "matched": len(old),
        "matched_bytes": sum(r.bytes_added or 0 for r in old),
        "kept": len(young),
        "kept_bytes": sum(r.bytes_added or 0 for r in young),
        "bytes_estimated": True,
        "oldest": min((r.data_read for r in old), default=None),
        "newest": max((r.data_read for r in old), default=None),
        "detail": {"records": [r.pk for r in old]},
    }


def remove_snapshots(ctx, item, cutoff, measured):
    old, _young = _snapshot_records(ctx, item, cutoff)
    by_tier = {}
    for record in old:
        by_tier.setdefault(record.tier, []).append(record)
    removed = freed = 0
    for tier, records in by_tier.items():
        ctx.check_cancel()
        try:
            repo = repository(tier, ctx.environment)
            clear_stale_locks(ctx.environment, repo, ctx.log)
            repo.run("forget", *[r.snapshot_id for r in records], timeout=6 * 3600)
            repo.run("prune", timeout=6 * 3600)
        except (BackupError, ResticError) as exc:
            raise CleanupError(f"{tier.name}: {exc}") from None
        for record in records:
            record.pruned = timezone.now()
            record.save(update_fields=["pruned"])
        removed += len(records)
        freed += sum(r.bytes_added or 0 for r in records)
        ctx.log.info(f"{item.key}: {len(records)} snapshot(s) forgotten in {tier.name}")
    return {"removed": removed, "freed_bytes": freed}
