"""System checks: misconfiguration fails at startup, not mid-operation."""

from django.conf import settings
from django.core.checks import Error, register


@register()
def check_channel_layer(app_configs, **kwargs):
    """portal.E001: live logs need the Redis channel layer."""
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if backend != "channels_redis.core.RedisChannelLayer":
        return [
            Error(
                "CHANNEL_LAYERS['default'] is not channels_redis.",
                hint="Live logs cross processes; the in-memory layer cannot.",
                id="portal.E001",
            )
        ]
    return []


@register()
def check_queues(app_configs, **kwargs):
    """portal.E002: the short and long operation queues must be configured."""
    missing = {"default", "long"} - set(settings.RQ_QUEUES)
    if missing:
        return [
            Error(
                f"RQ_QUEUES lacks {', '.join(sorted(missing))}.",
                id="portal.E002",
            )
        ]
    return []
