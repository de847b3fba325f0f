"""The operation engine: runners, requests, the per-stack lock, cancel, reaping.

A view, an admin action or a management command calls
:func:`request_operation`. It checks the permission, asks the runner for its
plan, and creates the :class:`~portal.models.Operation` row; after commit
the job (job id = operation id) goes onto the RQ queue of the environment's
Docker host (:mod:`portal.queues`). The worker runs :func:`portal.jobs.
run_operation`, which calls :meth:`OperationRunner.handle`: ``start()`` →
``run()`` → ``finish(status)``, as NetBox's ``JobRunner.handle`` does. Log
lines are saved, then published to the Channels group ``operation.<id>``
(AWX's persist-then-broadcast).

Locks and order
---------------
One mutating operation per (environment, stack) runs at a time; one with
``stack=None`` covers the whole environment. Every decision about who may
run (request, start, finish, cancel, reap) is taken in a transaction whose
first statement increments the environment's :class:`~portal.models.
EnvironmentLock` row. That write serializes the decisions of one
environment (a row lock on PostgreSQL, the database write lock on SQLite)
and its new value is the *ticket* that orders the environment's line.

An operation may start when no mutating operation with a lower ticket that
conflicts with it (same stack, or either covers the whole environment) is
still pending, queued or running. Only then is it handed to RQ (its
``dispatched`` time is set); when an operation finishes, the transaction
that finishes it dispatches whatever is now at the head of its line. So
waiting operations occupy no worker, they start strictly in request order,
and no number of workers can run two conflicting ones at once. ``wait=False``
refuses instead of waiting, naming the operation in the way.

Abandoned operations
--------------------
Whoever runs an operation (a work horse or an inline command) writes its
``heartbeat`` every ``HEARTBEAT_INTERVAL`` seconds. The reaper
(:func:`reap_operations`, run by every :class:`portal.worker.PortalWorker`
every ``REAP_INTERVAL`` seconds and by ``manage.py reap_operations``) fails
a running operation as *abandoned* when its RQ worker's key
``rq:worker:<name>`` has expired, when that worker runs on this host and its
process is gone, when its RQ job has ended without finishing it, or when its
heartbeat is older than ``ABANDON_AFTER`` seconds. Failing it releases its
lock and dispatches the next in line. A worker whose work horse is killed
reports that at once (``PortalWorker.handle_work_horse_killed``).
"""

import hashlib
import importlib
import json
import logging
import os
import socket
import threading
import time
import traceback
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.serializers.json import DjangoJSONEncoder
from django.db import (
    IntegrityError,
    OperationalError,
    connection,
    connections,
    router,
    transaction,
)
from django.db.models import Case, F, IntegerField, Max, Q, Value, When
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

from stacks.secrets import redact

from . import audit
from .choices import LogLevel, OperationStatus, Verb
from .consumers import drain_published, publish
from .models import EnvironmentLock, Operation, OperationLogLine
from .permissions import require
from .queues import get_queue, queue_name_for

__all__ = [
    "OperationAbandoned",
    "OperationCanceled",
    "OperationConflict",
    "OperationFailed",
    "OperationLog",
    "OperationRunner",
    "UnknownOperationKind",
    "abandon_operation",
    "autodiscover",
    "cancel_operation",
    "execute_operation",
    "finish_operation",
    "follow_operation",
    "get_config",
    "get_runner",
    "load_modules",
    "pid_alive",
    "queue_operation",
    "reap_operations",
    "register",
    "registered_kinds",
    "request_operation",
    "run_inline",
    "start_operation",
    "try_reap",
]

logger = logging.getLogger(__name__)

DEFAULTS = {
    # Seconds between heartbeats of the process running an operation.
    "HEARTBEAT_INTERVAL": 5,
    # A running operation whose heartbeat is older than this is abandoned.
    "ABANDON_AFTER": 20,
    # How often each worker runs the reaper (at most one worker per period).
    "REAP_INTERVAL": 10,
    # A dispatched operation whose RQ job has vanished is re-enqueued after
    # this many seconds.
    "LOST_JOB_AFTER": 60,
    # Log lines are saved in batches of at most this many lines ...
    "LOG_FLUSH_LINES": 500,
    # ... or at least this often (seconds), then published as one event.
    "LOG_FLUSH_INTERVAL": 0.2,
    # Modules holding runners outside ``<app>.jobs``.
    "RUNNER_MODULES": ["stacks.hostcheck"],
    # Username management commands act as when given no --user.
    "SYSTEM_USER": "",
}

# Longest stored line; longer text is cut (the rest is rarely useful and a
# single huge line would stall every viewer).
MAX_LINE_CHARS = 32_000

_STDLIB_LEVELS = {
    logging.DEBUG: LogLevel.DEBUG,
    logging.INFO: LogLevel.INFO,
    logging.WARNING: LogLevel.WARNING,
    logging.ERROR: LogLevel.ERROR,
    logging.CRITICAL: LogLevel.ERROR,
}

# Most lines in one operation.log event.
PUBLISH_LINES = 1000

_REAPER_LOCK_KEY = "portal:reaper:lock"


