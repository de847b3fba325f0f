"""Admin pages for the stack configuration.

Every page records what it creates, changes and deletes in the audit log
(:class:`portal.audit.AuditedAdminMixin`), inline rows included, and every
change goes through the configuration's one gate
(:mod:`stacks.config.gate`): the Admin role on each environment it touches,
and the importer's rules (host policy included) on the result.
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from portal.audit import AuditedAdminMixin
from portal.permissions import user_can

from .config.gate import (
    GatedFormMixin,
    affected_environments,
    config_scope,
    require_admin,
)
from .forms import ServiceForm, ServiceOverrideForm
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


def _gated_form(form_class, request, issues=None):
    """Return ``form_class`` checked by the gate as ``request.user``.

    ``issues`` returns the issues of the configuration the form changes
    (default: stacks.yaml's part; another app passes its file's check).
    """
    attrs = {"gate_user": request.user, "gate_request": request}
    if issues is not None:
        attrs["gate_issues"] = staticmethod(issues)
    return type(form_class.__name__, (GatedFormMixin, form_class), attrs)


class GatedAdminMixin:
    """Admin permissions and forms of the configuration, through the gate.

    ``gate_issues`` names the function returning the issues of the
    configuration the page changes (None: stacks.yaml's part).

    Changing or deleting a row needs Django's model permission and the
    Admin role on every environment the row is part of (a service's base
    definition: all of them); adding one needs the Admin role on every
    environment for rows that are part of all, and on the chosen one (the
    form checks it) for overrides.
    """

    gate_issues = None

    def _portal_admin(self, request, obj):
        if obj is None:
            scope = config_scope(self.model)
            if scope == "environment":
                # The form checks the environment chosen.
                return any(
                    user_can(request.user, "admin", env)
                    for env in Environment.objects.all()
                )
            if scope == "self":
                # A new environment: the Admin role on all of them.
                return user_can(request.user, "admin", None)
            obj = self.model
        try:
            require_admin(request.user, affected_environments(obj), what="it")
        except PermissionDenied:
            return False
        return True

    def has_add_permission(self, request, *args):
        return super().has_add_permission(request, *args) and self._portal_admin(
            request, None
        )

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._portal_admin(
            request, obj
        )

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self._portal_admin(
            request, obj
        )


class GatedModelAdmin(GatedAdminMixin, AuditedAdminMixin, admin.ModelAdmin):
    def get_form(self, request, obj=None, **kwargs):
        return _gated_form(
            super().get_form(request, obj, **kwargs), request, self.gate_issues
        )


class GatedInline(GatedAdminMixin):
    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.form = _gated_form(formset.form, request, self.gate_issues)
        return formset


class NetworkOverrideInline(GatedInline, admin.TabularInline):
    model = NetworkOverride
    extra = 0


@admin.register(Environment)
class EnvironmentAdmin(GatedModelAdmin):
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
    inlines = [NetworkOverrideInline]
    readonly_fields = ["service_overrides"]

    @admin.display(description="Service overrides")
    def service_overrides(self, obj):
        """List the environment's overrides, each linked to its own page.

        Each is edited there, where every common key has a field (a JSON box
        per service made this page thousands of pixels long).
        """
        if obj.pk is None:
            return "-"
        rows = format_html_join(
            "",
            '<tr><td><a href="{}">{}</a></td><td>{}</td></tr>',
            (
                (
                    reverse("admin:stacks_serviceoverride_change", args=[o.pk]),
                    o.service.name,
                    ", ".join(o.values or {}) or "-",
                )
                for o in obj.service_overrides.select_related("service").order_by(
                    "service__stack__order", "service__order", "service__name"
                )
            ),
        )
        add = reverse("admin:stacks_serviceoverride_add") + f"?environment={obj.pk}"
        return format_html(
            '<table class="portal-overrides"><thead><tr><th>Service</th>'
            "<th>Overrides</th></tr></thead><tbody>{}</tbody></table>"
            '<p><a class="addlink" href="{}">Add an override</a></p>',
            rows,
            add,
        )


class ServiceInline(GatedInline, admin.TabularInline):
    model = Service
    fields = ["name", "image", "gpu", "order"]
    extra = 0
    show_change_link = True


class VolumeInline(GatedInline, admin.TabularInline):
    model = Volume
    extra = 0


class NetworkInline(GatedInline, admin.TabularInline):
    model = Network
    extra = 0


@admin.register(Stack)
class StackAdmin(GatedModelAdmin):
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
class ServiceAdmin(GatedModelAdmin):
    form = ServiceForm
    list_display = ["name", "stack", "image", "gpu", "restart"]
    list_filter = ["stack", "gpu", "category"]
    search_fields = ["name", "image", "description"]
    filter_horizontal = ["depends_on"]
    fieldsets = [
        (None, {"fields": [("stack", "name"), ("description", "category"), "order"]}),
        ("Image and command", {"fields": ["image", "build", "command", "entrypoint"]}),
        ("Environment", {"fields": ["environment"]}),
        ("Ports and volumes", {"fields": ["ports", "volumes"]}),
        (
            "Healthcheck",
            {
                "fields": [
                    "healthcheck",
                    ("healthcheck_interval", "healthcheck_timeout"),
                    ("healthcheck_retries", "healthcheck_start_period"),
                    "healthcheck_template",
                ]
            },
        ),
        ("Dependencies", {"fields": ["depends_on"]}),
        (
            "Runtime",
            {"fields": [("restart", "user"), "shm_size", ("gpu", "gpu_count")]},
        ),
        (
            "Other Compose keys",
            {"fields": ["extra"], "classes": ["collapse"]},
        ),
    ]

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            # Read-only: the stored values, not the form's fields.
            return [(None, {"fields": ServiceForm.Meta.fields})]
        return super().get_fieldsets(request, obj)


@admin.register(Volume)
class VolumeAdmin(GatedModelAdmin):
    list_display = ["name", "stack", "data_type", "driver"]
    list_filter = ["stack", "data_type"]
    search_fields = ["name"]


@admin.register(Network)
class NetworkAdmin(GatedModelAdmin):
    list_display = ["name", "stack", "driver", "subnet", "gateway"]
    list_filter = ["stack"]
    search_fields = ["name", "subnet"]


@admin.register(ServiceOverride)
class ServiceOverrideAdmin(GatedModelAdmin):
    form = ServiceOverrideForm
    list_display = ["service", "environment", "keys"]
    list_filter = ["environment"]
    autocomplete_fields = ["service"]
    fieldsets = [
        (None, {"fields": [("environment", "service")]}),
        (
            "Overridden keys (empty: the service's own value)",
            {
                "fields": [
                    "image",
                    "command",
                    "environment_variables",
                    "ports",
                    "volumes",
                ]
            },
        ),
        (
            "Healthcheck",
            {
                "fields": [
                    "healthcheck",
                    ("healthcheck_interval", "healthcheck_timeout"),
                    ("healthcheck_retries", "healthcheck_start_period"),
                    "healthcheck_template",
                ]
            },
        ),
        ("Other keys", {"fields": ["values"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        if obj is not None and not self.has_change_permission(request, obj):
            # Read-only: the stored values, not the form's fields.
            return [(None, {"fields": ServiceOverrideForm.Meta.fields})]
        return super().get_fieldsets(request, obj)

    @admin.display(description="Overrides")
    def keys(self, obj):
        return ", ".join(obj.values or {}) or "-"


@admin.register(NetworkOverride)
class NetworkOverrideAdmin(GatedModelAdmin):
    list_display = ["network", "environment", "subnet", "gateway"]
    list_filter = ["environment"]


@admin.register(ConfigValue)
class ConfigValueAdmin(GatedModelAdmin):
    list_display = ["key", "value"]
    search_fields = ["key"]
