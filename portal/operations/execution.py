"""Running an operation: in a worker, inline in a command, or followed."""

import logging
import os
import pickle
import time

from django.utils import timezone

from ..choices import OperationStatus
from ..models import Operation, OperationLogLine
from .exceptions import UnknownOperationKind
from .line import _try_start, finish_operation
from .registry import get_runner
from .requests import _inline_worker_name
from .starter import StarterGone

__all__ = [
    "StartHandoff",
    "execute_operation",
    "follow_operation",
    "run_inline",
    "start_by_id",
]

logger = logging.getLogger(__name__)

# In a work horse: the handoff its worker is sending the started operation
# down (set by StartHandoff.in_horse, taken by execute_operation).
_handoff = None


class StartHandoff:
    """An operation a worker starts while the horse it just forked gets ready.

    A forking worker (:class:`portal.worker.PortalWorker`) makes one for an
    operation's job and forks. The horse first does RQ's own preparations
    (signals, bookkeeping in Redis, several milliseconds); meanwhile the
    start transaction (:func:`~portal.operations.start_operation`) runs in
    the worker's :class:`~portal.operations.Starter` (or, without one, in
    the worker), the worker sends the started operation down a pipe, and
    the horse's :func:`execute_operation` reads it and goes straight to the
    runner. Started by the horse itself, after those preparations, the
    transaction came on top of them, and cost more there: a freshly forked
    process pays a page fault for the first write to each page it shares
    with its parent (reference counting writes to every object Python
    touches) and needs a database connection of its own.

    When the worker does not start the operation (no longer queued,
    canceled, not first in its line, an error), it sends nothing, and the
    horse takes the usual path, which finds out why for itself.
    """

    def __init__(self, operation_id):
        self.operation_id = str(operation_id)
        self._read, self._write = os.pipe()

    def in_horse(self):
        """Call in the horse right after the fork; the job receives the start."""
        global _handoff
        os.close(self._write)
        self._write = None
        _handoff = self

    def in_worker(self, *, worker_name, starter=None):
        """Call in the worker right after the fork: start, send; return whether started.

        With ``starter`` (a :class:`~portal.operations.starter.Starter`
        already asked to start this operation), take its answer instead of
        starting the operation here. Never raises: whatever goes wrong, the
        horse gets an answer (maybe an empty one) and carries on.
        """
        os.close(self._read)
        self._read = None
        payload = b""
        try:
            if starter is not None:
                try:
                    payload = starter.reply(self.operation_id)
                except StarterGone:
                    payload = self._start_after_starter(worker_name)
            else:
                payload = _pickled(_start_here(_load(self.operation_id), worker_name))
        except Exception:  # noqa: BLE001  (the horse starts it, or learns why not)
            logger.exception("Could not start operation %s", self.operation_id)
        try:
            with open(self._write, "wb") as pipe:
                pipe.write(payload)
        except BrokenPipeError:
            pass  # the horse died; the worker reports it and fails the operation
        finally:
            self._write = None
        return bool(payload)

    def _start_after_starter(self, worker_name):
        """The starter died: start the operation here, unless it had already."""
        operation = _load(self.operation_id)
        if (
            operation is not None
            and operation.status == OperationStatus.RUNNING
            and operation.worker_name == worker_name[:200]
        ):
            # Its start was committed: this worker runs one job at a time,
            # so the operation running under its name is this job's.
            return _pickled(operation)
        return _pickled(_start_here(operation, worker_name))

    def receive(self):
        """In the horse: wait for the worker; return the started operation or None."""
        with open(self._read, "rb") as pipe:
            payload = pipe.read()
        self._read = None
        return pickle.loads(payload) if payload else None

    def close(self):
        """Close what is still open of the pipe (when the fork failed)."""
        for fd in (self._read, self._write):
            if fd is not None:
                os.close(fd)
        self._read = self._write = None


def _pickled(operation):
    return (
        b"" if operation is None else pickle.dumps(operation, pickle.HIGHEST_PROTOCOL)
    )


def start_by_id(operation_id, worker_name):
    """Start the queued operation ``operation_id``; return it, or None if it may not."""
    return _start_here(_load(operation_id), worker_name)


def _load(operation_id):
    return (
        Operation.objects.select_related("environment", "stack", "service")
        .filter(pk=operation_id)
        .first()
    )


def _start_here(operation, worker_name):
    """Start ``operation`` if it is queued; return it, or None if not."""
    if operation is None or operation.status != OperationStatus.QUEUED:
        return None
    try:
        get_runner(operation.kind)
    except UnknownOperationKind:
        return None
    started, _blocker = _try_start(operation, worker_name)
    return operation if started else None


def _take_handoff(operation_id):
    """Return the operation this horse's worker started for it, or None."""
    global _handoff
    handoff, _handoff = _handoff, None
    if handoff is None or handoff.operation_id != str(operation_id):
        return None
    return handoff.receive()


def execute_operation(operation_id, *, worker_name=""):
    """Run the queued operation ``operation_id``: what the RQ job does."""
    operation = _take_handoff(operation_id)
    if operation is not None:
        # Started by the worker that forked this horse (StartHandoff).
        return get_runner(operation.kind)(operation).execute()
    operation = _load(operation_id)
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
