"""Publishing events to Channels groups from sync code.

:func:`publish` is how runners, the reaper and views send an event to a
Channels group, AWX's ``emit_channel_notification``. What is published has
been saved first, so a consumer that misses an event reads it back from the
database; publishing therefore never blocks the caller and never raises.
"""

import asyncio
import atexit
import logging
import os
import threading

from channels.layers import get_channel_layer

__all__ = ["drain_published", "publish"]

logger = logging.getLogger(__name__)


class _Publisher:
    """A private event loop thread that sends events in order, off the caller.

    ``async_to_sync`` would build a new event loop, and so new Redis
    connections, for every event. One loop per process is reused instead
    (a forked child, such as an RQ work horse, makes its own). Events go
    through one queue and one sending task, so they reach Redis in the order
    they were published, and the caller does not wait for Redis: a runner
    logging lines is never slowed down by a slow broadcast.
    """

    _instance = None
    _instance_lock = threading.Lock()
    # Beyond this many unsent events (Redis down or slow), new ones are
    # dropped; clients read what they missed from the database.
    MAX_PENDING = 10_000

    def __init__(self):
        self.pid = os.getpid()
        self.loop = asyncio.new_event_loop()
        self.queue = None
        self.pending = 0
        self.dropped = 0
        self.idle = threading.Condition()
        ready = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(ready,), name="portal-publisher", daemon=True
        )
        self.thread.start()
        ready.wait()

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.queue = asyncio.Queue()
        self.loop.create_task(self._send_forever())
        ready.set()
        self.loop.run_forever()

    async def _send_forever(self):
        while True:
            group, event = await self.queue.get()
            try:
                layer = get_channel_layer()
                await asyncio.wait_for(layer.group_send(group, event), timeout=10)
            except Exception as exc:  # noqa: BLE001  (clients catch up from the DB)
                logger.warning(
                    "Could not publish %s to %s: %s", event.get("type"), group, exc
                )
            finally:
                with self.idle:
                    self.pending -= 1
                    if not self.pending:
                        self.idle.notify_all()

    @classmethod
    def get(cls):
        instance = cls._instance
        if instance is None or instance.pid != os.getpid():
            with cls._instance_lock:
                instance = cls._instance
                if instance is None or instance.pid != os.getpid():
                    instance = cls._instance = cls()
        return instance

    def submit(self, group, event):
        with self.idle:
            if self.pending >= self.MAX_PENDING:
                self.dropped += 1
                return False
            self.pending += 1
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (group, event))
        return True

    def drain(self, timeout):
        with self.idle:
            return self.idle.wait_for(lambda: not self.pending, timeout)


def _forget_publisher_after_fork():
    # The loop thread does not survive fork(); the child must not wait on it.
    _Publisher._instance = None


os.register_at_fork(after_in_child=_forget_publisher_after_fork)


def publish(group, event, *, wait=False, timeout=5):
    """Send ``event`` to the Channels ``group`` from sync code.

    Events are sent in the order they are published, by a background
    thread; with ``wait=True`` return only once this and every earlier
    event has been sent (or ``timeout`` passed). Return whether the event
    was accepted. Never raise: what is published has been saved first, and
    clients catch up from the database.
    """
    if get_channel_layer() is None:
        return False
    publisher = _Publisher.get()
    accepted = publisher.submit(group, event)
    if wait:
        publisher.drain(timeout)
    return accepted


def drain_published(timeout=5):
    """Wait until this process has sent every published event; return whether it has.

    Call before a process ends without running ``atexit`` handlers (an RQ
    work horse leaves with ``os._exit``).
    """
    publisher = _Publisher._instance
    if publisher is None or publisher.pid != os.getpid():
        return True
    return publisher.drain(timeout)


atexit.register(drain_published)