def get_config():
    """Return the engine's settings: ``settings.PORTAL_OPERATIONS`` over defaults.

    ``SYSTEM_USER`` also comes from ``settings.PORTAL_SYSTEM_USER`` or the
    ``PORTAL_SYSTEM_USER`` environment variable, so cron can set it without
    a settings change.
    """
    config = {**DEFAULTS, **getattr(settings, "PORTAL_OPERATIONS", {})}
    if not config["SYSTEM_USER"]:
        config["SYSTEM_USER"] = getattr(settings, "PORTAL_SYSTEM_USER", "") or (
            os.environ.get("PORTAL_SYSTEM_USER", "")
        )
    return config


# --- Exceptions -------------------------------------------------------------


class OperationFailed(Exception):
    """The work ran and did not succeed; the message becomes ``error``."""


class OperationCanceled(Exception):
    """The operation was canceled; the runner stops between steps."""


class OperationAbandoned(OperationCanceled):
    """The operation was taken away from this process (reaped or finished).

    A subclass of OperationCanceled so that a runner's cleanup for a
    cancel also runs.
    """


class OperationConflict(Exception):
    """A mutating operation is refused because another one holds the lock."""

    def __init__(self, message, *, blocker=None):
        super().__init__(message)
        self.blocker = blocker


class UnknownOperationKind(LookupError):
    """No runner is registered for this kind."""


# --- Registry ---------------------------------------------------------------

_registry = {}
_discovered = False


def register(cls):
    """Register the runner class ``cls`` under its ``kind`` (class decorator)."""
    if not cls.kind or not cls.verb:
        raise ImproperlyConfigured(f"{cls.__qualname__} needs a kind and a verb.")
    Verb(cls.verb)
    if cls.queue not in ("default", "long"):
        raise ImproperlyConfigured(f"{cls.__qualname__}.queue must be default or long.")
    existing = _registry.get(cls.kind)
    if existing is not None and (existing.__module__, existing.__qualname__) != (
        cls.__module__,
        cls.__qualname__,
    ):
        raise ImproperlyConfigured(
            f"Operation kind {cls.kind!r} is registered twice: by "
            f"{existing.__module__}.{existing.__qualname__} and "
            f"{cls.__module__}.{cls.__qualname__}."
        )
    _registry[cls.kind] = cls
    return cls


def autodiscover():
    """Import every app's ``jobs`` module and the configured runner modules."""
    global _discovered
    autodiscover_modules("jobs")
    load_modules(get_config()["RUNNER_MODULES"])
    _discovered = True


def get_runner(kind):
    """Return the runner class registered for ``kind``."""
    if kind not in _registry and not _discovered:
        autodiscover()
    try:
        return _registry[kind]
    except KeyError:
        raise UnknownOperationKind(f"No operation kind {kind!r}.") from None


def registered_kinds():
    """Return the registered kinds, sorted."""
    if not _discovered:
        autodiscover()
    return sorted(_registry)


# --- Log lines ----------------------------------------------------------------


class OperationLog:
    """The logger-like ``runner.log``: save every line, then publish it.

    Lines are buffered and written in batches by the runner's ticker thread
    (at ``LOG_FLUSH_LINES`` lines or every ``LOG_FLUSH_INTERVAL`` seconds),
    each batch with one INSERT (``executemany``), then published as
    ``operation.log`` events of at most ``PUBLISH_LINES`` lines.
    Saving in another thread keeps the lines out of any transaction the
    runner opens. Without a ticker (a runner used outside :meth:`
    OperationRunner.handle`) lines are saved by the caller.
    """

    def __init__(self, operation, *, echo=None):
        config = get_config()
        self.operation = operation
        self.group = operation.group_name
        self.echo = echo
        self.seq = operation.last_seq or 0
        self.saved_seq = self.seq
        self.flush_lines = int(config["LOG_FLUSH_LINES"])
        self.flush_interval = float(config["LOG_FLUSH_INTERVAL"])
        self._pending = []
        self._pending_since = None
        self._urgent = False
        self._cond = threading.Condition()
        self._flush_lock = threading.Lock()
        self.ticker = None

    def debug(self, msg, *args):
        self.log(LogLevel.DEBUG, msg, *args)

    def info(self, msg, *args):
        self.log(LogLevel.INFO, msg, *args)

    def warning(self, msg, *args):
        self.log(LogLevel.WARNING, msg, *args)

    def error(self, msg, *args):
        self.log(LogLevel.ERROR, msg, *args)

    def exception(self, msg, *args):
        """Log ``msg`` and the traceback of the exception being handled."""
        self.log(
            LogLevel.ERROR, f"{msg % args if args else msg}\n{traceback.format_exc()}"
        )

    def log(self, level, msg, *args):
        """Append one line at ``level``. Hot path: called for every line.

        ``level`` is a LogLevel, its value, or a stdlib logging level number.
        """
        if level.__class__ is not LogLevel:
            level = _STDLIB_LEVELS.get(level) or LogLevel(level)
        if len(args) == 1 and isinstance(args[0], dict) and args[0]:
            args = args[0]  # named placeholders, as logging allows
        text = msg % args if args else str(msg)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " …(truncated)"
        created = timezone.now()
        urgent = level in (LogLevel.WARNING, LogLevel.ERROR)
        with self._cond:
            self.seq += 1
            seq = self.seq
            self._pending.append((seq, level, text, created))
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            backlog = len(self._pending)
            if self.ticker is not None and (backlog >= self.flush_lines or urgent):
                self._urgent = True
                self._cond.notify()
        if self.echo is not None:
            self.echo(seq, level, text, created)
        if self.ticker is None:
            if backlog >= self.flush_lines or urgent:
                self.flush()
        elif backlog >= self.flush_lines * 20:
            # The writer is behind: save in the caller rather than grow
            # without bound.
            self.flush()

    def flush_due(self):
        """Return whether buffered lines should be written now."""
        with self._cond:
            if not self._pending:
                return False
            return (
                self._urgent
                or len(self._pending) >= self.flush_lines
                or time.monotonic() - self._pending_since >= self.flush_interval
            )

    def flush(self):
        """Save the buffered lines, then publish them as one event."""
        with self._flush_lock:
            with self._cond:
                batch = self._pending
                self._pending = []
                self._pending_since = None
                self._urgent = False
            if not batch:
                return
            try:
                batch = self._save(batch)
            except BaseException:
                # Keep the lines for the next attempt, in order.
                with self._cond:
                    self._pending[:0] = batch
                    if self._pending_since is None:
                        self._pending_since = time.monotonic()
                raise
            self.saved_seq = batch[-1][0]
            # One event per slice keeps Channels messages and WebSocket
            # frames small while a runner floods.
            for start in range(0, len(batch), PUBLISH_LINES):
                publish(
                    self.group,
                    {
                        "type": "operation.log",
                        "lines": [
                            {
                                "seq": seq,
                                "level": level,
                                "text": text,
                                "created": created.isoformat(),
                            }
                            for seq, level, text, created in batch[
                                start : start + PUBLISH_LINES
                            ]
                        ],
                    },
                )

    def _save(self, batch):
        try:
            _insert_lines(self.operation.pk, batch)
        except IntegrityError:
            # Someone else wrote a line (the reaper's "abandoned" line):
            # renumber after the stored ones rather than lose these.
            top = (
                OperationLogLine.objects.filter(
                    operation_id=self.operation.pk
                ).aggregate(top=Max("seq"))["top"]
                or 0
            )
            batch = [
                (top + i, level, text, created)
                for i, (_, level, text, created) in enumerate(batch, start=1)
            ]
            _insert_lines(self.operation.pk, batch)
            with self._cond:
                self.seq = max(self.seq, batch[-1][0])
        return batch


