"""Storage tiers, backup strategies and policies, and backup records.

``configs/backup-strategies.yaml`` is imported into the first four models
by ``manage.py import_configs`` (a companion of ``stacks.yaml``) and
written back by ``manage.py export_configs``; the admin edits them through
the same checks. :class:`BackupRecord` is what a backup run leaves: one per
service, strategy and tier.
"""

from datetime import timedelta

from django.db import models
from django.urls import reverse
from django.utils import timezone

from .choices import BackupMethod, ProofStatus, RecordStatus, TierKind

__all__ = [
    "BackupAlert",
    "BackupConfigValue",
    "BackupPolicy",
    "BackupRecord",
    "BackupStrategy",
    "RepositoryCheck",
    "RestoreDrill",
    "StorageTier",
]

# How old the newest good backup may be, by the strategy's frequency.
FREQUENCY_AGES = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(days=7),
    "monthly": timedelta(days=31),
}
# What an abandoned record says (the words of
# backups.jobs.fail_abandoned_records, which writes them).
ABANDONED_ERROR = "Abandoned: the operation that took it ended without finishing it."
# Slack on top of the frequency before a backup counts as overdue (a daily
# backup that ran at 03:10 yesterday is not late at 03:05 today).
AGE_GRACE = 0.25


class StorageTier(models.Model):
    """A kind of place backups are kept, hottest first.

    Each tier keeps one restic repository per environment (a tape tier
    keeps archives dumped from a colder-or-hotter repository). ``location``
    and the credentials in ``settings`` may hold ``${VAR}`` references,
    resolved from each environment's own variables.
    """

    name = models.SlugField(max_length=40, unique=True)
    kind = models.CharField(max_length=20, choices=TierKind.choices)
    location = models.CharField(
        max_length=500,
        help_text="Directory, sftp:user@host:/path, S3 endpoint URL, or tape "
        "device/folder; ${VAR} references are resolved per environment.",
    )
    bucket = models.CharField(max_length=200, blank=True)
    region = models.CharField(max_length=60, blank=True)
    retention_days = models.PositiveIntegerField(default=30)
    settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="max_size, compression, encryption, password, access_key, "
        "secret_key, identity_file, port, keep; secrets as ${VAR} references.",
    )
    order = models.PositiveIntegerField(default=0)

    # Part of every environment's configuration (see stacks.config.gate).
    config_scope = "all"

    class Meta:
        ordering = ["order", "name"]

    def __str__(self):
        return self.name

    @staticmethod
    def config_field_for(key):
        """Return the field a ``storage_tiers`` key of the file is kept in."""
        if key in ("path", "url", "endpoint", "device"):
            return "location"
        if key == "type":
            return "kind"
        if key in ("bucket", "region", "retention_days"):
            return key
        return "settings"

    @property
    def is_repository(self):
        """Whether the tier is a restic repository (tape is not)."""
        return self.kind in TierKind.REPOSITORIES


class BackupPolicy(models.Model):
    """When and where an environment is backed up (``environments.<name>``)."""

    environment = models.OneToOneField(
        "stacks.Environment", on_delete=models.CASCADE, related_name="backup_policy"
    )
    schedule = models.CharField(
        max_length=100, blank=True, help_text="Cron schedule of the backup."
    )
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    backup_types = models.JSONField(
        default=list, blank=True, help_text="full, incremental, differential."
    )
    tiers = models.JSONField(
        default=list, blank=True, help_text="Storage tier names, hottest first."
    )

    config_scope = "environment"

    class Meta:
        ordering = ["environment__order", "environment__name"]
        verbose_name_plural = "backup policies"

    def __str__(self):
        return f"backup policy of {self.environment}"

    @staticmethod
    def config_field_for(key):
        """Return the field an ``environments`` key of the file is kept in."""
        return {
            "backup_schedule": "schedule",
            "storage_tiers": "tiers",
        }.get(key, key)


