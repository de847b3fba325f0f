"""The portal's Prometheus metrics: one endpoint, collectors from the apps.

``/metrics`` answers in Prometheus' text exposition format. Each request
builds a :class:`~prometheus_client.CollectorRegistry` of its own, never
prometheus-client's process-wide default: nothing a library registers there
leaks out, and every scrape reads the database afresh, whichever process
(web server or worker) wrote the rows.

The core knows no feature app: an app registers a collector factory in its
``AppConfig.ready()`` with :func:`register_collector`. A factory takes the
environments the caller may see and returns a prometheus-client collector
(an object whose ``collect()`` yields metric families).

Who may read it is decided by the view (``portal.views.metrics``): a bearer
token equal to ``settings.PORTAL_METRICS_TOKEN`` sees every environment; a
signed-in user sees the environments they may view.
"""

import hmac

from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = [
    "CONTENT_TYPE",
    "collector_factories",
    "register_collector",
    "render_metrics",
    "token_matches",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST

_factories = {}


def register_collector(name, factory):
    """Register ``factory(environments)`` under ``name`` (a new one replaces it)."""
    _factories[name] = factory
    return factory


def collector_factories():
    """Return the registered factories, by name."""
    return [_factories[name] for name in sorted(_factories)]


def render_metrics(environments):
    """Return the exposition text of every registered collector, as bytes."""
    registry = CollectorRegistry(auto_describe=False)
    environments = list(environments)
    for factory in collector_factories():
        registry.register(factory(environments))
    return generate_latest(registry)


def token_matches(header):
    """Return whether the ``Authorization`` header carries the metrics token.

    False when no token is configured: an empty setting opens nothing.
    """
    token = settings.PORTAL_METRICS_TOKEN
    scheme, _, given = (header or "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())
