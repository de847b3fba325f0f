"""Check the credentials of an environment: set, strong, not shared.

    manage.py check_credentials --env E [--stack S ...] [--strict] [--json]
        [--user U]

``make validate-credentials ENVIRONMENT=E [STRICT=1]`` calls this (and
``make validate-credentials-<env>``, the seed's names, with ``--strict``).
Every variable the environment's services and backup tiers refer to is
listed with its users and its status; values are never printed. Exit
status, for cron and CI:

- 0: nothing would refuse a start (warnings of an unprotected environment
  may be printed);
- 1: problems that refuse a start (any problem of a protected environment;
  with ``--strict`` any problem at all);
- 2: the check could not run (no such environment, no permission, an
  unreadable env file).

Each run is recorded in the audit log (``credentials.checked``: the
counts and the problems' variables and kinds).
"""

import json

from django.core.exceptions import PermissionDenied
from django.core.management.base import CommandError
from django.db import transaction

from portal.audit import record
from portal.choices import Verb
from portal.management.base import OperationCommand
from portal.permissions import require
from stacks.credentials import ERROR, OK, check_environment
from stacks.models import Stack
from stacks.secrets import InvalidEnvFile, sources_hint

CANNOT_CHECK = 2
PROBLEMS = 1


class Command(OperationCommand):
    help = (
        "Check that every variable an environment's services and backup tiers "
        "refer to is set and, for credentials, not empty, not a well-known "
        "value, long enough and not shared between services. Exit 1 when a "
        "start would be refused, 2 when the check cannot run."
    )

    def add_arguments(self, parser):
        parser.add_argument("--env", required=True, help="Environment name or alias.")
        parser.add_argument(
            "--stack",
            action="append",
            dest="stacks",
            metavar="STACK",
            help="Only the variables this stack's services use (what its start "
            "checks); repeatable.",
        )
        parser.add_argument(
            "--strict",
            action="store_true",
            help="Exit 1 on warnings too (the seed's STRICT mode).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the report as JSON."
        )
        self.add_user_argument(parser)

    def handle(self, *args, env, stacks=None, strict=False, **options):
        try:
            environment = self.get_environment(env)
            user = self.get_user(options)
            require(user, Verb.CHECK, environment)
        except PermissionDenied as exc:
            raise self.cannot(str(self.refused(exc, options)))
        except CommandError as exc:
            raise self.cannot(str(exc))
        chosen = None
        if stacks:
            chosen = list(Stack.objects.filter(name__in=stacks))
            missing = sorted(set(stacks) - {s.name for s in chosen})
            if missing:
                raise self.cannot(f"No stack {', '.join(missing)}.")
        try:
            report = check_environment(environment, stacks=chosen)
        except InvalidEnvFile as exc:
            raise self.cannot(
                f"Cannot read the variables of {environment.name}: {exc} "
                f"({sources_hint(environment)})."
            )
        failing = report.errors or (strict and report.warnings)
        with transaction.atomic():
            record(
                "credentials.checked",
                actor=user,
                environment=environment,
                object_repr=environment.name,
                data={
                    "stacks": report.stacks,
                    "strict": strict,
                    "counts": report.counts(),
                    "refused": report.refused,
                    # Names and kinds only, never values.
                    "problems": [
                        {"variable": v.variable, "level": v.level, "kinds": kinds}
                        for v in report.variables
                        if (kinds := [p.kind for p in v.problems])
                    ],
                },
            )
        if options.get("json"):
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        else:
            self.print_report(report, options.get("verbosity", 1))
        if failing:
            what = "error(s)" if report.errors else "warning(s) (--strict)"
            count = len(report.errors or report.warnings)
            raise CommandError(
                f"{count} credential {what} in {environment.name}.",
                returncode=PROBLEMS,
            )

    def cannot(self, message):
        return CommandError(message, returncode=CANNOT_CHECK)

    def print_report(self, report, verbosity):
        width = max([len(v.variable) for v in report.variables] + [8])
        if verbosity >= 1:
            # One line per variable; -v 0 prints only the problems.
            for status in report.variables:
                style = {
                    OK: self.style.SUCCESS,
                    ERROR: self.style.ERROR,
                }.get(status.level, self.style.WARNING)
                kind = "credential" if status.credential else "variable"
                self.stdout.write(
                    f"{status.variable:<{width}}  {style(f'{status.level:<7}')}  "
                    f"{kind:<10}  used by {', '.join(status.users)}"
                )
        for message in report.errors:
            self.stdout.write(self.style.ERROR(f"error: {message}"))
        for message in report.warnings:
            self.stdout.write(self.style.WARNING(f"warning: {message}"))
        self.stdout.write(report.summary())
