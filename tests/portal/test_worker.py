"""Operations on real worker processes (``manage.py run_worker``) and Redis."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest
from django.db import connection

from portal.choices import OperationStatus
from portal.models import Operation, OperationLogLine
from portal.operations import cancel_operation, request_operation
from portal.worker import STARTER_NAME

from .helpers import texts, wait_finished, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def steps(user, environment, stack=None, kind="test.steps", **parameters):
    return request_operation(
        kind, user=user, environment=environment, stack=stack, parameters=parameters
    )


def wait_running(operation, lines=1, timeout=30):
    def running():
        operation.refresh_from_db()
        return (
            operation.status == OperationStatus.RUNNING
            and operation.lines.count() >= lines
        )

    wait_for(running, timeout, message=f"{operation.pk} to run {lines} lines")


def test_enqueued_operation_finishes_on_worker_process(
    worker_process, operator, environment, stack
):
    worker = worker_process()
    operation = steps(operator, environment, stack, steps=3)
    wait_finished(operation)
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert operation.worker_name == worker.name
    assert texts(operation) == ["step 1 of 3", "step 2 of 3", "step 3 of 3"]
    assert operation.result == {"steps": 3}


def test_ten_concurrent_requests_on_one_stack_run_one_at_a_time(
    worker_process, operator, environment, stack
):
    """Two workers, ten simultaneous requests: no overlap, request order, whole logs."""
    workers = {worker_process().name, worker_process().name}
    barrier = threading.Barrier(10)
    ids, errors = [], []

    def request():
        try:
            barrier.wait()
            op = steps(operator, environment, stack, steps=5, sleep=0.02)
            ids.append(op.pk)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=request) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(ids) == 10

    operations = list(Operation.objects.filter(pk__in=ids))
    for operation in operations:
        wait_finished(operation, timeout=60)
        assert operation.status == OperationStatus.SUCCEEDED, operation.error
        assert operation.worker_name in workers

    by_start = sorted(operations, key=lambda op: op.started)
    # Started strictly in request (ticket) order ...
    assert [op.ticket for op in by_start] == sorted(op.ticket for op in operations)
    # ... and never two at once.
    for before, after in zip(by_start, by_start[1:], strict=False):
        assert before.finished <= after.started

    # Each log is whole and no two logs interleave in time.
    spans = []
    for operation in by_start:
        lines = list(operation.lines.order_by("seq"))
        assert [line.seq for line in lines] == [1, 2, 3, 4, 5]
        assert [line.text for line in lines] == [f"step {n} of 5" for n in range(1, 6)]
        spans.append((lines[0].created, lines[-1].created))
        assert operation.started <= lines[0].created
        assert lines[-1].created <= operation.finished
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end < start


def _pick(workers, name):
    (worker,) = [w for w in workers if w.name == name]
    return worker


def test_worker_killed_mid_operation_is_abandoned_and_stack_released(
    worker_process, operator, environment, stack
):
    workers = [worker_process(), worker_process()]
    doomed = steps(operator, environment, stack, steps=400, sleep=0.05)
    wait_running(doomed, lines=2)
    victim = _pick(workers, doomed.worker_name)
    (starter,) = _starters(victim.pid)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    # Its starter dies with it. (Reaping it is then init's business: a
    # zombie of a dead worker counts as dead here.)
    wait_for(
        lambda: _state(starter) in (None, "X", "Z"),
        timeout=10,
        message="the starter to die",
    )

    following = steps(operator, environment, stack, steps=2)
    wait_finished(doomed, timeout=60)
    assert doomed.status == OperationStatus.FAILED
    assert doomed.error.startswith("Abandoned: ")
    assert victim.name in doomed.error

    wait_finished(following, timeout=60)
    assert following.status == OperationStatus.SUCCEEDED
    assert following.worker_name != victim.name

    # The work horse died with its worker: the abandoned log stays closed.
    count = doomed.lines.count()
    assert OperationLogLine.objects.filter(operation=doomed, seq=doomed.last_seq).get(
        text=doomed.error
    )
    time.sleep(0.5)
    assert doomed.lines.count() == count


def _children(pid):
    tasks = Path(f"/proc/{pid}/task")
    found = []
    for task in tasks.iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _comm(pid):
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return None


def _horses(pid):
    """The worker's children but its starter."""
    return [child for child in _children(pid) if _comm(child) != STARTER_NAME]


