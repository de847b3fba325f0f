"""Service functions of the backups app: what views, admin and commands call.

Each requests operations through :func:`portal.operations.request_operation`
(the user's role, the plan, the line of the service's stack, the long
queue); the work is in :mod:`backups.jobs`.
"""

import os
import random
import socket
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from portal.choices import OperationStatus
from portal.models import Operation
from portal.operations import get_runner, pid_alive, request_operation
from stacks.models import Service

from .choices import RecordStatus, TierKind
from .models import BackupRecord, BackupStrategy

__all__ = [
    "BACKUP_KINDS",
    "BackupTarget",
    "backed_up_services",
    "backup_config",
    "backup_environment",
    "backup_service",
    "drill_backup",
    "drill_candidates",
    "pick_drill_record",
    "environment_backup_targets",
    "latest_records",
    "newest_good",
    "prune_backups",
    "request_backup",
    "restore_backup",
    "restore_plan",
    "running_backup",
    "verify_backups",
]

#: The operation kinds that read an environment's data into its tiers: what
#: "a backup of the environment is still running" means to a scheduled run.
BACKUP_KINDS = ("backup.service", "backup.config")

# A `backup full` run of an inline command is between two of its operations
# for the blink of an eye; an operation it finished this recently counts as
# still going while that process lives.
BETWEEN_OPERATIONS = timedelta(seconds=60)


@dataclass(frozen=True)
class BackupTarget:
    """One operation of a backup of the whole environment."""

    kind: str
    service: object = None
    parameters: dict = field(default_factory=dict)

    def __str__(self):
        return self.service.name if self.service is not None else self.kind

    def request_parameters(self, backup_type=None):
        """Return the operation's parameters, with ``backup_type`` if given."""
        parameters = dict(self.parameters)
        if backup_type:
            parameters["backup_type"] = backup_type
        return parameters


def backup_service(
    environment,
    service,
    *,
    user,
    strategy=None,
    backup_type=None,
    wait=True,
    enqueue=True,
):
    """Request a backup of ``service`` in ``environment``; return the Operation.

    Args:
        strategy: which of the service's strategies (``full``, ``schema``,
            ``rdb``...; default the method's first).
        backup_type: ``full``, ``incremental`` (default) or ``differential``.
    """
    parameters = {}
    if strategy:
        parameters["strategy"] = strategy
    return request_backup(
        environment,
        BackupTarget("backup.service", service, parameters),
        user=user,
        backup_type=backup_type,
        wait=wait,
        enqueue=enqueue,
    )


def request_backup(
    environment, target, *, user, backup_type=None, wait=True, enqueue=True
):
    """Request the operation of one :class:`BackupTarget`; return it."""
    return request_operation(
        target.kind,
        user=user,
        environment=environment,
        service=target.service,
        parameters=target.request_parameters(backup_type),
        wait=wait,
        enqueue=enqueue,
    )


def backup_config(environment, *, user, backup_type=None, wait=True, enqueue=True):
    """Request a backup of the environment's configuration; return the Operation.

    Environment-wide (``backup.config``): the rendered compose file of every
    stack and the configuration folder, secrets redacted, into the
    environment's tiers. ``make backup-full`` requests it besides
    :func:`backup_environment`'s service backups.
    """
    parameters = {"backup_type": backup_type} if backup_type else {}
    return request_operation(
        "backup.config",
        user=user,
        environment=environment,
        parameters=parameters,
        wait=wait,
        enqueue=enqueue,
    )


def backed_up_services():
    """Return the services that have a backup strategy, in stack order."""
    names = set(BackupStrategy.objects.values_list("service", flat=True))
    return list(
        Service.objects.filter(name__in=names)
        .select_related("stack")
        .order_by("stack__order", "order", "name")
    )


def environment_backup_targets(environment):
    """Return what a backup of the whole environment takes, in order.

    One :class:`BackupTarget` per operation: every service that has a
    backup strategy, by its scheduled (default) strategy. This is the one
    list ``backup full``, the page's *Back up everything* and cron use,
    and last the configuration backup (``backup.config``).
    """
    targets = [
        BackupTarget("backup.service", service) for service in backed_up_services()
    ]
    # Last, the environment's configuration: rendered compose files and
    # configs/, secrets redacted (backup.config, environment-wide).
    targets.append(BackupTarget("backup.config"))
    return targets


def backup_environment(environment, *, user, backup_type=None, enqueue=True):
    """Request a backup of every target of the environment; return the
    operations, one per target.

    Each is an operation of its own, so one failing service fails only its
    own backup; the others run.
    """
    return [
        request_backup(
            environment, target, user=user, backup_type=backup_type, enqueue=enqueue
        )
        for target in environment_backup_targets(environment)
    ]


def running_backup(environment):
    """Return a backup operation of ``environment`` that is still going, or None.

    That is an active operation of a backup kind, or one that an inline
    command on this host finished within the last minute while that command
    still runs (it is about to request its next service).
    """
    operations = Operation.objects.filter(
        environment=environment, kind__in=BACKUP_KINDS
    )
    active = (
        operations.filter(status__in=OperationStatus.ACTIVE).order_by("created").first()
    )
    if active is not None:
        return active
    prefix = f"inline:{socket.gethostname()}:"
    recent = operations.filter(
        inline=True,
        worker_name__startswith=prefix,
        finished__gte=timezone.now() - BETWEEN_OPERATIONS,
    ).order_by("-finished")
    for operation in recent:
        pid = operation.worker_name.removeprefix(prefix)
        if pid.isdigit() and int(pid) != os.getpid() and pid_alive(int(pid)):
            return operation
    return None


