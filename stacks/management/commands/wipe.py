"""Wipe a stack, a data type or a whole environment, plan first.

    manage.py wipe stack <stack> --env E [--confirm E/STACK] [--dry-run]
    manage.py wipe data <type> --env E [--confirm E/TYPE] [--dry-run]
    manage.py wipe environment --env E [--confirm E/all] [--dry-run]
        [--user U] [--enqueue [--wait]] [--no-queue]

Without ``--confirm`` (or with ``--dry-run``) the plan is shown, nothing is
changed, and the command says what to type. A protected environment's
wipe waits for the approval of another Approver (``approve_operation``),
then runs on a worker; it also needs a fresh verified backup of what it
destroys. The make targets ``wipe-<stack>`` (``wipe-testing-stack`` for
the testing stack), ``wipe-db|cache|models|logs|test-results`` and
``wipe-dev|staging|prod|testing`` call this.
"""

from django.core.exceptions import PermissionDenied
from django.core.management.base import CommandError

from portal.management.base import OperationCommand
from portal.operations import INFO_KEY, PlanError, get_runner
from portal.permissions import require
from stacks.choices import DataType
from stacks.models import Stack

KINDS = {"stack": "wipe.stack", "data": "wipe.data", "environment": "wipe.environment"}


class Command(OperationCommand):
    help = (
        "Wipe a stack (containers, volumes, networks), a data type (the files of "
        "its volumes) or a whole environment; the plan first."
    )

    def add_arguments(self, parser):
        parser.add_argument("scope", choices=list(KINDS))
        parser.add_argument(
            "target",
            nargs="?",
            help="The stack (stack) or the data type (data: "
            + ", ".join(DataType.values)
            + ").",
        )
        parser.add_argument("--env", required=True, help="Environment name or alias.")
        parser.add_argument(
            "--confirm",
            default="",
            help="Type <environment>/<stack, data type or all> to run it; without "
            "it the plan is shown and nothing changes.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Run the wipe as a dry run: the plan in its log, nothing changed.",
        )
        self.add_user_argument(parser)
        self.add_run_arguments(parser)

    def handle(self, *args, scope, target, **options):
        environment = self.get_environment(options["env"])
        stack, parameters = None, {}
        if scope == "stack":
            if not target:
                raise CommandError("Name the stack: wipe stack <stack> --env E.")
            try:
                stack = Stack.objects.get(name=target)
            except Stack.DoesNotExist:
                raise CommandError(f"No stack {target!r}.")
        elif scope == "data":
            if target not in DataType.values:
                raise CommandError(
                    f"Unknown data type {target!r} (one of: "
                    f"{', '.join(DataType.values)})."
                )
            parameters["data_type"] = target
        elif target:
            raise CommandError("An environment wipe names no target.")
        if not options["confirm"] and not options["dry_run"]:
            self.show_plan(environment, scope, stack, parameters, options)
            return
        parameters["dry_run"] = bool(options["dry_run"])
        self.run_kind(
            KINDS[scope],
            options,
            environment=environment,
            stack=stack,
            parameters=parameters,
            confirm=options["confirm"],
        )

    def show_plan(self, environment, scope, stack, parameters, options):
        runner = get_runner(KINDS[scope])
        try:
            require(self.get_user(options), runner.verb, environment)
        except PermissionDenied as exc:
            raise self.refused(exc, options)
        try:
            plan = runner.plan(
                environment=environment, stack=stack, parameters=parameters
            )
        except (PlanError, ValueError) as exc:
            raise CommandError(str(exc))
        sizes = (plan.get(INFO_KEY) or {}).get("volume_bytes") or {}
        self.stdout.write(f"Plan: {plan['summary']}")
        for row in plan["containers"]:
            self.stdout.write(
                f"  container {row['name']} ({row['service']}, {row['state']}): "
                f"{row['action']}"
            )
        for row in plan["volumes"]:
            size = sizes.get(row["name"])
            shown = f"{size} bytes" if size is not None else "size unknown"
            self.stdout.write(
                f"  volume {row['name']} ({row['data_type']}, {shown}): {row['action']}"
            )
        for row in plan["networks"]:
            self.stdout.write(f"  network {row['name']}: {row['action']}")
        expected = runner.confirmation(
            environment=environment, stack=stack, parameters=parameters
        )
        self.stdout.write(
            f"Nothing was changed. To run it: --confirm {expected}"
            + (
                f" ({environment.name} is protected: another Approver must approve)"
                if environment.protected
                else ""
            )
        )
