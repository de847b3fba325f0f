"""Restores onto a live service: ``backup.restore``, a destructive operation.

A record's snapshot (named by the record, or by its snapshot id) goes back
into the running service of the same environment, by the loader of its
kind (:mod:`backups.loaders`): PostgreSQL by ``pg_restore --clean
--single-transaction`` into the running server; Redis with the server
stopped and its files replaced; Qdrant collections recovered through its
API; MinIO buckets put back through the S3 API; volumes emptied and
refilled with the containers that use them stopped. Afterwards the
service is waited for (its healthcheck) and what it holds is measured and
compared with the backup's manifest, as a drill does.

Like a wipe it is planned first: the plan names the record, snapshot,
tier, the service's container (its id: a recreated container changes the
plan) and exactly what is overwritten (database, volume and files,
collections, buckets, volumes and the containers stopped), with sizes and
counts as facts outside the plan's hash. A dry run shows the plan and
changes nothing. A real run needs the typed confirmation
``<environment>/<service>``, an approval in a protected environment, and
there a fresh verified backup of the service (the guards of
:mod:`stacks.guards`: the state being overwritten can be restored in its
turn); it runs only while its plan still holds.

Bad input is refused by the plan, before anything exists: an unknown
record or snapshot, one of another environment or service, a record that
did not succeed, was pruned, is damaged or is on tape, a ``data`` or
``schema`` PostgreSQL dump, a configuration backup.
"""

import re
import time

from portal.choices import Verb
from portal.operations import (
    INFO_KEY,
    OperationFailed,
    OperationRunner,
    PlanError,
    register,
)
from stacks import engine
from stacks.guards import check_destroy
from stacks.jobs.lifecycle import flag
from stacks.operations import get_config as stack_config

from .drills import describe_differences
from .loaders import RestoreRefused, Target, loader_for
from .models import BackupRecord, BackupStrategy
from .restic import ResticError
from .restoring import (
    RESTORE_KIND,
    open_source,
    record_problem,
    remove_leftovers,
    service_spec,
)
from .tiers import BackupError

__all__ = ["RestoreBackupJob", "restore_record"]

SNAPSHOT_ID = re.compile(r"[0-9a-f]{4,64}")


def restore_record(environment, service, parameters):
    """Return the record a restore's parameters name (``record`` or
    ``snapshot`` [+ ``tier``]), checked against ``environment`` and
    ``service``; raise PlanError saying why not."""
    if service is None:
        raise PlanError("A restore names the service to restore onto.")
    record_id = parameters.get("record")
    snapshot = str(parameters.get("snapshot") or "").strip().lower()
    if record_id in (None, "") and not snapshot:
        raise PlanError("A restore names a backup record (RECORD=) or a snapshot.")
    if record_id not in (None, "") and snapshot:
        raise PlanError("Name a record or a snapshot, not both.")
    records = BackupRecord.objects.select_related(
        "tier", "environment", "service__stack", "copied_from"
    )
    if record_id not in (None, ""):
        record = (
            records.filter(pk=record_id).first() if str(record_id).isdigit() else None
        )
        if record is None:
            raise PlanError(f"No backup record #{record_id}.")
    else:
        if not SNAPSHOT_ID.fullmatch(snapshot):
            raise PlanError(
                f"{snapshot!r} is not a restic snapshot id (4 to 64 hex digits)."
            )
        found = records.filter(snapshot_id__startswith=snapshot)
        if parameters.get("tier"):
            found = found.filter(tier__name=parameters["tier"])
        found = list(found.order_by("-created")[:3])
        if not found:
            raise PlanError(
                f"No backup record holds snapshot {snapshot}"
                + (f" in tier {parameters['tier']}" if parameters.get("tier") else "")
                + ": the portal knows no such snapshot (see `make backup-list`; a "
                "snapshot the portal never recorded is restored with the restic "
                "CLI, docs/OPERATIONS.md)."
            )
        if len({r.snapshot_id for r in found}) > 1:
            raise PlanError(
                f"Snapshot prefix {snapshot} is ambiguous: "
                + ", ".join(f"{r.snapshot_id[:12]} (#{r.pk})" for r in found)
                + "; give more digits."
            )
        if len(found) > 1:
            raise PlanError(
                f"Snapshot {snapshot} is in several tiers' records (#"
                + ", #".join(str(r.pk) for r in found)
                + "): name the tier or the record."
            )
        record = found[0]
    if record.environment_id != environment.pk:
        raise PlanError(
            f"Backup record #{record.pk} (snapshot {record.snapshot_id[:8]}) is of "
            f"environment {record.environment.name}, not {environment.name}: a "
            "restore never crosses environments."
        )
    if record.service_name != service.name:
        raise PlanError(
            f"Backup record #{record.pk} (snapshot {record.snapshot_id[:8]}) is of "
            f"{record.service_name}, not {service.name}."
        )
    problem = record_problem(record)
    if problem:
        raise PlanError(problem)
    return record


