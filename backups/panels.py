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


_STATE_RANK = {"never": 0, "overdue": 1, "ok": 2}


def dashboard_panel(user, environments):
    """Return the dashboard panel: the age of each service's last good backup.

    One row per environment keeping backups: how many services are ok,
    overdue or never backed up, and each service with the age of its newest
    good backup of the scheduled strategy in any tier, coloured by its
    worst state over the tiers. None when no environment keeps backups.
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
        entry = services.setdefault(
            (row.environment, row.service),
            {"service": row.service, "age": None, "state": "ok", "at_risk": False},
        )
        if _STATE_RANK.get(row.state, 2) < _STATE_RANK[entry["state"]]:
            entry["state"] = row.state
        entry["at_risk"] = entry["at_risk"] or row.at_risk
        if row.age is not None and (entry["age"] is None or row.age < entry["age"]):
            entry["age"] = row.age
    rows = []
    for env in with_policy:
        found = [v for (name, _), v in services.items() if name == env.name]
        for entry in found:
            entry["age_text"] = format_age(entry["age"]) if entry["age"] else "never"
        counts = {state: 0 for state in _STATE_RANK}
        for entry in found:
            counts[entry["state"]] += 1
        rows.append(
            {
                "environment": env,
                "services": sorted(found, key=lambda e: _STATE_RANK[e["state"]]),
                "counts": counts,
                "at_risk": sum(1 for e in found if e["at_risk"]),
            }
        )
    return Panel("backups/dashboard_panel.html", {"rows": rows})
