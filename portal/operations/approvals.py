"""Four-eyes approval of destructive operations in protected environments.

A runner that destroys data sets ``destructive = True``. Requested in a
protected environment (``Environment.protected``), such an operation is
created *awaiting approval* (it holds no place in its line and runs
nowhere) with an :class:`~portal.models.Approval` bound to the hash of its
plan (:func:`plan_hash`). Then:

- an Approver (or Admin) of that environment who is not the requester, and
  not the system user commands act as, approves it (:func:`approve_operation`):
  the plan is computed again first, and a plan that changed voids the
  approval (the operation is canceled and must be requested again);
  otherwise it joins its line with a new ticket and runs on a worker;
- or rejects it with a reason (:func:`reject_operation`);
- or nobody decides before ``expires`` (default 24 hours, or earlier when
  its parameters carry a ``not_after`` window): :func:`expire_approvals`,
  run by the reaper, cancels it.

Every step is an audit entry (``approval.requested``, ``approval.approved``,
``approval.rejected``, ``approval.expired``, ``approval.voided``) and a
notification: the environment's approvers are told of a request, the
requester of the decision (Django mail, and the ``APPROVAL_WEBHOOK_URL``).
The same functions serve the approvals page, the admin action, ``manage.py
approve_operation`` and the operation WebSocket.
"""

import hashlib
import json
import logging
from datetime import datetime, timedelta
from functools import partial

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from .. import audit
from ..choices import ROLE_VERBS, OperationStatus, Verb
from ..models import Approval, Operation, RoleAssignment
from ..notify import notify
from ..permissions import require, user_can, visible_environments
from .config import get_config
from .line import _dispatch_ready, _finish_locked, _in_mutex
from .records import _audit
from .registry import get_runner

__all__ = [
    "INFO_KEY",
    "ApprovalRefused",
    "describe_change",
    "approve_operation",
    "approvers_of",
    "expire_approvals",
    "needs_approval",
    "not_after",
    "plan_hash",
    "reject_operation",
    "waiting_for",
]

logger = logging.getLogger(__name__)

#: A plan's key for facts that may change without changing what the
#: operation does (sizes, timings): left out of its hash.
INFO_KEY = "info"


class ApprovalRefused(Exception):
    """An approval or rejection that cannot be made; the message says why."""


