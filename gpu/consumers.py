"""GPU samples of one environment, streamed to a browser.

URL ``ws/gpu/<env>/``. The consumer joins ``gpu.<env>`` first, then sends
the stored history, then forwards each new sample; samples carry a ``seq``
and one the client already has is not sent twice.

Messages from the server (JSON):

``{"type": "history", "samples": [sample, ...]}``
    Once, after the connection is accepted: the stored samples, oldest
    first (possibly none).
``{"type": "sample", "sample": sample}``
    Each new sample (see :meth:`gpu.readings.Sample.to_dict`).

Refusals: 4401 (not logged in) and 4403 (no ``view`` role on the
environment) before the handshake; 4404 after it, with an ``error``
message, for an unknown environment.
"""

import asyncio

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from portal.consumers import (
    CLOSE_FORBIDDEN,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    RefusingConsumerMixin,
)
from portal.permissions import user_can
from stacks.models import Environment

from .groups import gpu_group
from .history import history

__all__ = ["GpuConsumer"]


class GpuConsumer(RefusingConsumerMixin, AsyncJsonWebsocketConsumer):
    """Forward an environment's GPU samples to a browser with the Viewer role."""

    async def connect(self):
        self.group = None
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        name = self.scope["url_route"]["kwargs"]["environment"]
        found = await database_sync_to_async(self._authorize)(user, name)
        if found == CLOSE_FORBIDDEN:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        if found == CLOSE_NOT_FOUND:
            shown = name if len(name) <= 60 else name[:60] + "…"
            await self.refuse(CLOSE_NOT_FOUND, f"No environment {shown!r}.")
            return
        self.environment = name
        self.sent = 0
        # Join first, then read the history: a sample saved after the read
        # is published after the join, so nothing falls in between.
        self.group = gpu_group(name)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        samples = await asyncio.to_thread(history, name)
        if samples:
            self.sent = samples[-1].get("seq") or 0
        await self.send_json({"type": "history", "samples": samples})

    async def disconnect(self, code):
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        """Ignore client frames; the stream is one-way."""

    async def gpu_sample(self, event):
        """Forward a new sample the client does not have yet."""
        sample = event["sample"]
        seq = sample.get("seq") or 0
        if seq and seq <= self.sent:
            return
        self.sent = max(self.sent, seq)
        await self.send_json({"type": "sample", "sample": sample})

    def _authorize(self, user, name):
        environment = Environment.objects.filter(name=name).first()
        if environment is None:
            return CLOSE_NOT_FOUND
        if not user_can(user, "view", environment):
            return CLOSE_FORBIDDEN
        return None
