"""What pages, admin actions and commands call to clean up: requests of
``retention.cleanup`` through the portal's operations (role check, plan,
environment line, audit entry; an approval in a protected environment)."""

from datetime import timedelta

from django.utils import timezone

from portal.operations import request_operation

from .jobs import KIND
from .policies import cleanup_settings

__all__ = ["request_cleanup", "scheduled_window"]


def scheduled_window(environment, *, now=None):
    """Return the ``not_after`` of a scheduled run starting ``now``: a run
    that cannot start by then (in line, awaiting approval) does not run late."""
    now = now or timezone.now()
    minutes = cleanup_settings(environment).grace_minutes
    return (now + timedelta(minutes=minutes)).isoformat()


def request_cleanup(
    environment,
    *,
    user,
    service=None,
    dry_run=False,
    scheduled=False,
    wait=True,
    enqueue=True,
):
    """Request a cleanup (``dry_run``: only measure) of ``environment``, or
    of one ``service``'s items; return the Operation."""
    parameters = {"dry_run": bool(dry_run)}
    if service:
        parameters["service"] = service
    if scheduled:
        parameters["scheduled"] = True
        parameters["not_after"] = scheduled_window(environment)
    return request_operation(
        KIND,
        user=user,
        environment=environment,
        parameters=parameters,
        wait=wait,
        enqueue=enqueue,
    )