def _insert_lines(operation_id, batch):
    """Insert ``(seq, level, text, created)`` lines with one executemany.

    Hot path: ``bulk_create`` builds a model instance per line and was the
    bottleneck of a flooding runner; this writes the same rows in about
    half the time.
    """
    db = connections[router.db_for_write(OperationLogLine)]
    meta = OperationLogLine._meta
    fields = [
        meta.get_field(name)
        for name in ("operation", "seq", "level", "text", "created")
    ]
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        db.ops.quote_name(meta.db_table),
        ", ".join(db.ops.quote_name(field.column) for field in fields),
        ", ".join(["%s"] * len(fields)),
    )
    operation_value = fields[0].get_db_prep_save(operation_id, db)
    prepare_created = fields[4].get_db_prep_save
    rows = [
        (operation_value, seq, level, text, prepare_created(created, db))
        for seq, level, text, created in batch
    ]
    with transaction.atomic(using=db.alias), db.cursor() as cursor:
        cursor.executemany(sql, rows)


class _Ticker(threading.Thread):
    """Write buffered log lines and the heartbeat of a running operation."""

    def __init__(self, runner):
        super().__init__(name=f"operation-{runner.operation.pk}", daemon=True)
        self.runner = runner
        self.log = runner.log
        self.interval = float(get_config()["HEARTBEAT_INTERVAL"])
        self._stopping = False

    def stop(self):
        with self.log._cond:
            self._stopping = True
            self.log._cond.notify()
        self.join()

    def run(self):
        next_beat = time.monotonic() + self.interval
        try:
            while True:
                with self.log._cond:
                    if not self._stopping:
                        self.log._cond.wait(timeout=self.log.flush_interval / 2)
                    stopping = self._stopping
                if stopping:
                    return
                try:
                    if self.log.flush_due():
                        self.log.flush()
                    if time.monotonic() >= next_beat:
                        next_beat = time.monotonic() + self.interval
                        self.beat()
                except Exception:  # noqa: BLE001  (keep beating; the runner goes on)
                    logger.exception("Operation %s: ticker", self.runner.operation.pk)
        finally:
            connection.close()

    def beat(self):
        alive = Operation.objects.filter(
            pk=self.runner.operation.pk, status=OperationStatus.RUNNING
        ).update(heartbeat=timezone.now(), last_seq=self.log.saved_seq)
        if not alive:
            self.runner.lost = True


# --- Runners ------------------------------------------------------------------