def _starters(pid):
    return [child for child in _children(pid) if _comm(child) == STARTER_NAME]


def _state(pid):
    """The state letter of ``pid`` (``Z`` for a zombie), None once reaped."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _gone(pid):
    """Whether ``pid`` has exited and been reaped (a zombie is not gone)."""
    return _state(pid) in (None, "X")


def test_killed_work_horse_fails_operation_at_once(
    worker_process, operator, environment, stack
):
    worker = worker_process()
    operation = steps(operator, environment, stack, steps=400, sleep=0.05)
    wait_running(operation, lines=2)
    (horse,) = _horses(worker.pid)
    os.kill(horse, signal.SIGKILL)
    wait_finished(operation, timeout=30)
    assert operation.status == OperationStatus.FAILED
    assert f"work horse (pid {horse})" in operation.error
    assert "signal 9" in operation.error
    # The worker itself lives on and runs the next operation.
    following = steps(operator, environment, stack, steps=1)
    wait_finished(following)
    assert following.status == OperationStatus.SUCCEEDED


def test_stray_job_of_an_operation_behind_another_does_not_run_it(
    worker_process, redis_conn, operator, environment, stack, tmp_path
):
    """A job that reaches a worker while its operation waits in line (here
    enqueued twice by hand) starts nothing: the worker that would start it
    finds the running one ahead, and the waiting one runs after it, once."""
    from portal.queues import get_queue

    workers = [worker_process(), worker_process()]
    release = tmp_path / "release"
    first = steps(operator, environment, stack, steps=1, hold_at=1, hold=str(release))
    wait_running(first)
    waiting = steps(operator, environment, stack, steps=2)
    assert waiting.dispatched is None
    stray = get_queue("default").enqueue_call(
        "portal.jobs.run_operation", args=(str(waiting.pk),), job_id=str(waiting.pk)
    )

    wait_for(
        lambda: stray.get_status(refresh=True) == "finished",
        timeout=30,
        message="the stray job to end",
    )
    waiting.refresh_from_db()
    assert waiting.status == OperationStatus.QUEUED
    assert waiting.started is None and waiting.dispatched is None
    release.touch()
    wait_finished(first)
    wait_finished(waiting)
    assert waiting.status == OperationStatus.SUCCEEDED, waiting.error
    assert waiting.started >= first.finished
    assert texts(waiting) == ["step 1 of 2", "step 2 of 2"]
    assert {first.worker_name, waiting.worker_name} <= {w.name for w in workers}


def test_cancel_stops_running_operation_between_steps(
    worker_process, operator, environment, stack
):
    worker_process()
    operation = steps(operator, environment, stack, steps=200, sleep=0.05)
    wait_running(operation, lines=3)
    cancel_operation(operation, user=operator)
    wait_finished(operation)
    assert operation.status == OperationStatus.CANCELED
    assert operation.error == "Canceled by olga."
    assert operation.result is None
    lines = texts(operation)
    assert lines[-1] == "Canceled by olga."
    ran = [line for line in lines if line.startswith("step ")]
    assert 3 <= len(ran) < 200
    assert ran == [f"step {n} of 200" for n in range(1, len(ran) + 1)]


def test_run_worker_keeps_long_and_short_apart(
    worker_process, operator, environment, stack, other_stack, tmp_path
):
    """A long job on the long worker does not delay a short one."""
    worker_process(kind=None)
    # The long job runs until this test releases it, so it is still running
    # when the short one finishes however slowly the machine goes.
    release = tmp_path / "release-long"
    long = steps(
        operator,
        environment,
        stack,
        kind="test.long-steps",
        steps=2,
        hold_at=1,
        hold=str(release),
    )
    assert long.queue_name == "long"
    wait_running(long)
    short = steps(operator, environment, other_stack, steps=1)
    wait_finished(short)
    long.refresh_from_db()
    assert short.status == OperationStatus.SUCCEEDED
    assert long.status == OperationStatus.RUNNING
    assert short.worker_name.endswith(".default")
    assert long.worker_name.endswith(".long")
    release.touch()
    wait_finished(long)
    assert long.status == OperationStatus.SUCCEEDED, long.error
    assert texts(long) == ["step 1 of 2", "step 2 of 2"]


def test_worker_for_an_environment_serves_its_hosts_queue(
    worker_process, make_user, stack
):
    from stacks.models import Environment

    gpu = Environment.objects.create(name="gpu", docker_host="tcp://10.0.4.7:2376")
    worker = worker_process(extra_args=["--env", "gpu"])
    admin = make_user("root", is_superuser=True)
    operation = steps(admin, gpu, stack, steps=2)
    assert operation.queue_name == "host-10-0-4-7-2376-default"
    wait_finished(operation)
    assert operation.status == OperationStatus.SUCCEEDED
    assert operation.worker_name == worker.name


def test_run_worker_restarts_a_dead_worker_and_fails_its_operation(
    worker_process, redis_conn, operator, environment, stack
):
    """The supervisor restarts a killed child under the same name at once."""
    worker_process(kind=None, name="pair")
    key = "rq:worker:pair.default"
    first_pid = int(redis_conn.hget(key, "pid"))
    doomed = steps(operator, environment, stack, steps=400, sleep=0.05)
    wait_running(doomed)
    os.kill(first_pid, signal.SIGKILL)

    def restarted():
        pid = redis_conn.hget(key, "pid")
        return pid is not None and int(pid) != first_pid

    wait_for(restarted, timeout=30, message="the default worker to restart")
    wait_finished(doomed, timeout=30)
    assert doomed.status == OperationStatus.FAILED
    assert doomed.error.startswith("Abandoned: ")
    following = steps(operator, environment, stack, steps=1)
    wait_finished(following)
    assert following.status == OperationStatus.SUCCEEDED
    assert following.worker_name == "pair.default"


def test_killed_starter_is_replaced_and_operations_still_start(
    worker_process, operator, environment, stack
):
    """The worker's starter runs the start transactions; when it dies the
    next operation starts anyway, and a new starter takes over."""
    worker = worker_process()
    first = steps(operator, environment, stack, steps=1)
    wait_finished(first)
    assert first.status == OperationStatus.SUCCEEDED, first.error
    (starter,) = _starters(worker.pid)
    os.kill(starter, signal.SIGKILL)
    # Dead, and left for its worker to reap (which it does when it needs it).
    wait_for(lambda: _state(starter) == "Z", timeout=10, message="the starter to die")

    second = steps(operator, environment, stack, steps=2)
    wait_finished(second)
    assert second.status == OperationStatus.SUCCEEDED, second.error
    assert second.worker_name == worker.name
    assert texts(second) == ["step 1 of 2", "step 2 of 2"]
    children = {child: _comm(child) for child in _children(worker.pid)}
    assert "forking another" in worker.log_path.read_text()
    assert len(_starters(worker.pid)) == 1, (children, worker.log_path.read_text())
    (replacement,) = _starters(worker.pid)
    assert replacement != starter
    # The dead one was reaped by its worker, not left a zombie.
    assert _gone(starter)


def test_starter_ignores_the_signals_meant_for_its_worker(
    worker_process, operator, environment, stack
):
    """SIGINT and SIGTERM stop a worker warmly; sent to its starter too (a
    terminal's Ctrl-C reaches the whole group), they do not kill it."""
    worker = worker_process()
    first = steps(operator, environment, stack, steps=1)
    wait_finished(first)
    (starter,) = _starters(worker.pid)
    os.kill(starter, signal.SIGINT)
    os.kill(starter, signal.SIGTERM)
    second = steps(operator, environment, stack, steps=1)
    wait_finished(second)
    assert second.status == OperationStatus.SUCCEEDED, second.error
    assert _starters(worker.pid) == [starter]
