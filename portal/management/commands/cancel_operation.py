"""Cancel an operation.

    manage.py cancel_operation ID [--user U]

A queued operation is canceled at once and never runs; a running one stops
at its runner's next step.
"""

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import CommandError

from portal.management.base import OperationCommand
from portal.models import Operation
from portal.operations import cancel_operation


class Command(OperationCommand):
    help = "Cancel an operation (queued: never runs; running: stops between steps)."

    def add_arguments(self, parser):
        parser.add_argument("operation_id", help="Operation id (UUID).")
        self.add_user_argument(parser)

    def handle(self, *args, **options):
        user = self.get_user(options)
        try:
            operation = Operation.objects.select_related("environment").get(
                pk=options["operation_id"]
            )
        except (Operation.DoesNotExist, ValidationError):
            raise CommandError(f"No operation {options['operation_id']!r}.")
        if operation.is_terminal:
            raise CommandError(
                f"Operation {operation.pk} is already {operation.status}."
            )
        try:
            operation = cancel_operation(operation, user=user)
        except PermissionDenied as exc:
            raise self.refused(exc, options)
        if operation.is_terminal:
            self.stdout.write(f"Operation {operation.pk} {operation.status}.")
        else:
            self.stdout.write(
                f"Cancel requested; operation {operation.pk} stops at its next step."
            )