class OperationRunner:
    """Base class of what a worker executes for one kind of operation.

    Subclasses set ``kind`` and ``verb``, may override :meth:`plan`, and
    implement :meth:`run`, which reads ``self.operation`` and returns a
    JSON-able result. Raise :class:`OperationFailed` for an expected failure;
    call :meth:`check_cancel` between steps and :meth:`progress` as work
    advances. The NetBox ``JobRunner`` shape (``netbox/netbox/jobs.py``).
    """

    kind = ""
    verb = ""
    queue = "default"
    mutating = True
    job_timeout = 3600

    def __init__(self, operation, *, echo=None):
        self.operation = operation
        self.log = OperationLog(operation, echo=echo)
        self.lost = False

    def __str__(self):
        return f"{self.kind} runner of {self.operation.pk}"

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        """Return what the operation would do, computed when it is requested."""
        return {}

    def run(self):
        """Do the work; return a JSON-able result dict."""
        raise NotImplementedError

    def progress(self, percent, message=""):
        """Record and publish progress (0-100) with an optional message."""
        self.log.flush()
        operation = self.operation
        operation.progress = max(0, min(100, int(percent)))
        operation.progress_message = str(message)[:200]
        operation.last_seq = self.log.saved_seq
        Operation.objects.filter(
            pk=operation.pk, status=OperationStatus.RUNNING
        ).update(
            progress=operation.progress,
            progress_message=operation.progress_message,
            last_seq=operation.last_seq,
        )
        publish(operation.group_name, operation.status_event())

    def check_cancel(self):
        """Raise OperationCanceled if a cancel was requested (call between steps)."""
        row = (
            Operation.objects.filter(pk=self.operation.pk)
            .values_list("status", "cancel_requested", "canceled_by__username")
            .first()
        )
        if self.lost or row is None or row[0] != OperationStatus.RUNNING:
            self.lost = True
            raise OperationAbandoned(
                f"Operation {self.operation.pk} is no longer running here."
            )
        if row[1]:
            self.operation.cancel_requested = True
            raise OperationCanceled(f"Canceled by {row[2]}." if row[2] else "Canceled.")

    def handle(self, *, worker_name=""):
        """Start, run and finish the operation; return the result.

        Return None without running when the operation may not start (it
        was canceled, or is not at the head of its line).
        """
        if not start_operation(self.operation, worker_name=worker_name):
            return None
        return self.execute()

    def execute(self, *, reraise=True):
        """Run a started operation and finish it with the status it earned."""
        from rq.timeouts import JobTimeoutException

        operation = self.operation
        self.log.ticker = _Ticker(self)
        self.log.ticker.start()
        status, result, error = OperationStatus.SUCCEEDED, None, ""
        raised = None
        try:
            result = _jsonable(self.run())
        except OperationAbandoned:
            status = None
        except OperationCanceled as exc:
            status, error = OperationStatus.CANCELED, str(exc) or "Canceled."
            self.log.warning(error)
        except OperationFailed as exc:
            status, error = OperationStatus.FAILED, str(exc) or "Failed."
            self.log.error(error)
        except JobTimeoutException as exc:
            status = OperationStatus.FAILED
            error = f"Timed out after {self.job_timeout} s ({exc})."
            self.log.error(error)
        except KeyboardInterrupt as exc:
            status, error = OperationStatus.CANCELED, "Interrupted."
            self.log.warning(error)
            raised = exc
        except Exception as exc:  # noqa: BLE001  (errored: saved, then re-raised)
            status, error = OperationStatus.ERRORED, traceback.format_exc()
            self.log.error(error)
            raised = exc if reraise else None
        finally:
            self.log.ticker.stop()
            self.log.ticker = None
            self.log.flush()
        try:
            if status is not None:
                finish_operation(
                    operation,
                    status,
                    result=result,
                    error=error,
                    last_seq=self.log.saved_seq,
                )
        finally:
            # A work horse leaves with os._exit(): send the last events now.
            drain_published()
        if raised is not None:
            raise raised
        return result


def _jsonable(value):
    """Return ``value`` as it reads back from a JSONField."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


# --- The per-environment mutex and the line -----------------------------------


def _touch_lock(environment_id):
    return EnvironmentLock.objects.filter(environment_id=environment_id).update(
        tickets=F("tickets") + 1, updated=timezone.now()
    )


def _in_mutex(environment_id, fn):
    """Call ``fn(ticket)`` in a transaction serialized per environment.

    The first statement is a write to the environment's lock row, which
    serializes every caller for that environment (and makes SQLite take its
    write lock before reading, so the busy timeout applies instead of an
    immediate "database is locked"). Inside an outer atomic block that has
    already read, SQLite may still raise it; call the engine outside one.
    """
    attempts = 1 if connection.in_atomic_block else 5
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                if not _touch_lock(environment_id):
                    try:
                        with transaction.atomic():
                            EnvironmentLock.objects.create(
                                environment_id=environment_id
                            )
                    except IntegrityError:
                        pass
                    _touch_lock(environment_id)
                ticket = EnvironmentLock.objects.values_list("tickets", flat=True).get(
                    environment_id=environment_id
                )
                return fn(ticket)
        except OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _blocker(operation):
    """Return the operation ahead of ``operation`` in its line, or None.

    Running ones first, then by ticket. Non-mutating operations wait for
    nothing.
    """
    if not operation.mutating:
        return None
    ahead = Operation.objects.filter(
        environment_id=operation.environment_id,
        mutating=True,
        ticket__lt=operation.ticket,
        status__in=OperationStatus.IN_LINE,
    ).exclude(pk=operation.pk)
    if operation.stack_id is not None:
        ahead = ahead.filter(Q(stack_id=operation.stack_id) | Q(stack__isnull=True))
    return (
        ahead.select_related("environment", "stack")
        .annotate(
            running_first=Case(
                When(status=OperationStatus.RUNNING, then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        .order_by("running_first", "ticket")
        .first()
    )


def _conflict_message(operation, blocker):
    where = f"{blocker.environment.name}/{blocker.stack.name if blocker.stack else '*'}"
    state = "running" if blocker.status == OperationStatus.RUNNING else "waiting"
    return (
        f"Refused {operation.kind} on {operation.target}: operation {blocker.pk} "
        f"({blocker.kind}, {blocker.status}) is {state} on {where}."
    )


def _dispatch_ready(environment_id):
    """Hand every queued operation now at the head of its line to RQ.

    Call inside :func:`_in_mutex`; the jobs are enqueued after commit.
    """
    waiting = Operation.objects.filter(
        environment_id=environment_id,
        status=OperationStatus.QUEUED,
        dispatched__isnull=True,
        inline=False,
    ).order_by("ticket")
    for operation in waiting:
        if _blocker(operation) is not None:
            continue
        operation.dispatched = timezone.now()
        Operation.objects.filter(pk=operation.pk).update(
            dispatched=operation.dispatched
        )
        transaction.on_commit(partial(_enqueue_job, operation))


def _enqueue_job(operation):
    """Put ``operation``'s job on its RQ queue; on failure the reaper retries."""
    try:
        timeout = get_runner(operation.kind).job_timeout
    except UnknownOperationKind:
        timeout = None
    try:
        get_queue(operation.queue_name).enqueue_call(
            "portal.jobs.run_operation",
            args=(str(operation.pk),),
            job_id=str(operation.pk),
            timeout=timeout,
            description=f"{operation.kind} {operation.target}",
        )
    except Exception:  # noqa: BLE001  (Redis down: the reaper re-enqueues)
        logger.exception("Could not enqueue operation %s", operation.pk)


