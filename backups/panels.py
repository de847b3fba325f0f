"""The backups panel of the environment page (``portal.panels``)."""

from portal.panels import Panel

from .models import BackupAlert, BackupPolicy, BackupRecord
from .status import backup_states

__all__ = ["backup_panel"]


def backup_panel(environment, user):
    """Return the panel: backups overdue, RPO breaches, open alerts, damaged
    records; None when the environment keeps no backups."""
    policy = BackupPolicy.objects.filter(environment=environment).first()
    if policy is None or not policy.tiers:
        return None
    rows = [r for r in backup_states([environment]) if r.scheduled]
    return Panel(
        "backups/panel.html",
        {
            "environment": environment,
            "judged": len(rows),
            "overdue": [r for r in rows if r.overdue],
            "at_risk": [r for r in rows if r.at_risk],
            "alerts": BackupAlert.objects.filter(
                environment=environment, cleared__isnull=True
            ).count(),
            "damaged": BackupRecord.objects.filter(
                environment=environment, damaged__isnull=False, pruned__isnull=True
            ).count(),
        },
    )
