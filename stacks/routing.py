"""WebSocket routes of the stacks app (included by portal/routing.py)."""

from django.urls import path

from . import console, consumers

__all__ = ["websocket_urlpatterns"]

websocket_urlpatterns = [
    path(
        "ws/logs/<slug:environment>/<slug:stack>/",
        consumers.ContainerLogConsumer.as_asgi(),
        name="stack_logs",
    ),
    path(
        "ws/logs/<slug:environment>/<slug:stack>/<slug:service>/",
        consumers.ContainerLogConsumer.as_asgi(),
        name="service_logs",
    ),
    path(
        "ws/console/<slug:environment>/<slug:stack>/<slug:service>/",
        console.ConsoleConsumer.as_asgi(),
        name="service_console",
    ),
]
