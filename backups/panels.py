"""The backups panels of the environment page and the dashboard
(``portal.panels``)."""

from portal.panels import Panel

from .models import BackupAlert, BackupPolicy, BackupRecord
from .status import backup_states, format_age

__all__ = ["backup_panel", "dashboard_panel"]


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


#: Rows the dashboard's backup panel lists at most (the worst first).
DASHBOARD_ROWS = 12
_STATE_RANK = {"never": 0, "overdue": 1, "ok": 2}


def dashboard_panel(user, environments):
    """Return the dashboard panel: the age of each service's last good backup.

    One row per environment and backed-up service: the newest good backup
    of its scheduled strategy in any tier, and the worst state over the
    tiers (never, overdue, ok). None when no environment keeps backups.
    """
    policies = {
        p.environment_id: p
        for p in BackupPolicy.objects.filter(environment__in=environments)
    }
    with_policy = [
        env for env in environments if env.pk in policies and policies[env.pk].tiers
    ]
    if not with_policy:
        return None
    services = {}
    for row in backup_states(with_policy):
        if not row.scheduled:
            continue
        key = (row.environment, row.service)
        entry = services.setdefault(
            key,
            {"environment": row.environment, "service": row.service, "age": None},
        )
        entry["state"] = min(
            entry.get("state", "ok"), row.state, key=lambda s: _STATE_RANK.get(s, 2)
        )
        entry["at_risk"] = entry.get("at_risk", False) or row.at_risk
        if row.age is not None and (entry["age"] is None or row.age < entry["age"]):
            entry["age"] = row.age
    rows = sorted(
        services.values(),
        key=lambda e: (_STATE_RANK.get(e["state"], 2), not e["at_risk"]),
    )
    for entry in rows:
        entry["age_text"] = format_age(entry["age"]) if entry["age"] else "never"
    return Panel(
        "backups/dashboard_panel.html",
        {
            "rows": rows[:DASHBOARD_ROWS],
            "more": max(0, len(rows) - DASHBOARD_ROWS),
            "bad": sum(1 for e in rows if e["state"] != "ok"),
            "total": len(rows),
        },
    )
