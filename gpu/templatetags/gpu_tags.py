"""Template tags of GPU status for other apps' pages (the environment page)."""

import redis
from django import template

from ..history import latest
from ..summary import service_figures, summary_line

register = template.Library()


@register.simple_tag
def gpu_status(environment):
    """Return ``{"summary": line, "services": {"stack/service": text}}``."""
    try:
        sample = latest(environment.name)
    except redis.RedisError:
        return {"summary": "GPUs: unknown (Redis could not be read)", "services": {}}
    return {"summary": summary_line(sample), "services": service_figures(sample)}


@register.simple_tag
def gpu_service(status, stack, service):
    """Return the GPU figures of one service (empty when it holds none)."""
    return status["services"].get(f"{stack}/{service}", "")
