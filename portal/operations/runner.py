"""The runner base class and the ticker that keeps a running operation alive."""

import logging
import threading
import time
import traceback

from django.db import (
    connection,
)
from django.utils import timezone
from rq.timeouts import JobTimeoutException

from ..choices import OperationStatus
from ..models import Operation
from ..publish import drain_published, publish
from .approvals import describe_change, not_after, plan_hash
from .config import get_config
from .exceptions import OperationAbandoned, OperationCanceled, OperationFailed
from .line import finish_operation, start_operation
from .log import OperationLog
from .records import jsonable

__all__ = ["OperationRunner"]

logger = logging.getLogger(__name__)


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
    #: Removes or overwrites data: needs an approval in a protected
    #: environment, and runs only while its plan still holds
    #: (:meth:`check_plan`).
    destructive = False

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

    @classmethod
    def confirmation(cls, *, environment, stack=None, service=None, parameters=None):
        """Return the text a requester must type to confirm, or None.

        Destructive runners ask for ``<environment>/<what>``; a dry run
        needs none.
        """
        return None

    def run(self):
        """Do the work; return a JSON-able result dict."""
        raise NotImplementedError

    def check_plan(self):
        """Raise OperationFailed unless the operation may still run as planned.

        A run whose ``not_after`` window has passed does not start late; a
        destructive run computes its plan again and stops when it differs
        from the plan it was requested (and approved) with: what is there
        is no longer what the plan names.
        """
        operation = self.operation
        window = not_after(operation.parameters)
        if window is not None and timezone.now() > window:
            raise OperationFailed(
                f"Missed its window: it had to start by "
                f"{timezone.localtime(window):%Y-%m-%d %H:%M:%S}; it does not run "
                "late. Request it again."
            )
        if not self.destructive:
            return
        current = jsonable(
            type(self).plan(
                environment=operation.environment,
                stack=operation.stack,
                service=operation.service,
                parameters=operation.parameters or {},
            )
            or {}
        )
        if plan_hash(current) != plan_hash(operation.plan or {}):
            raise OperationFailed(
                "The plan no longer matches what is there: "
                + describe_change(operation.plan or {}, current)
                + ". Nothing was changed; request a new plan."
            )

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

        operation = self.operation
        self.log.ticker = _Ticker(self)
        self.log.ticker.start()
        status, result, error = OperationStatus.SUCCEEDED, None, ""
        raised = None
        try:
            self.check_plan()
            result = jsonable(self.run())
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
