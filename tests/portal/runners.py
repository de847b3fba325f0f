"""Operation kinds used only by the tests (and imported by their workers).

Worker processes started by the ``worker_process`` fixture import this
module with ``run_worker --import tests.portal.runners``.
"""

import os
import time

from portal.choices import Verb
from portal.operations import OperationFailed, OperationRunner, register

__all__ = ["FloodJob", "LongStepsJob", "ReadOnlyStepsJob", "StepsJob", "hold"]


def hold(runner, path, timeout=120):
    """Save the log so far, then wait until the test creates ``path``.

    Lets a test keep an operation running for exactly as long as it needs,
    instead of guessing how long a run of sleeps lasts on a busy machine.
    Cancel still works while waiting; a test that never releases fails the
    operation after ``timeout`` seconds.
    """
    runner.log.flush()
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        runner.check_cancel()
        if time.monotonic() > deadline:
            raise OperationFailed(f"{path} was not created within {timeout} s")
        time.sleep(0.05)


@register
class StepsJob(OperationRunner):
    """Log ``steps`` numbered lines with ``sleep`` seconds between them.

    Parameters: ``steps``, ``sleep``, ``fail_at`` (OperationFailed at that
    step), ``crash_at`` (RuntimeError at that step), ``hold_at`` and
    ``hold`` (after that step, wait until the file ``hold`` exists).
    """

    kind = "test.steps"
    verb = Verb.START
    job_timeout = 120

    @classmethod
    def plan(cls, *, environment, stack=None, service=None, parameters=None):
        return {"steps": int((parameters or {}).get("steps", 3))}

    def run(self):
        parameters = self.operation.parameters
        steps = int(parameters.get("steps", 3))
        sleep = float(parameters.get("sleep", 0))
        fail_at = int(parameters.get("fail_at", 0))
        crash_at = int(parameters.get("crash_at", 0))
        hold_at = int(parameters.get("hold_at", 0))
        for step in range(1, steps + 1):
            self.check_cancel()
            self.log.info("step %d of %d", step, steps)
            if step == fail_at:
                raise OperationFailed(f"step {step} failed")
            if step == crash_at:
                raise RuntimeError(f"step {step} crashed")
            if step == hold_at:
                hold(self, parameters["hold"])
            if sleep:
                time.sleep(sleep)
        self.progress(100, "done")
        return {"steps": steps}


@register
class LongStepsJob(StepsJob):
    """StepsJob on the long queue."""

    kind = "test.long-steps"
    queue = "long"


@register
class ReadOnlyStepsJob(StepsJob):
    """StepsJob that takes no lock."""

    kind = "test.readonly"
    verb = Verb.CHECK
    mutating = False


@register
class FloodJob(OperationRunner):
    """Log ``lines`` lines as fast as possible (every ``pause_every`` a pause;
    after line ``hold_at``, wait until the file ``hold`` exists)."""

    kind = "test.flood"
    verb = Verb.CHECK
    mutating = False
    job_timeout = 600

    def run(self):
        parameters = self.operation.parameters
        lines = int(parameters.get("lines", 100))
        pause_every = int(parameters.get("pause_every", 0))
        pause = float(parameters.get("pause", 0.01))
        hold_at = int(parameters.get("hold_at", 0))
        for n in range(1, lines + 1):
            self.log.info("line %d", n)
            if n == hold_at:
                hold(self, parameters["hold"])
            if pause_every and n % pause_every == 0:
                time.sleep(pause)
        return {"lines": lines}
