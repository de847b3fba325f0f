"""Back up an environment, or show where its backups stand.

    manage.py backup status --env E [--user U]
    manage.py backup full --env E [--backup-type T] [--scheduled]
        [--user U] [--enqueue [--wait]] [--no-queue]
    manage.py backup service --env E --service S [--type STRATEGY]
        [--backup-type T] [--user U] [--enqueue [--wait]] [--no-queue]
    manage.py backup list --env E [--service S] [--strategy X] [--tier T]
        [--status S] [--limit N] [--user U]
    manage.py backup schedule --env E [--user U]
    manage.py backup alerts --env E [--user U]
    manage.py backup verify --env E [--tier T] [--subset auto|n/N|all|none]
        [--scheduled] [--user U] [--enqueue [--wait]] [--no-queue]
    manage.py backup drill --env E (--service S [--record N] [--pick P]
        | --scheduled) [--user U] [--enqueue [--wait]]
    manage.py backup restore --env E --service S (--record N | --snapshot ID
        [--tier T]) [--dry-run | --confirm E/S] [--user U] [--enqueue [--wait]]
        [--no-queue]

Without ``--confirm`` (or with ``--dry-run``) a restore's plan is shown
and nothing changes.

The make targets ``backup-status``, ``backup-full``, ``backup-service``,
``backup-list``, ``backup-schedule``, ``backup-verify``, ``backup-drill``
and ``backup-restore`` call this with ``ENVIRONMENT``. ``status`` exits
non-zero when a scheduled backup is overdue or has no proven or verified
backup within its allowed age; ``alerts`` while a backup-age alert is
open; ``full`` when any service's backup did not succeed; ``verify`` when
a repository could not be checked or holds damage; ``drill`` when a drill
failed or could not run; ``restore`` unless the restore (or its dry run)
succeeded.
"""

from django.core.exceptions import PermissionDenied
from django.core.management.base import CommandError
from django.utils import timezone

from backups.alerts import evaluate_alerts, page_url
from backups.choices import RecordStatus
from backups.drills import drill_settings
from backups.models import BackupAlert, BackupRecord, RepositoryCheck
from backups.operations import (
    BackupTarget,
    backed_up_services,
    environment_backup_targets,
    pick_drill_record,
    running_backup,
)
from backups.schema import BACKUP_TYPES, DRILL_PICKS
from backups.status import environment_backups, failed_records
from backups.strategies.config import CONFIG_SERVICE
from backups.verify import integrity_settings
from portal.choices import Verb
from portal.management.base import OperationCommand, size, table
from portal.operations import INFO_KEY, get_runner
from portal.permissions import require
from portal.schedules import cron_line, next_runs, scheduled_commands
from stacks.models import Service


