"""Restore drills: ``backup.drill``, a record's snapshot restored into a
throw-away copy of its service and compared with its manifest.

The copy is made on the environment's Docker host from the service's own
spec in that environment (its image, command and variables), with fresh
volumes where the service mounts its named volumes and a network of its
own (internal, so the copy reaches nothing; MinIO's copy publishes its S3
port on the host's 127.0.0.1 for the worker), and every object labelled as
this operation's helper: a drill killed in the middle leaves nothing that
the next drill does not find and remove. The live service is never
touched. Then the kind's loader (:mod:`backups.loaders`) loads the
snapshot into the copy, measures it with the backup strategy's own
counting code, and compares fact by fact with the manifest taken when the
data was read:

=============  ===============================================================
kind           compared
=============  ===============================================================
postgres       rows of every table (full), the tables (schema)
redis          keys of every database
qdrant         points of every collection
minio          objects and bytes of every bucket, sha256 of the sample
volumes        files and bytes of every volume, sha256 of the sample (no
               copy of the service runs: the restored volumes are read by a
               helper, and a container of the service's image is created on
               them to show they fit its mounts)
config         files, bytes and the sha256 of every file (nothing runs)
=============  ===============================================================

The proof is a :class:`~backups.models.RestoreDrill` row: what was
compared, expected and found, the image, the steps' durations. Any
difference fails the drill, and the operation, naming it. Alerts are
evaluated at the end (a passed drill *proves* its record).
"""

import time
from contextlib import ExitStack
from dataclasses import dataclass

from django.utils import timezone

from portal.choices import OperationStatus, Verb
from portal.operations import OperationFailed, OperationRunner, PlanError, register
from stacks import engine
from stacks.operations import get_config as stack_config

from .alerts import evaluate_after
from .choices import ProofStatus
from .loaders import RestoreRefused, Target, loader_class, loader_for
from .models import BackupConfigValue, BackupRecord, BackupStrategy, RestoreDrill
from .restic import ResticError
from .restoring import (
    DRILL_KIND,
    open_source,
    record_problem,
    remove_leftovers,
    service_spec,
)
from .schema import DRILL_PICKS
from .tiers import BackupError

__all__ = [
    "DRILL_PURPOSE",
    "DrillBackupJob",
    "DrillSettings",
    "drill_settings",
    "fail_abandoned_drills",
]

#: The helper purpose of every object a drill creates.
DRILL_PURPOSE = "backup.drill"
DEFAULT_SCHEDULE = "30 5 * * 0"
# How many differences the error names (the proof keeps them all).
NAMED_DIFFERENCES = 5


@dataclass(frozen=True)
class DrillSettings:
    """``verification.restore_test`` of ``backup-strategies.yaml``."""

    enabled: bool = True
    schedule: str = DEFAULT_SCHEDULE
    pick: str = "latest"
    test_services: tuple = ()


def drill_settings():
    """Return the :class:`DrillSettings` stored from the file."""
    row = BackupConfigValue.objects.filter(key="verification").first()
    value = row.value if row is not None and isinstance(row.value, dict) else {}
    conf = value.get("restore_test") or {}
    pick = conf.get("pick") or "latest"
    return DrillSettings(
        enabled=bool(conf.get("enabled", True)),
        schedule=str(conf.get("schedule") or DEFAULT_SCHEDULE),
        pick=pick if pick in DRILL_PICKS else "latest",
        test_services=tuple(str(s) for s in conf.get("test_services") or ()),
    )


def drill_record(environment, parameters):
    """Return the record a drill's parameters name, or raise PlanError."""
    record_id = parameters.get("record")
    record = (
        BackupRecord.objects.select_related("tier", "environment", "service__stack")
        .filter(pk=record_id)
        .first()
        if str(record_id or "").isdigit()
        else None
    )
    if record is None:
        raise PlanError(f"No backup record #{record_id}.")
    if record.environment_id != environment.pk:
        raise PlanError(
            f"Backup record #{record.pk} is of environment {record.environment.name}, "
            f"not {environment.name}."
        )
    problem = record_problem(record)
    if problem:
        raise PlanError(problem)
    return record


def _strategy_row(record):
    return BackupStrategy.objects.filter(service=record.service_name).first()


