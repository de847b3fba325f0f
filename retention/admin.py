"""Admin pages of the retention policies and the cleanup records.

Policies, items, volumes, environment defaults and the file's other
sections go through the configuration's gate (the Admin role on the
environments they are part of, the import's checks on the result) and the
audit log, as every configuration change does. Each item shows its
effective retention and where it comes from (item, service, environment).
Cleanup records and collection sightings are written by cleanups only; the
admin shows them read-only.
"""

from django.contrib import admin

from portal.admin import ReadOnlyAdmin
from stacks.admin import GatedInline, GatedModelAdmin
from stacks.models import Environment

from . import config
from .models import (
    CleanupRecord,
    CollectionSighting,
    EnvironmentRetention,
    RetentionItem,
    RetentionPolicy,
    RetentionSetting,
    VolumeRetention,
)
from .policies import cleanup_settings

__all__ = ["effective_retention"]


def effective_retention(item):
    """Return an item's days and where they come from, in words."""
    if item.retention_days is not None:
        return f"{item.retention_days} days (item)"
    policy = item.policy
    if policy.retention_days is not None:
        return f"{policy.retention_days} days (service {policy.service})"
    defaults = ", ".join(
        f"{env.name} {cleanup_settings(env).default_days}"
        for env in Environment.objects.order_by("order", "name")
    )
    return f"environment default ({defaults or 'none'})"


class RetentionConfigAdmin(GatedModelAdmin):
    gate_issues = staticmethod(config.issues)


class RetentionItemInline(GatedInline, admin.TabularInline):
    model = RetentionItem
    gate_issues = staticmethod(config.issues)
    fields = [
        "group",
        "name",
        "retention_days",
        "cleanup_strategy",
        "settings",
        "order",
    ]
    extra = 0


@admin.register(RetentionPolicy)
class RetentionPolicyAdmin(RetentionConfigAdmin):
    list_display = [
        "service",
        "retention_days",
        "cleanup_strategy",
        "backup_retention_days",
        "item_count",
    ]
    search_fields = ["service"]
    inlines = [RetentionItemInline]

    @admin.display(description="Items")
    def item_count(self, obj):
        return obj.items.count()


@admin.register(RetentionItem)
class RetentionItemAdmin(RetentionConfigAdmin):
    list_display = [
        "__str__",
        "group",
        "retention_days",
        "effective",
        "cleanup_strategy",
    ]
    list_filter = ["group", "policy"]
    search_fields = ["name", "policy__service"]
    list_select_related = ["policy"]

    @admin.display(description="Effective retention (precedence)")
    def effective(self, obj):
        return effective_retention(obj)


@admin.register(VolumeRetention)
class VolumeRetentionAdmin(RetentionConfigAdmin):
    list_display = ["volume", "retention_days", "cleanup_strategy", "order"]


@admin.register(EnvironmentRetention)
class EnvironmentRetentionAdmin(RetentionConfigAdmin):
    list_display = [
        "environment",
        "default_retention_days",
        "cleanup_schedule",
        "dry_run",
        "backup_before_cleanup",
    ]


@admin.register(RetentionSetting)
class RetentionSettingAdmin(RetentionConfigAdmin):
    list_display = ["key"]


@admin.register(CleanupRecord)
class CleanupRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "created",
        "environment",
        "item",
        "status",
        "dry_run",
        "matched",
        "removed",
        "freed_bytes",
    ]
    list_filter = ["status", "dry_run", "environment", "kind"]
    search_fields = ["item", "service_name"]


@admin.register(CollectionSighting)
class CollectionSightingAdmin(ReadOnlyAdmin):
    list_display = ["environment", "service_name", "name", "first_seen", "last_seen"]
    list_filter = ["environment"]
