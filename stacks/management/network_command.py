"""What the four network commands share: one environment, or all of them.

    manage.py check_network_conflicts [--env E] [--strict]
    manage.py validate_networks [--env E]
    manage.py check_network_health [--env E]
    manage.py cleanup_networks [--env E] [--dry-run]

each with ``[--user U] [--enqueue [--wait]] [--no-queue]``. With ``--env``
the command runs one operation on that environment; without it one per
environment the acting user may run it in, in order, naming the
environments it left out. The exit status is non-zero when any operation
did not succeed (a conflict, a failed validation or probe, a network that
could not be removed), so cron and CI can act on it.
"""

from django.core.management.base import CommandError

from portal.choices import Verb
from portal.management.base import OperationCommand
from portal.operations import get_runner
from portal.permissions import user_can
from stacks.models import Environment

__all__ = ["NetworkCommand"]


class NetworkCommand(OperationCommand):
    """Base class: run one network operation kind per environment."""

    kind = ""

    def add_arguments(self, parser):
        parser.add_argument(
            "--env",
            help="Environment name or alias (default: every environment the "
            "user may run this in).",
        )
        self.add_user_argument(parser)
        self.add_run_arguments(parser)

    def parameters(self, options, environment, first_on_host):
        """Return the operation parameters for ``environment``."""
        return {}

    def handle(self, *args, **options):
        verb = get_runner(self.kind).verb
        if options.get("env"):
            environments = [self.get_environment(options["env"])]
        else:
            user = self.get_user(options)
            every = list(Environment.objects.all())
            environments = [e for e in every if user_can(user, verb, e)]
            left_out = [e.name for e in every if e not in environments]
            if left_out:
                self.stdout.write(
                    f"Not in this run ({user} may not {Verb(verb).label.lower()} "
                    "there): " + ", ".join(left_out)
                )
            if not environments:
                raise CommandError(
                    f"{user} may not {Verb(verb).label.lower()} in any environment. "
                    "Pass --user USERNAME (with make: PORTAL_USER=USERNAME)."
                )
        outcomes, hosts = [], set()
        for environment in environments:
            first_on_host = environment.docker_host not in hosts
            hosts.add(environment.docker_host)
            if len(environments) > 1:
                self.stdout.write(self.style.MIGRATE_HEADING(f"== {environment}"))
            try:
                operation = self.run_kind(
                    self.kind,
                    options,
                    environment=environment,
                    parameters=self.parameters(options, environment, first_on_host),
                )
            except CommandError as exc:
                if len(environments) == 1:
                    raise
                self.stderr.write(f"{environment}: {exc}")
                outcomes.append((environment.name, False, str(exc)))
                continue
            outcomes.append(
                (environment.name, True, f"operation {operation.pk} {operation.status}")
            )
        if len(environments) > 1:
            self.stdout.write(f"{self.kind} of {len(outcomes)} environment(s):")
            for name, ok, text in outcomes:
                self.stdout.write(f"  {name:<20} {'ok' if ok else 'FAILED':<6}  {text}")
            failed = [name for name, ok, _ in outcomes if not ok]
            if failed:
                raise CommandError(
                    f"{self.kind} did not succeed in {len(failed)} of "
                    f"{len(outcomes)} environment(s): {', '.join(failed)}."
                )
