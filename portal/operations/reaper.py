"""The reaper: failing abandoned operations, recovering lost jobs."""

import logging
import os
import socket
from datetime import timedelta
from functools import partial

from django.db import (
    transaction,
)
from django.db.models import Max, Q
from django.utils import timezone
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.worker import Worker

from .. import audit
from ..choices import LogLevel, OperationStatus
from ..models import Operation, OperationLogLine
from ..publish import publish
from ..queues import get_connection
from .approvals import expire_approvals
from .config import get_config
from .line import (
    _dispatch_ready,
    _enqueue_job,
    _finish_locked,
    _in_mutex,
    finish_operation,
)

__all__ = ["abandon_operation", "pid_alive", "reap_operations", "try_reap"]

logger = logging.getLogger(__name__)

_REAPER_LOCK_KEY = "portal:reaper:lock"


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
    return get_connection("default")


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
    for operation in expire_approvals(now=now, environments=environments):
        found.append((operation, "approval expired"))
    return found


def _recover_lost_jobs(redis, dispatched_before):
    """Re-enqueue dispatched operations whose RQ job vanished; error failed ones."""

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