def _publish_status(operation):
    publish(operation.group_name, operation.status_event())


def _finish_locked(
    operation,
    status,
    *,
    result=None,
    error="",
    last_seq=None,
    audit_action="operation.finished",
    audit_actor=None,
    audit_data=None,
):
    """Finish ``operation`` inside the mutex; return whether it was active.

    The same transaction appends ``audit_action`` to the audit log, by
    ``audit_actor`` (default: the requester, on whose behalf it ran).
    """
    now = timezone.now()
    fields = {"status": status, "finished": now, "error": error, "result": result}
    if status == OperationStatus.SUCCEEDED:
        fields["progress"] = 100
    if last_seq is not None:
        fields["last_seq"] = last_seq
    if not Operation.objects.filter(
        pk=operation.pk, status__in=OperationStatus.ACTIVE
    ).update(**fields):
        return False
    operation.refresh_from_db()
    _dispatch_ready(operation.environment_id)
    transaction.on_commit(partial(_publish_status, operation))
    data = {"status": str(status)}
    if error:
        data["error"] = _first_line(error)
    if operation.started is not None:
        data["duration_s"] = round((now - operation.started).total_seconds(), 3)
    _audit(audit_action, operation, actor=audit_actor, **data, **(audit_data or {}))
    return True


def _try_start(operation, worker_name):
    """Start ``operation`` if it may; return (started, blocker)."""

    def start(ticket):
        current = Operation.objects.get(pk=operation.pk)
        if current.status != OperationStatus.QUEUED:
            return False, None
        if current.cancel_requested:
            _finish_locked(
                operation, OperationStatus.CANCELED, error="Canceled before it started."
            )
            return False, None
        blocker = _blocker(current)
        if blocker is not None:
            # Not at the head of its line (it should not have been
            # dispatched); the finisher of the blocker dispatches it again.
            if current.dispatched is not None and not current.inline:
                Operation.objects.filter(pk=current.pk).update(dispatched=None)
            return False, blocker
        now = timezone.now()
        fields = {
            "status": OperationStatus.RUNNING,
            "started": now,
            "heartbeat": now,
            "worker_name": worker_name[:200],
        }
        Operation.objects.filter(pk=operation.pk).update(**fields)
        for name, value in fields.items():
            setattr(operation, name, value)
        operation.cancel_requested = False
        transaction.on_commit(partial(_publish_status, operation))
        _audit("operation.started", operation, worker=fields["worker_name"])
        return True, None

    return _in_mutex(operation.environment_id, start)


def start_operation(operation, *, worker_name=""):
    """Mark ``operation`` running if it is queued and first in its line.

    Return whether it started. A queued operation canceled before it
    starts is finished as canceled here, so it never runs.
    """
    started, _blocked = _try_start(operation, worker_name)
    return started


def finish_operation(operation, status, *, result=None, error="", last_seq=None):
    """Finish ``operation`` with the terminal ``status``; dispatch the next.

    Return False when it had already finished (for instance reaped).
    """
    status = OperationStatus(status)
    if status not in OperationStatus.TERMINAL:
        raise ValueError(f"{status} is not a terminal status.")
    result = _jsonable(result)
    return _in_mutex(
        operation.environment_id,
        lambda ticket: _finish_locked(
            operation, status, result=result, error=error, last_seq=last_seq
        ),
    )


# --- Audit ------------------------------------------------------------------

_OPERATION_TYPE = "portal.operation"

# A plan whose JSON is longer is summarized in its audit entry (its hash
# and top-level keys); the operation row keeps it whole.
PLAN_AUDIT_CHARS = 2000


def _first_line(text, limit=500):
    """Return the line that says what went wrong (a traceback's last)."""
    lines = str(text).strip().splitlines()
    if not lines:
        return ""
    return (lines[-1] if lines[0].startswith("Traceback") else lines[0])[:limit]


def _plan_summary(plan):
    """Return the plan as its audit entry keeps it: hash, and itself if small."""
    text = json.dumps(plan, sort_keys=True, separators=(",", ":"))
    summary = {"sha256": hashlib.sha256(text.encode()).hexdigest()}
    if len(text) <= PLAN_AUDIT_CHARS:
        summary["content"] = redact(plan)
    else:
        summary["keys"] = sorted(plan)[:50] if isinstance(plan, dict) else []
        summary["chars"] = len(text)
    return summary


