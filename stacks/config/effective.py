"""What a service, a network or a port really is in one environment.

The functions here read the configuration rows and return plain data;
``stacks.compose`` builds the stack plan on them. They apply the same pure
transforms (:mod:`stacks.schema.values`) the parser checks the files with.
"""

import copy

from ..models import Network, ServiceOverride
from ..schema.values import allocate_subnets, merge_service, publish
from ..secrets import environ_for, resolve_all

__all__ = [
    "effective_service",
    "network_plan",
    "published_ports",
    "resolve_service",
    "service_values",
]


def service_values(service):
    """Return the configured values of ``service`` (a Service row) as a dict."""
    return {
        "name": service.name,
        "stack": service.stack.name,
        "category": service.category,
        "description": service.description,
        "image": service.image,
        "build": service.build,
        "command": copy.deepcopy(service.command),
        "entrypoint": copy.deepcopy(service.entrypoint),
        "environment": dict(service.environment or {}),
        "ports": list(service.ports or []),
        "volumes": list(service.volumes or []),
        "healthcheck": dict(service.healthcheck or {}),
        "gpu": service.gpu,
        "gpu_count": service.gpu_count,
        "restart": service.restart,
        "user": service.user,
        "shm_size": service.shm_size,
        "extra": copy.deepcopy(service.extra or {}),
        "depends_on": [s.name for s in service.depends_on.all()],
    }


def _override_values(service, environment):
    if environment is None:
        return {}
    override = ServiceOverride.objects.filter(
        environment=environment, service=service
    ).first()
    return override.values if override else {}


def effective_service(service, environment):
    """Return ``service`` as it runs in ``environment``, as a dict.

    Keys: ``name``, ``stack``, ``category``, ``description``, ``image``,
    ``build``, ``command``, ``entrypoint``, ``environment`` (dict),
    ``ports``, ``volumes`` (short syntax), ``healthcheck`` (expanded, without
    ``template``), ``gpu``, ``gpu_count``, ``restart``, ``user``,
    ``shm_size``, ``extra`` (Compose pass-through keys) and ``depends_on``
    (names, dependencies in other stacks included).

    The environment's ServiceOverride is applied (:func:`merge_service`) and
    ``gpu`` is false where the environment has ``gpu_enabled`` off. Values
    keep their ``${VAR}`` references; see :func:`resolve_service`.
    ``environment`` may be None for the base definition.
    """
    gpu_enabled = environment.gpu_enabled if environment is not None else True
    return merge_service(
        service_values(service),
        _override_values(service, environment),
        gpu_enabled=gpu_enabled,
    )


def resolve_service(service, environment, environ=None):
    """Return :func:`effective_service` with every reference resolved.

    ``image``, ``command``, ``entrypoint``, ``environment`` values and the
    healthcheck are resolved from ``environ`` (default:
    :func:`stacks.secrets.environ_for` the environment). Call this only when
    creating a container: the result holds secret values.

    Raises:
        MissingSecret: naming the variable and the service.
    """
    effective = effective_service(service, environment)
    if environ is None:
        environ = environ_for(environment) if environment is not None else {}
    for key in ("image", "command", "entrypoint", "environment", "healthcheck"):
        effective[key] = resolve_all(effective[key], environ, service=service.name)
    return effective


def published_ports(service, environment, environ=None):
    """Return the :class:`PublishedPort` list of ``service`` in ``environment``.

    The effective ports (after the override) are resolved (``${VAR:-8000}``
    takes its default unless ``environ`` sets VAR; ``environ`` defaults to
    :func:`stacks.secrets.environ_for`), the environment's ``port_offset`` is
    added to each host port, and ports that name no host address bind to the
    environment's ``bind_address``.
    """
    effective = effective_service(service, environment)
    if environ is None:
        environ = environ_for(environment) if environment is not None else {}
    offset = environment.port_offset if environment is not None else 0
    bind = environment.bind_address if environment is not None else "127.0.0.1"
    return publish(
        effective["ports"],
        offset=offset,
        bind_address=bind,
        environ=environ,
        service=service.name,
    )


def network_plan(environment):
    """Return ``{network name: PlannedNetwork(subnet, gateway)}`` in ``environment``.

    Per network, in stack order: the environment's NetworkOverride if any,
    else the ``i``-th /24 of the environment's ``subnet_pool``, else the
    network's own subnet. Gateways default to the subnet's first address.
    ``environment`` may be None for the defaults.
    """
    networks = [
        (n.name, n.subnet, n.gateway or "")
        for n in Network.objects.select_related("stack").order_by(
            "stack__order", "stack__name", "name"
        )
    ]
    if environment is None:
        return allocate_subnets(networks)
    overrides = {
        o.network.name: (o.subnet, o.gateway or "")
        for o in environment.network_overrides.select_related("network")
    }
    return allocate_subnets(networks, environment.subnet_pool, overrides)
