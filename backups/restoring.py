"""What restore drills and restores share: the snapshot a record names, the
service's spec as it runs, and the leftovers of runs that died.

Both kinds of operation put helper objects on the Docker host (a drill its
whole throw-away copy: container, volumes, network; a restore its helpers
next to the volumes), labelled with their purpose and their operation.
:func:`remove_leftovers` removes those of drills and restores that have
ended (a worker killed in the middle leaves them), before each new run.
"""

import uuid
from functools import partial

from portal.choices import OperationStatus
from portal.models import Operation
from stacks import engine
from stacks.compose import resolve_spec, stack_plan
from stacks.secrets import MissingSecret, environ_for, resolve_all, sources_hint

from .choices import RecordStatus, TierKind
from .loaders import RestoreRefused, Source
from .tiers import BackupError, repository

__all__ = [
    "DRILL_KIND",
    "RESTORE_KIND",
    "open_source",
    "record_problem",
    "remove_leftovers",
    "service_spec",
]

DRILL_KIND = "backup.drill"
RESTORE_KIND = "backup.restore"


def record_problem(record):
    """Return why ``record`` cannot be restored (or drilled), or None."""
    name = f"Backup record #{record.pk} ({record.service_name} {record.strategy} in "
    name += f"{record.tier.name})"
    if record.status != RecordStatus.SUCCEEDED or not record.snapshot_id:
        return f"{name} did not succeed: it holds no snapshot."
    if record.pruned is not None:
        return f"{name} was pruned by the tier's retention: its snapshot is gone."
    if record.damaged is not None:
        return (
            f"{name} is damaged (a check of its repository found data it needs "
            "missing or corrupt): restore another backup."
        )
    if record.tier.kind not in TierKind.REPOSITORIES:
        source = record.copied_from_id
        return (
            f"{name} is a tape archive, read sequentially: restore "
            + (f"record #{source}, the snapshot it was written from" if source else "")
            + " (or check the archive by hand: sha256sum -c PORTAL-SHA256SUMS)."
        )
    return None


def open_source(record):
    """Return the :class:`~backups.loaders.Source` of ``record``'s snapshot,
    found in its repository (BackupError when it is not there)."""
    repo = repository(record.tier, record.environment)
    snapshot = repo.find_snapshot(record.snapshot_id)
    if snapshot is None:
        raise BackupError(
            f"{repo.name} holds no snapshot {record.snapshot_id[:8]} of record "
            f"#{record.pk} (removed outside the portal?)."
        )
    return Source(
        repository=repo,
        tier=record.tier,
        snapshot_id=snapshot["id"],
        strategy=record.strategy,
        manifest=record.manifest or {},
        paths=list(snapshot.get("paths") or []),
        record=record,
    )


def service_spec(environment, service, *, resolved=True):
    """Return the ServiceSpec of ``service`` in ``environment``: its image,
    command, variables and mounts as a start would create them.

    ``resolved`` replaces references by their values (for creating a
    container: never log or store it).
    """
    spec = stack_plan(environment, service.stack).service(service.name)
    if not resolved:
        return spec
    environ = environ_for(environment)
    try:
        return resolve_spec(spec, partial(resolve_all, environ=environ))
    except MissingSecret as exc:
        hint = sources_hint(environment)
        raise RestoreRefused(
            f"{service.name} in {environment.name}: {exc} ({hint})."
        ) from None


def remove_leftovers(client, environment, log, *, current=None):
    """Remove the helper objects of drills and restores of ``environment``
    whose operation has ended; return their names."""
    objects = engine.list_scratch(client, environment=environment.name)
    owners = set()
    for item in objects:
        try:
            owners.add(uuid.UUID(item.owner))
        except ValueError:
            continue
    ended = {
        str(pk)
        for pk in Operation.objects.filter(
            pk__in=owners, kind__in=(DRILL_KIND, RESTORE_KIND)
        )
        .exclude(status__in=OperationStatus.ACTIVE)
        .values_list("pk", flat=True)
    }
    ended.discard(str(current) if current else "")
    leftovers = [item for item in objects if item.owner in ended]
    removed = engine.remove_scratch(client, leftovers)
    for name in removed:
        log.warning(f"Removed {name}, left by a drill or restore that ended")
    return removed
