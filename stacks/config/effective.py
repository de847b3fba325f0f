"""What a service, a network or a port really is in one environment.

The functions here are pure over the configuration rows: they read the
database and return plain data. ``stacks.compose`` and ``stacks.docker``
build on them; the importer uses the same helpers (:func:`parse_port`,
:func:`allocate_subnets`, :func:`publish`, :func:`merge_service`) to check the
files before anything is written, so what passes import is what runs.
"""

import copy
import ipaddress
import re
from typing import NamedTuple

from ..secrets import environ_for, resolve, resolve_all

__all__ = [
    "HEALTHCHECK_KEYS",
    "PlannedNetwork",
    "PortMapping",
    "PublishedPort",
    "allocate_subnets",
    "compact_healthcheck",
    "effective_service",
    "expand_healthcheck",
    "merge_service",
    "network_plan",
    "parse_port",
    "publish",
    "published_ports",
    "resolve_service",
    "service_values",
]

#: Keys a healthcheck (or a template, without ``test``) may have.
HEALTHCHECK_KEYS = (
    "template",
    "test",
    "interval",
    "timeout",
    "retries",
    "start_period",
    "start_interval",
    "disable",
)

# [[IP:][HOST[-END]]:]CONTAINER[-END][/PROTOCOL]; an IPv6 address is
# bracketed, as in Compose.
_PORT_RE = re.compile(
    r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9A-Fa-f:.]+\]):)?"
    r"(?:(?P<host>\d+(?:-\d+)?)?:)?"
    r"(?P<container>\d+(?:-\d+)?)"
    r"(?:/(?P<protocol>tcp|udp|sctp))?$"
)


class PortMapping(NamedTuple):
    """One parsed short-syntax port: host side may be empty (ephemeral)."""

    host_ip: str | None
    host_port: int | None
    container_port: int
    protocol: str


class PublishedPort(NamedTuple):
    """A port as published in an environment (field names as docker-py's).

    ``published`` is None when the configuration names no host port
    (Docker picks one).
    """

    target: int
    published: int | None
    host_ip: str
    protocol: str

    def short_syntax(self):
        """Return the Compose short syntax, e.g. ``127.0.0.1:25432:5432/tcp``."""
        host_ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
        published = "" if self.published is None else self.published
        return f"{host_ip}:{published}:{self.target}/{self.protocol}"


class PlannedNetwork(NamedTuple):
    """A network's subnet and gateway in one environment."""

    subnet: str
    gateway: str


def _port_range(text):
    start, _, end = text.partition("-")
    start = int(start)
    end = int(end) if end else start
    if not 1 <= start <= 65535 or not 1 <= end <= 65535:
        raise ValueError(f"port {text} is outside 1-65535")
    if end < start:
        raise ValueError(f"port range {text} ends before it starts")
    return list(range(start, end + 1))


def parse_port(text):
    """Return the :class:`PortMapping` list of one short-syntax port.

    ``"8080:80"``, ``"127.0.0.1:5432:5432"``, ``"514:514/udp"``,
    ``"9000-9001:9000-9001"`` and ``"6333"`` are valid; references must be
    resolved first.

    Raises:
        ValueError: the text is not a valid short-syntax port.
    """
    match = _PORT_RE.match(str(text).strip())
    if not match:
        raise ValueError(
            f"{text!r} is not a valid port "
            "(Compose short syntax: [[IP:]HOST:]CONTAINER[/PROTOCOL])"
        )
    ip = match.group("ip")
    if ip:
        ip = ip.strip("[]")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(f"{text!r}: {ip} is not an IP address") from None
    containers = _port_range(match.group("container"))
    hosts = _port_range(match.group("host")) if match.group("host") else None
    if hosts is not None and len(hosts) != len(containers):
        raise ValueError(f"{text!r}: host and container ranges differ in length")
    protocol = match.group("protocol") or "tcp"
    return [
        PortMapping(ip, hosts[i] if hosts else None, container, protocol)
        for i, container in enumerate(containers)
    ]


