"""Enumerations shared across the portal."""

from django.db import models

__all__ = ["ROLE_VERBS", "LogLevel", "OperationStatus", "Role", "Verb"]


class Role(models.TextChoices):
    """Roles granted per environment, from least to most privileged."""

    VIEWER = "viewer", "Viewer"
    OPERATOR = "operator", "Operator"
    APPROVER = "approver", "Approver"
    ADMIN = "admin", "Admin"


class Verb(models.TextChoices):
    """What a user may ask to do on an environment."""

    VIEW = "view", "View"
    START = "start", "Start"
    STOP = "stop", "Stop"
    RESTART = "restart", "Restart"
    CHECK = "check", "Run checks"
    BACKUP = "backup", "Back up"
    DRY_RUN = "dry_run", "Dry run"
    WIPE = "wipe", "Wipe"
    RESTORE = "restore", "Restore"
    CLEANUP = "cleanup", "Clean up"
    CANCEL = "cancel", "Cancel"
    APPROVE = "approve", "Approve"
    ADMIN = "admin", "Administer"


_OPERATE = {
    Verb.VIEW,
    Verb.START,
    Verb.STOP,
    Verb.RESTART,
    Verb.CHECK,
    Verb.BACKUP,
    Verb.DRY_RUN,
    Verb.WIPE,
    Verb.RESTORE,
    Verb.CLEANUP,
    Verb.CANCEL,
}

# Destructive verbs (wipe, restore, cleanup) are requested by operators; in a
# protected environment they additionally need an approver's approval, which
# is the approvals flow's concern, not this table's.
ROLE_VERBS = {
    Role.VIEWER: frozenset({Verb.VIEW}),
    Role.OPERATOR: frozenset(_OPERATE),
    Role.APPROVER: frozenset({Verb.VIEW, Verb.APPROVE}),
    Role.ADMIN: frozenset(Verb),
}


class OperationStatus(models.TextChoices):
    """Where an operation is in its life.

    *failed* means the work ran and did not succeed (including an operation
    whose worker died: it is failed as abandoned); *errored* means it could
    not run (a bug, a crash in the runner), as AWX keeps them apart.
    """

    PENDING = "pending", "Pending"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    ERRORED = "errored", "Errored"
    CANCELED = "canceled", "Canceled"


# Named groups (NetBox core/choices.py style). An ACTIVE operation may still
# change; a TERMINAL one never does.
OperationStatus.ACTIVE = (
    OperationStatus.PENDING,
    OperationStatus.AWAITING_APPROVAL,
    OperationStatus.QUEUED,
    OperationStatus.RUNNING,
)
OperationStatus.TERMINAL = (
    OperationStatus.SUCCEEDED,
    OperationStatus.FAILED,
    OperationStatus.ERRORED,
    OperationStatus.CANCELED,
)
# The statuses that hold, or wait in line for, an (environment, stack) lock.
OperationStatus.IN_LINE = (
    OperationStatus.PENDING,
    OperationStatus.QUEUED,
    OperationStatus.RUNNING,
)


class LogLevel(models.TextChoices):
    """Level of an operation's log line (the stdlib logging names)."""

    DEBUG = "debug", "Debug"
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
