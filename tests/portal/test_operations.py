"""The operation engine on real rows and a real Redis, jobs run in-process."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.utils import timezone
from rq.job import Job

from portal.choices import OperationStatus, Role
from portal.models import Operation
from portal.operations import (
    OperationConflict,
    UnknownOperationKind,
    cancel_operation,
    get_runner,
    reap_operations,
    request_operation,
    run_inline,
)

from .helpers import texts

pytestmark = pytest.mark.django_db(transaction=True)


def steps(user, environment, stack=None, **parameters):
    return request_operation(
        "test.steps",
        user=user,
        environment=environment,
        stack=stack,
        parameters=parameters,
    )


def test_request_operation_queues_row_and_rq_job(
    redis_conn, operator, environment, stack
):
    """The row is queued with its plan; the RQ job has the operation's id."""
    operation = steps(operator, environment, stack, steps=2)
    assert operation.status == OperationStatus.QUEUED
    assert operation.plan == {"steps": 2}
    assert operation.requested_by == operator
    assert operation.queue_name == "default"
    assert operation.dispatched is not None
    job = Job.fetch(str(operation.pk), connection=redis_conn)
    assert job.func_name == "portal.jobs.run_operation"
    assert job.timeout == get_runner("test.steps").job_timeout


def test_request_operation_anonymous_refused(redis_conn, environment, stack):
    with pytest.raises(PermissionDenied):
        steps(AnonymousUser(), environment, stack)
    assert not Operation.objects.exists()


def test_request_operation_without_role_refused(
    redis_conn, stranger, environment, stack
):
    with pytest.raises(PermissionDenied):
        steps(stranger, environment, stack)


def test_request_operation_viewer_refused(redis_conn, viewer, environment, stack):
    """Viewers may look but not start."""
    with pytest.raises(PermissionDenied):
        steps(viewer, environment, stack)


def test_request_operation_role_on_other_environment_refused(
    redis_conn, make_user, environment, other_environment, stack
):
    user = make_user("pia", Role.OPERATOR, other_environment)
    with pytest.raises(PermissionDenied):
        steps(user, environment, stack)
    assert steps(user, other_environment, stack).status == OperationStatus.QUEUED


def test_request_operation_unknown_kind(redis_conn, operator, environment):
    with pytest.raises(UnknownOperationKind):
        request_operation("no.such", user=operator, environment=environment)


def test_job_runs_to_success(redis_conn, run_jobs, operator, environment, stack):
    operation = steps(operator, environment, stack, steps=3)
    run_jobs("default")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.SUCCEEDED
    assert operation.result == {"steps": 3}
    assert operation.progress == 100
    assert texts(operation) == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert operation.last_seq == 3
    assert operation.started >= operation.enqueued
    assert operation.finished >= operation.started
    assert operation.queue_wait is not None and operation.queue_wait >= timedelta(0)


def test_operation_failed_is_failed(redis_conn, run_jobs, operator, environment, stack):
    operation = steps(operator, environment, stack, steps=3, fail_at=2)
    run_jobs("default")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.FAILED
    assert operation.error == "step 2 failed"
    assert texts(operation) == ["step 1 of 3", "step 2 of 3", "step 2 failed"]


def test_unexpected_exception_is_errored_and_reraised(
    redis_conn, run_jobs, operator, environment, stack
):
    """The traceback is saved; RQ still records the job as failed."""
    operation = steps(operator, environment, stack, steps=3, crash_at=1)
    run_jobs("default")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.ERRORED
    assert "RuntimeError: step 1 crashed" in operation.error
    assert "Traceback" in operation.error
    job = Job.fetch(str(operation.pk), connection=redis_conn)
    assert job.is_failed


def test_second_request_waits_and_runs_after_first(
    redis_conn, run_jobs, operator, environment, stack
):
    """Only the head of the line is handed to RQ; the next follows on finish."""
    first = steps(operator, environment, stack)
    second = steps(operator, environment, stack)
    assert first.dispatched is not None
    assert second.dispatched is None
    assert second.ticket > first.ticket
    run_jobs("default")
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == second.status == OperationStatus.SUCCEEDED
    assert second.started >= first.finished


def test_request_without_wait_refused_naming_running_operation(
    redis_conn, operator, environment, stack
):
    first = steps(operator, environment, stack)
    Operation.objects.filter(pk=first.pk).update(status=OperationStatus.RUNNING)
    with pytest.raises(OperationConflict) as excinfo:
        request_operation(
            "test.steps",
            user=operator,
            environment=environment,
            stack=stack,
            wait=False,
        )
    message = str(excinfo.value)
    assert str(first.pk) in message
    assert "(test.steps, running) is running on dev/core" in message
    assert excinfo.value.blocker == first
    assert Operation.objects.count() == 1


