"""Approve or reject an operation waiting for an approval.

    manage.py approve_operation ID --user U
    manage.py approve_operation ID --user U --reject --reason TEXT
    manage.py approve_operation --list [--user U]

The acting user must be an Approver (or Admin) of the operation's
environment and not its requester; the system user commands act as
without ``--user`` may request operations but never approve them. An
approval recomputes the plan first: a changed plan voids it.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import CommandError
from django.utils import timezone

from portal.management.base import OperationCommand
from portal.models import Operation
from portal.operations import (
    ApprovalRefused,
    approve_operation,
    reject_operation,
    waiting_for,
)


class Command(OperationCommand):
    help = (
        "Approve (or --reject with a --reason) an operation awaiting approval, or "
        "--list those you may decide on."
    )

    def add_arguments(self, parser):
        parser.add_argument("operation_id", nargs="?", help="Operation id (UUID).")
        parser.add_argument("--reject", action="store_true", help="Reject it.")
        parser.add_argument("--reason", default="", help="Why (required to reject).")
        parser.add_argument(
            "--list",
            action="store_true",
            help="List the operations waiting for an approval the user may give.",
        )
        self.add_user_argument(parser)

    def handle(self, *args, **options):
        user = self.get_user(options)
        if options["list"]:
            waiting = waiting_for(user)
            for operation in waiting:
                approval = operation.approval
                self.stdout.write(
                    f"{operation.pk}  {operation.kind} on {operation.target}  "
                    f"requested by {operation.requested_by or '-'}  expires "
                    f"{timezone.localtime(approval.expires):%Y-%m-%d %H:%M}  plan "
                    f"{approval.plan_hash[:12]}"
                )
            if not waiting:
                self.stdout.write(f"Nothing waits for an approval by {user}.")
            return
        if not options["operation_id"]:
            raise CommandError("Name the operation (its id), or --list.")
        try:
            operation = Operation.objects.select_related("environment").get(
                pk=options["operation_id"]
            )
        except (Operation.DoesNotExist, ValidationError):
            raise CommandError(f"No operation {options['operation_id']!r}.")
        try:
            if options["reject"]:
                operation = reject_operation(
                    operation, user=user, reason=options["reason"]
                )
                self.stdout.write(
                    f"Operation {operation.pk} rejected: {options['reason'].strip()}"
                )
                return
            operation = approve_operation(operation, user=user)
        except PermissionDenied as exc:
            raise self.refused(exc, options)
        except ApprovalRefused as exc:
            raise CommandError(str(exc))
        self.stdout.write(
            f"Operation {operation.pk} approved by {user}; queued on "
            f"{operation.queue_name}."
        )
