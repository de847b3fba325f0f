"""Log lines of a running operation: saved in batches, then published."""

import logging
import threading
import time
import traceback

from django.db import (
    IntegrityError,
    connections,
    router,
    transaction,
)
from django.db.models import Max
from django.utils import timezone

from ..choices import LogLevel
from ..models import OperationLogLine
from ..publish import publish
from .config import get_config

__all__ = ["MAX_LINE_CHARS", "PUBLISH_LINES", "OperationLog"]

# Longest stored line; longer text is cut (the rest is rarely useful and a
# single huge line would stall every viewer).
MAX_LINE_CHARS = 32_000

_STDLIB_LEVELS = {
    logging.DEBUG: LogLevel.DEBUG,
    logging.INFO: LogLevel.INFO,
    logging.WARNING: LogLevel.WARNING,
    logging.ERROR: LogLevel.ERROR,
    logging.CRITICAL: LogLevel.ERROR,
}

# Most lines in one operation.log event.
PUBLISH_LINES = 1000


class OperationLog:
    """The logger-like ``runner.log``: save every line, then publish it.

    Lines are buffered and written in batches by the runner's ticker thread
    (at ``LOG_FLUSH_LINES`` lines or every ``LOG_FLUSH_INTERVAL`` seconds),
    each batch with one INSERT (``executemany``), then published as
    ``operation.log`` events of at most ``PUBLISH_LINES`` lines.
    Saving in another thread keeps the lines out of any transaction the
    runner opens. Without a ticker (a runner used outside :meth:`
    OperationRunner.handle`) lines are saved by the caller.
    """

    def __init__(self, operation, *, echo=None):
        config = get_config()
        self.operation = operation
        self.group = operation.group_name
        self.echo = echo
        self.seq = operation.last_seq or 0
        self.saved_seq = self.seq
        self.flush_lines = int(config["LOG_FLUSH_LINES"])
        self.flush_interval = float(config["LOG_FLUSH_INTERVAL"])
        self._pending = []
        self._pending_since = None
        self._urgent = False
        self._cond = threading.Condition()
        self._flush_lock = threading.Lock()
        self.ticker = None

    def debug(self, msg, *args):
        self.log(LogLevel.DEBUG, msg, *args)

    def info(self, msg, *args):
        self.log(LogLevel.INFO, msg, *args)

    def warning(self, msg, *args):
        self.log(LogLevel.WARNING, msg, *args)

    def error(self, msg, *args):
        self.log(LogLevel.ERROR, msg, *args)

    def exception(self, msg, *args):
        """Log ``msg`` and the traceback of the exception being handled."""
        self.log(
            LogLevel.ERROR, f"{msg % args if args else msg}\n{traceback.format_exc()}"
        )

    def log(self, level, msg, *args):
        """Append one line at ``level``. Hot path: called for every line.

        ``level`` is a LogLevel, its value, or a stdlib logging level number.
        """
        if level.__class__ is not LogLevel:
            level = _STDLIB_LEVELS.get(level) or LogLevel(level)
        if len(args) == 1 and isinstance(args[0], dict) and args[0]:
            args = args[0]  # named placeholders, as logging allows
        text = msg % args if args else str(msg)
        if len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS] + " …(truncated)"
        created = timezone.now()
        urgent = level in (LogLevel.WARNING, LogLevel.ERROR)
        with self._cond:
            self.seq += 1
            seq = self.seq
            self._pending.append((seq, level, text, created))
            if self._pending_since is None:
                self._pending_since = time.monotonic()
            backlog = len(self._pending)
            if self.ticker is not None and (backlog >= self.flush_lines or urgent):
                self._urgent = True
                self._cond.notify()
        if self.echo is not None:
            self.echo(seq, level, text, created)
        if self.ticker is None:
            if backlog >= self.flush_lines or urgent:
                self.flush()
        elif backlog >= self.flush_lines * 20:
            # The writer is behind: save in the caller rather than grow
            # without bound.
            self.flush()

    def flush_due(self):
        """Return whether buffered lines should be written now."""
        with self._cond:
            if not self._pending:
                return False
            return (
                self._urgent
                or len(self._pending) >= self.flush_lines
                or time.monotonic() - self._pending_since >= self.flush_interval
            )

    def flush(self):
        """Save the buffered lines, then publish them as one event."""
        with self._flush_lock:
            with self._cond:
                batch = self._pending
                self._pending = []
                self._pending_since = None
                self._urgent = False
            if not batch:
                return
            try:
                batch = self._save(batch)
            except BaseException:
                # Keep the lines for the next attempt, in order.
                with self._cond:
                    self._pending[:0] = batch
                    if self._pending_since is None:
                        self._pending_since = time.monotonic()
                raise
            self.saved_seq = batch[-1][0]
            # One event per slice keeps Channels messages and WebSocket
            # frames small while a runner floods.
            for start in range(0, len(batch), PUBLISH_LINES):
                publish(
                    self.group,
                    {
                        "type": "operation.log",
                        "lines": [
                            {
                                "seq": seq,
                                "level": level,
                                "text": text,
                                "created": created.isoformat(),
                            }
                            for seq, level, text, created in batch[
                                start : start + PUBLISH_LINES
                            ]
                        ],
                    },
                )

    def _save(self, batch):
        try:
            _insert_lines(self.operation.pk, batch)
        except IntegrityError:
            # Someone else wrote a line (the reaper's "abandoned" line):
            # renumber after the stored ones rather than lose these.
            top = (
                OperationLogLine.objects.filter(
                    operation_id=self.operation.pk
                ).aggregate(top=Max("seq"))["top"]
                or 0
            )
            batch = [
                (top + i, level, text, created)
                for i, (_, level, text, created) in enumerate(batch, start=1)
            ]
            _insert_lines(self.operation.pk, batch)
            with self._cond:
                self.seq = max(self.seq, batch[-1][0])
        return batch


def _insert_lines(operation_id, batch):
    """Insert ``(seq, level, text, created)`` lines with one executemany.

    Hot path: ``bulk_create`` builds a model instance per line and was the
    bottleneck of a flooding runner; this writes the same rows in about
    half the time.
    """
    db = connections[router.db_for_write(OperationLogLine)]
    meta = OperationLogLine._meta
    fields = [
        meta.get_field(name)
        for name in ("operation", "seq", "level", "text", "created")
    ]
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        db.ops.quote_name(meta.db_table),
        ", ".join(db.ops.quote_name(field.column) for field in fields),
        ", ".join(["%s"] * len(fields)),
    )
    operation_value = fields[0].get_db_prep_save(operation_id, db)
    prepare_created = fields[4].get_db_prep_save
    rows = [
        (operation_value, seq, level, text, prepare_created(created, db))
        for seq, level, text, created in batch
    ]
    with transaction.atomic(using=db.alias), db.cursor() as cursor:
        cursor.executemany(sql, rows)
