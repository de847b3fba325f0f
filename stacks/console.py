"""A shell in a running container, over a WebSocket (the console page).

Route (``stacks/routing.py``): ``ws/console/<env>/<stack>/<service>/`` with
query parameters ``shell`` (``sh``, the default, or ``bash``), ``cols`` and
``rows`` (the terminal's size).

Who: the Admin role on the environment, and in a protected environment a
``host_policy`` that allows consoles (:func:`stacks.access.console_refusal`).
A user without the ``view`` role is refused before the handshake (4403,
nothing said); an Admin check or policy that fails is answered with an
``error`` message naming the reason, then 4403; an unknown environment,
stack or service, or a service without a running container, with an
``error`` and 4404.

Frames: the server sends the command's output as binary frames (a TTY
merges stdout and stderr) and JSON text frames ``{"type": "hello",
"container", "shell", "session"}``, ``{"type": "exit", "code"}`` and
``{"type": "error", "message"}``. The client sends ``{"type": "input",
"data": text}``, ``{"type": "resize", "cols", "rows"}`` and ``{"type":
"ping"}`` (answered with ``pong``).

Audit: ``console.opened`` (container, shell, session id), one
``console.command`` per line entered (the text typed before Enter, with
Backspace applied; a line edited with cursor keys or recalled from the
shell's history is recorded as typed, ``edited: true``, since only the
shell knows the line it ran), and ``console.closed`` (why, exit code,
seconds, commands). All carry the session id.
"""

import asyncio
import json
import logging
import re
import threading
import time
import uuid
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from portal import audit
from portal.consumers import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    RefusingConsumerMixin,
)
from portal.permissions import verbs_of

from . import engine
from .access import console_refusal
from .models import Environment, Service, Stack

__all__ = ["ConsoleConsumer", "LineRecorder", "SHELLS"]

logger = logging.getLogger(__name__)

#: Shells a console may start, by the name the page sends.
SHELLS = {"sh": ["/bin/sh"], "bash": ["/bin/bash"]}
# The longest line recorded in the audit log; longer input is cut.
MAX_LINE = 2000
# Terminal escape sequences (cursor keys, function keys, bracketed paste).
_ESCAPE_RE = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|O.|.)")


class LineRecorder:
    """Turn a terminal's keystrokes into the lines the user entered.

    ``feed(text)`` returns the lines completed by Enter (``\\r`` or
    ``\\n``) as ``(line, edited)`` pairs. Backspace removes a character,
    Ctrl-C and Ctrl-U drop the line; escape sequences (cursor keys, history)
    mark it ``edited``.
    """

    def __init__(self):
        self.buffer = []
        self.edited = False

    def feed(self, text):
        done = []
        position = 0
        while position < len(text):
            char = text[position]
            if char == "\x1b":
                match = _ESCAPE_RE.match(text, position)
                position = match.end() if match else position + 1
                self.edited = True
                continue
            position += 1
            if char in "\r\n":
                line = "".join(self.buffer).strip()
                if line:
                    done.append((line[:MAX_LINE], self.edited))
                self.buffer, self.edited = [], False
            elif char in "\x7f\x08":
                if self.buffer:
                    self.buffer.pop()
            elif char in "\x03\x15":  # Ctrl-C, Ctrl-U
                self.buffer, self.edited = [], False
            elif char == "\t":
                # Completion happens in the shell: the line is not all typed.
                self.edited = True
            elif char >= " " and len(self.buffer) < MAX_LINE:
                self.buffer.append(char)
        return done