def test_other_stack_is_not_blocked(
    redis_conn, operator, environment, stack, other_stack
):
    steps(operator, environment, stack)
    other = request_operation(
        "test.steps",
        user=operator,
        environment=environment,
        stack=other_stack,
        wait=False,
    )
    assert other.dispatched is not None


def test_other_environment_is_not_blocked(
    redis_conn, make_user, environment, other_environment, stack
):
    admin = make_user("root", is_superuser=True)
    steps(admin, environment, stack)
    other = request_operation(
        "test.steps", user=admin, environment=other_environment, stack=stack, wait=False
    )
    assert other.dispatched is not None


def test_environment_wide_operation_waits_for_stack_operations(
    redis_conn, operator, environment, stack, other_stack
):
    """stack=None locks every stack of the environment and waits for them."""
    on_core = steps(operator, environment, stack)
    whole = steps(operator, environment, None)
    on_ai = steps(operator, environment, other_stack)
    assert on_core.dispatched is not None
    assert whole.dispatched is None
    # Strict order: the ai operation was requested after the whole-env one.
    assert on_ai.dispatched is None
    with pytest.raises(OperationConflict, match=str(on_core.pk)):
        request_operation(
            "test.steps", user=operator, environment=environment, wait=False
        )


def test_environment_wide_order_is_kept_through_workers(
    redis_conn, run_jobs, operator, environment, stack, other_stack
):
    ops = [
        steps(operator, environment, stack),
        steps(operator, environment, None),
        steps(operator, environment, other_stack),
    ]
    run_jobs("default")
    for op in ops:
        op.refresh_from_db()
        assert op.status == OperationStatus.SUCCEEDED
    assert ops[0].finished <= ops[1].started
    assert ops[1].finished <= ops[2].started


def test_non_mutating_operation_ignores_lock(redis_conn, operator, environment, stack):
    steps(operator, environment, stack)
    check = request_operation(
        "test.readonly", user=operator, environment=environment, stack=stack, wait=False
    )
    assert check.dispatched is not None
    assert not check.mutating


def test_cancel_queued_operation_never_runs(
    redis_conn, run_jobs, operator, environment, stack
):
    first = steps(operator, environment, stack)
    second = steps(operator, environment, stack)
    cancel_operation(first, user=operator)
    assert first.status == OperationStatus.CANCELED
    assert "before it started" in first.error
    assert first.canceled_by == operator
    # Canceling the head of the line lets the next one go.
    second.refresh_from_db()
    assert second.dispatched is not None
    run_jobs("default")
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.status == OperationStatus.CANCELED
    assert first.started is None
    assert texts(first) == []
    assert second.status == OperationStatus.SUCCEEDED


def test_cancel_needs_the_cancel_verb(redis_conn, operator, viewer, environment, stack):
    operation = steps(operator, environment, stack)
    with pytest.raises(PermissionDenied):
        cancel_operation(operation, user=viewer)
    operation.refresh_from_db()
    assert operation.status == OperationStatus.QUEUED
    assert not operation.cancel_requested


def test_run_inline_runs_in_this_process(redis_conn, operator, environment, stack):
    seen = []
    operation = request_operation(
        "test.steps",
        user=operator,
        environment=environment,
        stack=stack,
        parameters={"steps": 2},
        enqueue=False,
    )
    assert operation.inline and operation.dispatched is None
    assert not redis_conn.exists(f"rq:job:{operation.pk}")
    operation = run_inline(
        operation, echo=lambda seq, level, text, created: seen.append(text)
    )
    assert operation.status == OperationStatus.SUCCEEDED
    assert seen == texts(operation) == ["step 1 of 2", "step 2 of 2"]
    assert operation.worker_name.startswith("inline:")


def test_run_inline_takes_its_turn(redis_conn, run_jobs, operator, environment, stack):
    """An inline operation waits behind a queued one and blocks later ones."""
    queued = steps(operator, environment, stack)
    inline = request_operation(
        "test.steps", user=operator, environment=environment, stack=stack, enqueue=False
    )
    later = steps(operator, environment, stack)
    waited_for = []

    run_jobs("default")  # runs `queued`; `later` must not start before `inline`
    later.refresh_from_db()
    assert later.dispatched is None
    run_inline(inline, on_wait=waited_for.append, poll=0.05)
    run_jobs("default")
    for op in (queued, inline, later):
        op.refresh_from_db()
        assert op.status == OperationStatus.SUCCEEDED
    assert queued.finished <= inline.started <= inline.finished <= later.started
    assert waited_for == []


