"""A worker's starter process and the handoff of what it started.

The starter is forked from this test process, as a worker forks it, and
runs against the test's database file; the handoff's pipe is read through
a duplicate of its read end, standing in for the work horse.
"""

import os
import pickle
import time

import pytest

from portal.choices import OperationStatus
from portal.models import AuditEntry, Operation
from portal.operations import (
    Starter,
    StartHandoff,
    cancel_operation,
    request_operation,
    start_by_id,
)
from portal.worker import _starter_forked

pytestmark = pytest.mark.django_db(transaction=True)

WORKER = "starter-test"


@pytest.fixture
def queued(operator, environment, stack):
    return request_operation(
        "test.steps",
        user=operator,
        environment=environment,
        stack=stack,
        parameters={"steps": 1},
        enqueue=False,
    )


@pytest.fixture
def make_starter():
    made = []

    def make(start=start_by_id, timeout=30.0):
        starter = Starter(WORKER, start=start, on_fork=_starter_forked, timeout=timeout)
        made.append(starter)
        return starter

    yield make
    for starter in made:
        starter.stop()


def hand_over(operation, starter):
    """Run the worker's side of a handoff; return (sent, what the horse reads)."""
    handoff = StartHandoff(operation.pk)
    horse_end = os.dup(handoff._read)
    try:
        asked = starter.request(operation.pk) if starter is not None else False
        sent = handoff.in_worker(worker_name=WORKER, starter=starter if asked else None)
        with open(horse_end, "rb") as pipe:
            payload = pipe.read()
    finally:
        handoff.close()
    return sent, (pickle.loads(payload) if payload else None)


def starts_of(operation):
    return AuditEntry.objects.filter(
        action="operation.started", object_id=str(operation.pk)
    ).count()


def test_starter_starts_the_operation_and_the_horse_receives_it(queued, make_starter):
    starter = make_starter()
    assert starter.ensure()
    pid = starter.pid
    sent, received = hand_over(queued, starter)
    assert sent
    assert received.pk == queued.pk
    assert received.status == OperationStatus.RUNNING
    assert received.worker_name == WORKER
    queued.refresh_from_db()
    assert queued.status == OperationStatus.RUNNING
    assert queued.worker_name == WORKER
    assert starts_of(queued) == 1
    # The same starter serves the next operation: it is kept, not re-forked.
    assert starter.pid == pid
    assert os.path.exists(f"/proc/{pid}")


def test_starter_answers_nothing_for_an_operation_that_may_not_start(
    queued, operator, make_starter
):
    cancel_operation(queued, user=operator)
    starter = make_starter()
    assert starter.ensure()
    sent, received = hand_over(queued, starter)
    assert not sent
    assert received is None
    queued.refresh_from_db()
    assert queued.status == OperationStatus.CANCELED
    assert starts_of(queued) == 0


def _start_then_die(operation_id, worker_name):
    start_by_id(operation_id, worker_name)
    os._exit(3)


def _die(operation_id, worker_name):
    os._exit(3)


def _hang(operation_id, worker_name):
    time.sleep(60)


@pytest.mark.parametrize(
    "start",
    [_start_then_die, _die, _hang],
    ids=["died-after-commit", "died-before-commit", "no-answer"],
)
def test_worker_finishes_the_start_when_its_starter_fails(queued, make_starter, start):
    """Whatever happened in the starter, the operation starts exactly once:
    the worker stops the starter, reads the row, and starts it only if the
    starter had not."""
    starter = make_starter(start=start, timeout=1.0)
    assert starter.ensure()
    pid = starter.pid
    sent, received = hand_over(queued, starter)
    assert sent
    assert received.pk == queued.pk and received.status == OperationStatus.RUNNING
    queued.refresh_from_db()
    assert queued.status == OperationStatus.RUNNING
    assert queued.worker_name == WORKER
    assert starts_of(queued) == 1
    # Stopped and reaped; the next ensure() forks another.
    assert starter.pid is None
    assert not os.path.exists(f"/proc/{pid}")
    assert starter.ensure() and starter.pid != pid


def test_without_a_starter_the_worker_starts_it_itself(queued):
    sent, received = hand_over(queued, None)
    assert sent and received.status == OperationStatus.RUNNING
    assert Operation.objects.get(pk=queued.pk).worker_name == WORKER
    assert starts_of(queued) == 1


def test_an_answer_left_unread_is_never_handed_to_another_operation(
    queued, operator, environment, other_stack, make_starter, caplog
):
    later = request_operation(
        "test.steps",
        user=operator,
        environment=environment,
        stack=other_stack,
        parameters={"steps": 1},
        enqueue=False,
    )
    starter = make_starter()
    assert starter.ensure()
    pid = starter.pid
    assert starter.request(queued.pk)  # its answer is never read
    sent, received = hand_over(later, starter)
    assert sent and received.pk == later.pk
    assert f"answered for {queued.pk}; skipped" in caplog.text
    assert starter.pid == pid  # not a failure: the starter goes on