@register
class DrillBackupJob(OperationRunner):
    """Restore a record's snapshot into a throw-away copy of its service and
    compare it with the record's manifest."""

    kind = DRILL_KIND
    verb = Verb.CHECK
    queue = "long"
    # It never touches the live service: it waits for nothing in the
    # stack's line, and nothing waits for it.
    mutating = False
    job_timeout = 6 * 3600

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        record = drill_record(environment, parameters or {})
        if record.service_id != (service.pk if service else None):
            raise PlanError(
                f"Backup record #{record.pk} is of {record.service_name}, not of "
                f"{service.name if service else 'the environment'}."
            )
        strategy_row = _strategy_row(record)
        try:
            cls_ = loader_class(record.service_name, strategy_row)
        except RestoreRefused as exc:
            raise PlanError(str(exc)) from None
        image = ""
        if record.service is not None:
            image = service_spec(environment, record.service, resolved=False).image
        elif strategy_row is not None:
            raise PlanError(
                f"Service {record.service_name} of record #{record.pk} is no longer "
                f"configured: there is no image to drill its {cls_.__name__} with."
            )
        return {
            "record": record.pk,
            "service": record.service_name,
            "strategy": record.strategy,
            "tier": record.tier.name,
            "snapshot": record.snapshot_id,
            "data_read": record.data_read.isoformat(),
            "image": image,
        }

    def run(self):
        operation = self.operation
        environment = operation.environment
        try:
            record = drill_record(environment, operation.parameters or {})
        except PlanError as exc:
            raise OperationFailed(str(exc)) from exc
        self.client = engine.client_for(environment)
        self.log.info(
            f"Drill of record #{record.pk}: {record.service_name} {record.strategy} "
            f"in {record.tier.name}, snapshot {record.snapshot_id[:8]}, data read "
            f"{timezone.localtime(record.data_read):%Y-%m-%d %H:%M:%S}"
        )
        where = engine.describe_host(environment)
        try:
            with engine.engine_errors(where):
                remove_leftovers(
                    self.client, environment, self.log, current=operation.pk
                )
        except engine.EngineError as exc:
            raise OperationFailed(str(exc)) from exc
        abandoned = fail_abandoned_drills(environment)
        if abandoned:
            self.log.warning(
                f"{abandoned} drill(s) of {environment.name} whose operation ended "
                "without finishing them marked as could not run"
            )
        drill = RestoreDrill.objects.create(record=record, operation=operation)
        started = time.monotonic()
        try:
            with engine.engine_errors(where):
                proof = self.drill(record)
        except (BackupError, ResticError, engine.EngineError) as exc:
            self._finish(drill, ProofStatus.ERROR, {}, str(exc), started)
            evaluate_after(environment, self.log)
            raise OperationFailed(f"The drill could not run: {exc}") from exc
        except BaseException:
            self._finish(drill, ProofStatus.ERROR, {}, "Interrupted.", started)
            raise
        differences = [c for c in proof["compared"] if not c["ok"]]
        error = describe_differences(record, differences)
        status = ProofStatus.FAILED if differences else ProofStatus.PASSED
        self._finish(drill, status, proof, error, started)
        for fact in proof["compared"]:
            level = self.log.info if fact["ok"] else self.log.error
            level(
                f"{fact['what']}: expected {fact['expected']}, found {fact['found']}"
                + ("" if fact["ok"] else "  <- differs")
            )
        evaluate_after(environment, self.log)
        if differences:
            raise OperationFailed(error)
        self.log.info(
            f"Record #{record.pk} proven restorable: {len(proof['compared'])} "
            f"fact(s) match its manifest ({drill.duration_s:.1f} s)"
        )
        return {
            "drill": drill.pk,
            "record": record.pk,
            "status": drill.status,
            "compared": len(proof["compared"]),
            "seconds": drill.duration_s,
        }

    def _finish(self, drill, status, proof, error, started):
        drill.status = status
        drill.proof = proof
        drill.error = error
        drill.finished = timezone.now()
        drill.duration_s = round(time.monotonic() - started, 3)
        drill.save()

    # -- the drill --------------------------------------------------------------

    def drill(self, record):
        """Restore ``record`` into a throw-away copy; return the proof."""
        environment = record.environment
        source = open_source(record)
        strategy_row = _strategy_row(record)
        owner = str(self.operation.pk)
        timeout = float(
            (self.operation.parameters or {}).get("health_timeout")
            or stack_config()["HEALTH_TIMEOUT"]
        )
        target = Target(
            environment=environment,
            service=record.service,
            strategy_row=strategy_row,
            client=self.client,
            log=self.log,
            check_cancel=self.check_cancel,
            owner=owner,
            scratch=True,
            health_timeout=timeout,
        )
        steps = {}
        clock = time.monotonic()
        spec = None
        with ExitStack() as stack:
            if record.service is not None:
                spec = service_spec(environment, record.service)
                target.spec = spec
            loader = loader_for(source, target)
            if spec is not None:
                engine.ensure_image(
                    self.client, spec.image, service=spec.name, log=self.log
                )
            if loader.needs_container:
                self.start_copy(stack, target, spec, loader.publish)
            elif spec is not None:
                self.copy_volumes(stack, target, loader.keys())
            steps["copy"] = round(time.monotonic() - clock, 3)
            self.check_cancel()
            clock = time.monotonic()
            self.progress(30, "loading the snapshot")
            loaded = loader.load()
            steps["load"] = round(time.monotonic() - clock, 3)
            if spec is not None and not loader.needs_container:
                self.mount_in_image(stack, target, spec)
            clock = time.monotonic()
            self.progress(70, "measuring")
            found = loader.measure()
            steps["measure"] = round(time.monotonic() - clock, 3)
            compared = loader.compare(found)
        return {
            "compared": compared,
            "image": spec.image if spec is not None else "",
            "image_id": (
                self.client.api.inspect_image(spec.image).get("Id", "")
                if spec is not None
                else ""
            ),
            "versions": _versions(record.manifest or {}, found),
            "snapshot": source.snapshot_id,
            "tier": source.tier.name,
            "strategy": source.strategy,
            "loaded": loaded,
            "steps": steps,
        }

    def start_copy(self, stack, target, spec, publish):
        """Start a throw-away copy of the service; point ``target`` at it."""
        client, environment, owner = self.client, target.environment, target.owner
        network = stack.enter_context(
            engine.scratch_network(
                client,
                environment=environment,
                purpose=DRILL_PURPOSE,
                owner=owner,
                internal=not publish,
            )
        )
        volumes, mounts = {}, []
        for mount in spec.mounts:
            if mount.type == "tmpfs":
                mounts.append(mount)
            elif mount.type == "volume" and mount.key:
                volumes[mount.key] = stack.enter_context(
                    engine.scratch_volume(
                        client,
                        environment=environment,
                        purpose=DRILL_PURPOSE,
                        owner=owner,
                    )
                )
                mounts.append(
                    engine.MountSpec("volume", mount.target, volumes[mount.key])
                )
            elif mount.type == "volume":
                # An anonymous volume: the copy gets its own, removed with it.
                mounts.append(mount)
            # Bind mounts are the live host's files: the copy does without.
        container = stack.enter_context(
            engine.scratch_container(
                client,
                spec,
                environment=environment,
                purpose=DRILL_PURPOSE,
                owner=owner,
                network=network,
                mounts=mounts,
                publish=publish,
            )
        )
        engine.start_container(client, container, f"copy of {spec.name}")
        fresh = f", fresh volumes {', '.join(volumes.values())}" if volumes else ""
        self.log.info(
            f"Throw-away copy of {spec.name} ({spec.image}) started on network "
            f"{network}{fresh}"
        )
        engine.wait_ready(
            client,
            {f"copy of {spec.name}": container},
            timeout=target.health_timeout,
            check_cancel=self.check_cancel,
            log=self.log,
        )
        target.container = container
        target.volumes = volumes
        if publish:
            port = engine.published_port(client, container, publish[0])
            target.endpoint = f"http://127.0.0.1:{port}"

    def copy_volumes(self, stack, target, keys):
        """Give ``target`` a fresh volume per volume key the snapshot holds."""
        target.volumes = {
            key: stack.enter_context(
                engine.scratch_volume(
                    self.client,
                    environment=target.environment,
                    purpose=DRILL_PURPOSE,
                    owner=target.owner,
                )
            )
            for key in keys
        }
        self.log.info(
            "Fresh volumes: "
            + ", ".join(f"{k} {v}" for k, v in sorted(target.volumes.items()))
        )

    def mount_in_image(self, stack, target, spec):
        """Create (not start) a container of the service's image with the
        restored volumes where the service mounts them."""
        mounts = [
            engine.MountSpec("volume", m.target, target.volumes[m.key], True)
            for m in spec.mounts
            if m.type == "volume" and m.key in target.volumes
        ]
        stack.enter_context(
            engine.scratch_container(
                self.client,
                spec,
                environment=target.environment,
                purpose=DRILL_PURPOSE,
                owner=target.owner,
                network=None,
                mounts=mounts,
            )
        )
        self.log.info(
            f"{spec.image}: created with the restored volumes at "
            + ", ".join(m.target for m in mounts)
        )


ABANDONED = "Abandoned: the drill's operation ended without finishing it."


def fail_abandoned_drills(environment):
    """Mark the drills of ``environment`` left running by an operation that
    has ended (a killed worker) as could not run; return how many."""
    return (
        RestoreDrill.objects.filter(
            status=ProofStatus.RUNNING, record__environment=environment
        )
        .exclude(operation__status__in=OperationStatus.ACTIVE)
        .update(status=ProofStatus.ERROR, error=ABANDONED, finished=timezone.now())
    )


def _versions(manifest, found):
    for key in ("server_version", "redis_version"):
        if key in manifest or key in found:
            return {"backup": manifest.get(key), "drill": found.get(key)}
    return {}


def describe_differences(record, differences):
    """Return the error of a drill whose facts differ ("" when none)."""
    if not differences:
        return ""
    named = "; ".join(
        f"{d['what']}: {d['expected']} expected (the manifest), {d['found']} found"
        for d in differences[:NAMED_DIFFERENCES]
    )
    more = len(differences) - NAMED_DIFFERENCES
    return (
        f"Record #{record.pk} restored, but it does not match its manifest: {named}"
        + (f"; and {more} more difference(s)" if more > 0 else "")
        + "."
    )
