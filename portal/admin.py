"""Admin pages of the portal app: role grants, operations, the audit log.

Role grants and operations ask :func:`portal.permissions.user_can` on top
of Django's model permissions: a staff user sees the operations of the
environments they may view and cancels only where they may cancel; role
grants are managed by users holding the Admin role on the environment
(grants on every environment, by superusers only).

Every change made here is recorded in the audit log
(:class:`portal.audit.AuditedAdminMixin`): role grants as ``role.granted``,
``role.changed`` and ``role.revoked``. Users and groups get the same
treatment, since ``is_superuser`` and group membership are grants too. The
audit log itself is read-only for everyone.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.db import router, transaction
from django.utils.html import format_html, format_html_join

from .audit import AuditedAdminMixin, record
from .choices import OperationStatus, Verb
from .models import AuditEntry, Operation, RoleAssignment, environment_model
from .operations import (
    ApprovalRefused,
    approve_operation,
    cancel_operation,
    reject_operation,
)
from .permissions import user_can, visible_environments
from .redaction import REDACTED

# Characters of an entry's data shown in the list.
SUMMARY_CHARS = 140


def summarize(data):
    """Return a mapping as ``key=value`` pairs, cut to SUMMARY_CHARS.

    Nested values are shown as compact JSON; the plan of a requested
    operation is left out (its digest is in the entry).
    """
    parts = []
    for key, value in (data or {}).items():
        if key in ("plan", "plan_sha256") or value in (None, "", [], {}):
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        parts.append(f"{key}={value}")
    text = " ".join(parts)
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def _admin_environments(user):
    """Return the environments on which ``user`` may administer roles."""
    Environment = environment_model()
    if user.is_superuser:
        return Environment.objects.all()
    return Environment.objects.filter(
        pk__in=[
            env.pk
            for env in visible_environments(user)
            if user_can(user, Verb.ADMIN, env)
        ]
    )


class ReadOnlyAdmin(admin.ModelAdmin):
    """An admin that shows rows and never adds, changes or deletes one: the
    records the portal writes itself (audit entries, backup records, drills,
    cleanups)."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(RoleAssignment)
class RoleAssignmentAdmin(AuditedAdminMixin, admin.ModelAdmin):
    audit_actions = {
        "created": "role.granted",
        "changed": "role.changed",
        "deleted": "role.revoked",
    }
    list_display = ["__str__", "user", "group", "environment", "role", "created"]
    list_filter = ["role", "environment"]
    search_fields = ["user__username", "group__name"]
    autocomplete_fields = ["user", "group"]

    def get_queryset(self, request):
        queryset = (
            super().get_queryset(request).select_related("user", "group", "environment")
        )
        if request.user.is_superuser:
            return queryset
        return queryset.filter(environment__in=_admin_environments(request.user))

    def _may_administer(self, request, obj=None):
        if request.user.is_superuser:
            return True
        if obj is None:
            return _admin_environments(request.user).exists()
        return obj.environment_id is not None and user_can(
            request.user, Verb.ADMIN, obj.environment
        )

    def has_module_permission(self, request):
        return (
            request.user.is_active
            and request.user.is_staff
            and self._may_administer(request)
        )

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request) and self._may_administer(
            request, obj
        )

    has_add_permission = has_module_permission

    def has_change_permission(self, request, obj=None):
        return self.has_view_permission(request, obj)

    has_delete_permission = has_change_permission

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "environment" and not request.user.is_superuser:
            kwargs["queryset"] = _admin_environments(request.user)
            kwargs["required"] = True
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if not request.user.is_superuser and (
            obj.environment is None
            or not user_can(request.user, Verb.ADMIN, obj.environment)
        ):
            raise PermissionDenied(
                "Only an Admin of the environment may grant roles in it."
            )
        super().save_model(request, obj, form, change)


class OperationStatusFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "active"), ("terminal", "finished")]

    def queryset(self, request, queryset):
        if self.value() == "active":
            return queryset.filter(status__in=OperationStatus.ACTIVE)
        if self.value() == "terminal":
            return queryset.filter(status__in=OperationStatus.TERMINAL)
        return queryset


class DecisionActionForm(ActionForm):
    """The action bar of operations, with a reason for a rejection."""

    reason = forms.CharField(
        required=False, label="Reason (to reject)", max_length=2000
    )


