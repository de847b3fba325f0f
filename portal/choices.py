"""Enumerations shared across the portal."""

from django.db import models

__all__ = ["ROLE_VERBS", "Role", "Verb"]


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
