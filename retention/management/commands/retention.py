"""Retention of an environment: where it stands, its dry run, its cleanup.

    manage.py retention status --env E [--service S] [--user U]
    manage.py retention test --env E [--service S] [--user U] [--enqueue [--wait]]
    manage.py retention cleanup --env E [--service S] [--scheduled]
        [--user U] [--enqueue [--wait]] [--no-queue]
    manage.py retention schedule --env E [--user U]
    manage.py retention backup --env E [--service S] [--user U]
        [--enqueue [--wait]] [--no-queue]

The make targets ``retention-status``, ``retention-test`` (the dry run:
measures every item and changes nothing), ``retention-cleanup``,
``retention-cleanup-service`` (``SERVICE=``), ``retention-schedule`` and
``retention-backup`` call this with ``ENVIRONMENT``. ``cleanup`` in a
protected environment waits for an approval; ``--scheduled`` (cron) gives
it a window of ``global.schedule_grace_minutes``: a run that cannot start
in it does not run late. ``backup`` backs up every service whose data the
policies delete (with a backup strategy), as a cleanup does first.
"""

from django.core.exceptions import PermissionDenied
from django.core.management.base import CommandError
from django.utils import timezone

from backups.models import BackupStrategy
from portal.choices import Verb
from portal.management.base import OperationCommand, size, table
from portal.permissions import require
from portal.schedules import cron_line, next_runs, scheduled_commands
from stacks.models import Service

from ...jobs import KIND
from ...models import CleanupRecord
from ...operations import scheduled_window
from ...policies import cleanup_settings, environment_items
from ...status import item_rows, last_runs, next_run


def when(value):
    return f"{timezone.localtime(value):%Y-%m-%d %H:%M}" if value else "-"


