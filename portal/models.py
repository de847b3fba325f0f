"""Models shared by every app: role assignments, operations, the audit log."""

import datetime
import hashlib
import json
import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from .choices import LogLevel, OperationStatus, Role

__all__ = [
    "AppendOnlyError",
    "Approval",
    "environment_model",
    "service_model",
    "stack_model",
    "AuditEntry",
    "AuditHead",
    "EnvironmentLock",
    "Operation",
    "OperationLogLine",
    "RoleAssignment",
]


class RoleAssignment(models.Model):
    """A role granted to a user or a group on one environment, or on all."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="portal_roles",
    )
    group = models.ForeignKey(
        "auth.Group",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="portal_roles",
    )
    environment = models.ForeignKey(
        "stacks.Environment",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="role_assignments",
        help_text="Empty: every environment.",
    )
    role = models.CharField(max_length=20, choices=Role.choices)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["environment__name", "role"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(user__isnull=False, group__isnull=True)
                    | models.Q(user__isnull=True, group__isnull=False)
                ),
                name="portal_roleassignment_user_xor_group",
            ),
        ]

    def __str__(self):
        who = self.user or self.group
        where = self.environment or "all environments"
        return f"{who}: {self.get_role_display()} on {where}"


class Operation(models.Model):
    """One requested piece of work on an environment: who, what, when, how.

    The primary key is also the RQ job id. Mutating operations hold the lock
    of their (environment, stack) while they run; the line they wait in is
    ordered by ``ticket`` (see ``portal.operations``).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    kind = models.CharField(max_length=100, db_index=True)
    environment = models.ForeignKey(
        "stacks.Environment", on_delete=models.PROTECT, related_name="operations"
    )
    stack = models.ForeignKey(
        "stacks.Stack",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="operations",
        help_text="Empty: the whole environment.",
    )
    service = models.ForeignKey(
        "stacks.Service",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="operations",
    )
    parameters = models.JSONField(default=dict, blank=True)
    plan = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=20,
        choices=OperationStatus.choices,
        default=OperationStatus.PENDING,
        db_index=True,
    )
    mutating = models.BooleanField(
        default=True, help_text="Holds the (environment, stack) lock while it runs."
    )
    ticket = models.BigIntegerField(
        null=True,
        blank=True,
        editable=False,
        help_text="Place in the environment's line; lower runs first.",
    )
    inline = models.BooleanField(
        default=False, help_text="Run by the requesting process, not a worker."
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="requested_operations",
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="approved_operations",
    )
    canceled_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="canceled_operations",
    )
    created = models.DateTimeField(default=timezone.now, db_index=True)
    enqueued = models.DateTimeField(null=True, blank=True)
    dispatched = models.DateTimeField(
        null=True, blank=True, help_text="When it was handed to an RQ queue."
    )
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    heartbeat = models.DateTimeField(
        null=True, blank=True, help_text="Last sign of life of the process running it."
    )
    queue_name = models.CharField(max_length=100, blank=True)
    worker_name = models.CharField(max_length=200, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    progress_message = models.CharField(max_length=200, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    last_seq = models.PositiveIntegerField(
        default=0, help_text="Sequence number of the last saved log line."
    )

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(
                fields=["environment", "status", "ticket"],
                name="portal_op_env_status_ticket",
            ),
        ]

    def __str__(self):
        return f"{self.kind} {self.target} ({str(self.pk)[:8]})"

    def get_absolute_url(self):
        return reverse("portal:operation_detail", args=[self.pk])

    @property
    def target(self):
        """Return ``env/stack[/service]``, with ``*`` for the whole environment."""
        parts = [self.environment.name, self.stack.name if self.stack else "*"]
        if self.service_id:
            parts.append(self.service.name)
        return "/".join(parts)

    @property
    def group_name(self):
        """Return the Channels group its log lines and status go to."""
        return f"operation.{self.pk}"

    @property
    def is_active(self):
        return self.status in OperationStatus.ACTIVE

    @property
    def is_terminal(self):
        return self.status in OperationStatus.TERMINAL

    @property
    def queue_wait(self):
        """Return how long it waited to start (so far, if still waiting)."""
        if self.enqueued is None:
            return None
        if self.started is not None:
            return self.started - self.enqueued
        if self.status in (OperationStatus.PENDING, OperationStatus.QUEUED):
            return timezone.now() - self.enqueued
        return None

    @property
    def duration(self):
        """Return how long it ran (so far, if still running)."""
        if self.started is None:
            return None
        return (self.finished or timezone.now()) - self.started

    @property
    def queue_wait_text(self):
        return format_duration(self.queue_wait)

    @property
    def duration_text(self):
        return format_duration(self.duration)

    def status_event(self):
        """Return the ``operation.status`` event describing this operation.

        A terminal event also carries the result; its ``last_seq`` tells a
        client whether it has every line.
        """
        event = {
            "type": "operation.status",
            "status": self.status,
            "progress": self.progress,
            "progress_message": self.progress_message,
            "last_seq": self.last_seq,
            "error": self.error,
            "cancel_requested": self.cancel_requested,
            "started": self.started.isoformat() if self.started else None,
            "finished": self.finished.isoformat() if self.finished else None,
        }
        if self.is_terminal:
            event["result"] = self.result
        return event


def format_duration(delta):
    """Return a timedelta as ``850 ms``, ``12.3 s``, ``4 min 05 s``, ``2 h 03 min``."""
    if delta is None:
        return ""
    seconds = max(0.0, delta.total_seconds())
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class OperationLogLine(models.Model):
    """One line of an operation's log, saved before it is broadcast."""

    operation = models.ForeignKey(
        Operation, on_delete=models.CASCADE, related_name="lines"
    )
    seq = models.PositiveIntegerField()
    created = models.DateTimeField(default=timezone.now)
    level = models.CharField(
        max_length=10, choices=LogLevel.choices, default=LogLevel.INFO
    )
    text = models.TextField()

    class Meta:
        ordering = ["operation", "seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["operation", "seq"], name="portal_operationlogline_unique_seq"
            )
        ]

    def __str__(self):
        return f"{self.seq}: {self.text[:80]}"

    def as_event(self):
        """Return the line as it travels over Channels and the WebSocket."""
        return {
            "seq": self.seq,
            "level": self.level,
            "text": self.text,
            "created": self.created.isoformat(),
        }


