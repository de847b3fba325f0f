"""The cleanup runner: ``retention.cleanup`` (its dry run included).

The plan is the environment's items with their effective retention and
strategy (:func:`retention.policies.environment_items`): what each would
clean, for how many days, and where those days come from. It is what an
approver approves in a protected environment, and a run whose items
changed since (a policy edited in the admin) stops before touching
anything (the runner's ``check_plan``). The figures of a plan (how much
would go, the oldest and newest, what stays) are measured when the run
starts: they change by the minute.

A dry run (``dry_run``) measures every item, records what it found
(:class:`~retention.models.CleanupRecord`, status *planned*) and changes
nothing. A real run measures, then, when the environment's
``backup_before_cleanup`` says so and something is to go, backs up every
service that loses data into the first storage tier and checks that
repository (the record is *verified*) before the first delete; then each
item's cleaner deletes in batches (:mod:`retention.cleaners`). It notifies
on start, completion and failure with the file's templates.
"""

import time

from django.utils import timezone

from backups.jobs import BackupServiceJob, _plan_parts
from backups.models import BackupStrategy
from backups.runs import policy_parts
from backups.tiers import repository
from portal.choices import OperationStatus, Verb
from portal.models import Operation
from portal.notify import fill, notify
from portal.operations import OperationFailed, PlanError, register
from stacks import engine
from stacks.models import Service

from .choices import ItemKind, RecordStatus
from .cleaners import (
    CleanupError,
    Context,
    NotThere,
    RowsArchive,
    measure,
    remove,
)
from .models import CleanupRecord, RetentionPolicy, RetentionSetting
from .policies import cleanup_settings, environment_items, global_settings

__all__ = ["RetentionCleanupJob", "cleanup_plan", "flag"]

KIND = "retention.cleanup"


