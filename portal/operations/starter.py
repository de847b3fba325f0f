"""A worker's starter: a helper process that runs the start transaction.

A forking worker starts an operation while the work horse it has just
forked does RQ's preparations (:class:`~portal.operations.StartHandoff`).
Run in the worker itself, that transaction is slow: right after a fork
every page the worker writes to is still shared with the horse, so the
worker takes a copy-on-write fault for each (reference counting writes to
every object Python touches): some 3,500 faults and four to five times the
time of the same transaction in a process that has not just forked.

The starter is a child of the worker, forked once (the first time the
worker has an operation to start) and kept: forking horses does not share
its pages again, so its transactions run at full speed. The worker sends
it the operation's id just before forking the horse, and reads the answer
(the started operation, pickled, or nothing when it may not start) after
the fork; the starter works on the other CPU meanwhile.

Whatever goes wrong with the starter (it died, it does not answer within
the database's own lock timeout), the worker kills it, finds out from the
database whether the start was committed, and carries on without it; the
next operation forks a new one. The starter dies with its worker
(``PR_SET_PDEATHSIG``) and ignores the signals meant for the worker, whose
warm shutdown it must not cut short.
"""

import logging
import os
import pickle
import select
import signal
import struct
import time

from django.db import connections

__all__ = ["Starter"]

logger = logging.getLogger(__name__)

# An answer: the lengths of the operation's id and of the payload, then both.
_HEADER = struct.Struct("!HI")


class StarterGone(Exception):
    """The starter died or did not answer; it has been stopped."""


class Starter:
    """The worker's end of its starter process."""

    def __init__(self, worker_name, *, start, on_fork=None, timeout=90.0):
        # start(operation_id, worker_name) -> started operation or None.
        self.worker_name = worker_name
        self._start = start
        self._on_fork = on_fork
        self.timeout = timeout
        self.pid = None
        self._requests = self._replies = None

    @property
    def fds(self):
        """The descriptors a horse inherits and must close."""
        return [fd for fd in (self._requests, self._replies) if fd is not None]

    def ensure(self):
        """Fork the starter unless it runs; return whether it does.

        Call it before making any descriptor the starter must not hold: a
        starter forked here inherits what is open.
        """
        if self.pid is not None:
            try:
                exited, _status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                exited = self.pid
            if exited:
                logger.warning(
                    "The starter of %s (pid %s) exited; forking another.",
                    self.worker_name,
                    self.pid,
                )
                self.pid = None  # reaped: its pid may be reused
                self.stop()
        if self.pid is None:
            try:
                self._spawn()
            except OSError:
                logger.exception("Could not fork the starter of %s", self.worker_name)
                return False
        return True

    def request(self, operation_id):
        """Ask the starter to start ``operation_id``; return whether it was asked.

        Never forks one (see :meth:`ensure`).
        """
        if self.pid is None:
            return False
        try:
            os.write(self._requests, str(operation_id).encode("ascii") + b"\n")
            return True
        except OSError:
            logger.warning(
                "The starter of %s is gone; starting here.", self.worker_name
            )
            self.stop()
            return False

    def reply(self, operation_id):
        """Return the payload for ``operation_id`` (bytes, maybe empty).

        Raise :class:`StarterGone` (after stopping the starter) when it died
        or did not answer in time; the caller then finds out from the
        database what happened.
        """
        want = str(operation_id).encode("ascii")
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                id_length, length = _HEADER.unpack(self._read(_HEADER.size, deadline))
                got = self._read(id_length, deadline)
                payload = self._read(length, deadline)
                if got == want:
                    return payload
                # Not this operation's answer (none other should be pending):
                # never hand it over.
                logger.warning(
                    "The starter of %s answered for %s; skipped.",
                    self.worker_name,
                    got.decode("ascii", "replace"),
                )
        except (OSError, EOFError, TimeoutError) as exc:
            logger.warning(
                "The starter of %s failed (%s); starting here.", self.worker_name, exc
            )
            self.stop()
            raise StarterGone(str(exc)) from exc

    def _read(self, size, deadline):
        chunks, left = [], size
        while left:
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise TimeoutError(f"no answer in {self.timeout:g} s")
            ready, _, _ = select.select([self._replies], [], [], wait)
            if not ready:
                continue
            chunk = os.read(self._replies, left)
            if not chunk:
                raise EOFError("the starter exited")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def stop(self):
        """Kill the starter (if any) and reap it."""
        for fd in self.fds:
            os.close(fd)
        self._requests = self._replies = None
        pid, self.pid = self.pid, None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass

    def _spawn(self):
        requests_read, requests_write = os.pipe()
        replies_read, replies_write = os.pipe()
        # No database connection may be shared with the child.
        connections.close_all()
        pid = os.fork()
        if pid == 0:  # the starter
            code = 1
            try:
                os.close(requests_write)
                os.close(replies_read)
                if self._on_fork is not None:
                    self._on_fork()
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                self._serve(requests_read, replies_write)
                code = 0
            except BaseException:  # noqa: BLE001  (never return into the worker)
                logger.exception("The starter of %s failed", self.worker_name)
            finally:
                os._exit(code)
        os.close(requests_read)
        os.close(replies_write)
        self.pid, self._requests, self._replies = pid, requests_write, replies_read

    def _serve(self, requests, replies):
        with open(requests, "rb", buffering=0) as source:
            pending = b""
            while True:
                while b"\n" not in pending:
                    chunk = source.read(4096)
                    if not chunk:
                        return  # the worker is gone
                    pending += chunk
                line, pending = pending.split(b"\n", 1)
                operation_id = line.decode("ascii")
                payload = b""
                try:
                    operation = self._start(operation_id, self.worker_name)
                    if operation is not None:
                        payload = pickle.dumps(operation, pickle.HIGHEST_PROTOCOL)
                except Exception:  # noqa: BLE001  (answered empty: the horse finds out)
                    logger.exception("Could not start operation %s", operation_id)
                    # A broken connection is not kept for the next one.
                    connections.close_all()
                message = _HEADER.pack(len(line), len(payload)) + line + payload
                while message:
                    message = message[os.write(replies, message) :]
