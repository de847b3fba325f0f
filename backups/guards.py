"""Backup before destroy: the destroy guard of protected environments.

Registered with :mod:`stacks.guards` (:class:`backups.apps.BackupsConfig`):
a wipe (or a restore onto a live service) in a protected environment runs
only when every service in its scope that has a backup strategy has a
backup in the environment's first tier that is intact, *verified* (a
repository check passed after it was written) and fresh: its data read
within ``verification.before_destroy.max_age_hours`` (default 6). The
records found are the evidence the operation keeps, so the wipe can be
undone by restoring them.
"""

from datetime import timedelta

from django.urls import reverse

from stacks.guards import GuardAnswer

from .choices import RecordStatus
from .models import BackupConfigValue, BackupPolicy, BackupRecord, BackupStrategy
from .strategies import default_strategy

__all__ = ["DEFAULT_MAX_AGE_HOURS", "fresh_backup_guard", "max_age"]

DEFAULT_MAX_AGE_HOURS = 6


def max_age():
    """Return how old the backup before a destroy may be."""
    row = BackupConfigValue.objects.filter(key="verification").first()
    value = row.value if row is not None and isinstance(row.value, dict) else {}
    hours = (value.get("before_destroy") or {}).get("max_age_hours")
    try:
        hours = float(hours) if hours is not None else DEFAULT_MAX_AGE_HOURS
    except (TypeError, ValueError):
        hours = DEFAULT_MAX_AGE_HOURS
    return timedelta(hours=hours if hours > 0 else DEFAULT_MAX_AGE_HOURS)


def _hours(delta):
    hours = delta.total_seconds() / 3600
    return f"{hours:g} h"


def fresh_backup_guard(environment, services, *, now):
    """Return what forbids destroying ``services``' data, and the backups
    that allow it (see the module's text)."""
    answer = GuardAnswer()
    if not environment.protected:
        return answer
    strategies = {
        s.service: s
        for s in BackupStrategy.objects.filter(service__in=[s.name for s in services])
    }
    if not strategies:
        return answer
    policy = BackupPolicy.objects.filter(environment=environment).first()
    if policy is None or not policy.tiers:
        answer.problems.append(
            f"{environment.name} has no backup storage tiers, so nothing can be "
            "backed up before: give it storage_tiers in backup-strategies.yaml."
        )
        return answer
    tier = policy.tiers[0]
    limit = max_age()
    for name in sorted(strategies):
        strategy = default_strategy(strategies[name].method)
        intact = BackupRecord.objects.filter(
            environment=environment,
            service_name=name,
            strategy=strategy,
            tier__name=tier,
            status=RecordStatus.SUCCEEDED,
            pruned__isnull=True,
            damaged__isnull=True,
        ).select_related("copied_from")
        newest = intact.filter(verified__isnull=False).order_by("-created").first()
        if newest is not None and newest.data_read >= now - limit:
            answer.evidence.append(
                {
                    "service": name,
                    "record": newest.pk,
                    "strategy": strategy,
                    "tier": tier,
                    "url": reverse("backups:record_detail", args=[newest.pk]),
                    "text": f"{name} {strategy} in {tier}: record #{newest.pk} of "
                    f"{newest.data_read:%Y-%m-%d %H:%M} UTC (verified)",
                }
            )
            continue
        if newest is not None:
            had = (
                f"the newest verified one, #{newest.pk}, read its data "
                f"{_hours(now - newest.data_read)} ago"
            )
        else:
            had = "there is no verified one"
        answer.problems.append(
            f"{name}: no verified {strategy} backup in {tier} newer than "
            f"{_hours(limit)} ({had}). Back it up (make backup-service "
            f"SERVICE={name} ENVIRONMENT={environment.name}) and verify it (make "
            f"backup-verify ENVIRONMENT={environment.name}), then run this again."
        )
    return answer
