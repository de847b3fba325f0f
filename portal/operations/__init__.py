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


Modules
-------
=================  =========================================================
``config``         ``settings.PORTAL_OPERATIONS`` and its defaults
``exceptions``     what can go wrong: failed, canceled, conflict, plan error
``registry``       runner classes by kind; autodiscovery of ``<app>.jobs``
``requests``       :func:`request_operation`, queue after approval, cancel
``line``           the environment mutex, tickets, dispatch, start, finish
``runner``         :class:`OperationRunner` and its heartbeat ticker
``log``            :class:`OperationLog`: lines saved in batches, published
``execution``      what a worker or an inline command runs; following a log
``reaper``         abandoned operations and lost jobs
``records``        the audit entries of operations; plan summaries
``approvals``      four-eyes approval of destructive operations, plan hashes
=================  =========================================================
"""

from .approvals import (
    INFO_KEY,
    ApprovalRefused,
    approve_operation,
    approvers_of,
    expire_approvals,
    plan_hash,
    reject_operation,
    waiting_for,
)
from .config import DEFAULTS, get_config
from .exceptions import (
    ConfirmationMismatch,
    OperationAbandoned,
    OperationCanceled,
    OperationConflict,
    OperationFailed,
    PlanError,
    UnknownOperationKind,
)
from .execution import (
    StartHandoff,
    execute_operation,
    follow_operation,
    run_inline,
    start_by_id,
)
from .line import OPERATION_JOB, finish_operation, start_operation
from .log import OperationLog
from .reaper import abandon_operation, pid_alive, reap_operations, try_reap
from .registry import (
    autodiscover,
    get_runner,
    load_modules,
    register,
    registered_kinds,
)
from .requests import cancel_operation, queue_operation, request_operation
from .runner import OperationRunner
from .starter import Starter

__all__ = [
    "DEFAULTS",
    "INFO_KEY",
    "OPERATION_JOB",
    "ApprovalRefused",
    "ConfirmationMismatch",
    "OperationAbandoned",
    "OperationCanceled",
    "OperationConflict",
    "OperationFailed",
    "OperationLog",
    "OperationRunner",
    "PlanError",
    "StartHandoff",
    "Starter",
    "UnknownOperationKind",
    "abandon_operation",
    "approve_operation",
    "approvers_of",
    "autodiscover",
    "cancel_operation",
    "execute_operation",
    "expire_approvals",
    "finish_operation",
    "follow_operation",
    "get_config",
    "get_runner",
    "load_modules",
    "pid_alive",
    "plan_hash",
    "queue_operation",
    "reap_operations",
    "register",
    "registered_kinds",
    "reject_operation",
    "request_operation",
    "run_inline",
    "start_by_id",
    "start_operation",
    "try_reap",
    "waiting_for",
]
