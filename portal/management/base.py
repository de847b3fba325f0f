"""What the portal's commands share: a ready database, the acting user, runs.

Every command of the project is a :class:`PortalCommand`: before it does
anything it checks that the database exists and is migrated, and otherwise
exits with a message saying what to run (see :mod:`.database`).

Every operation command acts as a user: ``--user USERNAME``, or the system
user when none is given (``PORTAL_OPERATIONS["SYSTEM_USER"]``,
``settings.PORTAL_SYSTEM_USER``, the ``PORTAL_SYSTEM_USER`` environment
variable, else ``portal-system``, which ``bootstrap_demo`` creates with the
Operator role on the demo environment only). The user's roles are checked
with ``portal.permissions.user_can`` exactly as for a browser; a refusal of
the system user says to name a user instead.

By default an operation runs in the command's own process through the same
runner as a worker (Operation row, lock, log lines), printing its log as it
goes; ``--enqueue`` hands it to a worker, and ``--wait`` follows its log
lines from the database until it finishes. The command exits non-zero when
the operation does not succeed.
"""

import json

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from portal.choices import OperationStatus
from portal.models import environment_model
from portal.operations import (
    OperationConflict,
    follow_operation,
    get_config,
    request_operation,
    run_inline,
)

from .database import database_problem

__all__ = ["OperationCommand", "PortalCommand", "format_line", "size", "table"]

PASS_USER = "Pass --user USERNAME (with make: PORTAL_USER=USERNAME)"


def size(value):
    """Return a byte count as ``1.2 MB`` (``-`` when unknown)."""
    return "-" if value is None else filesizeformat(value).replace("\xa0", " ")