class BackupStrategy(models.Model):
    """How one service is backed up (``services.<name>``)."""

    service = models.SlugField(
        max_length=80, unique=True, help_text="Service name in configs/stacks.yaml."
    )
    backup_type = models.CharField(max_length=40, blank=True)
    method = models.CharField(max_length=40, choices=BackupMethod.choices)
    frequency = models.CharField(max_length=20, default="daily")
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    compression = models.BooleanField(default=True)
    encryption = models.BooleanField(
        default=False,
        help_text="Kept for the file's round trip: restic encrypts every "
        "repository (AES-256) whatever this says.",
    )
    verification = models.BooleanField(default=True)
    settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="The <kind>_settings sections (database_settings, ...).",
    )
    locations = models.JSONField(default=dict, blank=True)
    # The seed's shell command templates: kept for the round trip, never run.
    commands = models.JSONField(default=dict, blank=True)
    restore_commands = models.JSONField(default=dict, blank=True)
    order = models.PositiveIntegerField(default=0)

    config_scope = "all"

    class Meta:
        ordering = ["order", "service"]
        verbose_name_plural = "backup strategies"

    def __str__(self):
        return f"{self.service} ({self.method})"

    @staticmethod
    def config_field_for(key):
        """Return the field a ``services`` key of the file is kept in."""
        if key.endswith("_settings"):
            return "settings"
        return {
            "backup_method": "method",
            "backup_frequency": "frequency",
            "backup_locations": "locations",
            "backup_commands": "commands",
        }.get(key, key)

    @property
    def allowed_age(self):
        """How old the newest good backup of the service may be."""
        period = FREQUENCY_AGES.get(self.frequency, FREQUENCY_AGES["daily"])
        return period * (1 + AGE_GRACE)


class BackupConfigValue(models.Model):
    """One of the file's other sections: ``global``, ``verification``,
    ``notifications``; kept whole so the export writes them back."""

    key = models.SlugField(max_length=60, unique=True)
    value = models.JSONField(default=None, null=True, blank=True)

    config_scope = "all"

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key


class BackupRecord(models.Model):
    """One backup of one service's data by one strategy in one tier.

    A backup run writes a record per tier: the first tier's snapshot is
    made from the data, colder tiers get a copy (``copied_from``). The
    snapshot carries the same facts as restic tags, so restic alone finds
    it: ``env=<environment>``, ``stack=``, ``service=``, ``strategy=`` and
    ``record=<id>``.
    """

    environment = models.ForeignKey(
        "stacks.Environment", on_delete=models.PROTECT, related_name="backup_records"
    )
    service = models.ForeignKey(
        "stacks.Service",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="backup_records",
    )
    # Kept when the service row goes away.
    service_name = models.CharField(max_length=80, db_index=True)
    strategy = models.CharField(max_length=40)
    tier = models.ForeignKey(
        StorageTier, on_delete=models.PROTECT, related_name="records"
    )
    operation = models.ForeignKey(
        "portal.Operation",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="backup_records",
    )
    copied_from = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="copies",
    )
    repository = models.CharField(
        max_length=500, blank=True, help_text="The repository, without secrets."
    )
    snapshot_id = models.CharField(max_length=80, blank=True)
    tags = models.JSONField(default=list, blank=True)
    manifest = models.JSONField(
        default=dict,
        blank=True,
        help_text="What the data held when it was read (rows, keys, points, "
        "objects, files, bytes).",
    )
    bytes_total = models.BigIntegerField(null=True, blank=True)
    bytes_added = models.BigIntegerField(null=True, blank=True)
    files = models.BigIntegerField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    status = models.CharField(
        max_length=20,
        choices=RecordStatus.choices,
        default=RecordStatus.RUNNING,
        db_index=True,
    )
    error = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    finished = models.DateTimeField(null=True, blank=True)
    pruned = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the tier's retention removed the snapshot.",
    )
    verified = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a check of its repository first passed after it was written.",
    )
    damaged = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When a check of its repository found data it needs damaged.",
    )
    damage = models.TextField(blank=True, help_text="What the check found.")

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(
                fields=["environment", "service_name", "status"],
                name="backups_record_latest",
            )
        ]

    def __str__(self):
        return (
            f"{self.environment} {self.service_name} {self.strategy} "
            f"({self.tier}) #{self.pk}"
        )

    def get_absolute_url(self):
        return reverse("backups:record_detail", args=[self.pk])

    @property
    def data_read(self):
        """When the data was read: a copy's is its source record's time."""
        if self.copied_from_id is not None and self.copied_from is not None:
            return self.copied_from.created
        return self.created

    @property
    def age(self):
        """Time since the data was read."""
        return timezone.now() - self.data_read

    @property
    def restorable(self):
        """Whether the snapshot exists intact: succeeded, not pruned, not
        damaged."""
        return (
            self.status == RecordStatus.SUCCEEDED
            and self.pruned is None
            and self.damaged is None
        )

    def last_drill(self):
        """Return the newest finished restore drill of this record, or None."""
        return (
            self.drills.exclude(status=ProofStatus.RUNNING)
            .order_by("-created", "-id")
            .first()
        )

    @property
    def abandoned(self):
        """Whether an operation that has ended left it running.

        The next backup of the environment marks such a record failed
        (``backups.jobs.fail_abandoned_records``); until then it is shown
        failed.
        """
        if self.status != RecordStatus.RUNNING:
            return False
        return self.operation is None or not self.operation.is_active

    @property
    def shown_status(self):
        """The status to show: ``failed`` for an abandoned record."""
        return RecordStatus.FAILED if self.abandoned else self.status

    @property
    def shown_error(self):
        """The error to show, with a reason for an abandoned record."""
        if self.abandoned and not self.error:
            return ABANDONED_ERROR
        return self.error