def plan_hash(plan):
    """Return the SHA-256 of ``plan`` without its ``info`` facts."""
    if isinstance(plan, dict):
        plan = {k: v for k, v in plan.items() if k != INFO_KEY}
    text = json.dumps(plan, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def describe_change(before, after):
    """Return which parts of a plan differ, in a few words."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return "the plan differs"
    keys = sorted(
        k
        for k in set(before) | set(after)
        if k != INFO_KEY and before.get(k) != after.get(k)
    )
    parts = []
    for key in keys[:5]:
        old, new = before.get(key), after.get(key)
        if isinstance(old, list) and isinstance(new, list):
            gone = [str(x) for x in old if x not in new][:3]
            added = [str(x) for x in new if x not in old][:3]
            detail = "; ".join(
                p
                for p in (
                    f"gone: {', '.join(gone)}" if gone else "",
                    f"new: {', '.join(added)}" if added else "",
                )
                if p
            )
            parts.append(f"{key} ({detail or 'changed'})")
        else:
            parts.append(key)
    return "changed " + ", ".join(parts) if parts else "the plan differs"


def _flag(value):
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def needs_approval(runner, environment, parameters):
    """Whether a request needs an approval: a destructive runner, not a dry
    run, in a protected environment."""
    return (
        bool(getattr(runner, "destructive", False))
        and bool(getattr(environment, "protected", False))
        and not _flag((parameters or {}).get("dry_run"))
    )


def not_after(parameters):
    """Return the ``not_after`` window end of ``parameters`` (an aware
    datetime), or None."""
    value = (parameters or {}).get("not_after")
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment


def approval_hours(environment):
    """Return how many hours a request in ``environment`` waits at most."""
    value = (getattr(environment, "settings", None) or {}).get("approval_hours")
    try:
        hours = float(value) if value is not None else None
    except (TypeError, ValueError):
        hours = None
    return hours if hours and hours > 0 else float(get_config()["APPROVAL_HOURS"])


def expiry_of(environment, parameters, now):
    """Return when a request made ``now`` expires."""
    expires = now + timedelta(hours=approval_hours(environment))
    window = not_after(parameters)
    return min(expires, window) if window is not None else expires


def _is_system(user):
    return getattr(user, "username", None) == get_config()["SYSTEM_USER"]


def approvers_of(environment):
    """Return the active users who may approve in ``environment``."""
    roles = [role for role, verbs in ROLE_VERBS.items() if Verb.APPROVE in verbs]
    grants = RoleAssignment.objects.filter(role__in=roles).filter(
        Q(environment=environment) | Q(environment__isnull=True)
    )
    user_model = get_user_model()
    return (
        user_model.objects.filter(is_active=True)
        .filter(
            Q(is_superuser=True)
            | Q(pk__in=grants.filter(user__isnull=False).values("user"))
            | Q(groups__in=grants.filter(group__isnull=False).values("group"))
        )
        .exclude(**{user_model.USERNAME_FIELD: get_config()["SYSTEM_USER"]})
        .distinct()
        .order_by(user_model.USERNAME_FIELD)
    )


def waiting_for(user):
    """Return the operations awaiting an approval ``user`` may give."""
    waiting = (
        Operation.objects.filter(
            status=OperationStatus.AWAITING_APPROVAL,
            approval__status=Approval.Status.WAITING,
            environment__in=visible_environments(user),
        )
        .exclude(requested_by=user)
        .select_related("environment", "stack", "service", "requested_by", "approval")
        .order_by("approval__expires")
    )
    return [op for op in waiting if user_can(user, Verb.APPROVE, op.environment)]


def _check_approver(operation, user):
    """Raise unless ``user`` may decide on ``operation``."""
    require(user, Verb.APPROVE, operation.environment)
    if _is_system(user):
        raise PermissionDenied(
            f"{user} is the system user commands act as: it may request operations "
            "but never approve or reject them."
        )
    if operation.requested_by_id is not None and operation.requested_by_id == user.pk:
        raise PermissionDenied(
            f"{user} requested operation {operation.pk}: a request needs the "
            "approval of another Approver of "
            f"{operation.environment.name} (four eyes)."
        )


def _waiting(operation):
    """Return the operation's Approval if it still waits; raise otherwise."""
    approval = Approval.objects.filter(operation_id=operation.pk).first()
    if approval is None or operation.status != OperationStatus.AWAITING_APPROVAL:
        raise ApprovalRefused(
            f"Operation {operation.pk} is {operation.status}: it is not waiting for "
            "an approval."
        )
    if not approval.is_waiting:
        raise ApprovalRefused(
            f"Operation {operation.pk}'s approval is already {approval.status}."
        )
    return approval


def _expired_text(approval):
    return (
        "Not approved before "
        f"{timezone.localtime(approval.expires):%Y-%m-%d %H:%M}: expired."
    )


def _url(operation):
    return settings.PORTAL_BASE_URL.rstrip("/") + reverse(
        "portal:operation_detail", args=[operation.pk]
    )


def _close(operation, approval, status, *, error, action, actor, data, now):
    """Decide ``approval`` as ``status`` and cancel its operation (locked)."""
    Approval.objects.filter(pk=approval.pk).update(
        status=status,
        decided=now,
        decided_by=actor if getattr(actor, "pk", None) else None,
        decided_by_name=getattr(actor, "username", "") or "",
        reason=data.get("reason", ""),
    )
    _finish_locked(
        operation,
        OperationStatus.CANCELED,
        error=error,
        audit_action="operation.canceled",
        audit_actor=actor,
        audit_data={"was": str(OperationStatus.AWAITING_APPROVAL)},
    )
    _audit(action, operation, actor=actor, **data)


def approve_operation(operation, *, user):
    """Approve ``operation`` as ``user``; return it, queued (or canceled
    when its plan changed: then ApprovalRefused says so).

    Raises PermissionDenied (not an Approver there, the requester, the
    system user) or ApprovalRefused (not waiting, expired, plan changed).
    """
    operation = Operation.objects.select_related("environment", "stack", "service").get(
        pk=operation.pk
    )
    _check_approver(operation, user)
    _waiting(operation)
    runner = get_runner(operation.kind)
    # The plan again, outside the lock (it may ask the Docker engine).
    current = runner.plan(
        environment=operation.environment,
        stack=operation.stack,
        service=operation.service,
        parameters=operation.parameters or {},
    )
    current_hash = plan_hash(current or {})
    outcome = {}

    def decide(ticket):
        op = Operation.objects.select_related("environment").get(pk=operation.pk)
        approval = _waiting(op)
        now = timezone.now()
        if approval.expires <= now:
            _close(
                op,
                approval,
                Approval.Status.EXPIRED,
                error=_expired_text(approval),
                action="approval.expired",
                actor=user,
                data={"expires": approval.expires.isoformat()},
                now=now,
            )
            outcome["refused"] = (
                f"Operation {op.pk} expired at "
                f"{timezone.localtime(approval.expires):%Y-%m-%d %H:%M} before it "
                "was approved; request it again."
            )
            return op
        if current_hash != approval.plan_hash:
            _close(
                op,
                approval,
                Approval.Status.VOIDED,
                error="The plan changed since it was requested; the approval is void. "
                "Request it again to see the new plan.",
                action="approval.voided",
                actor=user,
                data={
                    "requested_hash": approval.plan_hash,
                    "current_hash": current_hash,
                },
                now=now,
            )
            outcome["refused"] = (
                f"The plan of operation {op.pk} changed since it was requested (what "
                "it would remove or overwrite is no longer the same); the approval "
                "is void and the operation canceled. Request it again."
            )
            return op
        Approval.objects.filter(pk=approval.pk).update(
            status=Approval.Status.APPROVED,
            decided=now,
            decided_by=user,
            decided_by_name=user.username,
        )
        Operation.objects.filter(pk=op.pk).update(
            status=OperationStatus.QUEUED,
            ticket=ticket,
            approved_by=user,
            enqueued=now,
        )
        op.status, op.ticket, op.approved_by, op.enqueued = (
            OperationStatus.QUEUED,
            ticket,
            user,
            now,
        )
        _audit("approval.approved", op, actor=user, plan_sha256=approval.plan_hash)
        if not op.inline:
            _dispatch_ready(op.environment_id)
        transaction.on_commit(partial(_notify_decision, op.pk))
        return op

    result = _in_mutex(operation.environment_id, decide)
    if "refused" in outcome:
        transaction.on_commit(partial(_notify_decision, operation.pk))
        raise ApprovalRefused(outcome["refused"])
    return result


def reject_operation(operation, *, user, reason):
    """Reject ``operation`` as ``user`` with ``reason``; return it, canceled."""
    reason = (reason or "").strip()
    if not reason:
        raise ApprovalRefused("A rejection needs a reason.")
    operation = Operation.objects.select_related("environment").get(pk=operation.pk)
    _check_approver(operation, user)
    _waiting(operation)

    def decide(ticket):
        op = Operation.objects.select_related("environment").get(pk=operation.pk)
        approval = _waiting(op)
        _close(
            op,
            approval,
            Approval.Status.REJECTED,
            error=f"Rejected by {user.username}: {reason}",
            action="approval.rejected",
            actor=user,
            data={"reason": reason[:2000]},
            now=timezone.now(),
        )
        transaction.on_commit(partial(_notify_decision, op.pk))
        return op

    _in_mutex(operation.environment_id, decide)
    return Operation.objects.get(pk=operation.pk)


def expire_approvals(*, now=None, environments=None):
    """Cancel the operations whose approval is overdue; return them."""
    now = now or timezone.now()
    overdue = Approval.objects.filter(
        status=Approval.Status.WAITING, expires__lte=now
    ).select_related("operation")
    if environments is not None:
        overdue = overdue.filter(operation__environment__in=environments)
    expired = []
    for approval in overdue:
        operation = approval.operation

        def expire(ticket, operation=operation):
            try:
                approval = _waiting(
                    Operation.objects.select_related("environment").get(pk=operation.pk)
                )
            except ApprovalRefused:
                return False  # decided meanwhile
            _close(
                operation,
                approval,
                Approval.Status.EXPIRED,
                error=_expired_text(approval),
                action="approval.expired",
                actor=audit.SYSTEM,
                data={"expires": approval.expires.isoformat()},
                now=now,
            )
            transaction.on_commit(partial(_notify_decision, operation.pk))
            return True

        if _in_mutex(operation.environment_id, expire):
            expired.append(operation)
    return expired


# -- notifications ---------------------------------------------------------------


def _describe(operation):
    plan = operation.plan or {}
    summary = plan.get("summary") if isinstance(plan, dict) else None
    return summary or f"{operation.kind} on {operation.target}"


def notify_request(operation_id):
    """Tell the approvers of the operation's environment that it waits."""
    operation = Operation.objects.select_related(
        "environment", "stack", "service", "requested_by", "approval"
    ).get(pk=operation_id)
    approvers = [
        u
        for u in approvers_of(operation.environment)
        if u.pk != operation.requested_by_id
    ]
    approval = operation.approval
    text = (
        f"{operation.requested_by or 'someone'} asks to run {operation.kind} on "
        f"{operation.target}: {_describe(operation)}\n\n"
        f"It waits for the approval of another Approver of "
        f"{operation.environment.name} until "
        f"{timezone.localtime(approval.expires):%Y-%m-%d %H:%M}.\n"
        f"Plan (SHA-256 {approval.plan_hash[:12]}): {_url(operation)}\n"
    )
    delivery = notify(
        "approval.requested",
        f"Approval needed - {operation.kind} on {operation.target}",
        text,
        data=_data(operation),
        emails=[u.email for u in approvers if u.email],
        webhook_url=get_config()["APPROVAL_WEBHOOK_URL"],
    )
    Approval.objects.filter(pk=approval.pk).update(
        notified=f"{', '.join(u.username for u in approvers) or 'no approver'}: "
        f"{delivery.summary()}"
    )


def _notify_decision(operation_id):
    operation = Operation.objects.select_related(
        "environment", "stack", "service", "requested_by", "approval"
    ).get(pk=operation_id)
    approval = operation.approval
    requester = operation.requested_by
    words = {
        Approval.Status.APPROVED: f"approved by {approval.decided_by_name}",
        Approval.Status.REJECTED: f"rejected by {approval.decided_by_name}: "
        f"{approval.reason}",
        Approval.Status.EXPIRED: "expired without a decision",
        Approval.Status.VOIDED: "void: its plan changed; request it again",
    }.get(approval.status, approval.status)
    notify(
        f"approval.{approval.status}",
        f"{operation.kind} on {operation.target} {approval.status}",
        f"Your request of {operation.kind} on {operation.target} was {words}.\n"
        f"{_url(operation)}\n",
        data=_data(operation),
        emails=[requester.email] if requester is not None and requester.email else [],
        webhook_url=get_config()["APPROVAL_WEBHOOK_URL"],
    )


def _data(operation):
    approval = operation.approval
    return {
        "operation": str(operation.pk),
        "kind": operation.kind,
        "target": operation.target,
        "environment": operation.environment.name,
        "requested_by": getattr(operation.requested_by, "username", None),
        "status": approval.status,
        "plan_sha256": approval.plan_hash,
        "expires": approval.expires.isoformat(),
        "decided_by": approval.decided_by_name or None,
        "url": _url(operation),
    }
