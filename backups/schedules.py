"""The backup schedules of the environments, for ``manage.py crontab``.

Each environment whose backup policy has a ``schedule`` (``backup_schedule``
of ``backup-strategies.yaml``) gets one scheduled command: ``backup full
--env <name> --scheduled``, which backs up every service and skips, saying
so, while the previous run of that environment is still going. Registered
in :class:`backups.apps.BackupsConfig`.
"""

from portal.choices import Verb
from portal.schedules import ScheduledCommand

from .drills import drill_settings
from .models import BackupPolicy
from .verify import integrity_settings

__all__ = [
    "scheduled_alerts",
    "scheduled_backups",
    "scheduled_drills",
    "scheduled_verifications",
]

#: How often cron evaluates the backup-age alerts.
ALERT_SCHEDULE = "*/15 * * * *"


def scheduled_backups():
    """Return the scheduled command of each environment's backup policy."""
    policies = (
        BackupPolicy.objects.exclude(schedule="")
        .select_related("environment")
        .order_by("environment__name")
    )
    return [
        ScheduledCommand(
            name=f"backup-{policy.environment.name}",
            schedule=policy.schedule.strip(),
            args=("backup", "full", "--env", policy.environment.name, "--scheduled"),
            environment=policy.environment.name,
            verb=Verb.BACKUP,
            description="back up every service into "
            + (", ".join(policy.tiers) or "no tier"),
        )
        for policy in policies
        if policy.tiers
    ]


def scheduled_verifications():
    """Return each backed-up environment's verification command
    (``verification.integrity.schedule``), when verification is enabled."""
    settings = integrity_settings()
    if not settings.enabled:
        return []
    policies = BackupPolicy.objects.select_related("environment").order_by(
        "environment__name"
    )
    return [
        ScheduledCommand(
            name=f"backup-verify-{policy.environment.name}",
            schedule=settings.schedule,
            args=("backup", "verify", "--env", policy.environment.name, "--scheduled"),
            environment=policy.environment.name,
            verb=Verb.CHECK,
            description=f"check the repositories and re-read the next 1/"
            f"{settings.groups} of their packs (all within "
            f"{settings.read_all_within_days} days)",
        )
        for policy in policies
        if policy.tiers
    ]


def scheduled_alerts():
    """Return each backed-up environment's alert evaluation (every 15 min),
    so a breach is noticed even when nothing else runs."""
    policies = BackupPolicy.objects.select_related("environment").order_by(
        "environment__name"
    )
    return [
        ScheduledCommand(
            name=f"backup-alerts-{policy.environment.name}",
            schedule=ALERT_SCHEDULE,
            args=("backup", "alerts", "--env", policy.environment.name),
            environment=policy.environment.name,
            verb=Verb.VIEW,
            description="open and clear backup-age alerts, notifying each change once",
        )
        for policy in policies
        if policy.tiers
    ]


def scheduled_drills():
    """Return each backed-up environment's restore drills
    (``verification.restore_test.schedule``), when drills are enabled."""
    settings = drill_settings()
    if not settings.enabled:
        return []
    policies = BackupPolicy.objects.select_related("environment").order_by(
        "environment__name"
    )
    services = ", ".join(settings.test_services) or "every backed-up service"
    return [
        ScheduledCommand(
            name=f"backup-drill-{policy.environment.name}",
            schedule=settings.schedule,
            args=("backup", "drill", "--env", policy.environment.name, "--scheduled"),
            environment=policy.environment.name,
            verb=Verb.CHECK,
            description=f"restore the {settings.pick} backup of {services} into "
            "throw-away copies and compare with the manifests",
        )
        for policy in policies
        if policy.tiers
    ]
