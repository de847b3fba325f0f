"""Pure transforms of configuration values: ports, healthchecks, merges, subnets.

The parser checks the files with these functions before anything is
written, and :mod:`stacks.config.effective` applies the same ones to the
rows at run time, so what passes import is what runs.
"""

import copy
import ipaddress
import re
from typing import NamedTuple

from ..secrets import resolve

__all__ = [
    "HEALTHCHECK_KEYS",
    "PlannedNetwork",
    "PortMapping",
    "PublishedPort",
    "allocate_subnets",
    "compact_healthcheck",
    "expand_healthcheck",
    "is_bind_source",
    "merge_service",
    "parse_port",
    "publish",
    "split_volume",
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


def split_volume(entry):
    """Return (source, target, read_only, type) of a Compose volume entry."""
    if isinstance(entry, dict):
        return (
            str(entry.get("source") or ""),
            str(entry["target"]),
            bool(entry.get("read_only")),
            entry.get("type") or "",
        )
    parts = str(entry).split(":")
    if len(parts) == 1:
        return "", parts[0], False, "volume"
    mode = parts[2] if len(parts) > 2 else ""
    return parts[0], parts[1], "ro" in mode.split(","), ""


def is_bind_source(source):
    """Return whether a volume source names a host path (not a volume)."""
    return source.startswith(("/", ".", "~")) or "/" in source
