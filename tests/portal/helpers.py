"""Helpers of the portal tests: polling for what a worker does."""

import time

__all__ = ["texts", "wait_finished", "wait_for"]


def wait_for(predicate, timeout=20, interval=0.05, message="condition"):
    """Poll ``predicate`` until it returns a truthy value; return it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"Timed out after {timeout} s waiting for {message}")
        time.sleep(interval)


def wait_finished(operation, timeout=30):
    """Wait until ``operation`` is terminal; return it refreshed."""

    def done():
        operation.refresh_from_db()
        return operation.is_terminal

    wait_for(done, timeout, message=f"operation {operation.pk} to finish")
    return operation


def texts(operation):
    return list(operation.lines.order_by("seq").values_list("text", flat=True))
