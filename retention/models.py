"""Retention policies, and what each cleanup did.

``configs/retention-policies.yaml`` is imported into the first five models
by ``manage.py import_configs`` (a companion of ``stacks.yaml``) and
written back by ``manage.py export_configs``; the admin edits them through
the same checks and the audit log. Precedence of an item's retention is
explicit: the item's own days, else its service's, else the environment's
default, else the global default (:mod:`retention.policies`).

:class:`CleanupRecord` is what a cleanup (or its dry run) found and did for
one item; :class:`CollectionSighting` is when the portal first saw a Qdrant
collection, the age Qdrant's API does not give.
"""

from django.db import models
from django.utils import timezone

from .choices import GROUP_KINDS, ItemKind, RecordStatus

__all__ = [
    "CleanupRecord",
    "CollectionSighting",
    "EnvironmentRetention",
    "RetentionItem",
    "RetentionPolicy",
    "RetentionSetting",
    "VolumeRetention",
]


class RetentionSetting(models.Model):
    """One of the file's whole sections: ``global``, ``cleanup_strategies``,
    ``backup_strategies``, ``notifications``; kept whole for the export."""

    key = models.SlugField(max_length=60, unique=True)
    value = models.JSONField(default=None, null=True, blank=True)

    # Part of every environment's configuration (see stacks.config.gate).
    config_scope = "all"

    class Meta:
        ordering = ["key"]

    def __str__(self):
        return self.key


class EnvironmentRetention(models.Model):
    """An environment's defaults and schedule (``environments.<name>``)."""

    environment = models.OneToOneField(
        "stacks.Environment", on_delete=models.CASCADE, related_name="retention"
    )
    default_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Days kept when neither the item nor its service says.",
    )
    cleanup_schedule = models.CharField(
        max_length=100, blank=True, help_text="Cron schedule of the cleanup."
    )
    dry_run = models.BooleanField(
        null=True,
        blank=True,
        help_text="Scheduled runs only plan (unset: global.dry_run).",
    )
    backup_before_cleanup = models.BooleanField(
        null=True,
        blank=True,
        help_text="Back up and verify before deleting (unset: "
        "global.backup_before_cleanup).",
    )

    config_scope = "environment"

    class Meta:
        ordering = ["environment__order", "environment__name"]
        verbose_name = "environment retention"

    def __str__(self):
        return f"retention of {self.environment}"

    @staticmethod
    def config_field_for(key):
        """Return the field an ``environments`` key of the file is kept in."""
        return key


class RetentionPolicy(models.Model):
    """How long one service's data is kept (``services.<name>``).

    ``service`` is a name of ``stacks.yaml`` (or, for files only, a label
    such as the seed's ``allure``); its items are :class:`RetentionItem`.
    """

    service = models.SlugField(max_length=80, unique=True)
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    cleanup_strategy = models.CharField(max_length=60, blank=True)
    backup_retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Days its backup snapshots are kept in every repository tier.",
    )
    settings = models.JSONField(
        default=dict,
        blank=True,
        help_text="port, api_key, password, database (secrets as ${VAR}).",
    )
    order = models.PositiveIntegerField(default=0)

    config_scope = "all"

    class Meta:
        ordering = ["order", "service"]
        verbose_name = "retention policy"
        verbose_name_plural = "retention policies"

    def __str__(self):
        return self.service

    @staticmethod
    def config_field_for(key):
        """Return the field a ``services`` key of the file is kept in."""
        if key in ("retention_days", "cleanup_strategy", "backup_retention_days"):
            return key
        return "settings"