@admin.register(Operation)
class OperationAdmin(AuditedAdminMixin, admin.ModelAdmin):
    """Read-only history of operations, with cancel, approve and reject
    actions (the same rules as everywhere)."""

    action_form = DecisionActionForm

    list_display = [
        "short_id",
        "kind",
        "environment",
        "stack",
        "status",
        "progress",
        "queue_wait_text",
        "requested_by",
        "created",
    ]
    list_filter = [OperationStatusFilter, "status", "kind", "environment", "queue_name"]
    search_fields = ["id", "kind", "error", "requested_by__username"]
    date_hierarchy = "created"
    actions = ["cancel_selected", "approve_selected", "reject_selected"]
    list_select_related = ["environment", "stack", "requested_by"]
    readonly_fields = ["log_tail"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(environment__in=visible_environments(request.user))

    def has_module_permission(self, request):
        return (
            request.user.is_active
            and request.user.is_staff
            and (visible_environments(request.user).exists())
        )

    def has_view_permission(self, request, obj=None):
        if not self.has_module_permission(request):
            return False
        return obj is None or user_can(request.user, Verb.VIEW, obj.environment)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # The history is the audit trail.
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.fields] + ["log_tail"]

    @admin.display(description="id", ordering="id")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    @admin.display(description="queue wait")
    def queue_wait_text(self, obj):
        return obj.queue_wait_text

    @admin.display(description="last lines")
    def log_tail(self, obj):
        lines = list(obj.lines.order_by("-seq")[:50])[::-1]
        if not lines:
            return "-"
        return format_html(
            '<pre style="max-height:24rem;overflow:auto">{}</pre>'
            '<a href="{}">full log</a>',
            format_html_join(
                "\n", "{} {} {}", ((ln.seq, ln.level, ln.text) for ln in lines)
            ),
            obj.get_absolute_url(),
        )

    @admin.action(description="Cancel selected operations")
    def cancel_selected(self, request, queryset):
        done, refused = 0, []
        for operation in queryset.select_related("environment").filter(
            status__in=OperationStatus.ACTIVE
        ):
            try:
                cancel_operation(operation, user=request.user)
                done += 1
            except PermissionDenied:
                refused.append(str(operation.pk)[:8])
        if done:
            self.message_user(request, f"Cancel requested for {done} operation(s).")
        if refused:
            self.message_user(
                request,
                f"Not allowed to cancel: {', '.join(refused)}.",
                level=messages.ERROR,
            )

    @admin.action(description="Approve selected operations (awaiting approval)")
    def approve_selected(self, request, queryset):
        self._decide(request, queryset, approve_operation)

    @admin.action(description="Reject selected operations (with the reason typed)")
    def reject_selected(self, request, queryset):
        """Reject with the reason typed beside the action."""
        reason = request.POST.get("reason", "")
        self._decide(
            request,
            queryset,
            lambda operation, user: reject_operation(
                operation, user=user, reason=reason
            ),
        )

    def _decide(self, request, queryset, decide):
        done, refused = [], []
        for operation in queryset.select_related("environment"):
            try:
                decide(operation, user=request.user)
                done.append(str(operation.pk)[:8])
            except (PermissionDenied, ApprovalRefused) as exc:
                refused.append(f"{str(operation.pk)[:8]}: {exc}")
        if done:
            self.message_user(request, f"Decided: {', '.join(done)}.")
        for text in refused:
            self.message_user(request, text, level=messages.ERROR)


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    """The audit log, read-only: nobody adds, changes or deletes an entry."""

    list_display = [
        "id",
        "when",
        "action",
        "actor_name",
        "environment_name",
        "object_repr",
        "summary",
    ]
    list_display_links = ["id", "when"]
    list_filter = ["action", "environment_name", "object_type"]
    search_fields = ["object_repr", "actor_name"]
    date_hierarchy = "created"
    fields = [
        "id",
        "created",
        "action",
        "actor",
        "actor_name",
        "environment_name",
        "object_type",
        "object_id",
        "object_repr",
        "details",
        "prev_hash",
        "hash",
    ]
    readonly_fields = fields
    list_select_related = ["actor"]

    @admin.display(description="created", ordering="created")
    def when(self, obj):
        return obj.created.strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description="details")
    def summary(self, obj):
        """Return the entry's data in one short line (the page has it all)."""
        return summarize(obj.data)

    @admin.display(description="details")
    def details(self, obj):
        return format_html(
            '<pre style="white-space:pre-wrap">{}</pre>',
            json.dumps(obj.data, indent=2, sort_keys=True, ensure_ascii=False),
        )


# Superuser and staff flags, permissions and group membership are grants
# as much as a RoleAssignment is: audit their admin pages too.
User = get_user_model()


class AuditedUserAdmin(AuditedAdminMixin, UserAdmin):
    def user_change_password(self, request, id, form_url=""):
        # The password page saves the form itself, outside save_model.
        with transaction.atomic(using=router.db_for_write(self.model)):
            users = self.model._base_manager.filter(pk=unquote(id))
            before = users.values_list("password", flat=True).first()
            response = super().user_change_password(request, id, form_url)
            user = users.first()
            if request.method == "POST" and user and user.password != before:
                record(
                    self.audit_actions["changed"],
                    actor=request.user,
                    obj=user,
                    data={"changes": {"password": [REDACTED, REDACTED]}},
                )
        return response


class AuditedGroupAdmin(AuditedAdminMixin, GroupAdmin):
    pass


for _model, _stock, _audited in (
    (User, UserAdmin, AuditedUserAdmin),
    (Group, GroupAdmin, AuditedGroupAdmin),
):
    # Replace only Django's own pages; a project-specific one should add
    # the mixin itself.
    if admin.site.is_registered(_model) and (
        type(admin.site.get_model_admin(_model)) is _stock
    ):
        admin.site.unregister(_model)
        admin.site.register(_model, _audited)


# The admin is part of the site: its name, the way back to the pages, and
# the page's width for the change lists (the app sidebar took a fifth).
admin.site.site_header = "Stack Portal admin"
admin.site.site_title = "Stack Portal admin"
admin.site.index_title = "Configuration, roles and records"
admin.site.site_url = "/"
admin.site.enable_nav_sidebar = False