def _audit(action, operation, *, actor=None, **data):
    """Append ``action`` about ``operation`` (call inside the mutex).

    ``actor`` None means the requester (the operation runs on their
    behalf); :data:`portal.audit.SYSTEM` means no user (the reaper). One
    SELECT names the operation whatever the caller has loaded.
    """
    row = (
        Operation.objects.filter(pk=operation.pk)
        .values_list(
            "kind",
            "requested_by_id",
            "requested_by__username",
            "environment__name",
            "stack__name",
            "service__name",
        )
        .get()
    )
    kind, requester_id, requester_name, env_name, stack_name, service_name = row
    if actor is None and requester_id is not None:
        # A reference to the requester without loading the row.
        user_model = get_user_model()
        actor = user_model(
            pk=requester_id, **{user_model.USERNAME_FIELD: requester_name}
        )
    elif isinstance(actor, str):  # audit.SYSTEM
        actor = None
    target = "/".join(
        [env_name, stack_name or "*", *([service_name] if service_name else [])]
    )
    audit.record(
        action,
        actor=actor,
        environment=env_name,
        object_type=_OPERATION_TYPE,
        object_id=operation.pk,
        object_repr=f"{kind} {target}",
        data={"kind": kind, **data},
    )


# --- Requests -----------------------------------------------------------------


def _inline_worker_name():
    return f"inline:{socket.gethostname()}:{os.getpid()}"


def request_operation(
    kind,
    *,
    user,
    environment,
    stack=None,
    service=None,
    parameters=None,
    wait=True,
    enqueue=True,
):
    """Request an operation of ``kind``; return the queued Operation.

    Check ``user_can(user, runner.verb, environment)`` (PermissionDenied),
    compute the plan, and create the row in one transaction. A mutating
    operation whose (environment, stack) is busy waits its turn, or with
    ``wait=False`` raises :class:`OperationConflict` naming the operation in
    the way. With ``enqueue=False`` the row is for :func:`run_inline`: the
    calling process runs it and no worker ever sees it.
    """
    runner = get_runner(kind)
    require(user, runner.verb, environment)
    if service is not None:
        if stack is None:
            stack = service.stack
        elif service.stack_id != stack.pk:
            raise ValueError(f"Service {service} is not part of stack {stack}.")
    parameters = _jsonable(dict(parameters or {}))
    plan = _jsonable(
        runner.plan(
            environment=environment, stack=stack, service=service, parameters=parameters
        )
        or {}
    )
    queue_name = queue_name_for(environment, runner.queue) if enqueue else ""

    def create(ticket):
        now = timezone.now()
        operation = Operation(
            kind=kind,
            environment=environment,
            stack=stack,
            service=service,
            parameters=parameters,
            plan=plan,
            status=OperationStatus.PENDING,
            mutating=runner.mutating,
            ticket=ticket,
            inline=not enqueue,
            requested_by=user if user.is_authenticated else None,
            queue_name=queue_name,
            created=now,
        )
        if not enqueue:
            operation.worker_name = _inline_worker_name()
            operation.heartbeat = now
        operation.save(force_insert=True)
        blocker = _blocker(operation)
        if blocker is not None and not wait:
            raise OperationConflict(
                _conflict_message(operation, blocker), blocker=blocker
            )
        operation.status = OperationStatus.QUEUED
        operation.enqueued = now
        operation.save(update_fields=["status", "enqueued"])
        if enqueue and blocker is None:
            _dispatch_ready(environment.pk)
            operation.refresh_from_db(fields=["dispatched"])
        audit.record(
            "operation.requested",
            actor=user,
            environment=environment,
            object_type=_OPERATION_TYPE,
            object_id=operation.pk,
            object_repr=f"{kind} {operation.target}",
            data={
                "kind": kind,
                "stack": stack.name if stack else None,
                "service": service.name if service else None,
                "parameters": redact(parameters),
                "plan": _plan_summary(plan),
                "inline": not enqueue,
                "queue": queue_name,
            },
        )
        return operation

    return _in_mutex(environment.pk, create)


def queue_operation(operation, *, wait=True):
    """Put an operation awaiting approval in its line (for the approvals flow)."""

    def enqueue(ticket):
        current = Operation.objects.get(pk=operation.pk)
        if current.status != OperationStatus.AWAITING_APPROVAL:
            raise ValueError(f"Operation {operation.pk} is {current.status}.")
        current.ticket = ticket
        blocker = _blocker(current)
        if blocker is not None and not wait:
            raise OperationConflict(
                _conflict_message(current, blocker), blocker=blocker
            )
        now = timezone.now()
        Operation.objects.filter(pk=operation.pk).update(
            ticket=ticket, status=OperationStatus.QUEUED, enqueued=now
        )
        operation.ticket, operation.status, operation.enqueued = (
            ticket,
            OperationStatus.QUEUED,
            now,
        )
        if not current.inline:
            _dispatch_ready(operation.environment_id)
        return operation

    return _in_mutex(operation.environment_id, enqueue)


