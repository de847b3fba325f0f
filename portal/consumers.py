"""WebSocket consumers of the core: operation logs, and the no-route answer.

Lines are saved before they are published (:mod:`portal.publish`), so a
consumer can always fill a gap from the database: :class:`OperationConsumer`
joins the group *then* sends the stored backlog, and afterwards forwards
live lines by ``seq``, dropping what it has already sent and reading what it
missed (a dropped or expired Channels message) back from the database. A
client therefore gets every line exactly once, in order, also after a
reconnect with ``?after=<seq>``.
"""

import json
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import (
    AsyncJsonWebsocketConsumer,
    AsyncWebsocketConsumer,
)
from django.core.exceptions import PermissionDenied

from .models import Operation, OperationLogLine
from .operations import ApprovalRefused, approve_operation, reject_operation
from .permissions import user_can

__all__ = [
    "CLOSE_BAD_REQUEST",
    "CLOSE_FORBIDDEN",
    "CLOSE_NOT_FOUND",
    "CLOSE_UNAUTHENTICATED",
    "NoRouteConsumer",
    "OperationConsumer",
    "RefusingConsumerMixin",
]

# Lines per WebSocket frame when sending stored lines.
BACKLOG_CHUNK = 1000
# Close codes. 4401 and 4403 refuse the handshake before accept(), saying
# nothing; 4400 and 4404 come after an ``error`` message that says why.
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
# A WebSocket close reason holds at most 123 bytes.
CLOSE_REASON_BYTES = 120


class RefusingConsumerMixin:
    """Refuse a connection with a reason the client can show."""

    async def refuse(self, code, message):
        """Accept, say why in an ``error`` message, and close with ``code``."""
        await self.accept()
        await self.send(text_data=json.dumps({"type": "error", "message": message}))
        reason = message.encode()[:CLOSE_REASON_BYTES].decode(errors="ignore")
        await self.close(code=code, reason=reason)


class NoRouteConsumer(RefusingConsumerMixin, AsyncWebsocketConsumer):
    """Answer a WebSocket path that matches no route: an error, then 4404.

    The last route of ``portal.routing``, so a mistyped or hostile path
    (``..``, non-ASCII, very long) gets a clear answer instead of a server
    error.
    """

    # Nothing to receive from other processes: no channel layer, so the
    # connection ends as soon as the client answers the close.
    channel_layer_alias = None

    async def connect(self):
        path = self.scope.get("path", "")
        shown = path if len(path) <= 80 else path[:80] + "…"
        await self.refuse(CLOSE_NOT_FOUND, f"No WebSocket endpoint at {shown!r}.")


class OperationConsumer(AsyncJsonWebsocketConsumer):
    """Stream one operation's log lines and status to a browser.

    URL ``ws/operations/<uuid>/?after=<seq>``. Frames sent: ``{"type":
    "lines", "lines": [{seq, level, text, created}, ...]}`` and ``{"type":
    "status", status, progress, progress_message, last_seq, error, ...}``.
    """

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        operation_id = self.scope["url_route"]["kwargs"]["operation_id"]
        self.operation = await database_sync_to_async(self._load_operation)(
            user, operation_id
        )
        if self.operation is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = self.operation.group_name
        self.sent = self._after()
        # Join first, then read the backlog: a line saved after the backlog
        # query is published after the join, so nothing falls in between.
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._send_stored(self.sent + 1, None)
        status = await database_sync_to_async(self._status_event)()
        await self._forward_status(status)

    async def disconnect(self, code):
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """Act on a decision frame; ignore anything else.

        ``{"action": "approve"}`` or ``{"action": "reject", "reason": "..."}``
        decides on an operation awaiting approval, with exactly the rules of
        the page, the admin and the command
        (:mod:`portal.operations.approvals`). The answer is ``{"type":
        "decision", "ok": true|false, "message": "..."}``; the new status
        follows as usual.
        """
        action = content.get("action") if isinstance(content, dict) else None
        if action not in ("approve", "reject"):
            return
        ok, message = await database_sync_to_async(self._decide)(
            action, str(content.get("reason") or "")
        )
        await self.send_json({"type": "decision", "ok": ok, "message": message})

    def _decide(self, action, reason):
        user = self.scope["user"]
        operation = Operation.objects.select_related("environment").get(
            pk=self.operation.pk
        )
        try:
            if action == "reject":
                reject_operation(operation, user=user, reason=reason)
                return True, f"Rejected operation {operation.pk}."
            operation = approve_operation(operation, user=user)
            return True, f"Approved operation {operation.pk}."
        except (PermissionDenied, ApprovalRefused) as exc:
            return False, str(exc)

    async def operation_log(self, event):
        """Forward live lines the client has not had, filling gaps first."""
        lines = event.get("lines")
        if lines is None:
            lines = [event]
        fresh = [line for line in lines if line["seq"] > self.sent]
        if not fresh:
            return
        if fresh[0]["seq"] > self.sent + 1:
            await self._send_stored(self.sent + 1, fresh[0]["seq"] - 1)
            fresh = [line for line in fresh if line["seq"] > self.sent]
        if fresh:
            await self.send_json({"type": "lines", "lines": fresh})
            self.sent = fresh[-1]["seq"]

    async def operation_status(self, event):
        """Forward a status change after every line it counts."""
        await self._forward_status(event)

    async def _forward_status(self, event):
        last_seq = event.get("last_seq") or 0
        if last_seq > self.sent:
            await self._send_stored(self.sent + 1, last_seq)
        payload = {key: value for key, value in event.items() if key != "type"}
        await self.send_json({"type": "status", **payload})

    async def _send_stored(self, first, last):
        """Send the saved lines ``first``..``last`` (open-ended if None)."""
        while True:
            chunk = await database_sync_to_async(self._read_lines)(first, last)
            if not chunk:
                return
            await self.send_json({"type": "lines", "lines": chunk})
            self.sent = chunk[-1]["seq"]
            first = self.sent + 1
            if len(chunk) < BACKLOG_CHUNK:
                return

    def _after(self):
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        try:
            return max(0, int(query.get("after", ["0"])[0]))
        except ValueError:
            return 0

    def _load_operation(self, user, operation_id):
        operation = (
            Operation.objects.select_related("environment")
            .filter(pk=operation_id)
            .first()
        )
        if operation is None or not user_can(user, "view", operation.environment):
            return None
        return operation

    def _read_lines(self, first, last):
        lines = OperationLogLine.objects.filter(
            operation_id=self.operation.pk, seq__gte=first
        )
        if last is not None:
            lines = lines.filter(seq__lte=last)
        return [
            {
                "seq": seq,
                "level": level,
                "text": text,
                "created": created.isoformat(),
            }
            for seq, level, text, created in lines.order_by("seq").values_list(
                "seq", "level", "text", "created"
            )[:BACKLOG_CHUNK]
        ]

    def _status_event(self):
        self.operation.refresh_from_db()
        return self.operation.status_event()
