"""WebSocket URL routes."""

from stacks.routing import websocket_urlpatterns as stacks_websocket_urlpatterns

websocket_urlpatterns = [
    *stacks_websocket_urlpatterns,
]
