"""Requests: asking for an operation, putting it in line, canceling it."""

import logging
import os
import socket
from functools import partial

from django.db import (
    transaction,
)
from django.utils import timezone
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job

from .. import audit
from ..choices import OperationStatus, Verb
from ..models import Approval, Operation
from ..permissions import require
from ..queues import get_queue, queue_name_for
from ..redaction import redact
from .approvals import (
    approvers_of,
    expiry_of,
    needs_approval,
    notify_request,
    plan_hash,
)
from .exceptions import ConfirmationMismatch, OperationConflict
from .line import (
    _blocker,
    _conflict_message,
    _dispatch_ready,
    _enqueue_on_commit,
    _finish_locked,
    _in_mutex,
    _is_blocked,
    _publish_status,
)
from .records import _OPERATION_TYPE, _audit, _plan_summary, jsonable
from .registry import get_runner

__all__ = ["cancel_operation", "queue_operation", "request_operation"]

logger = logging.getLogger(__name__)


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
    confirm=None,
):
    """Request an operation of ``kind``; return the queued Operation.

    Check ``user_can(user, runner.verb, environment)`` (PermissionDenied),
    compute the plan, and create the row in one transaction. A mutating
    operation whose (environment, stack) is busy waits its turn, or with
    ``wait=False`` raises :class:`OperationConflict` naming the operation in
    the way. With ``enqueue=False`` the row is for :func:`run_inline`: the
    calling process runs it and no worker ever sees it.

    A runner that asks for a typed confirmation
    (:meth:`OperationRunner.confirmation`) gets it as ``confirm``; a
    mismatch raises :class:`ConfirmationMismatch` before anything exists. A
    destructive operation in a protected environment is created *awaiting
    approval* (:mod:`portal.operations.approvals`): it runs on a worker
    once another Approver approves it, whatever ``enqueue`` says.
    """
    runner = get_runner(kind)
    require(user, runner.verb, environment)
    if service is not None:
        if stack is None:
            stack = service.stack
        elif service.stack_id != stack.pk:
            raise ValueError(f"Service {service} is not part of stack {stack}.")
    parameters = jsonable(dict(parameters or {}))
    plan = jsonable(
        runner.plan(
            environment=environment, stack=stack, service=service, parameters=parameters
        )
        or {}
    )
    expected = runner.confirmation(
        environment=environment, stack=stack, service=service, parameters=parameters
    )
    if expected is not None and (confirm or "").strip() != expected:
        raise ConfirmationMismatch(
            f"Type {expected} to confirm {kind}"
            + (
                f" (the typed text {confirm.strip()!r} does not match)."
                if (confirm or "").strip()
                else "."
            )
        )
    approval = needs_approval(runner, environment, parameters)
    if approval:
        enqueue = True
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
            status=OperationStatus.QUEUED,
            mutating=runner.mutating,
            ticket=ticket,
            inline=not enqueue,
            requested_by=user if user.is_authenticated else None,
            queue_name=queue_name,
            created=now,
            enqueued=now,
        )
        if not enqueue:
            operation.worker_name = _inline_worker_name()
            operation.heartbeat = now
        if approval:
            # No place in the line until approved: it blocks nothing.
            operation.status = OperationStatus.AWAITING_APPROVAL
            operation.enqueued = None
            operation.save(force_insert=True)
            Approval.objects.create(
                operation=operation,
                plan_hash=plan_hash(plan),
                requested=now,
                expires=expiry_of(environment, parameters, now),
            )
            _request_audit(operation, user, parameters, plan)
            _audit(
                "approval.requested",
                operation,
                actor=user,
                plan_sha256=plan_hash(plan),
                approvers=[u.username for u in approvers_of(environment)],
            )
            transaction.on_commit(partial(notify_request, operation.pk))
            return operation
        # The line is decided before the row exists (a refusal rolls back
        # and leaves nothing), so the row is written once, as it ends up.
        if wait:
            blocked = _is_blocked(operation)
        else:
            blocker = _blocker(operation)
            if blocker is not None:
                raise OperationConflict(
                    _conflict_message(operation, blocker), blocker=blocker
                )
            blocked = False
        if enqueue and not blocked:
            # A new ticket is last in its line: nothing else becomes ready
            # (the reaper dispatches what an earlier failure left behind).
            operation.dispatched = now
        operation.save(force_insert=True)
        if operation.dispatched is not None:
            _enqueue_on_commit(operation)
        _request_audit(operation, user, parameters, plan)
        return operation

    return _in_mutex(environment.pk, create)


def _request_audit(operation, user, parameters, plan):
    audit.record(
        "operation.requested",
        actor=user,
        environment=operation.environment,
        object_type=_OPERATION_TYPE,
        object_id=operation.pk,
        object_repr=f"{operation.kind} {operation.target}",
        data={
            "kind": operation.kind,
            "stack": operation.stack.name if operation.stack else None,
            "service": operation.service.name if operation.service else None,
            "parameters": redact(parameters),
            "plan": _plan_summary(plan),
            "inline": operation.inline,
            "queue": operation.queue_name,
        },
    )


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

    try:
        queue = get_queue(operation.queue_name)
        Job.fetch(str(operation.pk), connection=queue.connection).cancel()
    except (NoSuchJobError, InvalidJobOperation):
        pass
    except Exception:  # noqa: BLE001  (the job finds the row canceled anyway)
        logger.warning("Could not cancel the RQ job of %s", operation.pk, exc_info=True)
