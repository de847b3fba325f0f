"""Admin pages of the backup configuration and the backup records.

Tiers, strategies, policies and the file's other sections go through the
configuration's gate (the Admin role on the environments they are part of,
the import's checks on the result) and the audit log. Records are written
by backup runs only; the admin shows them read-only, with an action that
requests a restore drill of each selected record (the same service
function, role check and audit as the record page's button). Drills are
shown read-only.
"""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied

from portal.admin import ReadOnlyAdmin
from portal.operations import OperationConflict
from stacks.admin import GatedModelAdmin

from . import config, operations
from .models import (
    BackupConfigValue,
    BackupPolicy,
    BackupRecord,
    BackupStrategy,
    RestoreDrill,
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
class BackupRecordAdmin(ReadOnlyAdmin):
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
    actions = ["drill_selected"]

    @admin.action(description="Drill selected backups (restore into a throw-away copy)")
    def drill_selected(self, request, queryset):
        queued, refused = [], []
        for record in queryset.select_related("environment", "service__stack", "tier"):
            try:
                operation = operations.drill_backup(
                    record.environment, record, user=request.user
                )
            except (PermissionDenied, OperationConflict, ValueError) as exc:
                refused.append(f"#{record.pk}: {exc}")
                continue
            queued.append(f"#{record.pk} (operation {str(operation.pk)[:8]})")
        if queued:
            self.message_user(request, f"Drills queued: {', '.join(queued)}.")
        for text in refused:
            self.message_user(request, text, level=messages.ERROR)


@admin.register(RestoreDrill)
class RestoreDrillAdmin(ReadOnlyAdmin):
    """Restore drills, read-only: written by drill runs only."""

    list_display = ["id", "record", "status", "created", "duration_s", "error"]
    list_filter = ["status", "record__environment"]
    search_fields = ["record__service_name", "record__snapshot_id", "error"]