def publish(ports, *, offset=0, bind_address="127.0.0.1", environ=None, service=None):
    """Return the :class:`PublishedPort` list of short-syntax ``ports``.

    References in the port strings are resolved from ``environ`` (their
    defaults apply); ``offset`` is added to every host port and
    ``bind_address`` is used where the port names no address.

    Raises:
        ValueError: a port is invalid or ends up above 65535.
        MissingSecret: a referenced variable is unset and has no default.
    """
    result = []
    for text in ports or []:
        resolved = resolve(
            str(text), environ if environ is not None else {}, service=service
        )
        for mapping in parse_port(resolved):
            published = None
            if mapping.host_port is not None:
                published = mapping.host_port + offset
                if published > 65535:
                    raise ValueError(
                        f"port {text!r} plus offset {offset} is {published}, "
                        "above 65535"
                    )
            result.append(
                PublishedPort(
                    target=mapping.container_port,
                    published=published,
                    host_ip=mapping.host_ip or bind_address,
                    protocol=mapping.protocol,
                )
            )
    return result


def expand_healthcheck(spec, templates):
    """Return the stored form of a healthcheck written with a template.

    ``{"template": "standard", "test": [...]}`` becomes the template's values
    plus the written keys (written keys win), keeping ``template`` so export
    can write the short form again. A healthcheck without template is
    returned as a copy.

    Raises:
        KeyError: the template is not defined.
    """
    spec = dict(spec or {})
    name = spec.get("template")
    if not name:
        return spec
    expanded = {"template": name}
    expanded.update(copy.deepcopy(templates[name]))
    expanded.update({k: v for k, v in spec.items() if k != "template"})
    return expanded


def compact_healthcheck(stored, templates):
    """Return ``stored`` with the values its template supplies left out."""
    stored = dict(stored or {})
    name = stored.get("template")
    template = (templates or {}).get(name) if name else None
    if template is None:
        return stored
    return {
        k: v
        for k, v in stored.items()
        if k == "template" or k not in template or template[k] != v
    }


def merge_service(base, override, *, gpu_enabled=True):
    """Return ``base`` (service values) with an environment's override applied.

    Every override key replaces the base value, except ``environment``,
    which merges: override values win, and a null value removes the
    variable. An override that sets ``image`` clears the base ``build``.
    GPU requests are dropped where ``gpu_enabled`` is false.
    """
    merged = copy.deepcopy(base)
    for key, value in (override or {}).items():
        if key == "environment":
            environment = dict(merged.get("environment") or {})
            for name, item in (value or {}).items():
                if item is None:
                    environment.pop(name, None)
                else:
                    environment[name] = item
            merged["environment"] = environment
        else:
            merged[key] = copy.deepcopy(value)
    if (override or {}).get("image"):
        # An environment that names an image runs that image: the base
        # definition's build no longer applies.
        merged["build"] = ""
        merged.get("extra", {}).pop("build", None)
    if not gpu_enabled:
        merged["gpu"] = False
    healthcheck = merged.get("healthcheck") or {}
    merged["healthcheck"] = {k: v for k, v in healthcheck.items() if k != "template"}
    return merged


def allocate_subnets(networks, pool=None, overrides=None):
    """Return ``{network: PlannedNetwork}`` for one environment.

    Args:
        networks: ``(name, default subnet, default gateway)`` in stack order.
        pool: the environment's subnet pool; network ``i`` gets the ``i``-th
            /24 of it, gateway ``.1``. Empty: each network keeps its default.
        overrides: ``{name: (subnet, gateway)}``; they win over the pool.

    A missing gateway is the subnet's first address.

    Raises:
        ValueError: the pool is invalid or has too few /24 subnets.
    """
    overrides = overrides or {}
    blocks = None
    if pool:
        net = ipaddress.ip_network(pool)
        if net.version != 4 or net.prefixlen > 24:
            raise ValueError(
                f"subnet pool {pool} must be an IPv4 network of /24 or larger"
            )
        needed = len(networks)
        available = 2 ** (24 - net.prefixlen)
        if needed > available:
            raise ValueError(
                f"subnet pool {pool} has room for {available} /24 networks, "
                f"{needed} are needed"
            )
        blocks = net.subnets(new_prefix=24)
    plan = {}
    for name, subnet, gateway in networks:
        block = next(blocks) if blocks is not None else None
        if name in overrides:
            subnet, gateway = overrides[name]
        elif block is not None:
            subnet, gateway = str(block), ""
        if not gateway:
            gateway = str(next(ipaddress.ip_network(subnet).hosts()))
        plan[name] = PlannedNetwork(str(subnet), str(gateway))
    return plan


# --------------------------------------------------------------------------
# On configuration rows


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
    from ..models import ServiceOverride

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
    from ..models import Network

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
