"""A WebSocket test client shared by the consumer tests."""

from channels.testing import WebsocketCommunicator

__all__ = ["Communicator"]


class Communicator(WebsocketCommunicator):
    """WebsocketCommunicator with 10 s ceilings on connect and disconnect.

    Its defaults (1 s) fail a test when a consumer's connect (session and
    permission queries, a Redis group_add) or its disconnect (closing Docker
    streams, joining follow threads) is slow on a busy machine; daphne allows
    an application 10 s to close.
    """

    async def connect(self, timeout=10):
        return await super().connect(timeout)

    async def disconnect(self, code=1000, timeout=10):
        return await super().disconnect(code, timeout)