def cancel_operation(operation, *, user):
    """Ask ``operation`` to stop; return it refreshed.

    A running operation stops at its runner's next ``check_cancel()``; one
    that has not started is canceled at once and never runs.
    """
    require(user, Verb.CANCEL, operation.environment)
    canceled_by = user if user.is_authenticated else None

    def cancel(ticket):
        current = Operation.objects.get(pk=operation.pk)
        if current.status in OperationStatus.TERMINAL:
            return False
        Operation.objects.filter(pk=current.pk).update(
            cancel_requested=True, canceled_by=canceled_by
        )
        if current.status != OperationStatus.RUNNING:
            _finish_locked(
                current,
                OperationStatus.CANCELED,
                error=f"Canceled by {user} before it started.",
                audit_action="operation.canceled",
                audit_actor=user,
                audit_data={"was": str(current.status)},
            )
        else:
            current.cancel_requested = True
            transaction.on_commit(partial(_publish_status, current))
            _audit(
                "operation.canceled",
                current,
                actor=user,
                status=str(current.status),
                stops="at the runner's next check",
            )
        return current.dispatched is not None and current.started is None

    was_dispatched = _in_mutex(operation.environment_id, cancel)
    if was_dispatched:
        _cancel_rq_job(operation)
    operation.refresh_from_db()
    return operation


def _cancel_rq_job(operation):
    """Take a canceled operation's job off its queue (it would be a no-op)."""
    from rq.exceptions import InvalidJobOperation, NoSuchJobError
    from rq.job import Job

    try:
        queue = get_queue(operation.queue_name)
        Job.fetch(str(operation.pk), connection=queue.connection).cancel()
    except (NoSuchJobError, InvalidJobOperation):
        pass
    except Exception:  # noqa: BLE001  (the job finds the row canceled anyway)
        logger.warning("Could not cancel the RQ job of %s", operation.pk, exc_info=True)


# --- Running ------------------------------------------------------------------


def execute_operation(operation_id, *, worker_name=""):
    """Run the queued operation ``operation_id``: what the RQ job does."""
    operation = (
        Operation.objects.select_related("environment", "stack", "service")
        .filter(pk=operation_id)
        .first()
    )
    if operation is None:
        logger.warning("Operation %s does not exist; nothing to run.", operation_id)
        return None
    if operation.status != OperationStatus.QUEUED:
        logger.info(
            "Operation %s is %s; not running it.", operation_id, operation.status
        )
        return None
    try:
        runner_class = get_runner(operation.kind)
    except UnknownOperationKind as exc:
        finish_operation(operation, OperationStatus.ERRORED, error=str(exc))
        raise
    return runner_class(operation).handle(worker_name=worker_name)


def run_inline(operation, *, echo=None, on_wait=None, poll=0.5):
    """Run ``operation`` (requested with ``enqueue=False``) in this process.

    The same runner, lock and log lines as a worker: wait for the head of
    the line (calling ``on_wait(blocker)`` when the operation in the way
    changes), start, run, finish. ``echo(seq, level, text, created)`` sees
    every line as it is logged. Return the refreshed operation.
    """
    if not operation.inline:
        raise ValueError(f"Operation {operation.pk} was handed to a worker.")
    runner = get_runner(operation.kind)(operation, echo=echo)
    worker_name = operation.worker_name or _inline_worker_name()
    waiting_for = None
    try:
        while True:
            started, blocker = _try_start(operation, worker_name)
            if started:
                break
            if blocker is None:
                operation.refresh_from_db()
                return operation
            if on_wait is not None and blocker.pk != waiting_for:
                on_wait(blocker)
            waiting_for = blocker.pk
            Operation.objects.filter(
                pk=operation.pk, status=OperationStatus.QUEUED
            ).update(heartbeat=timezone.now())
            time.sleep(poll)
    except KeyboardInterrupt:
        finish_operation(
            operation, OperationStatus.CANCELED, error="Interrupted while waiting."
        )
        raise
    runner.execute(reraise=False)
    operation.refresh_from_db()
    return operation


def follow_operation(operation, write, *, after=0, poll=0.25):
    """Call ``write(line)`` for each line after ``after`` until it finishes.

    Read the saved lines, as a browser that reconnects would; return the
    refreshed, finished operation.
    """
    last = after
    while True:
        operation.refresh_from_db()
        lines = list(
            OperationLogLine.objects.filter(operation=operation, seq__gt=last).order_by(
                "seq"
            )[:1000]
        )
        for line in lines:
            write(line)
            last = line.seq
        if len(lines) == 1000:
            continue
        if operation.is_terminal and (last >= operation.last_seq or not lines):
            return operation
        if not lines:
            time.sleep(poll)


# --- Reaping ------------------------------------------------------------------


def pid_alive(pid):
    """Return whether process ``pid`` of this host exists and is no zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _abandon_reason(operation, redis, stale_before):
    """Return why ``operation`` looks abandoned, or None while it lives."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus
    from rq.worker import Worker

    name = operation.worker_name
    here = socket.gethostname()
    if operation.inline or name.startswith("inline:"):
        _prefix, host, pid = (name.split(":", 2) + ["", ""])[:3]
        if host == here and pid.isdigit() and not pid_alive(int(pid)):
            return f"process {pid} on {host} that ran it has exited"
    elif operation.status == OperationStatus.RUNNING:
        if name:
            key = Worker.redis_worker_namespace_prefix + name
            data = redis.hgetall(key)
            if not data:
                return f"worker {name} is gone (its RQ heartbeat key {key} expired)"
            host = data.get(b"hostname", b"").decode()
            pid = data.get(b"pid", b"").decode()
            if host == here and pid.isdigit() and not pid_alive(int(pid)):
                return f"worker {name} (pid {pid}) is no longer running"
        try:
            job = Job.fetch(str(operation.pk), connection=redis)
            job_status = job.get_status(refresh=False)
        except NoSuchJobError:
            return f"its RQ job {operation.pk} no longer exists"
        if job_status in (
            JobStatus.FAILED,
            JobStatus.STOPPED,
            JobStatus.CANCELED,
            JobStatus.FINISHED,
        ):
            return f"its RQ job {_job_ended(job_status)} without finishing it"
    if operation.heartbeat is None or operation.heartbeat < stale_before:
        seen = operation.heartbeat.isoformat() if operation.heartbeat else "never"
        return f"no heartbeat from {name or 'its worker'} since {seen}"
    return None


