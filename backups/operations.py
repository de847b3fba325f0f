"""Service functions of the backups app: what views, admin and commands call.

Each requests operations through :func:`portal.operations.request_operation`
(the user's role, the plan, the line of the service's stack, the long
queue); the work is in :mod:`backups.jobs`.
"""

from portal.operations import request_operation
from stacks.models import Service

from .choices import RecordStatus
from .models import BackupRecord, BackupStrategy

__all__ = [
    "backup_config",
    "backup_environment",
    "backup_service",
    "backed_up_services",
    "latest_records",
]


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
    if backup_type:
        parameters["backup_type"] = backup_type
    return request_operation(
        "backup.service",
        user=user,
        environment=environment,
        service=service,
        parameters=parameters,
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


def backup_environment(environment, *, user, backup_type=None, enqueue=True):
    """Request a backup of every service that has a strategy; return the
    operations, one per service.

    Each is an operation of its own, so one failing service fails only its
    own backup; the others run.
    """
    return [
        backup_service(
            environment, service, user=user, backup_type=backup_type, enqueue=enqueue
        )
        for service in backed_up_services()
    ]


def latest_records(environment):
    """Return {(service, strategy, tier): newest successful record}."""
    latest = {}
    records = BackupRecord.objects.filter(
        environment=environment, status=RecordStatus.SUCCEEDED
    ).select_related("tier")
    for record in records.order_by("created", "id"):
        latest[(record.service_name, record.strategy, record.tier.name)] = record
    return latest