class EnvironmentLock(models.Model):
    """The row every lock decision of one environment's operations goes through.

    Requesting, starting, finishing, canceling and reaping an operation all
    begin their transaction by incrementing ``tickets`` here. That first
    write serializes them per environment (a row lock on PostgreSQL, the
    database write lock on SQLite), and the new value is the ticket that
    orders the environment's line.
    """

    environment = models.OneToOneField(
        "stacks.Environment",
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="operation_lock",
    )
    tickets = models.BigIntegerField(default=0)
    updated = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"lock of {self.environment}"


class AppendOnlyError(Exception):
    """An audit entry was about to be changed or deleted."""


class AuditHead(models.Model):
    """The single row every append to the audit log goes through.

    :func:`portal.audit.record` begins by incrementing ``last_id``: that
    write serializes appenders (a row lock on PostgreSQL, the database write
    lock on SQLite), so two writers can never chain onto the same entry.
    The new value is the id of the entry being appended, which keeps the
    ids gapless even where a rolled-back insert would burn a sequence
    value. ``hash`` is the hash of the last entry, so deleting the newest
    entries is detected as well.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    last_id = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, blank=True)

    def __str__(self):
        return f"audit head {self.last_id} {self.hash[:12]}"


class AuditEntry(models.Model):
    """One entry of the append-only, hash-chained audit log.

    ``hash`` is the SHA-256 of :meth:`canonical` (every field but ``hash``
    and the ``actor`` link, including ``prev_hash``, the hash of the entry
    before). Entries are written only by :func:`portal.audit.record`;
    saving an existing entry or deleting one raises. A queryset
    ``update()`` or ``delete()`` bypasses that, and
    :func:`portal.audit.verify_chain` reports it.
    """

    id = models.BigAutoField(primary_key=True)
    created = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="audit_entries",
        help_text="Empty for the system, or when the user was deleted.",
    )
    actor_name = models.CharField(
        max_length=150, help_text="Username when written; kept if the user goes."
    )
    action = models.CharField(max_length=50, db_index=True)
    object_type = models.CharField(
        max_length=100, blank=True, help_text="app_label.model"
    )
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    environment_name = models.CharField(max_length=40, blank=True, db_index=True)
    data = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "audit entries"
        indexes = [
            models.Index(
                fields=["object_type", "object_id"], name="portal_audit_object"
            ),
        ]

    def __str__(self):
        return f"#{self.pk} {self.action} {self.object_repr}".rstrip()

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError(
                f"Audit entry {self.pk} is append-only; not saving it."
            )
        super().save(*args, **kwargs)

    save.alters_data = True

    def delete(self, *args, **kwargs):
        raise AppendOnlyError(f"Audit entry {self.pk} is append-only; not deleting it.")

    delete.alters_data = True

    def canonical(self):
        """Return the bytes the hash covers: canonical JSON of the entry.

        Keys sorted, no whitespace, non-ASCII as ``\\uXXXX`` escapes,
        ``created`` as UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``, whole floats in
        ``data`` as integers (PostgreSQL's jsonb reads ``1e+20`` back as an
        integer). The ``actor`` link is left out: deleting a user sets it to
        NULL, and ``actor_name`` keeps who it was.
        """
        created = self.created.astimezone(datetime.UTC)
        payload = {
            "id": self.pk,
            "created": created.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "actor_name": self.actor_name,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_repr": self.object_repr,
            "environment_name": self.environment_name,
            "data": _whole_floats_as_ints(self.data),
            "prev_hash": self.prev_hash,
        }
        return json.dumps(
            payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True
        ).encode()

    def compute_hash(self):
        """Return the SHA-256 hex digest of :meth:`canonical`."""
        return hashlib.sha256(self.canonical()).hexdigest()


def _whole_floats_as_ints(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_floats_as_ints(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_floats_as_ints(v) for v in value]
    return value


# The core names the models of environments, stacks and services only in
# the relations of Operation and RoleAssignment ("stacks.Environment"); code
# that needs the classes asks the relations, so no module of the core
# imports the app that defines them.


def environment_model():
    """Return the model of environments (what an Operation runs in)."""
    return Operation._meta.get_field("environment").related_model


def stack_model():
    """Return the model of stacks (what an Operation may target)."""
    return Operation._meta.get_field("stack").related_model


def service_model():
    """Return the model of services (what an Operation may target)."""
    return Operation._meta.get_field("service").related_model


class Approval(models.Model):
    """The approval an operation in a protected environment waits for.

    Bound to the plan it was requested with (``plan_hash``): an approval is
    only given to that plan, and a changed plan voids it. It expires at
    ``expires``; a decision is made once.
    """

    class Status(models.TextChoices):
        WAITING = "waiting", "Waiting"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired"
        VOIDED = "voided", "Voided (the plan changed)"

    operation = models.OneToOneField(
        Operation, on_delete=models.CASCADE, related_name="approval"
    )
    plan_hash = models.CharField(max_length=64)
    status = models.CharField(
        max_length=20, choices=Status.choices, default=Status.WAITING, db_index=True
    )
    requested = models.DateTimeField(default=timezone.now)
    expires = models.DateTimeField(db_index=True)
    decided = models.DateTimeField(null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Kept when the user is deleted.
    decided_by_name = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)
    notified = models.TextField(
        blank=True, help_text="Who was notified of the request, and how it went."
    )

    class Meta:
        ordering = ["-requested"]

    def __str__(self):
        return f"approval of {self.operation} ({self.status})"

    @property
    def is_waiting(self):
        return self.status == self.Status.WAITING
