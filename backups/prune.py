"""Retention of the backup repositories: ``backup.prune``.

Per repository tier of the environment's policy, ``restic forget`` with the
tier's keep policy (``keep`` in the file, e.g. ``{daily: 7, weekly: 4}``;
default: every snapshot younger than the tier's ``retention_days`` and the
newest one), grouped by host and path (one group per service's data), then
``prune``. The plan names the policies; a dry run asks restic what would go
(``forget --dry-run``) and removes nothing; a real run marks the records of
removed snapshots pruned. The operation covers the whole environment, so it
waits for the environment's backups and they wait for it.
"""

from django.utils import timezone

from portal.choices import Verb
from portal.operations import OperationFailed, OperationRunner, PlanError, register
from stacks import engine

from .models import BackupPolicy, BackupRecord, StorageTier
from .restic import ResticError
from .tiers import BackupError, repository
from .volumes import clear_stale_locks

__all__ = ["PruneBackupsJob", "keep_policy"]


def keep_policy(tier):
    """Return the restic keep options of ``tier`` (``{"daily": 7, ...}``)."""
    keep = (tier.settings or {}).get("keep")
    if keep:
        return {str(k): int(v) for k, v in keep.items()}
    return {"within": f"{tier.retention_days}d", "last": 1}


def _tiers(environment, parameters):
    policy = BackupPolicy.objects.filter(environment=environment).first()
    if policy is None or not policy.tiers:
        raise PlanError(f"Environment {environment.name} has no backup storage tiers.")
    tiers = [
        t for t in StorageTier.objects.filter(name__in=policy.tiers) if t.is_repository
    ]
    wanted = parameters.get("tier")
    if wanted:
        tiers = [t for t in tiers if t.name == wanted]
        if not tiers:
            raise PlanError(
                f"Environment {environment.name} keeps no repository in a tier "
                f"named {wanted!r} (its tiers: {', '.join(policy.tiers)})."
            )
    return tiers


def _flag(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@register
class PruneBackupsJob(OperationRunner):
    """Apply each repository tier's retention to an environment's backups."""

    kind = "backup.prune"
    verb = Verb.CLEANUP
    queue = "long"
    mutating = True
    job_timeout = 6 * 3600

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        parameters = parameters or {}
        if stack is not None:
            raise PlanError("Backup retention covers a whole environment.")
        return {
            "dry_run": _flag(parameters.get("dry_run")),
            "tiers": {t.name: keep_policy(t) for t in _tiers(environment, parameters)},
        }

    def run(self):
        environment = self.operation.environment
        parameters = self.operation.parameters or {}
        dry_run = _flag(parameters.get("dry_run"))
        try:
            tiers = _tiers(environment, parameters)
        except PlanError as exc:
            raise OperationFailed(str(exc)) from exc
        result = {"dry_run": dry_run, "tiers": {}}
        for index, tier in enumerate(tiers):
            self.check_cancel()
            keep = keep_policy(tier)
            try:
                repo = repository(tier, environment)
                if not repo.exists():
                    self.log.info(f"{repo.name}: no repository yet, nothing to prune")
                    result["tiers"][tier.name] = {"removed": [], "kept": 0}
                    continue
                if not dry_run:
                    clear_stale_locks(environment, repo, self.log)
                groups = repo.forget(keep=keep, dry_run=dry_run, prune=not dry_run)
            except (BackupError, ResticError, engine.EngineError) as exc:
                raise OperationFailed(str(exc)) from exc
            removed = [s for g in groups for s in (g.get("remove") or [])]
            kept = sum(len(g.get("keep") or []) for g in groups)
            verb = "would remove" if dry_run else "removed"
            self.log.info(
                f"{repo.name}: keep {keep}: {verb} {len(removed)} snapshot(s), "
                f"{kept} kept"
            )
            for snapshot in removed:
                tags = {
                    t.partition("=")[0]: t.partition("=")[2]
                    for t in snapshot.get("tags") or []
                }
                self.log.info(
                    f"  {verb} {snapshot['id'][:8]} of {snapshot.get('time', '')[:19]}"
                    f" ({tags.get('service', '?')} {tags.get('strategy', '')}, record "
                    f"{tags.get('record', '?')})"
                )
            if not dry_run and removed:
                ids = {s["id"] for s in removed}
                BackupRecord.objects.filter(
                    environment=environment, tier=tier, snapshot_id__in=ids
                ).update(pruned=timezone.now())
            result["tiers"][tier.name] = {
                "keep": keep,
                "removed": [s["id"] for s in removed],
                "kept": kept,
            }
            self.progress(100 * (index + 1) / len(tiers), tier.name)
        return result
