"""Fail operations whose worker died, as abandoned, and release their locks.

    manage.py reap_operations [--user U] [--dry-run]

Workers run the same reaper every few seconds; this command is for cron or
for a host without a worker. Only environments where the user may cancel
operations are reaped.
"""

from portal.choices import Verb
from portal.management.base import OperationCommand
from portal.models import environment_model
from portal.operations import reap_operations
from portal.permissions import user_can


class Command(OperationCommand):
    help = "Fail abandoned operations (worker gone, no heartbeat) and release locks."

    def add_arguments(self, parser):
        self.add_user_argument(parser)
        parser.add_argument(
            "--dry-run", action="store_true", help="Report, change nothing."
        )

    def handle(self, *args, **options):
        user = self.get_user(options)
        allowed = [
            env
            for env in environment_model().objects.all()
            if user_can(user, Verb.CANCEL, env)
        ]
        found = reap_operations(dry_run=options["dry_run"], environments=allowed)
        verb = "Would fail" if options["dry_run"] else "Failed"
        for operation, reason in found:
            what = f"{operation.kind} on {operation.target}"
            self.stdout.write(f"{verb} {operation.pk} ({what}): {reason}")
        self.stdout.write(f"{len(found)} abandoned operation(s).")