class RetentionItem(models.Model):
    """One piece of a service's data (``services.<svc>.<group>.<name>``).

    ``group`` is the file's map (``tables``, ``keys``, ``buckets``...), which
    gives the item's kind; ``settings`` holds where the data is
    (``date_column``, ``pattern``, ``path``...).
    """

    policy = models.ForeignKey(
        RetentionPolicy, on_delete=models.CASCADE, related_name="items"
    )
    group = models.SlugField(max_length=40)
    name = models.CharField(max_length=120)
    retention_days = models.PositiveIntegerField(
        null=True, blank=True, help_text="Unset: the service's, then the default."
    )
    cleanup_strategy = models.CharField(max_length=60, blank=True)
    settings = models.JSONField(default=dict, blank=True)
    order = models.PositiveIntegerField(default=0)

    config_scope = "all"
    # An item's keys are services.<svc>.<group>.<item>.<key>.
    config_key_depth = 4

    class Meta:
        ordering = ["policy__order", "policy__service", "order", "group", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "group", "name"], name="retention_item_unique"
            )
        ]

    def __str__(self):
        return f"{self.policy.service}.{self.group}.{self.name}"

    @property
    def kind(self):
        return GROUP_KINDS.get(self.group, "")

    @staticmethod
    def config_field_for(key):
        """Return the field an item key of the file is kept in."""
        if key in ("retention_days", "cleanup_strategy"):
            return key
        return "settings"


class VolumeRetention(models.Model):
    """How long the files of one volume are kept (``volumes.<name>``)."""

    volume = models.SlugField(max_length=80, unique=True)
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    cleanup_strategy = models.CharField(max_length=60, blank=True)
    backup_retention_days = models.PositiveIntegerField(null=True, blank=True)
    order = models.PositiveIntegerField(default=0)

    config_scope = "all"

    class Meta:
        ordering = ["order", "volume"]
        verbose_name = "volume retention"

    def __str__(self):
        return self.volume

    @staticmethod
    def config_field_for(key):
        return key


class CleanupRecord(models.Model):
    """What one cleanup (or dry run) found and did for one item.

    ``matched`` and ``matched_bytes`` are what was older than the cutoff
    when the item was measured (the plan), ``kept`` what stays;
    ``removed`` and ``freed_bytes`` what a real run removed. ``oldest`` and
    ``newest`` bound the data the plan names.
    """

    operation = models.ForeignKey(
        "portal.Operation",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="cleanup_records",
    )
    environment = models.ForeignKey(
        "stacks.Environment", on_delete=models.CASCADE, related_name="cleanup_records"
    )
    service_name = models.CharField(max_length=80, db_index=True)
    item = models.CharField(max_length=200, help_text="service/group/name")
    kind = models.CharField(max_length=20, choices=ItemKind.choices)
    strategy = models.CharField(max_length=60)
    target = models.CharField(max_length=300, blank=True)
    days = models.PositiveIntegerField()
    source = models.CharField(max_length=20)
    cutoff = models.DateTimeField()
    dry_run = models.BooleanField(default=False)
    status = models.CharField(max_length=20, choices=RecordStatus.choices)
    matched = models.BigIntegerField(null=True, blank=True)
    matched_bytes = models.BigIntegerField(null=True, blank=True)
    bytes_estimated = models.BooleanField(default=False)
    oldest = models.DateTimeField(null=True, blank=True)
    newest = models.DateTimeField(null=True, blank=True)
    kept = models.BigIntegerField(null=True, blank=True)
    kept_bytes = models.BigIntegerField(null=True, blank=True)
    removed = models.BigIntegerField(null=True, blank=True)
    freed_bytes = models.BigIntegerField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    backup_record = models.ForeignKey(
        "backups.BackupRecord",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="cleanup_records",
        help_text="The archive of what was removed (archive_then_delete).",
    )
    seconds = models.FloatField(null=True, blank=True)
    created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [
            models.Index(
                fields=["environment", "dry_run", "created"],
                name="retention_record_history",
            )
        ]

    def __str__(self):
        return f"{self.item} in {self.environment} ({self.status}) #{self.pk}"


class CollectionSighting(models.Model):
    """When the portal first saw a Qdrant collection in an environment.

    Qdrant's API reports no creation time (CollectionInfo has none), so a
    collection's age is the time since its first sighting; every plan of a
    collections item records the collections it lists.
    """

    environment = models.ForeignKey(
        "stacks.Environment",
        on_delete=models.CASCADE,
        related_name="collection_sightings",
    )
    service_name = models.CharField(max_length=80)
    name = models.CharField(max_length=255)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["environment", "service_name", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["environment", "service_name", "name"],
                name="retention_sighting_unique",
            )
        ]

    def __str__(self):
        return f"{self.service_name}/{self.name} in {self.environment}"