def live_target(environment, service, *, log=None, check_cancel=None, owner=""):
    """Return the :class:`~backups.loaders.Target` of the running service
    (PlanError when it does not run)."""
    client = engine.client_for(environment)
    project = environment.project_name(service.stack)
    state = engine.service_states(client, project).get(service.name)
    if state is None or state.state != "running":
        raise PlanError(
            f"Service {service.name} has no running container in "
            f"{environment.name} ({state.state if state else 'none'}); start it "
            f"(make start-{service.stack.name} ENVIRONMENT={environment.name}) "
            "and plan the restore again."
        )
    spec = service_spec(environment, service, resolved=False)
    volumes = {
        m.key: m.source
        for m in spec.mounts
        if m.type == "volume" and m.key and m.source
    }
    return Target(
        environment=environment,
        service=service,
        strategy_row=BackupStrategy.objects.filter(service=service.name).first(),
        client=client,
        log=log,
        check_cancel=check_cancel or (lambda: None),
        owner=owner,
        container=state.id,
        spec=spec,
        volumes=volumes,
        scratch=False,
        health_timeout=float(stack_config()["HEALTH_TIMEOUT"]),
    ), state


@register
class RestoreBackupJob(OperationRunner):
    """Restore a backup record's snapshot onto the live service."""

    kind = RESTORE_KIND
    verb = Verb.RESTORE
    queue = "long"
    mutating = True
    destructive = True
    job_timeout = 6 * 3600

    @classmethod
    def confirmation(cls, *, environment, stack=None, service=None, parameters=None):
        if flag((parameters or {}).get("dry_run")):
            return None
        return f"{environment.name}/{service.name if service else '?'}"

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        parameters = parameters or {}
        record = restore_record(environment, service, parameters)
        try:
            with engine.engine_errors(engine.describe_host(environment)):
                target, state = live_target(environment, service)
                source = open_source(record)
                loader = loader_for(source, target)
                if not loader.live:
                    raise RestoreRefused(
                        f"A {record.strategy} backup is not restored onto a live "
                        "service."
                    )
                overwrites, facts = loader.overwrites()
        except (BackupError, ResticError) as exc:
            raise PlanError(str(exc)) from None
        except engine.EngineError as exc:
            raise PlanError(str(exc)) from None
        return {
            "summary": (
                f"restore {service.name} in {environment.name} from record "
                f"#{record.pk} ({record.strategy}, {record.tier.name}, snapshot "
                f"{record.snapshot_id[:8]})"
            ),
            "record": record.pk,
            "service": service.name,
            "strategy": record.strategy,
            "tier": record.tier.name,
            "snapshot": record.snapshot_id,
            "container": {"id": state.id[:12], "name": state.name},
            "overwrites": overwrites,
            INFO_KEY: {
                **facts,
                "data_read": record.data_read.isoformat(),
                "record_bytes": record.bytes_total,
            },
        }

    def run(self):
        operation = self.operation
        environment, service = operation.environment, operation.service
        plan = operation.plan or {}
        self.log.info(plan.get("summary", "restore"))
        self.log.info(
            f"container {plan['container']['name']} ({plan['container']['id']}); "
            f"overwrites: {plan.get('overwrites')}"
        )
        if flag((operation.parameters or {}).get("dry_run")):
            self.log.info("Dry run: nothing was changed.")
            return {"dry_run": True, "plan": plan}
        evidence = []
        if environment.protected:
            answer = check_destroy(environment, [service])
            if answer.problems:
                raise OperationFailed(
                    f"{environment.name} is protected: a restore overwrites "
                    f"{service.name}'s data, so it needs a fresh verified backup of "
                    "it first. " + " ".join(answer.problems)
                )
            evidence = answer.evidence
            for item in evidence:
                self.log.info(f"Backup of what is overwritten: {item.get('text')}")
        record = BackupRecord.objects.select_related("tier", "environment").get(
            pk=plan["record"]
        )
        started = time.monotonic()
        try:
            with engine.engine_errors(engine.describe_host(environment)):
                remove_leftovers(
                    engine.client_for(environment),
                    environment,
                    self.log,
                    current=operation.pk,
                )
                target, _state = live_target(
                    environment,
                    service,
                    log=self.log,
                    check_cancel=self.check_cancel,
                    owner=str(operation.pk),
                )
                target.health_timeout = float(
                    (operation.parameters or {}).get("health_timeout")
                    or target.health_timeout
                )
                source = open_source(record)
                loader = loader_for(source, target)
                self.progress(10, "restoring")
                loaded = loader.load()
                # The loader restarted what it stopped; the service's own
                # container is waited for in any case (its healthcheck).
                self.progress(70, "waiting for the service")
                engine.wait_ready(
                    target.client,
                    {service.name: target.container},
                    timeout=target.health_timeout,
                    check_cancel=self.check_cancel,
                    log=self.log,
                )
                self.log.info(f"{service.name}: ready")
                self.progress(85, "measuring")
                compared = loader.compare(loader.measure())
        except (BackupError, ResticError, engine.EngineError) as exc:
            raise OperationFailed(f"The restore failed: {exc}") from exc
        for fact in compared:
            level = self.log.info if fact["ok"] else self.log.error
            level(
                f"{fact['what']}: expected {fact['expected']}, found {fact['found']}"
                + ("" if fact["ok"] else "  <- differs")
            )
        differences = [c for c in compared if not c["ok"]]
        if differences:
            raise OperationFailed(describe_differences(record, differences))
        seconds = round(time.monotonic() - started, 2)
        self.log.info(
            f"{service.name} restored from record #{record.pk}: "
            f"{len(compared)} fact(s) match its manifest ({seconds} s)"
        )
        return {
            "record": record.pk,
            "snapshot": record.snapshot_id,
            "loaded": loaded,
            "compared": compared,
            "seconds": seconds,
            "backups": evidence,
        }
