"""The backups' Prometheus metrics (served at ``/metrics`` by the portal).

Per environment, service, strategy and tier, from :func:`backups.status.
backup_states` (the same rows the page and ``backup status`` show):

=========================================  ====================================
``portal_backup_age_seconds``              age of the newest good backup
``portal_backup_size_bytes``               bytes it holds (restic's total)
``portal_backup_added_bytes``              bytes it added to the repository
``portal_backup_allowed_age_seconds``      the strategy's frequency + 25 %
``portal_backup_overdue``                  1 when a scheduled backup is older
                                           than allowed or missing
``portal_backup_failed_records``           failed records, all kept
``portal_backup_failures_since_success``   failed records newer than the
                                           newest good backup
``portal_backup_assured_age_seconds``      age of the newest backup proven
                                           by a restore drill or verified by
                                           a repository check
``portal_backup_rpo_breach``               1 when a scheduled row has no
                                           proven or verified backup within
                                           its allowed age
=========================================  ====================================

and ``portal_backup_running{environment}``, the backup operations not
finished. A row without a good backup has no age, size or added sample
(Prometheus has no "never"); ``portal_backup_overdue`` is 1 for it when it
is scheduled. Registered in :class:`backups.apps.BackupsConfig`.
"""

from prometheus_client.core import GaugeMetricFamily

from .status import backup_states, running_backups

__all__ = ["BackupCollector", "LABELS"]

LABELS = ["environment", "service", "strategy", "tier"]


class BackupCollector:
    """Collect the backup metrics of some environments."""

    def __init__(self, environments):
        self.environments = list(environments)

    def collect(self):
        """Yield the metric families (prometheus-client's collector protocol)."""
        families = {
            name: GaugeMetricFamily(name, text, labels=LABELS)
            for name, text in (
                (
                    "portal_backup_age_seconds",
                    "Age of the newest good backup, seconds.",
                ),
                (
                    "portal_backup_size_bytes",
                    "Bytes in the newest good backup (restic's total processed).",
                ),
                (
                    "portal_backup_added_bytes",
                    "Bytes the newest good backup added to its repository.",
                ),
                (
                    "portal_backup_allowed_age_seconds",
                    "How old the newest good backup may be: the strategy's "
                    "frequency plus 25 percent.",
                ),
                (
                    "portal_backup_overdue",
                    "1 when a scheduled backup is older than allowed or missing.",
                ),
                (
                    "portal_backup_failed_records",
                    "Failed backup records kept.",
                ),
                (
                    "portal_backup_failures_since_success",
                    "Failed backup records newer than the newest good backup.",
                ),
                (
                    "portal_backup_assured_age_seconds",
                    "Age of the newest backup proven by a restore drill or verified "
                    "by a repository check, seconds.",
                ),
                (
                    "portal_backup_rpo_breach",
                    "1 when a scheduled backup has no proven or verified backup "
                    "within its allowed age.",
                ),
            )
        }
        for state in backup_states(self.environments):
            labels = [state.environment, state.service, state.strategy, state.tier]
            record = state.record
            if record is not None:
                families["portal_backup_age_seconds"].add_metric(
                    labels, state.age.total_seconds()
                )
                if record.bytes_total is not None:
                    families["portal_backup_size_bytes"].add_metric(
                        labels, record.bytes_total
                    )
                if record.bytes_added is not None:
                    families["portal_backup_added_bytes"].add_metric(
                        labels, record.bytes_added
                    )
            if state.allowed_age is not None:
                families["portal_backup_allowed_age_seconds"].add_metric(
                    labels, state.allowed_age.total_seconds()
                )
            if state.assured is not None:
                families["portal_backup_assured_age_seconds"].add_metric(
                    labels, state.assured_age.total_seconds()
                )
            if state.scheduled:
                families["portal_backup_overdue"].add_metric(
                    labels, 1 if state.overdue else 0
                )
                families["portal_backup_rpo_breach"].add_metric(
                    labels, 1 if state.at_risk else 0
                )
            families["portal_backup_failed_records"].add_metric(
                labels, state.failures_total
            )
            families["portal_backup_failures_since_success"].add_metric(
                labels, state.failures
            )
        yield from families.values()
        running = GaugeMetricFamily(
            "portal_backup_running",
            "Backup operations requested and not finished.",
            labels=["environment"],
        )
        counts = {environment.name: 0 for environment in self.environments}
        for operation in running_backups(self.environments):
            counts[operation.environment.name] += 1
        for name, count in counts.items():
            running.add_metric([name], count)
        yield running