def flag(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def cleanup_plan(environment, parameters):
    """Return the plan of a cleanup of ``environment`` (one service's with
    ``parameters["service"]``); raise PlanError when there is nothing."""
    name = parameters.get("service") or None
    if name is not None and not Service.objects.filter(name=name).exists():
        if not RetentionPolicy.objects.filter(service=name).exists():
            raise PlanError(f"No service or retention policy {name!r}.")
    items = environment_items(environment, service=name)
    if not items:
        raise PlanError(
            f"No retention policy applies to {name or environment.name} "
            "(configs/retention-policies.yaml)."
        )
    settings = cleanup_settings(environment)
    deleting = [i for i in items if i.deletes]
    return {
        "summary": (
            f"clean up {name or 'every service'} in {environment.name}: "
            f"{len(deleting)} item(s) that may delete, {len(items) - len(deleting)} "
            "that delete nothing"
        ),
        "service": name or "",
        "backup_before_cleanup": settings.backup_before_cleanup,
        "items": [i.plan_entry() for i in items],
    }


def _notification(event):
    row = RetentionSetting.objects.filter(key="notifications").first()
    templates = row.value if row is not None and isinstance(row.value, dict) else {}
    return templates.get(event) or {}


def send(event, environment, fields, log):
    """Send the ``event`` notification with the file's template; log it."""
    glob = global_settings()
    channels = glob.get("notifications") or {}
    if channels.get("enabled") is False:
        return None
    template = _notification(event)
    fields = {"environment": environment.name, **fields}
    subject = fill(template.get("subject") or f"Data cleanup {event}", fields)
    text = fill(template.get("template") or subject, fields)
    delivery = notify(
        f"retention.{event}",
        subject,
        text,
        data=fields,
        emails=[channels.get("email") or ""],
        webhook_url=channels.get("webhook_url") or "",
    )
    log.info(f"Notification {event}: {delivery.summary()}")
    return delivery


def estimate(environment):
    """Return how long the last real cleanup of ``environment`` took, in words."""
    last = (
        Operation.objects.filter(
            environment=environment,
            kind=KIND,
            status=OperationStatus.SUCCEEDED,
            started__isnull=False,
            finished__isnull=False,
        )
        .exclude(parameters__dry_run=True)
        .order_by("-finished")
        .first()
    )
    if last is None:
        return "unknown (no earlier cleanup)"
    seconds = (last.finished - last.started).total_seconds()
    return f"about {seconds:.0f} s (the last cleanup's time)"


def _size(value):
    value = float(value or 0)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


@register
class RetentionCleanupJob(BackupServiceJob):
    """Measure, back up, then delete what the retention policies let go."""

    kind = KIND
    verb = Verb.CLEANUP
    queue = "long"
    mutating = True
    destructive = True
    job_timeout = 6 * 3600

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        if stack is not None or service is not None:
            raise PlanError("A cleanup names its service in parameters, no stack.")
        return cleanup_plan(environment, parameters or {})

    def run(self):
        operation = self.operation
        environment = operation.environment
        parameters = operation.parameters or {}
        dry_run = flag(parameters.get("dry_run"))
        plan = operation.plan or {}
        items = environment_items(environment, service=plan.get("service") or None)
        self.log.info(plan.get("summary", "cleanup"))
        started = time.monotonic()
        services = sorted({i.service for i in items if i.service})
        if not dry_run:
            send(
                "cleanup_started",
                environment,
                {
                    "services_list": "\n".join(f"- {s}" for s in services),
                    "estimated_time": estimate(environment),
                },
                self.log,
            )
        try:
            result = self.clean(environment, items, dry_run=dry_run)
        except Exception as exc:
            if not dry_run:
                send(
                    "cleanup_failed", environment, {"error_details": str(exc)}, self.log
                )
            raise
        seconds = time.monotonic() - started
        result["seconds"] = round(seconds, 2)
        if result["failed"] and not dry_run:
            send(
                "cleanup_failed",
                environment,
                {"error_details": "\n".join(result["failed"])},
                self.log,
            )
        elif not dry_run:
            send(
                "cleanup_completed",
                environment,
                {
                    "services_processed": ", ".join(result["services"]) or "none",
                    "data_cleaned": f"{result['removed']} item(s) of data",
                    "space_freed": _size(result["freed_bytes"]),
                    "duration": f"{seconds:.1f} s",
                },
                self.log,
            )
        if result["failed"]:
            raise OperationFailed(
                f"{len(result['failed'])} item(s) could not be cleaned: "
                + "; ".join(result["failed"])
            )
        return result

    def clean(self, environment, items, *, dry_run):
        operation = self.operation
        client = engine.client_for(environment)
        ctx = Context(
            environment=environment,
            client=client,
            log=self.log,
            check_cancel=self.check_cancel,
            owner=str(operation.pk),
        )
        now = timezone.now()
        records = []
        with engine.engine_errors(engine.describe_host(environment)):
            for index, item in enumerate(items):
                self.check_cancel()
                records.append(self.measure_item(ctx, item, now, dry_run))
                self.progress(40 * (index + 1) / max(len(items), 1), item.key)
            doomed = [
                (item, record)
                for item, record in zip(items, records, strict=True)
                if record.status == RecordStatus.PLANNED and record.matched
            ]
            if dry_run:
                self.log.info("Dry run: nothing was changed.")
            else:
                backups = self.backup_first(environment, doomed)
                for index, (item, record) in enumerate(doomed):
                    self.check_cancel()
                    if item.strategy == "archive_then_delete" and not self.archive(
                        ctx, item, record
                    ):
                        continue
                    self.remove_item(ctx, item, record, now)
                    if backups.get(item.service) and not record.backup_record_id:
                        record.backup_record_id = backups[item.service]
                        record.save(update_fields=["backup_record"])
                    self.progress(50 + 50 * (index + 1) / max(len(doomed), 1), item.key)
                for record in records:
                    if record.status == RecordStatus.PLANNED:
                        record.status = RecordStatus.NOTHING
                        record.save(update_fields=["status"])
        removed = sum(r.removed or 0 for r in records)
        return {
            "dry_run": dry_run,
            "items": len(records),
            "matched": sum(r.matched or 0 for r in records),
            "matched_bytes": sum(r.matched_bytes or 0 for r in records),
            "removed": removed,
            "freed_bytes": sum(r.freed_bytes or 0 for r in records),
            "services": sorted({r.service_name for r in records if r.removed}),
            "failed": [
                f"{r.item}: {r.error}"
                for r in records
                if r.status == RecordStatus.FAILED
            ],
            "records": [r.pk for r in records],
        }

    def measure_item(self, ctx, item, now, dry_run):
        cutoff = item.cutoff(now)
        record = CleanupRecord(
            operation=self.operation,
            environment=ctx.environment,
            service_name=item.service,
            item=item.key,
            kind=str(item.kind),
            strategy=item.strategy,
            target=item.target[:300],
            days=item.days,
            source=str(item.source),
            cutoff=cutoff,
            dry_run=dry_run,
            status=RecordStatus.PLANNED,
        )
        if not item.deletes:
            record.status = RecordStatus.SKIPPED
            record.detail = {"note": item.note}
            self.log.info(f"{item.key}: deletes nothing ({item.note})")
            record.save()
            return record
        clock = time.monotonic()
        try:
            found = measure(ctx, item, cutoff)
        except NotThere as exc:
            found = {"skipped": str(exc)}
        except (CleanupError, engine.EngineError) as exc:
            record.status = RecordStatus.FAILED
            record.error = str(exc)
            self.log.error(f"{item.key}: {exc}")
            record.save()
            return record
        record.seconds = round(time.monotonic() - clock, 3)
        if found.get("skipped"):
            record.status = RecordStatus.SKIPPED
            record.detail = {"note": found["skipped"]}
            self.log.info(f"{item.key}: {found['skipped']}")
            record.save()
            return record
        for key in ("matched", "matched_bytes", "kept", "kept_bytes"):
            setattr(record, key, found.get(key))
        record.bytes_estimated = bool(found.get("bytes_estimated"))
        record.detail = found.get("detail") or {}
        record.oldest = found.get("oldest")
        record.newest = found.get("newest")
        record.save()
        record.refresh_from_db()
        self.log.info(
            f"{item.key} ({item.target}, {item.describe_days()}): "
            f"{record.matched} older than {cutoff:%Y-%m-%d %H:%M} "
            f"({_size(record.matched_bytes)}"
            + (", estimated" if record.bytes_estimated else "")
            + f"), {record.kept} stay ({_size(record.kept_bytes)})"
            + (
                f"; oldest {record.oldest:%Y-%m-%d %H:%M}, newest "
                f"{record.newest:%Y-%m-%d %H:%M}"
                if record.oldest and record.newest
                else ""
            )
        )
        return record

    def remove_item(self, ctx, item, record, now):
        clock = time.monotonic()
        try:
            done = remove(ctx, item, record.cutoff, record)
        except (CleanupError, engine.EngineError) as exc:
            record.status = RecordStatus.FAILED
            record.error = str(exc)
            self.log.error(f"{item.key}: {exc}")
            record.save(update_fields=["status", "error"])
            return
        record.removed = done.get("removed") or 0
        record.freed_bytes = done.get("freed_bytes") or 0
        record.detail = {**(record.detail or {}), **(done.get("detail") or {})}
        record.status = RecordStatus.REMOVED if record.removed else RecordStatus.NOTHING
        record.seconds = round((record.seconds or 0) + time.monotonic() - clock, 3)
        record.save()
        self.log.info(
            f"{item.key}: removed {record.removed}, freed {_size(record.freed_bytes)}"
        )

    def archive(self, ctx, item, record):
        """Archive the rows ``record`` found old into every storage tier and
        verify the first; return whether they may be deleted now."""
        environment = ctx.environment
        try:
            tiers, _type = policy_parts(environment, {})
        except PlanError as exc:
            return self._failed(record, item, f"archive_then_delete: {exc}")
        service = Service.objects.select_related("stack").get(name=item.service)
        archive = RowsArchive(ctx, item, record, self.check_cancel)
        self.log.info(
            f"{item.key}: archiving {record.matched} row(s) to {tiers[0].name}"
        )
        try:
            first = self.snapshot(
                environment,
                tiers[0],
                service=service,
                service_name=item.service,
                stack_name=service.stack.name,
                strategy_name="archive",
                backup_type="full",
                strategy=lambda progress: archive,
            )
            copies = [self.copy(first, tier, "full") for tier in tiers[1:]]
            report = repository(tiers[0], environment).check()
        except Exception as exc:  # noqa: BLE001  (recorded: nothing deleted)
            return self._failed(record, item, f"archive failed, nothing deleted: {exc}")
        failed = [c for c in copies if c.status != "succeeded"]
        if not report.ok or failed:
            return self._failed(
                record,
                item,
                "the archive could not be verified in every tier; nothing deleted",
            )
        first.verified = timezone.now()
        first.save(update_fields=["verified"])
        record.backup_record = first
        record.save(update_fields=["backup_record"])
        self.log.info(
            f"{item.key}: archive #{first.pk} (snapshot {first.snapshot_id[:8]}) "
            f"verified in {tiers[0].name}, copied to "
            f"{', '.join(t.name for t in tiers[1:]) or 'no other tier'}"
        )
        return True

    def _failed(self, record, item, text):
        record.status = RecordStatus.FAILED
        record.error = text
        record.save(update_fields=["status", "error"])
        self.log.error(f"{item.key}: {text}")
        return False

    def backup_first(self, environment, doomed):
        """Back up and verify every service that loses data; return
        {service: verified BackupRecord id}. Raises OperationFailed when a
        backup or its check fails: nothing is deleted then."""
        settings = cleanup_settings(environment)
        if not settings.backup_before_cleanup or not doomed:
            return {}

        found = {}
        names = sorted({i.service for i, _r in doomed if i.kind != ItemKind.SNAPSHOTS})
        for name in names:
            service = Service.objects.filter(name=name).select_related("stack").first()
            if (
                service is None
                or not BackupStrategy.objects.filter(service=name).exists()
            ):
                self.log.warning(
                    f"{name}: no backup strategy (configs/backup-strategies.yaml), "
                    "so its data is deleted without a backup first"
                )
                continue
            try:
                strategy, strategy_name, backup_type, tiers = _plan_parts(
                    environment, service, {}
                )
            except PlanError as exc:
                raise OperationFailed(
                    f"Backup before cleanup of {name}: {exc} Nothing was deleted."
                ) from exc
            self.log.info(f"Backing up {name} before the cleanup ({tiers[0].name})")
            try:
                record = self.back_up(
                    environment, service, strategy, strategy_name, backup_type, tiers[0]
                )
                report = repository(tiers[0], environment).check()
            except Exception as exc:
                raise OperationFailed(
                    f"Backup before cleanup of {name} failed: {exc}. Nothing was "
                    "deleted."
                ) from exc
            if not report.ok:
                raise OperationFailed(
                    f"The repository of {tiers[0].name} failed its check after the "
                    f"backup of {name}; nothing was deleted."
                )
            record.verified = timezone.now()
            record.save(update_fields=["verified"])
            self.log.info(
                f"{name}: backup record #{record.pk} (snapshot "
                f"{record.snapshot_id[:8]}) verified before the first delete"
            )
            found[name] = record.pk
        return found