def _job_ended(job_status):
    """Return how an RQ job ended, in words: ``failed``, ``was stopped``."""
    value = getattr(job_status, "value", job_status)
    return {
        "failed": "failed",
        "finished": "returned",
        "stopped": "was stopped",
        "canceled": "was canceled",
    }.get(value, f"ended as {value}")


def abandon_operation(operation, reason):
    """Fail ``operation`` as abandoned for ``reason``; release its lock.

    Return False if it was no longer active.
    """
    error = f"Abandoned: {reason}."

    def abandon(ticket):
        current = (
            Operation.objects.filter(
                pk=operation.pk,
                status__in=(OperationStatus.QUEUED, OperationStatus.RUNNING),
            )
            .select_related("environment", "stack")
            .first()
        )
        if current is None:
            return False
        top = current.lines.aggregate(top=Max("seq"))["top"] or 0
        line = OperationLogLine.objects.create(
            operation=current, seq=top + 1, level=LogLevel.ERROR, text=error
        )
        transaction.on_commit(
            partial(
                publish,
                current.group_name,
                {"type": "operation.log", "lines": [line.as_event()]},
            )
        )
        return _finish_locked(
            current,
            OperationStatus.FAILED,
            error=error,
            last_seq=line.seq,
            audit_action="operation.abandoned",
            audit_actor=audit.SYSTEM,
            audit_data={"reason": reason},
        )

    done = _in_mutex(operation.environment_id, abandon)
    if done:
        logger.warning("Operation %s %s", operation.pk, error)
    return done


def _redis():
    import django_rq

    return django_rq.get_connection("default")


def reap_operations(*, dry_run=False, environments=None):
    """Fail abandoned operations and recover lost jobs; return what was found.

    Return a list of ``(operation, reason)``. ``environments`` limits the
    search; ``dry_run`` changes nothing.
    """
    config = get_config()
    now = timezone.now()
    stale_before = now - timedelta(seconds=float(config["ABANDON_AFTER"]))
    redis = _redis()
    active = Operation.objects.select_related("environment", "stack").filter(
        Q(status=OperationStatus.RUNNING)
        | Q(status=OperationStatus.QUEUED, inline=True)
    )
    if environments is not None:
        active = active.filter(environment__in=environments)
    found = []
    for operation in active:
        reason = _abandon_reason(operation, redis, stale_before)
        if reason is not None:
            found.append((operation, reason))
    if dry_run:
        return found
    for operation, reason in found:
        abandon_operation(operation, reason)
    _recover_lost_jobs(redis, now - timedelta(seconds=float(config["LOST_JOB_AFTER"])))
    stalled = Operation.objects.filter(
        status=OperationStatus.QUEUED, inline=False, dispatched__isnull=True
    )
    if environments is not None:
        stalled = stalled.filter(environment__in=environments)
    for environment_id in set(stalled.values_list("environment_id", flat=True)):
        _in_mutex(environment_id, lambda ticket, e=environment_id: _dispatch_ready(e))
    return found


def _recover_lost_jobs(redis, dispatched_before):
    """Re-enqueue dispatched operations whose RQ job vanished; error failed ones."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job, JobStatus

    lost = Operation.objects.filter(
        status=OperationStatus.QUEUED, inline=False, dispatched__lt=dispatched_before
    ).select_related("environment", "stack")
    for operation in lost:
        try:
            job = Job.fetch(str(operation.pk), connection=redis)
            job_status = job.get_status(refresh=False)
        except NoSuchJobError:
            job, job_status = None, None
        if job_status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED):
            continue
        if job_status in (JobStatus.FAILED, JobStatus.STOPPED):
            result = job.latest_result()
            info = ((result and result.exc_string) or "").strip().splitlines()
            finish_operation(
                operation,
                OperationStatus.ERRORED,
                error=f"Its RQ job {_job_ended(job_status)} before it started: "
                f"{info[-1] if info else 'no details'}",
            )
            continue
        logger.warning(
            "Operation %s lost its RQ job; enqueueing it again", operation.pk
        )
        Operation.objects.filter(pk=operation.pk).update(dispatched=timezone.now())
        _enqueue_job(operation)


def try_reap(owner, *, interval=None):
    """Run the reaper unless another process did within ``interval`` seconds.

    Return the list :func:`reap_operations` returned, or None if skipped.
    """
    interval = float(interval or get_config()["REAP_INTERVAL"])
    redis = _redis()
    if not redis.set(_REAPER_LOCK_KEY, owner, nx=True, px=max(1, int(interval * 900))):
        return None
    return reap_operations()


def load_modules(paths):
    """Import the dotted modules ``paths`` (runners kept outside ``jobs``)."""
    for path in paths:
        importlib.import_module(path)