def table(rows):
    """Return ``rows`` (tuples of text, a header first) as aligned lines."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(width) for cell, width in zip(row, widths, strict=True)
        ).rstrip()
        for row in rows
    ]


def format_line(seq, level, text, created):
    """Return a log line as commands print it."""
    return f"{created:%H:%M:%S} {level.upper():<7} {text}"


class PortalCommand(BaseCommand):
    """Base class of every command of the project.

    Refuse to run, with what to run instead, while the database does not
    exist or misses migrations. A command that creates the database itself
    sets ``requires_database = False``.
    """

    requires_database = True

    def execute(self, *args, **options):
        # Before Django's own checks and handle(): both may touch tables.
        if self.requires_database:
            problem = database_problem()
            if problem:
                raise CommandError(problem)
        return super().execute(*args, **options)


class OperationCommand(PortalCommand):
    """Base class of commands that request, run or act on operations."""

    def add_user_argument(self, parser):
        parser.add_argument(
            "--user",
            help="Username to act as (default: the system user, portal-system "
            "unless PORTAL_SYSTEM_USER names another).",
        )

    def add_run_arguments(self, parser):
        """Add ``--enqueue``, ``--wait`` and ``--no-queue``."""
        parser.add_argument(
            "--enqueue",
            action="store_true",
            help="Hand the operation to a worker instead of running it here.",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="With --enqueue: follow the log until the operation finishes.",
        )
        parser.add_argument(
            "--no-queue",
            action="store_true",
            help="Refuse instead of waiting when the stack is busy.",
        )

    def get_user(self, options):
        """Return the acting user, or raise CommandError.

        That is the ``--user`` given, else the system user (see
        ``portal.operations.get_config``).
        """
        User = get_user_model()
        username = options.get("user")
        if not username:
            username = get_config()["SYSTEM_USER"]
            user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
            if user is None or not user.is_active:
                state = "does not exist" if user is None else "is inactive"
                raise CommandError(
                    f"No --user given, and the system user {username!r} that "
                    f"commands then act as {state} (scripts/demo.sh creates it, "
                    f"as Operator of the demo environment). {PASS_USER}, or set "
                    "PORTAL_SYSTEM_USER to an active user."
                )
            return user
        try:
            user = User.objects.get(**{User.USERNAME_FIELD: username})
        except User.DoesNotExist:
            raise CommandError(f"No user {username!r}.")
        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive.")
        return user

    def refused(self, exc, options):
        """Return the CommandError for the PermissionDenied ``exc``.

        When the system user was refused because no ``--user`` was given,
        say so and how to act as someone with a role there.
        """
        if options.get("user"):
            return CommandError(str(exc))
        return CommandError(
            f"{exc} No --user was given, so the command acted as the system "
            f"user {get_config()['SYSTEM_USER']!r}. {PASS_USER} to act as a "
            "user with a role there."
        )

    def get_environment(self, name):
        """Return the environment called or aliased ``name``."""
        Environment = environment_model()
        try:
            return Environment.lookup(name)
        except Environment.DoesNotExist:
            raise CommandError(f"No environment {name!r}.")

    def print_line(self, seq, level, text, created):
        self.stdout.write(format_line(seq, level, text, created))
        self.stdout.flush()

    def run_kind(
        self,
        kind,
        options,
        *,
        environment,
        stack=None,
        service=None,
        parameters=None,
        confirm=None,
    ):
        """Request ``kind`` and run, enqueue or follow it as ``options`` say.

        Return the operation; raise CommandError unless it succeeded (or was
        only enqueued, or waits for an approval), and when it cannot be
        requested (no permission, the stack busy with ``--no-queue``, a plan
        that cannot be computed, a mistyped confirmation).
        """
        user = self.get_user(options)
        enqueue = options.get("enqueue", False)
        try:
            operation = request_operation(
                kind,
                user=user,
                environment=environment,
                stack=stack,
                service=service,
                parameters=parameters,
                wait=not options.get("no_queue", False),
                enqueue=enqueue,
                confirm=confirm,
            )
        except PermissionDenied as exc:
            raise self.refused(exc, options)
        # A runner raises PlanError (a ValueError) for a request it cannot
        # plan (an unset port variable, a bad subnet); nothing exists yet.
        except (OperationConflict, ValueError) as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"Operation {operation.pk}: {kind} on {operation.target}")
        if operation.plan:
            self.stdout.write(f"Plan: {json.dumps(operation.plan, sort_keys=True)}")
        if operation.status == OperationStatus.AWAITING_APPROVAL:
            approval = operation.approval
            self.stdout.write(
                f"Awaiting approval: {environment.name} is protected; another "
                f"Approver of it must approve (manage.py approve_operation "
                f"{operation.pk} --user <approver>, or the approvals page) before "
                f"{timezone.localtime(approval.expires):%Y-%m-%d %H:%M}. Plan "
                f"SHA-256 {approval.plan_hash[:12]}. It then runs on a worker of "
                f"{operation.queue_name}."
            )
            return operation
        if enqueue:
            self.stdout.write(f"Queued on {operation.queue_name}.")
            if not options.get("wait"):
                return operation
            operation = follow_operation(
                operation,
                lambda line: self.print_line(
                    line.seq, line.level, line.text, line.created
                ),
            )
        else:
            operation = run_inline(
                operation,
                echo=self.print_line,
                on_wait=lambda blocker: self.stdout.write(
                    f"Waiting for operation {blocker.pk} ({blocker.kind}, "
                    f"{blocker.status}) on {blocker.target}…"
                ),
            )
        return self.report(operation)

    def report(self, operation):
        """Print how ``operation`` ended; raise CommandError unless it succeeded."""
        if operation.result:
            self.stdout.write(f"Result: {json.dumps(operation.result, sort_keys=True)}")
        if operation.status != OperationStatus.SUCCEEDED:
            lines = (operation.error or "").strip().splitlines()
            reason = lines[-1] if lines else "no reason recorded"
            raise CommandError(f"Operation {operation.pk} {operation.status}: {reason}")
        self.stdout.write(self.style.SUCCESS(f"Operation {operation.pk} succeeded."))
        return operation
