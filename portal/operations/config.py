"""Settings of the operations engine: ``settings.PORTAL_OPERATIONS``."""

import os

from django.conf import settings

__all__ = ["DEFAULTS", "DEFAULT_SYSTEM_USER", "get_config"]

# Who commands act as when nothing names a system user: the demo's actor,
# created by bootstrap_demo with the Operator role on the demo environment.
DEFAULT_SYSTEM_USER = "portal-system"

DEFAULTS = {
    # Seconds between heartbeats of the process running an operation.
    "HEARTBEAT_INTERVAL": 5,
    # A running operation whose heartbeat is older than this is abandoned.
    "ABANDON_AFTER": 20,
    # How often each worker runs the reaper (at most one worker per period).
    "REAP_INTERVAL": 10,
    # A dispatched operation whose RQ job has vanished is re-enqueued after
    # this many seconds.
    "LOST_JOB_AFTER": 60,
    # Log lines are saved in batches of at most this many lines ...
    "LOG_FLUSH_LINES": 500,
    # ... or at least this often (seconds), then published as one event.
    "LOG_FLUSH_INTERVAL": 0.2,
    # Modules holding runners outside ``<app>.jobs``.
    "RUNNER_MODULES": [],
    # Username management commands act as when given no --user ("": the
    # PORTAL_SYSTEM_USER setting or variable, else DEFAULT_SYSTEM_USER).
    "SYSTEM_USER": "",
    # Hours a destructive operation in a protected environment waits for its
    # approval before it expires (an environment's settings.approval_hours
    # overrides it).
    "APPROVAL_HOURS": 24,
    # Where approval requests and decisions are sent besides the approvers'
    # and requester's mail: a webhook URL ("": none).
    "APPROVAL_WEBHOOK_URL": "",
}


def get_config():
    """Return the engine's settings: ``settings.PORTAL_OPERATIONS`` over defaults.

    ``SYSTEM_USER`` also comes from ``settings.PORTAL_SYSTEM_USER`` or the
    ``PORTAL_SYSTEM_USER`` environment variable, so cron can set it without
    a settings change, and is :data:`DEFAULT_SYSTEM_USER` when none is set.
    """
    config = {**DEFAULTS, **getattr(settings, "PORTAL_OPERATIONS", {})}
    if not config["APPROVAL_WEBHOOK_URL"]:
        config["APPROVAL_WEBHOOK_URL"] = getattr(
            settings, "PORTAL_APPROVAL_WEBHOOK_URL", ""
        )
    if not config["SYSTEM_USER"]:
        config["SYSTEM_USER"] = (
            getattr(settings, "PORTAL_SYSTEM_USER", "")
            or os.environ.get("PORTAL_SYSTEM_USER", "")
            or DEFAULT_SYSTEM_USER
        )
    return config
