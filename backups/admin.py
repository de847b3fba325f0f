"""Admin pages of the backup configuration and the backup records.

Tiers, strategies, policies and the file's other sections go through the
configuration's gate (the Admin role on the environments they are part of,
the import's checks on the result) and the audit log. Records are written
by backup runs only; the admin shows them read-only.
"""

from django.contrib import admin

from stacks.admin import GatedModelAdmin

from . import config
from .models import (
    BackupConfigValue,
    BackupPolicy,
    BackupRecord,
    BackupStrategy,
    StorageTier,
)


class BackupConfigAdmin(GatedModelAdmin):
    gate_issues = staticmethod(config.issues)


@admin.register(StorageTier)
class StorageTierAdmin(BackupConfigAdmin):
    list_display = ["name", "kind", "location", "retention_days", "order"]
    search_fields = ["name", "location"]


@admin.register(BackupStrategy)
class BackupStrategyAdmin(BackupConfigAdmin):
    list_display = ["service", "method", "frequency", "retention_days", "verification"]
    list_filter = ["method", "frequency"]
    search_fields = ["service"]


@admin.register(BackupPolicy)
class BackupPolicyAdmin(BackupConfigAdmin):
    list_display = ["environment", "schedule", "retention_days", "tiers"]


@admin.register(BackupConfigValue)
class BackupConfigValueAdmin(BackupConfigAdmin):
    list_display = ["key"]


@admin.register(BackupRecord)
class BackupRecordAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "environment",
        "service_name",
        "strategy",
        "tier",
        "status",
        "snapshot_id",
        "bytes_total",
        "created",
    ]
    list_filter = ["status", "environment", "tier", "strategy"]
    search_fields = ["service_name", "snapshot_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