class ConsoleConsumer(RefusingConsumerMixin, AsyncWebsocketConsumer):
    """Connect one browser terminal to a shell in a service's container."""

    # Nothing arrives from other processes.
    channel_layer_alias = None

    async def connect(self):
        self.session = None
        self.sender = None
        self.disconnected = False
        self.closed_recorded = False
        self.commands = 0
        self.recorder = LineRecorder()
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        found = await self._authorize(
            user, kwargs["environment"], kwargs["stack"], kwargs["service"]
        )
        if found[0] == CLOSE_FORBIDDEN and len(found) == 1:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if found[0] is not None:
            await self.refuse(found[0], found[1])
            return
        _, self.environment, self.stack, self.service = found
        query = parse_qs(self.scope.get("query_string", b"").decode("utf-8", "replace"))
        shell = (query.get("shell") or ["sh"])[0]
        if shell not in SHELLS:
            await self.refuse(
                CLOSE_NOT_FOUND,
                f"No shell {shell[:20]!r}: one of {', '.join(sorted(SHELLS))}.",
            )
            return
        cols = _size(query.get("cols"), 80)
        rows = _size(query.get("rows"), 24)
        try:
            container = await asyncio.to_thread(self._container)
        except engine.EngineError as exc:
            await self.refuse(CLOSE_NOT_FOUND, f"Docker: {exc}")
            return
        if container is None:
            await self.refuse(
                CLOSE_NOT_FOUND,
                f"Service {self.service.name} of {self.stack.name} has no running "
                f"container in {self.environment.name}: start it first.",
            )
            return
        self.container_id, self.container_name = container
        self.session_id = uuid.uuid4().hex[:12]
        self.shell = shell
        try:
            self.session = await asyncio.to_thread(
                engine.exec_session,
                engine.client_for(self.environment),
                self.container_id,
                SHELLS[shell],
                environment={"TERM": "xterm-256color"},
                cols=cols,
                rows=rows,
            )
        except engine.EngineError as exc:
            await self.refuse(CLOSE_NOT_FOUND, f"Docker: {exc}")
            return
        self.started = time.monotonic()
        await self._record(
            "console.opened",
            {"container": self.container_name, "shell": shell, "size": [cols, rows]},
        )
        await self.accept()
        await self.send(
            text_data=json.dumps(
                {
                    "type": "hello",
                    "container": self.container_name,
                    "shell": shell,
                    "session": self.session_id,
                }
            )
        )
        self.loop = asyncio.get_running_loop()
        self.output = asyncio.Queue()
        self.reader = threading.Thread(
            target=self._read, name=f"console-{self.session_id}", daemon=True
        )
        self.reader.start()
        self.sender = asyncio.ensure_future(self._send_output())

    # -- who and what ---------------------------------------------------------

    @database_sync_to_async
    def _authorize(self, user, env_name, stack_name, service_name):
        environment = Environment.objects.filter(name=env_name).first()
        if environment is None:
            return CLOSE_NOT_FOUND, f"No environment {env_name[:60]!r}."
        verbs = verbs_of(user, environment)
        if "view" not in verbs:
            return (CLOSE_FORBIDDEN,)
        refusal = console_refusal(user, environment, verbs=verbs)
        if refusal:
            return CLOSE_FORBIDDEN, refusal
        stack = Stack.objects.filter(name=stack_name).first()
        if stack is None:
            return CLOSE_NOT_FOUND, f"No stack {stack_name[:60]!r}."
        service = Service.objects.filter(stack=stack, name=service_name).first()
        if service is None:
            return (
                CLOSE_NOT_FOUND,
                f"No service {service_name[:60]!r} in stack {stack.name}.",
            )
        return None, environment, stack, service

    def _container(self):
        """Return (id, name) of the service's running container, or None."""
        client = engine.client_for(self.environment)
        with engine.engine_errors(engine.describe_host(self.environment)):
            found = engine.list_containers(
                client,
                environment=self.environment.name,
                stack=self.stack.name,
                service=self.service.name,
                all=False,
            )
        if not found:
            return None
        newest = max(found, key=lambda c: c.get("Created") or 0)
        return newest["Id"], (newest.get("Names") or ["/?"])[0].lstrip("/")

    @database_sync_to_async
    def _record(self, action, data):
        audit.record(
            action,
            actor=self.scope["user"],
            environment=self.environment,
            object_type="stacks.service",
            object_id=self.service.pk,
            object_repr=f"{self.stack.name}/{self.service.name}",
            data={"session": self.session_id, **data},
        )

    # -- output ---------------------------------------------------------------

    def _read(self):
        """Thread: move the command's output to the event loop."""
        while True:
            data = self.session.read()
            self.loop.call_soon_threadsafe(self.output.put_nowait, data)
            if not data:
                return

    async def _send_output(self):
        while True:
            data = await self.output.get()
            if not data:
                break
            # Join what has piled up into one frame.
            while not self.output.empty():
                more = self.output.get_nowait()
                if not more:
                    self.output.put_nowait(more)
                    break
                data += more
            await self.send(bytes_data=data)
        if self.disconnected:
            return
        code = await asyncio.to_thread(self.session.exit_code)
        await self.send(text_data=json.dumps({"type": "exit", "code": code}))
        await self._closed("exited", code)
        await self.close(code=1000)

    # -- input ----------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None):
        if self.session is None:
            return
        try:
            message = json.loads(text_data) if text_data else {}
        except ValueError:
            return
        kind = message.get("type")
        if kind == "input":
            text = str(message.get("data", ""))
            await asyncio.to_thread(self._write, text.encode("utf-8"))
            for line, edited in self.recorder.feed(text):
                self.commands += 1
                await self._record("console.command", {"line": line, "edited": edited})
        elif kind == "resize":
            await asyncio.to_thread(
                self.session.resize,
                _size([message.get("cols")], 80),
                _size([message.get("rows")], 24),
            )
        elif kind == "ping":
            await self.send(text_data=json.dumps({"type": "pong"}))

    def _write(self, data):
        try:
            self.session.write(data)
        except engine.EngineError:
            pass  # the reader sees the end and reports it

    async def disconnect(self, code):
        if self.session is None:
            return
        self.disconnected = True
        self.session.close()
        if getattr(self, "reader", None) is not None:
            await asyncio.to_thread(self.reader.join, 5)
        if self.sender is not None and not self.sender.done():
            self.sender.cancel()
        await self._closed("disconnected", None)

    async def _closed(self, why, exit_code):
        if self.closed_recorded:
            return
        self.closed_recorded = True
        if exit_code is None:
            exit_code = await asyncio.to_thread(self.session.exit_code)
        await self._record(
            "console.closed",
            {
                "why": why,
                "exit_code": exit_code,
                "seconds": round(time.monotonic() - self.started, 1),
                "commands": self.commands,
            },
        )


def _size(values, default):
    """Return a terminal dimension from a query value, within 1..500."""
    try:
        return max(1, min(500, int((values or [default])[0])))
    except (TypeError, ValueError):
        return default