class Command(OperationCommand):
    help = (
        "Retention of an environment: status (each item's policy and newest "
        "measurement), test (the dry run), cleanup, schedule, backup."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        status = actions.add_parser(
            "status",
            help="Each item's retention and where it comes from (item, service, "
            "environment), its newest measurement, the next run, the last runs.",
        )
        test = actions.add_parser(
            "test",
            help="Dry run: measure what would go and what stays; delete nothing.",
        )
        cleanup = actions.add_parser(
            "cleanup",
            help="Delete what the policies let go (after a verified backup when "
            "backup_before_cleanup says so).",
        )
        schedule = actions.add_parser(
            "schedule", help="Show the cron line of the environment's cleanup."
        )
        backup = actions.add_parser(
            "backup",
            help="Back up every service whose data the retention policies delete.",
        )
        for sub in (status, test, cleanup, schedule, backup):
            sub.add_argument("--env", required=True, help="Environment name or alias.")
            self.add_user_argument(sub)
        for sub in (status, test, cleanup, backup):
            sub.add_argument("--service", help="Only this service's items.")
        for sub in (test, cleanup, backup):
            self.add_run_arguments(sub)
        cleanup.add_argument(
            "--scheduled",
            action="store_true",
            help="For cron: run only within global.schedule_grace_minutes of now "
            "(a run that waits longer, in line or for an approval, does not run "
            "late).",
        )

    def handle(self, *args, action, **options):
        environment = self.get_environment(options["env"])
        getattr(self, f"do_{action}")(environment, options)

    def require(self, verb, environment, options):
        try:
            require(self.get_user(options), verb, environment)
        except PermissionDenied as exc:
            raise self.refused(exc, options)

    # -- status ----------------------------------------------------------------

    def do_status(self, environment, options):
        self.require(Verb.VIEW, environment, options)
        settings = cleanup_settings(environment)
        upcoming = next_run(settings.schedule)
        self.stdout.write(
            f"Retention of {environment.name}: default {settings.default_days} days "
            f"({settings.default_source}); schedule "
            f"{settings.schedule or 'none'}"
            + (f", next {when(upcoming)}" if upcoming else "")
            + ("; dry runs only" if settings.dry_run else "")
            + (
                "; backup before cleanup"
                if settings.backup_before_cleanup
                else "; no backup before cleanup"
            )
        )
        rows = [
            ("ITEM", "STRATEGY", "KEPT FOR", "WOULD GO", "BYTES", "OLDEST", "STAYS",
             "MEASURED"),
        ]  # fmt: skip
        for row in item_rows(environment, service=options.get("service")):
            item, measured = row["policy"], row["measured"]
            if item.note:
                figures = ("-", "-", "-", f"deletes nothing: {item.note}")
            elif measured is None:
                figures = ("-", "-", "-", "not measured (make retention-test)")
            elif measured.status in ("failed", "skipped"):
                reason = measured.error or (measured.detail or {}).get("note", "")
                figures = ("-", "-", "-", f"{measured.status}: {reason}"[:80])
            else:
                figures = (
                    size(measured.matched_bytes),
                    when(measured.oldest),
                    str(measured.kept if measured.kept is not None else "-"),
                    when(measured.created) + (" (dry run)" if measured.dry_run else ""),
                )
            matched = (
                str(measured.matched)
                if measured is not None and measured.matched is not None
                else "-"
            )
            rows.append(
                (item.key, item.strategy, item.describe_days(), matched, *figures)
            )
        for line in table(rows):
            self.stdout.write(line)
        for run in last_runs(environment, limit=5):
            self.stdout.write(
                f"{'Dry run' if run.dry_run else 'Cleanup'} {run.operation.pk} "
                f"({run.service or 'all'}) {run.operation.status} "
                f"{when(run.operation.created)}: {run.matched} matched, "
                f"{run.removed} removed, {size(run.freed)} freed"
                + (f", {run.failed} failed" if run.failed else "")
            )

    # -- test and cleanup ------------------------------------------------------

    def _parameters(self, options, *, dry_run, environment):
        parameters = {"dry_run": dry_run}
        if options.get("service"):
            parameters["service"] = options["service"]
        if options.get("scheduled"):
            parameters["scheduled"] = True
            parameters["not_after"] = scheduled_window(environment)
        return parameters

    def do_test(self, environment, options):
        operation = self.run_kind(
            KIND,
            options,
            environment=environment,
            parameters=self._parameters(options, dry_run=True, environment=environment),
        )
        self.print_records(operation)

    def do_cleanup(self, environment, options):
        operation = self.run_kind(
            KIND,
            options,
            environment=environment,
            parameters=self._parameters(
                options, dry_run=False, environment=environment
            ),
        )
        self.print_records(operation)

    def print_records(self, operation):
        records = CleanupRecord.objects.filter(operation=operation).order_by("id")
        if not records:
            return
        rows = [("ITEM", "STATUS", "MATCHED", "BYTES", "OLDEST", "NEWEST", "STAYS",
                 "REMOVED", "FREED")]  # fmt: skip
        for r in records:
            rows.append(
                (
                    r.item,
                    r.status,
                    "-" if r.matched is None else str(r.matched),
                    size(r.matched_bytes),
                    when(r.oldest),
                    when(r.newest),
                    "-" if r.kept is None else str(r.kept),
                    "-" if r.removed is None else str(r.removed),
                    size(r.freed_bytes),
                )
            )
        for line in table(rows):
            self.stdout.write(line)

    # -- schedule ----------------------------------------------------------------

    def do_schedule(self, environment, options):
        self.require(Verb.VIEW, environment, options)
        commands = [
            c
            for c in scheduled_commands(environment=environment.name)
            if c.name == f"retention-{environment.name}"
        ]
        if not commands:
            self.stdout.write(
                f"Environment {environment.name} has no cleanup schedule "
                "(cleanup_schedule in configs/retention-policies.yaml)."
            )
            return
        for command in commands:
            self.stdout.write(f"# {command.description}")
            self.stdout.write(cron_line(command))
            for moment in next_runs(command.schedule):
                self.stdout.write(f"next: {moment:%Y-%m-%d %H:%M}")
        self.stdout.write("Install every schedule with: make crontab")

    # -- backup ------------------------------------------------------------------

    def do_backup(self, environment, options):
        items = environment_items(environment, service=options.get("service"))
        names = sorted({i.service for i in items if i.deletes and i.service})
        with_strategy = set(
            BackupStrategy.objects.filter(service__in=names).values_list(
                "service", flat=True
            )
        )
        failed = []
        for name in names:
            if name not in with_strategy:
                self.stdout.write(f"{name}: no backup strategy, not backed up")
                continue
            self.stdout.write(self.style.MIGRATE_HEADING(f"== {name}"))
            try:
                self.run_kind(
                    "backup.service",
                    options,
                    environment=environment,
                    service=Service.objects.get(name=name),
                )
            except CommandError as exc:
                failed.append(name)
                self.stderr.write(f"{name}: {exc}")
        if failed:
            raise CommandError(f"Backups failed: {', '.join(failed)}.")