class Command(OperationCommand):
    help = (
        "Back up an environment (full, service), show where its backups stand "
        "(status), list its records (list) or its backup schedule (schedule)."
    )

    def add_arguments(self, parser):
        actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        status = actions.add_parser(
            "status",
            help="Newest good backup of each service, strategy and tier, its age "
            "against the allowed age; exit 1 when one is overdue.",
        )
        full = actions.add_parser(
            "full",
            help="Back up every service that has a strategy, one operation each; "
            "exit 1 when any failed.",
        )
        service = actions.add_parser("service", help="Back up one service.")
        listing = actions.add_parser("list", help="List backup records.")
        schedule = actions.add_parser(
            "schedule", help="Show the cron line of the environment's backup schedule."
        )
        verify = actions.add_parser(
            "verify",
            help="Check every repository of the environment and re-read the "
            "next group of its packs; exit 1 on damage.",
        )
        verify.add_argument("--tier", help="Only this storage tier.")
        verify.add_argument(
            "--subset",
            default="auto",
            help="Which packs to re-read: auto (default: the group after the last "
            "one that passed, so every pack is re-read within "
            "verification.integrity.read_all_within_days), n/N, all, or none "
            "(the structure only).",
        )
        verify.add_argument(
            "--scheduled",
            action="store_true",
            help="For cron: do nothing, successfully, when verification is "
            "disabled (verification.integrity.enabled).",
        )
        self.add_run_arguments(verify)
        alerts = actions.add_parser(
            "alerts",
            help="Open and clear the backup-age alerts, notifying each change "
            "once; exit 1 while one is open.",
        )
        drill = actions.add_parser(
            "drill",
            help="Restore a backup into a throw-away copy of its service and "
            "compare it with its manifest; exit 1 when it does not match.",
        )
        drill.add_argument(
            "--service", help="Service name (config: the configuration backup)."
        )
        drill.add_argument(
            "--record", type=int, help="Backup record id (default: by --pick)."
        )
        drill.add_argument(
            "--pick",
            choices=DRILL_PICKS,
            help="Which record: the newest restorable one (latest) or any "
            "(random); default verification.restore_test.pick.",
        )
        drill.add_argument(
            "--scheduled",
            action="store_true",
            help="For cron: drill every service of verification.restore_test."
            "test_services (every backed-up service when empty) that has a "
            "backup; nothing when restore_test.enabled is false.",
        )
        self.add_run_arguments(drill)
        restore = actions.add_parser(
            "restore",
            help="Restore a backup onto the live service (destructive: plan, "
            "typed confirmation, approval in protected environments).",
        )
        restore.add_argument("--service", required=True, help="Service name.")
        restore.add_argument("--record", type=int, help="Backup record id.")
        restore.add_argument("--snapshot", help="restic snapshot id (or prefix).")
        restore.add_argument(
            "--tier", help="With --snapshot: the tier whose record holds it."
        )
        restore.add_argument(
            "--dry-run",
            action="store_true",
            help="Show the plan (what is stopped and overwritten); change nothing.",
        )
        restore.add_argument(
            "--confirm",
            help="<environment>/<service>, typed; without it the plan is shown "
            "and nothing changes.",
        )
        self.add_run_arguments(restore)
        for sub in (
            status,
            full,
            service,
            listing,
            schedule,
            verify,
            alerts,
            drill,
            restore,
        ):
            sub.add_argument("--env", required=True, help="Environment name or alias.")
            self.add_user_argument(sub)
        for sub in (full, service):
            sub.add_argument(
                "--backup-type",
                choices=BACKUP_TYPES,
                help="full: a snapshot without a parent (restic reads everything); "
                "incremental (default): the previous snapshot of the same data "
                "as parent; differential: the last full one as parent.",
            )
            self.add_run_arguments(sub)
        full.add_argument(
            "--scheduled",
            action="store_true",
            help="For cron: do nothing, successfully, while a backup of the "
            "environment is still running.",
        )
        service.add_argument("--service", required=True, help="Service name.")
        service.add_argument(
            "--type",
            dest="strategy",
            help="Strategy: postgres full|schema|data, redis rdb|aof, ... "
            "(default: the method's first).",
        )
        listing.add_argument("--service", help="Only this service.")
        listing.add_argument("--strategy", help="Only this strategy.")
        listing.add_argument("--tier", help="Only this storage tier.")
        listing.add_argument(
            "--status", choices=RecordStatus.values, help="Only records in this status."
        )
        listing.add_argument(
            "--limit", type=int, default=30, help="At most this many (default 30)."
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
        backups = environment_backups(environment)
        policy = backups.policy
        if policy is None or not policy.tiers:
            self.stdout.write(
                f"Environment {environment.name} has no backup storage tiers "
                "(environments in configs/backup-strategies.yaml): nothing is "
                "backed up."
            )
        else:
            self.stdout.write(
                f"Backups of {environment.name} in {', '.join(policy.tiers)}"
                + (f", scheduled {policy.schedule}" if policy.schedule else "")
            )
        rows = [
            (
                "SERVICE",
                "STRATEGY",
                "TIER",
                "NEWEST GOOD",
                "AGE",
                "ALLOWED",
                "SIZE",
                "ADDED",
                "SNAPSHOT",
                "STATE",
                "PROOF",
            )
        ]
        for row in backups.rows:
            record = row.record
            rows.append(
                (
                    row.service,
                    row.strategy,
                    row.tier,
                    f"{timezone.localtime(record.data_read):%Y-%m-%d %H:%M}"
                    if record
                    else "-",
                    row.age_text,
                    row.allowed_text or "-",
                    size(record.bytes_total) if record else "-",
                    size(record.bytes_added) if record else "-",
                    record.snapshot_id[:8] if record else "-",
                    row.state
                    + (f", {row.failures} failed since" if row.failures else ""),
                    row.proof,
                )
            )
        if backups.rows:
            for line in table(rows):
                self.stdout.write(line)
        for operation in backups.running:
            self.stdout.write(
                f"Running: {operation.service.name if operation.service else '-'} "
                f"operation {operation.pk} {operation.status} {operation.progress}%"
                + (
                    f" {operation.progress_message}"
                    if operation.progress_message
                    else ""
                )
            )
        for record in backups.failures[:10]:
            self.stdout.write(
                f"Failed: {record.service_name} {record.strategy} in {record.tier.name}"
                f" #{record.pk} at {timezone.localtime(record.created):%Y-%m-%d %H:%M}:"
                f" {_summary_line(record.shown_error)}"
            )
        evaluate_alerts(environment, url=page_url(environment))
        overdue, at_risk = backups.overdue, backups.at_risk
        if at_risk:
            self.stdout.write(
                self.style.ERROR(
                    f"Not proven or verified within the allowed age ({len(at_risk)}):"
                )
            )
            for row in at_risk:
                self.stdout.write(f"  {row.describe_risk()}")
        if overdue:
            self.stdout.write(self.style.ERROR(f"Overdue ({len(overdue)}):"))
            for line in _overdue_lines(overdue):
                self.stdout.write(f"  {line}")
            raise CommandError(
                f"{len(overdue)} scheduled backup(s) of {environment.name} overdue."
            )
        if at_risk:
            raise CommandError(
                f"{len(at_risk)} scheduled backup(s) of {environment.name} have no "
                "proven or verified backup within their allowed age."
            )
        if backups.rows:
            self.stdout.write(
                self.style.SUCCESS(
                    f"No scheduled backup of {environment.name} is overdue; each "
                    "has a proven or verified backup within its allowed age."
                )
            )

    # -- alerts ----------------------------------------------------------------

    def do_alerts(self, environment, options):
        self.require(Verb.VIEW, environment, options)
        opened, cleared = evaluate_alerts(environment, url=page_url(environment))
        for alert in opened:
            self.stdout.write(f"Opened: {alert.message}")
        for alert in cleared:
            self.stdout.write(
                f"Cleared: {alert.service_name} {alert.strategy} in {alert.tier.name}"
                f" (open since {timezone.localtime(alert.opened):%Y-%m-%d %H:%M})"
            )
        still = BackupAlert.objects.filter(
            environment=environment, cleared__isnull=True
        ).select_related("tier")
        for alert in still:
            self.stdout.write(
                f"Open since {timezone.localtime(alert.opened):%Y-%m-%d %H:%M}: "
                f"{alert.message.splitlines()[0]}"
            )
        if still:
            raise CommandError(
                f"{len(still)} backup alert(s) of {environment.name} open."
            )
        self.stdout.write(f"No backup alert of {environment.name} is open.")

    # -- full, service ---------------------------------------------------------

    def do_full(self, environment, options):
        self.require(Verb.BACKUP, environment, options)
        if options["scheduled"]:
            blocker = running_backup(environment)
            if blocker is not None:
                since = blocker.started or blocker.created
                self.stdout.write(
                    f"Skipped: a backup of {environment.name} is still running "
                    f"(operation {blocker.pk}, {blocker.kind} of {blocker.target}, "
                    f"{blocker.status} since "
                    f"{timezone.localtime(since):%Y-%m-%d %H:%M:%S}); this scheduled "
                    "run does nothing."
                )
                return
        targets = environment_backup_targets(environment)
        if not targets:
            self.stdout.write(
                "Nothing to back up: no service has a backup strategy "
                "(services in configs/backup-strategies.yaml)."
            )
            return
        outcomes = []
        for target in targets:
            self.stdout.write(self.style.MIGRATE_HEADING(f"== {target}"))
            try:
                operation = self.run_target(environment, target, options)
            except CommandError as exc:
                outcomes.append((target, False, str(exc)))
                self.stderr.write(f"{target}: {exc}")
                continue
            outcomes.append(
                (target, True, f"operation {operation.pk} {operation.status}")
            )
        self.stdout.write(f"Backup of {environment.name}:")
        for target, ok, text in outcomes:
            state = "ok" if ok else "FAILED"
            self.stdout.write(f"  {str(target):<20} {state:<6}  {text}")
        failed = [str(target) for target, ok, _text in outcomes if not ok]
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(outcomes)} backups of {environment.name} "
                f"did not succeed: {', '.join(failed)}."
            )

    def do_service(self, environment, options):
        try:
            service = Service.objects.get(name=options["service"])
        except Service.DoesNotExist:
            raise CommandError(f"No service {options['service']!r}.")
        parameters = {"strategy": options["strategy"]} if options["strategy"] else {}
        self.run_target(
            environment, BackupTarget("backup.service", service, parameters), options
        )

    def run_target(self, environment, target, options):
        """Run (or enqueue) one target's operation; CommandError unless it
        succeeded or was only enqueued."""
        return self.run_kind(
            target.kind,
            options,
            environment=environment,
            service=target.service,
            parameters=target.request_parameters(options["backup_type"]),
        )

    # -- verify ----------------------------------------------------------------

    def do_verify(self, environment, options):
        if options["scheduled"] and not integrity_settings().enabled:
            self.stdout.write(
                "Skipped: verification is disabled "
                "(verification.integrity.enabled in configs/backup-strategies.yaml)."
            )
            return
        parameters = {"subset": options["subset"]}
        if options["tier"]:
            parameters["tier"] = options["tier"]
        since = timezone.now()
        try:
            self.run_kind(
                "backup.verify", options, environment=environment, parameters=parameters
            )
        finally:
            self.write_checks(environment, since)

    def write_checks(self, environment, since):
        """Write one line per repository check of ``environment`` since then."""
        checks = RepositoryCheck.objects.filter(
            environment=environment, created__gte=since
        ).select_related("tier")
        for check in checks.order_by("id"):
            share = check.coverage
            self.stdout.write(
                f"  {check.tier.name:<10} {check.status:<7} "
                f"{check.subset or 'structure':<9} ledger "
                + (f"{share:.0%}" if share is not None else "-")
                + (f"  {check.error}" if check.error else "")
            )

    # -- drill, restore --------------------------------------------------------

    def do_drill(self, environment, options):
        self.require(Verb.CHECK, environment, options)
        settings = drill_settings()
        pick = options["pick"] or settings.pick
        if options["scheduled"]:
            if not settings.enabled:
                self.stdout.write(
                    "Skipped: restore drills are disabled (verification."
                    "restore_test.enabled in configs/backup-strategies.yaml)."
                )
                return
            names = list(settings.test_services) or [
                s.name for s in backed_up_services()
            ]
        elif options["service"] or options["record"]:
            names = [options["service"] or f"record #{options['record']}"]
        else:
            raise CommandError(
                "Name the --service (or --record) to drill, or --scheduled."
            )
        failed, done = [], 0
        for name in names:
            if options["record"] and not options["scheduled"]:
                record = BackupRecord.objects.filter(pk=options["record"]).first()
                if record is None:
                    raise CommandError(f"No backup record #{options['record']}.")
            else:
                if (
                    name != CONFIG_SERVICE
                    and not Service.objects.filter(name=name).exists()
                ):
                    raise CommandError(f"No service {name!r}.")
                record = pick_drill_record(environment, name, pick=pick)
                if record is None:
                    message = (
                        f"{name}: no restorable backup in {environment.name} to "
                        f"drill (make backup-service SERVICE={name} "
                        f"ENVIRONMENT={environment.name})."
                    )
                    if not options["scheduled"]:
                        raise CommandError(message)
                    self.stdout.write(f"Skipped: {message}")
                    continue
            how = "named" if options["record"] and not options["scheduled"] else pick
            self.stdout.write(
                self.style.MIGRATE_HEADING(
                    f"== drill of {record.service_name} record #{record.pk} "
                    f"({record.strategy}, {record.tier.name}, {how})"
                )
            )
            try:
                self.run_kind(
                    "backup.drill",
                    options,
                    environment=environment,
                    service=record.service,
                    parameters={"record": record.pk},
                )
                done += 1
            except CommandError as exc:
                if not options["scheduled"]:
                    raise
                failed.append(name)
                self.stderr.write(f"{name}: {exc}")
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(names)} drills of {environment.name} did "
                f"not pass: {', '.join(failed)}."
            )

    def do_restore(self, environment, options):
        self.require(Verb.RESTORE, environment, options)
        try:
            service = Service.objects.get(name=options["service"])
        except Service.DoesNotExist:
            raise CommandError(f"No service {options['service']!r}.")
        if not options["record"] and not options["snapshot"]:
            raise CommandError("Name the backup: --record N or --snapshot ID.")
        parameters = {"dry_run": bool(options["dry_run"])}
        if options["record"]:
            parameters["record"] = options["record"]
        if options["snapshot"]:
            parameters["snapshot"] = options["snapshot"]
        if options["tier"]:
            parameters["tier"] = options["tier"]
        if not options["confirm"] and not options["dry_run"]:
            self.show_restore_plan(environment, service, parameters)
            return
        self.run_kind(
            "backup.restore",
            options,
            environment=environment,
            service=service,
            parameters=parameters,
            confirm=None if options["dry_run"] else options["confirm"],
        )

    def show_restore_plan(self, environment, service, parameters):
        """Print the plan of a restore and what to type; change nothing."""
        try:
            plan = get_runner("backup.restore").plan(
                environment=environment,
                stack=service.stack,
                service=service,
                parameters=parameters,
            )
        except ValueError as exc:
            raise CommandError(str(exc))
        self.stdout.write(f"Plan: {plan['summary']}")
        container = plan["container"]
        self.stdout.write(f"  container {container['name']} ({container['id']})")
        for key, value in (plan.get("overwrites") or {}).items():
            self.stdout.write(f"  overwrites {key}: {value}")
        for key, value in (plan.get(INFO_KEY) or {}).items():
            self.stdout.write(f"  {key}: {value}")
        self.stdout.write(
            f"Nothing was changed. To run it: --confirm {environment.name}/"
            f"{service.name} (CONFIRM={environment.name}/{service.name} for make)."
        )

    # -- list, schedule --------------------------------------------------------

    def do_list(self, environment, options):
        self.require(Verb.VIEW, environment, options)
        records = BackupRecord.objects.filter(environment=environment).select_related(
            "tier", "operation"
        )
        if options["service"]:
            records = records.filter(service_name=options["service"])
        if options["strategy"]:
            records = records.filter(strategy=options["strategy"])
        if options["tier"]:
            records = records.filter(tier__name=options["tier"])
        if options["status"] == RecordStatus.FAILED:
            records = records.filter(failed_records())
        elif options["status"]:
            records = records.filter(status=options["status"])
        records = list(records.order_by("-created", "-id")[: max(0, options["limit"])])
        if not records:
            self.stdout.write(f"No backup records of {environment.name} match.")
            return
        rows = [
            (
                "ID",
                "CREATED",
                "SERVICE",
                "STRATEGY",
                "TIER",
                "STATUS",
                "SNAPSHOT",
                "SIZE",
                "ADDED",
                "SECONDS",
                "COPY OF",
                "ERROR",
            )
        ]
        for record in records:
            rows.append(
                (
                    str(record.pk),
                    f"{timezone.localtime(record.created):%Y-%m-%d %H:%M:%S}",
                    record.service_name,
                    record.strategy,
                    record.tier.name,
                    record.shown_status,
                    record.snapshot_id[:8] or "-",
                    size(record.bytes_total),
                    size(record.bytes_added),
                    f"{record.duration_s:.1f}"
                    if record.duration_s is not None
                    else "-",
                    str(record.copied_from_id or "-"),
                    _summary_line(record.shown_error)[:80] or "-",
                )
            )
        for line in table(rows):
            self.stdout.write(line)

    def do_schedule(self, environment, options):
        self.require(Verb.VIEW, environment, options)
        commands = [
            c
            for c in scheduled_commands(environment=environment.name)
            if c.args[:1] == ("backup",)
        ]
        if not any(c.name == f"backup-{environment.name}" for c in commands):
            self.stdout.write(
                f"Environment {environment.name} has no backup schedule "
                "(backup_schedule in configs/backup-strategies.yaml)."
            )
        if not commands:
            return
        for command in commands:
            self.stdout.write(
                f"{command.name}: {command.schedule} ({command.description})"
            )
            runs = ", ".join(
                f"{run:%Y-%m-%d %H:%M}" for run in next_runs(command.schedule)
            )
            self.stdout.write(f"  next runs (host time): {runs}")
            self.stdout.write(f"  {cron_line(command)}")
        self.stdout.write(
            "Install every environment's schedule: manage.py crontab --install "
            "(make crontab CRONTAB_ARGS=--install)"
        )


def _overdue_lines(rows):
    """Return one line per overdue row; a service never backed up in several
    tiers is one line naming them."""
    never, lines = {}, []
    for row in rows:
        if row.record is None:
            key = (row.service, row.strategy)
            if key not in never:
                never[key] = []
                lines.append(key)
            never[key].append(row.tier)
        else:
            lines.append(row.describe())
    return [
        f"{line[0]} {line[1]} in {', '.join(never[line])}: never backed up"
        if isinstance(line, tuple)
        else line
        for line in lines
    ]


def _summary_line(text):
    """Return the last line of an error (a traceback's is its summary)."""
    lines = (text or "").strip().splitlines()
    return lines[-1] if lines else ""
