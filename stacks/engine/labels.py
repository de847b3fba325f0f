"""Every label name the portal reads or writes on Docker objects.

Objects are found by label, never by name. The Compose labels make the
objects look like ``docker compose`` made them (an operator can take over
with the Compose CLI and the rendered file); the ``portal.*`` labels say
which environment, stack and service they belong to. No other module spells
a label name: they all use the constants and builders here.
"""

from django.conf import settings

__all__ = [
    "COMPOSE_CONFIG_HASH",
    "COMPOSE_CONTAINER_NUMBER",
    "COMPOSE_NETWORK",
    "COMPOSE_ONEOFF",
    "COMPOSE_PROJECT",
    "COMPOSE_SERVICE",
    "COMPOSE_VOLUME",
    "CONFIG",
    "DATA_TYPE",
    "ENVIRONMENT",
    "HELPER",
    "HELPER_OWNER",
    "MANAGED",
    "SERVICE",
    "STACK",
    "base_labels",
    "extra_labels",
    "helper_labels",
    "is_compose_label",
    "is_portal_label",
    "selector",
    "service_of",
]

# Compose's own labels (docker/compose pkg/api/labels.go).
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_NETWORK = "com.docker.compose.network"
COMPOSE_VOLUME = "com.docker.compose.volume"
COMPOSE_CONFIG_HASH = "com.docker.compose.config-hash"
COMPOSE_CONTAINER_NUMBER = "com.docker.compose.container-number"
COMPOSE_ONEOFF = "com.docker.compose.oneoff"
_COMPOSE_PREFIX = "com.docker.compose."
_PORTAL_PREFIX = "portal."

# The portal's labels.
MANAGED = "portal.managed"
ENVIRONMENT = "portal.environment"
STACK = "portal.stack"
SERVICE = "portal.service"
# On containers: the configuration they were made from (references
# unresolved, secrets redacted), as JSON; pages diff it with today's.
CONFIG = "portal.config"
# On volumes: what kind of data they hold (db, cache, models, logs, ...).
DATA_TYPE = "portal.data-type"
# On short-lived helper containers: their purpose ("host.check",
# "volume.read", ...) and what started them (an operation id, a command).
HELPER = "portal.helper"
HELPER_OWNER = "portal.helper.owner"


def extra_labels():
    """Return the labels added to every object (``PORTAL_EXTRA_LABELS``)."""
    return {
        str(k): str(v)
        for k, v in (getattr(settings, "PORTAL_EXTRA_LABELS", None) or {}).items()
    }


def base_labels(environment, stack):
    """Return the portal's labels for objects of ``stack`` in ``environment``."""
    return {
        MANAGED: "true",
        ENVIRONMENT: environment.name,
        STACK: stack.name,
        **extra_labels(),
    }


def helper_labels(environment_name, purpose, owner=""):
    """Return the labels of a helper container started for ``purpose``."""
    labels = {MANAGED: "true", HELPER: purpose, **extra_labels()}
    if environment_name:
        labels[ENVIRONMENT] = environment_name
    if owner:
        labels[HELPER_OWNER] = str(owner)
    return labels


def selector(**values):
    """Return a Docker ``label`` filter list from label values.

    Keyword names are the lower-case constant names of this module
    (``environment="demo", stack="core"``); a value of None is left out, and
    ``True`` asks only for the label's presence.
    """
    names = {
        "managed": MANAGED,
        "environment": ENVIRONMENT,
        "stack": STACK,
        "service": SERVICE,
        "project": COMPOSE_PROJECT,
        "compose_service": COMPOSE_SERVICE,
        "network": COMPOSE_NETWORK,
        "volume": COMPOSE_VOLUME,
        "data_type": DATA_TYPE,
        "helper": HELPER,
        "helper_owner": HELPER_OWNER,
    }
    filters = []
    for key, value in values.items():
        if value is None:
            continue
        label = names[key]
        filters.append(label if value is True else f"{label}={value}")
    return filters


def service_of(labels, default=""):
    """Return the service a container's labels name (portal's, then Compose's)."""
    return labels.get(SERVICE) or labels.get(COMPOSE_SERVICE) or default


def is_compose_label(name):
    """Return whether label ``name`` is one Compose writes itself."""
    return name.startswith(_COMPOSE_PREFIX)


def is_portal_label(name):
    """Return whether label ``name`` is one of the portal's own."""
    return name.startswith(_PORTAL_PREFIX)
