"""Run an operation of any registered kind, here or on a worker.

manage.py run_operation KIND --env E [--stack S] [--service X]
    [--param k=v ...] [--user U] [--enqueue [--wait]] [--no-queue]
"""

from django.core.management.base import CommandError

from portal.management.base import OperationCommand
from portal.models import service_model, stack_model
from portal.operations import UnknownOperationKind, get_runner, registered_kinds


class Command(OperationCommand):
    help = "Run an operation through its runner (inline by default)."

    def add_arguments(self, parser):
        parser.add_argument("kind", help="Operation kind, e.g. host.check.")
        parser.add_argument("--env", required=True, help="Environment name or alias.")
        parser.add_argument("--stack", help="Stack name (default: whole environment).")
        parser.add_argument("--service", help="Service name.")
        parser.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="Parameter for the runner; repeat for more.",
        )
        self.add_user_argument(parser)
        self.add_run_arguments(parser)

    def handle(self, *args, **options):
        Stack, Service = stack_model(), service_model()
        try:
            get_runner(options["kind"])
        except UnknownOperationKind:
            raise CommandError(
                f"No operation kind {options['kind']!r}; known: "
                f"{', '.join(registered_kinds())}."
            )
        environment = self.get_environment(options["env"])
        stack = service = None
        if options["stack"]:
            try:
                stack = Stack.objects.get(name=options["stack"])
            except Stack.DoesNotExist:
                raise CommandError(f"No stack {options['stack']!r}.")
        if options["service"]:
            try:
                service = Service.objects.select_related("stack").get(
                    name=options["service"]
                )
            except Service.DoesNotExist:
                raise CommandError(f"No service {options['service']!r}.")
        self.run_kind(
            options["kind"],
            options,
            environment=environment,
            stack=stack,
            service=service,
            parameters=parse_params(options["param"]),
        )


def parse_params(pairs):
    """Return ``["k=v", ...]`` as a dict; values stay strings."""
    parameters = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CommandError(f"--param wants KEY=VALUE, not {pair!r}.")
        parameters[key] = value
    return parameters