def test_reaper_fails_operation_of_vanished_worker(
    redis_conn, operator, environment, stack, other_stack
):
    """A running operation whose RQ worker key is gone is abandoned; the next runs."""
    gone = steps(operator, environment, stack)
    Operation.objects.filter(pk=gone.pk).update(
        status=OperationStatus.RUNNING,
        started=timezone.now(),
        heartbeat=timezone.now(),
        worker_name="ghost",
    )
    waiting = steps(operator, environment, stack)
    assert waiting.dispatched is None
    found = reap_operations()
    assert [(op.pk, reason) for op, reason in found] == [
        (gone.pk, "worker ghost is gone (its RQ heartbeat key rq:worker:ghost expired)")
    ]
    gone.refresh_from_db()
    assert gone.status == OperationStatus.FAILED
    assert gone.error.startswith("Abandoned: worker ghost is gone")
    assert texts(gone)[-1] == gone.error
    assert gone.last_seq == 1
    waiting.refresh_from_db()
    assert waiting.dispatched is not None


def test_reaper_fails_operation_with_stale_heartbeat(
    redis_conn, operator, environment, stack
):
    operation = request_operation(
        "test.steps", user=operator, environment=environment, stack=stack, enqueue=False
    )
    # An inline run on another host whose heartbeat stopped a minute ago.
    Operation.objects.filter(pk=operation.pk).update(
        status=OperationStatus.RUNNING,
        worker_name="inline:elsewhere:1",
        heartbeat=timezone.now() - timedelta(minutes=1),
    )
    assert [op.pk for op, _ in reap_operations(dry_run=True)] == [operation.pk]
    operation.refresh_from_db()
    assert operation.status == OperationStatus.RUNNING
    ((_, reason),) = reap_operations()
    assert reason.startswith("no heartbeat from inline:elsewhere:1 since")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.FAILED


def test_reaper_leaves_live_operation_alone(redis_conn, operator, environment, stack):
    operation = request_operation(
        "test.steps", user=operator, environment=environment, stack=stack, enqueue=False
    )
    Operation.objects.filter(pk=operation.pk).update(
        status=OperationStatus.RUNNING, heartbeat=timezone.now()
    )
    assert reap_operations() == []


def test_reaper_requeues_dispatched_operation_whose_job_vanished(
    redis_conn, run_jobs, operator, environment, stack
):
    operation = steps(operator, environment, stack)
    redis_conn.flushdb()
    Operation.objects.filter(pk=operation.pk).update(
        dispatched=timezone.now() - timedelta(minutes=5)
    )
    reap_operations()
    assert Job.fetch(str(operation.pk), connection=redis_conn).get_status() == "queued"
    run_jobs("default")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.SUCCEEDED


def test_operation_log_saves_every_line_in_order(redis_conn, operator, environment):
    """Levels by name or logging number, %-args and mapping args, long lines cut."""
    import logging

    from portal.operations.log import MAX_LINE_CHARS, OperationLog

    operation = request_operation(
        "test.steps", user=operator, environment=environment, enqueue=False
    )
    log = OperationLog(operation)
    log.info("plain")
    log.log(logging.WARNING, "disk %d%% full", 93)
    log.log("debug", "%(name)s is %(state)s", {"name": "api", "state": "up"})
    log.error("x" * (MAX_LINE_CHARS + 10))
    log.flush()
    lines = list(operation.lines.order_by("seq").values_list("seq", "level", "text"))
    assert [line[:2] for line in lines] == [
        (1, "info"),
        (2, "warning"),
        (3, "debug"),
        (4, "error"),
    ]
    assert [line[2] for line in lines[:3]] == ["plain", "disk 93% full", "api is up"]
    assert lines[3][2].endswith("…(truncated)")
    assert log.saved_seq == 4


def test_queue_operation_puts_approved_operation_in_line(
    redis_conn, operator, environment, stack
):
    """An operation held for approval takes a ticket when queued, not before."""
    from portal.operations import queue_operation

    held = steps(operator, environment, stack)
    Operation.objects.filter(pk=held.pk).update(
        status=OperationStatus.AWAITING_APPROVAL, ticket=None, dispatched=None
    )
    held.refresh_from_db()
    running = steps(operator, environment, stack)  # not blocked by the held one
    assert running.dispatched is not None
    queue_operation(held)
    held.refresh_from_db()
    assert held.status == OperationStatus.QUEUED
    assert held.ticket > running.ticket
    assert held.dispatched is None  # waits behind `running`