def newest_good(records):
    """Return the newest successful record of each (environment, service,
    strategy, tier) among ``records``, a queryset; one query."""
    return (
        records.filter(status=RecordStatus.SUCCEEDED)
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=[
                    F("environment_id"),
                    F("service_name"),
                    F("strategy"),
                    F("tier_id"),
                ],
                order_by=[F("created").desc(), F("id").desc()],
            )
        )
        .filter(rank=1)
        .select_related("tier", "operation", "copied_from")
    )


def latest_records(environment):
    """Return {(service, strategy, tier): newest restorable record}."""
    records = newest_good(
        BackupRecord.objects.filter(
            environment=environment, pruned__isnull=True, damaged__isnull=True
        )
    )
    return {(r.service_name, r.strategy, r.tier.name): r for r in records}


def verify_backups(
    environment, *, user, tier=None, subset="auto", wait=True, enqueue=True
):
    """Request a verification of ``environment``'s repositories; return the
    Operation.

    ``subset``: ``auto`` (the next group of packs in the rotation), ``n/N``,
    ``all`` or ``none`` (the structure only). See :mod:`backups.verify`.
    """
    parameters = {"subset": subset}
    if tier:
        parameters["tier"] = tier
    return request_operation(
        "backup.verify",
        user=user,
        environment=environment,
        parameters=parameters,
        wait=wait,
        enqueue=enqueue,
    )


def prune_backups(
    environment, *, user, tier=None, dry_run=False, wait=True, enqueue=True
):
    """Request the retention of ``environment``'s repositories; return the
    Operation.

    Each repository tier keeps what its ``keep`` policy says (default:
    every snapshot younger than its ``retention_days``, and the newest);
    ``restic forget`` then ``prune`` remove the rest. A dry run lists what
    would go and removes nothing.
    """
    parameters = {"dry_run": bool(dry_run)}
    if tier:
        parameters["tier"] = tier
    return request_operation(
        "backup.prune",
        user=user,
        environment=environment,
        parameters=parameters,
        wait=wait,
        enqueue=enqueue,
    )


def drill_candidates(environment, service_name=None):
    """Return the records a drill may take: succeeded, intact, in a
    repository tier (not tape), of ``service_name`` when given, newest
    first."""
    records = BackupRecord.objects.filter(
        environment=environment,
        status=RecordStatus.SUCCEEDED,
        pruned__isnull=True,
        damaged__isnull=True,
        tier__kind__in=TierKind.REPOSITORIES,
    ).exclude(snapshot_id="")
    if service_name:
        records = records.filter(service_name=service_name)
    return records.select_related("tier", "service").order_by("-created", "-id")


def pick_drill_record(environment, service_name, *, pick="latest"):
    """Return the record a drill of ``service_name`` takes: the newest
    restorable one (``latest``) or any restorable one (``random``); None
    when there is none. Copies in colder tiers count as their own records
    (a drill proves the copy it reads)."""
    candidates = drill_candidates(environment, service_name)
    if pick == "random":
        ids = list(candidates.values_list("pk", flat=True))
        return candidates.get(pk=random.choice(ids)) if ids else None
    return candidates.first()


def drill_backup(environment, record, *, user, wait=True, enqueue=True):
    """Request a restore drill of ``record`` in ``environment``; return the
    Operation (``backup.drill``, the long queue; see :mod:`backups.drills`).

    The record's snapshot is restored into a throw-away copy of its service
    and compared with its manifest; the live service is never touched.
    """
    return request_operation(
        "backup.drill",
        user=user,
        environment=environment,
        service=record.service,
        parameters={"record": record.pk},
        wait=wait,
        enqueue=enqueue,
    )


def restore_backup(
    environment,
    service,
    *,
    user,
    record=None,
    snapshot=None,
    tier=None,
    confirm=None,
    dry_run=False,
    wait=True,
    enqueue=True,
):
    """Request a restore of a backup onto the live ``service``; return the
    Operation (``backup.restore``, destructive; see :mod:`backups.restores`).

    Name the backup by ``record`` (its id) or by ``snapshot`` (a restic
    snapshot id or prefix, in ``tier`` or any repository tier of the
    environment). Bad input (no such record or snapshot, one of another
    environment or service) is refused by the plan before anything exists.
    A real run needs ``confirm`` = ``<environment>/<service>``.
    """
    parameters = {"dry_run": bool(dry_run)}
    if record is not None:
        parameters["record"] = getattr(record, "pk", record)
    if snapshot:
        parameters["snapshot"] = str(snapshot)
    if tier:
        parameters["tier"] = str(tier)
    return request_operation(
        "backup.restore",
        user=user,
        environment=environment,
        service=service,
        parameters=parameters,
        wait=wait,
        enqueue=enqueue,
        confirm=confirm,
    )


def restore_plan(environment, service, *, record):
    """Return the plan a restore of ``record`` onto ``service`` would run
    (PlanError saying why there is none); nothing is requested."""
    return get_runner("backup.restore").plan(
        environment=environment,
        stack=service.stack if service is not None else None,
        service=service,
        parameters={"record": getattr(record, "pk", record)},
    )
