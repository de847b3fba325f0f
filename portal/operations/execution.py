"""Running an operation: in a worker, inline in a command, or followed."""

import logging
import time

from django.utils import timezone

from ..choices import OperationStatus
from ..models import Operation, OperationLogLine
from .exceptions import UnknownOperationKind
from .line import _try_start, finish_operation
from .registry import get_runner
from .requests import _inline_worker_name

__all__ = ["execute_operation", "follow_operation", "run_inline"]

logger = logging.getLogger(__name__)


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
