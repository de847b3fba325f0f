"""WebSocket URL routes."""

from django.urls import re_path

from gpu.routing import websocket_urlpatterns as gpu_websocket_urlpatterns
from stacks.routing import websocket_urlpatterns as stacks_websocket_urlpatterns

from .consumers import NoRouteConsumer, OperationConsumer

websocket_urlpatterns = [
    re_path(
        r"^ws/operations/(?P<operation_id>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-"
        r"[0-9a-f]{4}-[0-9a-f]{12})/$",
        OperationConsumer.as_asgi(),
        name="operation_log",
    ),
    *stacks_websocket_urlpatterns,
    *gpu_websocket_urlpatterns,
    # Last: any other path gets a 4404 with a message, not a server error.
    re_path(r"", NoRouteConsumer.as_asgi(), name="no_route"),
]
