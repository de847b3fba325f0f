"""The line of each environment: the mutex, tickets, dispatch, start and finish."""

import logging
import time
from functools import partial

from django.db import (
    IntegrityError,
    OperationalError,
    connection,
    transaction,
)
from django.db.models import Case, IntegerField, Q, Value, When
from django.utils import timezone

from ..choices import OperationStatus
from ..models import EnvironmentLock, Operation
from ..publish import publish
from ..queues import get_queue
from .exceptions import UnknownOperationKind
from .records import _audit, _first_line, jsonable
from .registry import get_runner

__all__ = ["OPERATION_JOB", "finish_operation", "start_operation"]

logger = logging.getLogger(__name__)

#: The RQ job every operation is run by (its id is the operation's).
OPERATION_JOB = "portal.jobs.run_operation"


_lock_sql = {}


def _lock_statements(conn):
    """Return the SQL that takes an environment's lock (built once per database)."""
    sql = _lock_sql.get(conn.alias)
    if sql is not None:
        return sql
    qn = conn.ops.quote_name
    meta = EnvironmentLock._meta
    table, tickets, updated, pk = (
        qn(meta.db_table),
        qn(meta.get_field("tickets").column),
        qn(meta.get_field("updated").column),
        qn(meta.pk.column),
    )
    advance = (
        f"UPDATE {table} SET {tickets} = {tickets} + 1, {updated} = %s WHERE {pk} = %s"
    )
    # UPDATE ... RETURNING where the database has it (PostgreSQL, SQLite
    # from 3.35), as portal.audit does for its head row.
    returning = conn.vendor in ("postgresql", "sqlite") and (
        conn.features.can_return_columns_from_insert
    )
    sql = {
        "advance": advance,
        "advance_returning": f"{advance} RETURNING {tickets}" if returning else None,
        "read": f"SELECT {tickets} FROM {table} WHERE {pk} = %s",
    }
    _lock_sql[conn.alias] = sql
    return sql


def _take_lock(environment_id):
    """Increment the environment's lock row; return the ticket, None if no row.

    Hot path: every request, start and finish begins with it, so it is
    plain SQL, one statement where the database can ``UPDATE ... RETURNING``.
    """
    sql = _lock_statements(connection)
    now = EnvironmentLock._meta.get_field("updated").get_db_prep_save(
        timezone.now(), connection
    )
    with connection.cursor() as cursor:
        if sql["advance_returning"]:
            cursor.execute(sql["advance_returning"], [now, environment_id])
            row = cursor.fetchone()
            return None if row is None else row[0]
        cursor.execute(sql["advance"], [now, environment_id])
        if not cursor.rowcount:
            return None
        cursor.execute(sql["read"], [environment_id])
        return cursor.fetchone()[0]


def _in_mutex(environment_id, fn):
    """Call ``fn(ticket)`` in a transaction serialized per environment.

    The first statement is a write to the environment's lock row, which
    serializes every caller for that environment (a row lock on PostgreSQL;
    on SQLite the database write lock, which the IMMEDIATE transactions of
    the settings take at BEGIN). Inside an outer atomic block that has
    already read in a DEFERRED transaction, SQLite may still raise
    "database is locked"; call the engine outside one.
    """
    attempts = 1 if connection.in_atomic_block else 5
    for attempt in range(attempts):
        try:
            with transaction.atomic():
                ticket = _take_lock(environment_id)
                if ticket is None:
                    try:
                        with transaction.atomic():
                            EnvironmentLock.objects.create(
                                environment_id=environment_id
                            )
                    except IntegrityError:
                        pass
                    ticket = _take_lock(environment_id)
                return fn(ticket)
        except OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def _ahead(operation):
    """Return the operations that keep ``operation`` from starting (unordered).

    Mutating operations of its environment with a lower ticket that are
    still in line and conflict with it: the same stack, or either covers the
    whole environment.
    """
    ahead = Operation.objects.filter(
        environment_id=operation.environment_id,
        mutating=True,
        ticket__lt=operation.ticket,
        status__in=OperationStatus.IN_LINE,
    ).exclude(pk=operation.pk)
    if operation.stack_id is not None:
        ahead = ahead.filter(Q(stack_id=operation.stack_id) | Q(stack__isnull=True))
    return ahead


def _is_blocked(operation):
    """Return whether an operation is ahead of ``operation`` in its line.

    Non-mutating operations wait for nothing. Cheaper than :func:`_blocker`
    (no joins, no ordering), for callers that do not name the blocker.
    """
    return operation.mutating and _ahead(operation).exists()


def _blocker(operation):
    """Return the operation ahead of ``operation`` in its line, or None.

    Running ones first, then by ticket. Non-mutating operations wait for
    nothing.
    """
    if not _is_blocked(operation):
        # The common case costs one light query instead of the joined,
        # ordered one below.
        return None
    return (
        _ahead(operation)
        .select_related("environment", "stack")
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
    waiting = (
        Operation.objects.filter(
            environment_id=environment_id,
            status=OperationStatus.QUEUED,
            dispatched__isnull=True,
            inline=False,
        )
        # The job's description names the target.
        .select_related("environment", "stack", "service")
        .order_by("ticket")
    )
    for operation in waiting:
        if _is_blocked(operation):
            continue
        operation.dispatched = timezone.now()
        Operation.objects.filter(pk=operation.pk).update(
            dispatched=operation.dispatched
        )
        _enqueue_on_commit(operation)


def _enqueue_on_commit(operation):
    """Enqueue the job of the dispatched ``operation`` once the transaction commits."""
    transaction.on_commit(partial(_enqueue_job, operation))


def _enqueue_job(operation):
    """Put ``operation``'s job on its RQ queue; on failure the reaper retries."""
    try:
        timeout = get_runner(operation.kind).job_timeout
    except UnknownOperationKind:
        timeout = None
    try:
        get_queue(operation.queue_name).enqueue_call(
            OPERATION_JOB,
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
        row = (
            Operation.objects.filter(pk=operation.pk)
            .values_list("status", "cancel_requested", "dispatched", "inline", "ticket")
            .first()
        )
        if row is None or row[0] != OperationStatus.QUEUED:
            return False, None
        _status, cancel_requested, dispatched, inline, operation.ticket = row
        if cancel_requested:
            _finish_locked(
                operation, OperationStatus.CANCELED, error="Canceled before it started."
            )
            return False, None
        blocker = _blocker(operation)
        if blocker is not None:
            # Not at the head of its line (it should not have been
            # dispatched); the finisher of the blocker dispatches it again.
            if dispatched is not None and not inline:
                Operation.objects.filter(pk=operation.pk).update(dispatched=None)
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
    result = jsonable(result)
    return _in_mutex(
        operation.environment_id,
        lambda ticket: _finish_locked(
            operation, status, result=result, error=error, last_seq=last_seq
        ),
    )
