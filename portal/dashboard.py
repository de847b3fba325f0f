"""The core's panel of the dashboard: running, queued and failed operations."""

from datetime import timedelta

from django.utils import timezone

from .choices import OperationStatus
from .models import Operation
from .panels import Panel

__all__ = ["operations_panel"]

# Operations the dashboard lists at most.
DASHBOARD_OPERATIONS = 12
_FAILED = (OperationStatus.FAILED, OperationStatus.ERRORED)


def operations_panel(user, environments):
    """Return the dashboard panel of active and recently failed operations."""
    if not environments:
        return None
    visible = Operation.objects.filter(environment__in=environments)
    active = list(
        visible.filter(status__in=OperationStatus.ACTIVE)
        .select_related("environment", "stack", "service", "requested_by")
        .order_by("-created")[:DASHBOARD_OPERATIONS]
    )
    since = timezone.now() - timedelta(hours=24)
    failed = list(
        visible.filter(status__in=_FAILED, finished__gte=since)
        .select_related("environment", "stack", "service", "requested_by")
        .order_by("-finished")[:5]
    )
    counts = {
        status: visible.filter(status=status).count()
        for status in (OperationStatus.RUNNING, OperationStatus.QUEUED)
    }
    return Panel(
        "portal/dashboard_operations.html",
        {
            "active": active,
            "failed": failed,
            "running": counts[OperationStatus.RUNNING],
            "queued": counts[OperationStatus.QUEUED],
            "failed_count": visible.filter(
                status__in=_FAILED, finished__gte=since
            ).count(),
        },
    )
