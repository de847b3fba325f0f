"""Admin pages for the stack configuration.

Every page records what it creates, changes and deletes in the audit log
(:class:`portal.audit.AuditedAdminMixin`), inline rows included.
"""

from django.contrib import admin

from portal.audit import AuditedAdminMixin

from .models import (
    ConfigValue,
    Environment,
    Network,
    NetworkOverride,
    Service,
    ServiceOverride,
    Stack,
    Volume,
)


class ServiceOverrideInline(admin.TabularInline):
    model = ServiceOverride
    extra = 0
    autocomplete_fields = ["service"]


class NetworkOverrideInline(admin.TabularInline):
    model = NetworkOverride
    extra = 0


@admin.register(Environment)
class EnvironmentAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "alias",
        "docker_host",
        "protected",
        "subnet_pool",
        "port_offset",
        "gpu_enabled",
    ]
    list_filter = ["protected", "gpu_enabled"]
    search_fields = ["name", "alias", "description"]
    inlines = [NetworkOverrideInline, ServiceOverrideInline]


class ServiceInline(admin.TabularInline):
    model = Service
    fields = ["name", "image", "gpu", "order"]
    extra = 0
    show_change_link = True


class VolumeInline(admin.TabularInline):
    model = Volume
    extra = 0


class NetworkInline(admin.TabularInline):
    model = Network
    extra = 0


@admin.register(Stack)
class StackAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "description", "dependency_names", "service_count", "order"]
    search_fields = ["name", "description"]
    filter_horizontal = ["depends_on"]
    inlines = [ServiceInline, VolumeInline, NetworkInline]

    @admin.display(description="Depends on")
    def dependency_names(self, obj):
        return ", ".join(s.name for s in obj.depends_on.all()) or "-"

    @admin.display(description="Services")
    def service_count(self, obj):
        return obj.services.count()


@admin.register(Service)
class ServiceAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "stack", "image", "gpu", "restart"]
    list_filter = ["stack", "gpu", "category"]
    search_fields = ["name", "image", "description"]
    filter_horizontal = ["depends_on"]


@admin.register(Volume)
class VolumeAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "stack", "data_type", "driver"]
    list_filter = ["stack", "data_type"]
    search_fields = ["name"]


@admin.register(Network)
class NetworkAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "stack", "driver", "subnet", "gateway"]
    list_filter = ["stack"]
    search_fields = ["name", "subnet"]


@admin.register(ServiceOverride)
class ServiceOverrideAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["service", "environment"]
    list_filter = ["environment"]
    autocomplete_fields = ["service"]


@admin.register(NetworkOverride)
class NetworkOverrideAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["network", "environment", "subnet", "gateway"]
    list_filter = ["environment"]


@admin.register(ConfigValue)
class ConfigValueAdmin(AuditedAdminMixin, admin.ModelAdmin):
    list_display = ["key", "value"]
    search_fields = ["key"]
