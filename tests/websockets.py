"""A WebSocket test client shared by the consumer tests."""

from channels.testing import WebsocketCommunicator

__all__ = ["Communicator"]


class Communicator(WebsocketCommunicator):
    """WebsocketCommunicator with 10 s ceilings on connect and disconnect,
    which lets a refused socket's consumer finish at once.

    Its defaults (1 s) fail a test when a consumer's connect (session and
    permission queries, a Redis group_add) or its disconnect (closing Docker
    streams, joining follow threads) is slow on a busy machine; daphne allows
    an application 10 s to close.
    """

    async def connect(self, timeout=10):
        connected, code = await super().connect(timeout)
        if not connected:
            # A refused socket's consumer still waits for the client's
            # disconnect, as it would from a browser. Send it and let the
            # consumer finish now: left to the event loop's teardown, its
            # cancellation can wait forever on a channel layer receive.
            await self.send_input({"type": "websocket.disconnect", "code": code})
            await self.wait(timeout=2)
        return connected, code

    async def disconnect(self, code=1000, timeout=10):
        return await super().disconnect(code, timeout)
