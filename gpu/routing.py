"""WebSocket routes of GPU status (included by portal/routing.py)."""

from django.urls import path

from .consumers import GpuConsumer

__all__ = ["websocket_urlpatterns"]

websocket_urlpatterns = [
    path("ws/gpu/<slug:environment>/", GpuConsumer.as_asgi(), name="gpu_status"),
]
