"""The RQ worker class used by ``manage.py run_worker`` and ``rqworker``.

Importing the job modules (and with them the Docker engine layer) in the
parent process means each forked work horse starts with them loaded, which
removes ~100 ms of import time from every job. The channel layer is built in
the parent for the same reason: a horse publishes the operation's status as
it starts, and importing channels_redis there cost ~5 ms per job.

On top of RQ's ``Worker`` it

- runs the operations reaper every ``REAP_INTERVAL`` seconds, both while
  idle (the dequeue wait is capped at that interval) and while a job runs
  (from the horse monitor loop), so an operation whose worker died is
  failed as abandoned within a minute even when every worker is busy;
- fails the operation of a work horse that was killed at once, instead of
  waiting for its heartbeat to go stale;
- makes each work horse die with its worker (``PR_SET_PDEATHSIG``): a worker
  killed with SIGKILL must not leave its horse running an operation that the
  reaper is about to release to the next in line;
- has an operation started while the horse it has just forked does RQ's
  own preparations, and hands it over through a pipe
  (:class:`~portal.operations.StartHandoff`), so the start transaction
  overlaps them instead of following them; the transaction runs in the
  worker's starter (:class:`~portal.operations.Starter`, a long-lived
  child named ``portal-starter``), not in the worker, which right after a
  fork would pay a copy-on-write fault for each page it writes;
- closes the parent's database connections before forking, so no horse
  shares a connection with its parent.
"""

import ctypes
import ctypes.util
import logging
import os
import signal
import time
import uuid

from channels.layers import get_channel_layer
from django.db import connections
from rq.worker import Worker

from . import jobs  # noqa: F401  (preloaded for the work horses)
from .models import Operation
from .operations import (
    OPERATION_JOB,
    Starter,
    StartHandoff,
    abandon_operation,
    autodiscover,
    get_config,
    start_by_id,
    try_reap,
)

__all__ = ["STARTER_NAME", "PortalWorker"]

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1

#: The process name of a worker's starter (``/proc/<pid>/comm``, ``ps``).
STARTER_NAME = "portal-starter"


def _die_with_parent():
    """Ask Linux to SIGKILL this process when its parent dies."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        # The parent died before prctl() took effect.
        os._exit(1)


_PR_SET_NAME = 15


def _starter_forked():
    """In a worker's starter, right after the fork: die with it, name it."""
    _die_with_parent()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(STARTER_NAME.encode()), 0, 0, 0)
    except (OSError, AttributeError):
        pass


class PortalWorker(Worker):
    """A forking worker with the portal's job modules preloaded and a reaper."""

    def __init__(self, *args, reap_interval=None, **kwargs):
        config = get_config()
        self.reap_interval = float(reap_interval or config["REAP_INTERVAL"])
        # The horse monitor wakes this often to send RQ heartbeats; the
        # reaper piggybacks on it while a job runs.
        kwargs.setdefault(
            "job_monitoring_interval",
            max(1, min(10, int(self.reap_interval))),
        )
        super().__init__(*args, **kwargs)
        self._next_reap = 0.0
        self._handoff = None
        self._starter = Starter(self.name, start=start_by_id, on_fork=_starter_forked)
        autodiscover()
        # Built here, not in each horse; it holds no connection until used,
        # and a horse's publisher loop gets connections of its own.
        get_channel_layer()

    @property
    def dequeue_timeout(self):
        # Wake up at least once per reap interval to run the reaper.
        return max(1, min(super().dequeue_timeout, int(self.reap_interval)))

    def _reap_due(self):
        return time.monotonic() >= self._next_reap

    @property
    def should_run_maintenance_tasks(self):
        return self._reap_due() or super().should_run_maintenance_tasks

    def run_maintenance_tasks(self):
        if self._reap_due():
            self.reap()
        if super().should_run_maintenance_tasks:
            super().run_maintenance_tasks()

    def maintain_heartbeats(self, job):
        super().maintain_heartbeats(job)
        if self._reap_due():
            self.reap()

    def reap(self):
        """Run the operations reaper (one worker per interval does the work)."""
        self._next_reap = time.monotonic() + self.reap_interval
        try:
            found = try_reap(self.name, interval=self.reap_interval)
            for operation, reason in found or ():
                self.log.warning(
                    "Worker %s: operation %s abandoned: %s",
                    self.name,
                    operation.pk,
                    reason,
                )
        except Exception:  # noqa: BLE001  (a reaper hiccup must not stop the worker)
            self.log.exception("Worker %s: reaper failed", self.name)
        finally:
            connections.close_all()

    def execute_job(self, job, queue):
        connections.close_all()
        return super().execute_job(job, queue)

    def fork_work_horse(self, job, queue):
        if job.func_name != OPERATION_JOB or not job.args:
            return super().fork_work_horse(job, queue)
        # Forked (when it has to be) before the pipe is made, so it does not hold it.
        self._starter.ensure()
        self._handoff = handoff = StartHandoff(job.args[0])
        try:
            # Only the worker comes back: the horse leaves with os._exit().
            super().fork_work_horse(job, queue)
        except BaseException:
            handoff.close()
            raise
        finally:
            self._handoff = None
        # The starter works while the horse gets ready.
        starter = self._starter if self._starter.request(job.args[0]) else None
        handoff.in_worker(worker_name=self.name, starter=starter)

    def main_work_horse(self, job, queue):
        _die_with_parent()
        for fd in self._starter.fds:  # the starter is the worker's, not the horse's
            os.close(fd)
        if self._handoff is not None:
            self._handoff.in_horse()
        return super().main_work_horse(job, queue)

    def teardown(self):
        if not self.is_horse:
            self._starter.stop()
        super().teardown()

    def handle_work_horse_killed(self, job, retpid, ret_val, rusage):
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)
        how = (
            f"signal {os.WTERMSIG(ret_val)}"
            if ret_val and os.WIFSIGNALED(ret_val)
            else f"exit status {ret_val}"
        )
        try:
            uuid.UUID(str(job.id))
        except ValueError:
            return  # not an operation's job
        try:
            operation = Operation.objects.filter(pk=job.id).first()
            if operation is not None and operation.is_active:
                abandon_operation(
                    operation,
                    f"the work horse (pid {retpid}) of worker {self.name} died ({how})",
                )
        except Exception:  # noqa: BLE001  (the reaper catches it later)
            self.log.exception(
                "Worker %s: could not fail operation %s", self.name, job.id
            )
        finally:
            connections.close_all()
