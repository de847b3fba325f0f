"""Where an environment's retention stands: what the page, the panel, the
metrics and ``retention status`` show.

- the items with their effective retention and its source
  (:func:`retention.policies.environment_items`);
- the next scheduled run (the environment's cron schedule) and the plan of
  it: each item's newest measurement (a dry run or a real run), with when
  it was taken;
- the last runs, each with what it removed and freed;
- the bytes freed per service per day.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from croniter import croniter
from django.db.models import Count, Max, Q, Sum
from django.utils import timezone

from portal.models import Operation

from .choices import RecordStatus
from .models import CleanupRecord, RetentionSetting
from .policies import cleanup_settings, environment_items

__all__ = [
    "KIND",
    "RunSummary",
    "freed_by_service",
    "item_rows",
    "last_runs",
    "latest_measurements",
    "next_run",
    "retention_summary",
]

#: The operation kind of cleanups and their dry runs.
KIND = "retention.cleanup"


def next_run(schedule, *, now=None):
    """Return when ``schedule`` next fires (aware, local time), or None."""
    if not schedule or not croniter.is_valid(schedule):
        return None
    now = timezone.localtime(now or timezone.now())
    naive = croniter(schedule, now.replace(tzinfo=None)).get_next(datetime)
    return timezone.make_aware(naive, now.tzinfo)


def latest_measurements(environment):
    """Return {item key: newest CleanupRecord that measured it}."""
    newest = (
        CleanupRecord.objects.filter(environment=environment)
        .exclude(status__in=(RecordStatus.SKIPPED,))
        .values("item")
        .annotate(last=Max("id"))
    )
    ids = [row["last"] for row in newest]
    return {
        r.item: r
        for r in CleanupRecord.objects.filter(pk__in=ids).select_related("operation")
    }


def item_rows(environment, *, service=None):
    """Return one row per item: its policy and its newest measurement."""
    measured = latest_measurements(environment)
    return [
        {"policy": item, "measured": measured.get(item.key)}
        for item in environment_items(environment, service=service)
    ]


@dataclass
class RunSummary:
    """One cleanup or dry run, with the totals of its records."""

    operation: object
    dry_run: bool
    service: str
    items: int
    matched: int
    removed: int
    freed: int
    failed: int


def last_runs(environment, limit=10):
    """Return the :class:`RunSummary` of the newest cleanups and dry runs."""
    operations = list(
        Operation.objects.filter(environment=environment, kind=KIND)
        .select_related("requested_by", "approved_by")
        .order_by("-created")[:limit]
    )
    totals = {
        row["operation"]: row
        for row in CleanupRecord.objects.filter(operation__in=operations)
        .values("operation")
        .annotate(
            items=Count("id"),
            matched=Sum("matched"),
            removed=Sum("removed"),
            freed=Sum("freed_bytes"),
            failed=Count("id", filter=Q(status=RecordStatus.FAILED)),
        )
    }
    runs = []
    for operation in operations:
        row = totals.get(operation.pk, {})
        parameters = operation.parameters or {}
        runs.append(
            RunSummary(
                operation=operation,
                dry_run=bool(parameters.get("dry_run")),
                service=parameters.get("service") or "",
                items=row.get("items") or 0,
                matched=row.get("matched") or 0,
                removed=row.get("removed") or 0,
                freed=row.get("freed") or 0,
                failed=row.get("failed") or 0,
            )
        )
    return runs


def freed_by_service(environment, *, days=30, now=None):
    """Return the bytes real cleanups freed per service per day.

    ``{"days": [date, ...], "services": [{"service", "values", "total",
    "removed"}], "max": largest daily value}``, oldest day first; only
    services that freed something.
    """
    now = timezone.localtime(now or timezone.now())
    first = (now - timedelta(days=days - 1)).date()
    dates = [first + timedelta(days=i) for i in range(days)]
    records = CleanupRecord.objects.filter(
        environment=environment,
        dry_run=False,
        status=RecordStatus.REMOVED,
        created__gte=timezone.make_aware(datetime.combine(first, datetime.min.time())),
    ).values_list("service_name", "created", "freed_bytes", "removed")
    values = defaultdict(lambda: defaultdict(int))
    removed = defaultdict(int)
    for service, created, freed, count in records:
        day = timezone.localtime(created).date()
        values[service][day] += freed or 0
        removed[service] += count or 0
    services = [
        {
            "service": name,
            "values": [values[name][d] for d in dates],
            "total": sum(values[name].values()),
            "removed": removed[name],
        }
        for name in sorted(values)
    ]
    largest = max((v for s in services for v in s["values"]), default=0)
    return {"days": dates, "services": services, "max": largest}


def retention_summary(environment):
    """Return what the environment page's panel says, or None when the
    retention file says nothing of any environment.

    A constant handful of queries, whatever the number of items: the
    settings, the last run with its totals, the bytes freed in 30 days.
    """
    glob_row = RetentionSetting.objects.filter(key="global").first()
    if glob_row is None:
        return None
    settings = cleanup_settings(environment, glob=glob_row.value or {})
    last = (
        Operation.objects.filter(environment=environment, kind=KIND)
        .annotate(
            matched=Sum("cleanup_records__matched"),
            removed=Sum("cleanup_records__removed"),
            freed=Sum("cleanup_records__freed_bytes"),
            failed=Count(
                "cleanup_records",
                filter=Q(cleanup_records__status=RecordStatus.FAILED),
            ),
        )
        .order_by("-created")
        .first()
    )
    since = timezone.now() - timedelta(days=30)
    freed = CleanupRecord.objects.filter(
        environment=environment,
        dry_run=False,
        status=RecordStatus.REMOVED,
        created__gte=since,
    ).aggregate(total=Sum("freed_bytes"))["total"]
    run = None
    if last is not None:
        run = RunSummary(
            operation=last,
            dry_run=bool((last.parameters or {}).get("dry_run")),
            service=(last.parameters or {}).get("service") or "",
            items=0,
            matched=last.matched or 0,
            removed=last.removed or 0,
            freed=last.freed or 0,
            failed=last.failed or 0,
        )
    return {
        "settings": settings,
        "next_run": next_run(settings.schedule),
        "last": run,
        "freed_30d": freed or 0,
    }
