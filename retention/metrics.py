"""The retention's Prometheus metrics (served at ``/metrics`` by the portal).

=============================================  ===============================
``portal_retention_freed_bytes_total``         bytes real cleanups freed, per
                                               environment and service
``portal_retention_removed_total``             rows, keys, objects, files...
                                               they removed
``portal_retention_pending``                   what the newest measurement of
                                               each item found older than its
                                               cutoff (0 after a cleanup)
``portal_retention_last_run_timestamp``        when the last cleanup (dry_run
                                               "false") or dry run ("true")
                                               finished, per status
=============================================  ===============================

Registered in :class:`retention.apps.RetentionConfig`.
"""

from django.db.models import Max, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from portal.models import Operation

from .choices import RecordStatus
from .models import CleanupRecord
from .status import KIND, latest_measurements

__all__ = ["RetentionCollector"]


class RetentionCollector:
    """Collect the retention metrics of some environments."""

    def __init__(self, environments):
        self.environments = list(environments)

    def collect(self):
        """Yield the metric families (prometheus-client's collector protocol)."""
        freed = CounterMetricFamily(
            "portal_retention_freed_bytes",
            "Bytes real cleanups freed.",
            labels=["environment", "service"],
        )
        removed = CounterMetricFamily(
            "portal_retention_removed",
            "Rows, keys, objects, files, indices or snapshots real cleanups removed.",
            labels=["environment", "service"],
        )
        pending = GaugeMetricFamily(
            "portal_retention_pending",
            "What the newest measurement of an item found older than its cutoff.",
            labels=["environment", "service", "item", "kind"],
        )
        last = GaugeMetricFamily(
            "portal_retention_last_run_timestamp",
            "When the last cleanup or dry run finished (Unix time).",
            labels=["environment", "dry_run", "status"],
        )
        for environment in self.environments:
            totals = (
                CleanupRecord.objects.filter(
                    environment=environment,
                    dry_run=False,
                    status=RecordStatus.REMOVED,
                )
                .values("service_name")
                .annotate(freed=Sum("freed_bytes"), removed=Sum("removed"))
            )
            for row in totals:
                labels = [environment.name, row["service_name"]]
                freed.add_metric(labels, row["freed"] or 0)
                removed.add_metric(labels, row["removed"] or 0)
            for key, record in sorted(latest_measurements(environment).items()):
                if record.matched is None:
                    continue
                left = record.matched - (record.removed or 0)
                pending.add_metric(
                    [environment.name, record.service_name, key, record.kind],
                    max(left, 0),
                )
            finished = (
                Operation.objects.filter(
                    environment=environment, kind=KIND, finished__isnull=False
                )
                .values("parameters__dry_run", "status")
                .annotate(last=Max("finished"))
            )
            for row in finished:
                dry = "true" if row["parameters__dry_run"] else "false"
                last.add_metric(
                    [environment.name, dry, row["status"]], row["last"].timestamp()
                )
        yield freed
        yield removed
        yield pending
        yield last
