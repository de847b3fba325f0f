"""The dashboard's GPU panel: one line per environment that has GPUs."""

import redis

from portal.panels import Panel

from .history import latest
from .summary import summary_line

__all__ = ["gpu_panel"]


def gpu_panel(user, environments):
    """Return the panel of the GPU summary of each environment with GPUs
    enabled, or None when no environment has them."""
    rows = []
    for environment in environments:
        if not environment.gpu_enabled:
            continue
        try:
            line = summary_line(latest(environment.name))
        except redis.RedisError:
            line = "GPUs: unknown (Redis could not be read)"
        rows.append({"environment": environment, "summary": line})
    if not rows:
        return None
    return Panel("gpu/dashboard_gpus.html", {"rows": rows})