class RepositoryCheck(models.Model):
    """One ``restic check`` of an environment's repository in one tier.

    Every check verifies the repository's structure (index, snapshots,
    trees); one with a ``subset`` (``n/N``) also re-reads the data of the
    n-th of N groups of packs. The packs it read are kept (``packs_read``,
    id prefixes) so the ledger knows which of today's packs have been
    re-read within the verification window: ``covered_packs`` of
    ``packs_total`` when this check finished.
    """

    environment = models.ForeignKey(
        "stacks.Environment",
        on_delete=models.CASCADE,
        related_name="repository_checks",
    )
    tier = models.ForeignKey(
        StorageTier, on_delete=models.CASCADE, related_name="checks"
    )
    operation = models.ForeignKey(
        "portal.Operation",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="repository_checks",
    )
    status = models.CharField(
        max_length=20, choices=ProofStatus.choices, default=ProofStatus.RUNNING
    )
    subset = models.CharField(
        max_length=20, blank=True, help_text="n/N: the group of packs re-read."
    )
    packs_total = models.PositiveIntegerField(null=True, blank=True)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    packs_read = models.JSONField(default=list, blank=True)
    bytes_read = models.BigIntegerField(null=True, blank=True)
    covered_packs = models.PositiveIntegerField(null=True, blank=True)
    covered_bytes = models.BigIntegerField(null=True, blank=True)
    damaged_packs = models.JSONField(default=list, blank=True)
    damaged_records = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self):
        subset = f" {self.subset}" if self.subset else ""
        return f"check of {self.environment} {self.tier}{subset} #{self.pk}"

    @property
    def coverage(self):
        """The share (0..1) of the repository's packs re-read in the window."""
        if not self.packs_total:
            return None if self.packs_total is None else 1.0
        return (self.covered_packs or 0) / self.packs_total


class RestoreDrill(models.Model):
    """One restore of a record's snapshot into a throw-away container.

    ``proof`` holds what was compared with the record's manifest: a list of
    ``{"what", "expected", "found", "ok"}``, the image and version used, and
    how long each step took.
    """

    record = models.ForeignKey(
        BackupRecord, on_delete=models.CASCADE, related_name="drills"
    )
    operation = models.ForeignKey(
        "portal.Operation",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="restore_drills",
    )
    status = models.CharField(
        max_length=20, choices=ProofStatus.choices, default=ProofStatus.RUNNING
    )
    proof = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)
    finished = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self):
        return f"drill of {self.record} #{self.pk}"

    @property
    def differences(self):
        """The compared items that did not match."""
        return [c for c in self.proof.get("compared", []) if not c.get("ok")]


class BackupAlert(models.Model):
    """A breach of a backup's allowed age (its RPO), open until it clears.

    One row per breach: opened when the newest proven or verified backup of
    a service's scheduled strategy in a tier is older than allowed, cleared
    when a newer one is proven or verified. Notifications go out once when
    it opens and once when it clears.
    """

    environment = models.ForeignKey(
        "stacks.Environment", on_delete=models.CASCADE, related_name="backup_alerts"
    )
    service_name = models.CharField(max_length=80)
    strategy = models.CharField(max_length=40)
    tier = models.ForeignKey(
        StorageTier, on_delete=models.CASCADE, related_name="alerts"
    )
    message = models.TextField()
    opened = models.DateTimeField(default=timezone.now, db_index=True)
    cleared = models.DateTimeField(null=True, blank=True)
    notified = models.DateTimeField(null=True, blank=True)
    cleared_notified = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "service_name", "strategy", "tier"],
                condition=models.Q(cleared__isnull=True),
                name="backups_alert_one_open",
            )
        ]

    def __str__(self):
        state = "open" if self.cleared is None else "cleared"
        return (
            f"{self.environment} {self.service_name} {self.strategy} ({self.tier}): "
            f"{state}"
        )
