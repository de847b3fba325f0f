"""The stacks app's panel of the dashboard: every environment's stacks."""

from portal.panels import Panel

from .status import environments_status

__all__ = ["environments_panel"]


def environments_panel(user, environments):
    """Return the panel: per environment, each stack's state and health.

    One container list per Docker host (environments sharing a host share
    it), as on the environment list.
    """
    if not environments:
        return None
    statuses = environments_status(environments)
    rows = []
    for env in environments:
        status = statuses[env.name]
        states = [s["state"] for s in status["stacks"]]
        rows.append(
            {
                "environment": env,
                "status": status,
                "attention": sum(
                    1
                    for s in status["stacks"]
                    if s["state"] in ("partial", "restarting", "unknown")
                    or s["health"] == "unhealthy"
                ),
                "stopped": sum(1 for s in states if s in ("stopped", "missing")),
            }
        )
    return Panel("stacks/dashboard_environments.html", {"rows": rows})
