"""What holds addresses on a Docker host: networks, routes, interfaces, pools.

The network checks compare planned subnets with these. Docker's networks
and default address pools come from the Engine API. Routes and interface
addresses come from the host itself, read by a short-lived helper
container in the host's network namespace (``network_mode: host``), so a
remote engine is read the same way as the local one and needs no agent:
the helper runs ``ip`` (BusyBox's or iproute2's) and prints its output.
"""

from dataclasses import dataclass

from docker.errors import APIError, NotFound

from . import labels
from .errors import EngineError, api_error_text
from .helpers import run_helper

__all__ = [
    "BUILTIN_ADDRESS_POOLS",
    "HostAddress",
    "HostNetwork",
    "daemon_address_pools",
    "host_addresses",
    "host_networks",
    "network_users",
    "parse_addresses",
    "parse_routes",
    "remove_network_id",
]

#: The pools dockerd uses when its configuration sets no
#: ``default-address-pools`` (libnetwork's ``ipamutils``); ``docker info``
#: lists pools only when they are configured.
BUILTIN_ADDRESS_POOLS = (
    ("172.17.0.0/16", 16),
    ("172.18.0.0/16", 16),
    ("172.19.0.0/16", 16),
    ("172.20.0.0/14", 16),
    ("172.24.0.0/14", 16),
    ("172.28.0.0/14", 16),
    ("192.168.0.0/16", 20),
)

# What the helper prints: addresses, a marker, the routes of every table.
# A fixed text, never built from input.
_ADDRESS_SCRIPT = (
    "ip -o addr show; echo @@routes; "
    "ip -4 route show table all; ip -6 route show table all"
)
_ROUTE_MARK = "@@routes"
# Route types that are no path into a subnet: the local table's own
# addresses, broadcast and multicast entries, policy "throw".
_NOT_PATHS = {"local", "broadcast", "anycast", "multicast", "nat", "throw"}
_UNREACHABLE = {"blackhole", "unreachable", "prohibit"}


@dataclass(frozen=True)
class HostNetwork:
    """A Docker network as the checks see it."""

    id: str
    name: str
    driver: str
    subnets: tuple
    gateways: tuple
    labels: dict
    internal: bool
    #: The Linux bridge of a bridge network (its routes and addresses are
    #: this network's, not separate obstacles).
    bridge: str
    scope: str = "local"


@dataclass(frozen=True)
class HostAddress:
    """A route or an interface address of the Docker host."""

    kind: str  # "route" or "interface"
    subnet: str
    device: str
    text: str
    #: Route type: unicast, blackhole, unreachable, prohibit.
    type: str = ""
    table: str = ""


def _network(summary):
    ipam = (summary.get("IPAM") or {}).get("Config") or []
    options = summary.get("Options") or {}
    driver = summary.get("Driver", "")
    bridge = options.get("com.docker.network.bridge.name", "")
    if not bridge and driver == "bridge":
        bridge = "br-" + summary["Id"][:12]
    return HostNetwork(
        id=summary["Id"],
        name=summary.get("Name", ""),
        driver=driver,
        subnets=tuple(c["Subnet"] for c in ipam if c.get("Subnet")),
        gateways=tuple(c.get("Gateway", "") for c in ipam if c.get("Subnet")),
        labels=dict(summary.get("Labels") or {}),
        internal=bool(summary.get("Internal")),
        bridge=bridge,
        scope=summary.get("Scope", "local"),
    )


def host_networks(client, *, portal_only=False):
    """Return every Docker network of the host as :class:`HostNetwork`.

    One list call; ``portal_only`` keeps those labelled ``portal.managed``.
    """
    filters = {"label": labels.selector(managed="true")} if portal_only else None
    return [_network(summary) for summary in client.api.networks(filters=filters)]


def daemon_address_pools(client, info=None):
    """Return ``([(base, size), ...], configured)`` of the daemon's pools.

    ``configured`` is False when the daemon names none and its built-in
    defaults apply (:data:`BUILTIN_ADDRESS_POOLS`).
    """
    info = info if info is not None else client.info()
    pools = [
        (p["Base"], int(p.get("Size") or 0))
        for p in (info.get("DefaultAddressPools") or [])
        if p.get("Base")
    ]
    if pools:
        return pools, True
    return list(BUILTIN_ADDRESS_POOLS), False


def _prefixed(destination):
    if "/" in destination:
        return destination
    return destination + ("/128" if ":" in destination else "/32")


def parse_routes(text):
    """Return the paths into subnets of ``ip route show table all`` output.

    Default routes, the local table, broadcast, multicast and link-local
    entries say nothing about a subnet and are left out; blackhole,
    unreachable and prohibit routes are kept (they make a subnet
    unreachable).
    """
    found = []
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        kind = "unicast"
        if words[0] in _NOT_PATHS:
            continue
        if words[0] in _UNREACHABLE:
            kind, words = words[0], words[1:]
        if not words or words[0] == "default":
            continue
        destination = words[0]
        fields = dict(zip(words[1::2], words[2::2], strict=False))
        table = fields.get("table", "")
        if table in ("local",):
            continue
        if destination.lower().startswith(("fe80:", "ff")):
            continue
        if destination in ("0.0.0.0/0", "::/0"):
            continue
        found.append(
            HostAddress(
                kind="route",
                subnet=_prefixed(destination),
                device=fields.get("dev", ""),
                text=line.strip(),
                type=kind,
                table=table,
            )
        )
    return found


def parse_addresses(text):
    """Return the global addresses of ``ip -o addr show`` output."""
    found = []
    for line in text.splitlines():
        words = line.replace("\\", " ").split()
        if len(words) < 4 or words[2] not in ("inet", "inet6"):
            continue
        device = words[1].rstrip(":").split("@")[0]
        fields = dict(zip(words[4::2], words[5::2], strict=False))
        if fields.get("scope", "global") != "global":
            continue
        found.append(
            HostAddress(
                kind="interface",
                subnet=_prefixed(words[3]),
                device=device,
                text=f"{device} {words[3]}",
            )
        )
    return found


def host_addresses(client, *, environment, owner=""):
    """Return the host's routes and interface addresses (:class:`HostAddress`).

    Read by a helper container in the host's network namespace (image
    ``settings.helper_image``, default the stand-in BusyBox), removed
    afterwards. Raises EngineError naming the host when it cannot run.
    """
    try:
        code, output = run_helper(
            client,
            ["sh", "-c", _ADDRESS_SCRIPT],
            environment=environment,
            purpose="network.addresses",
            owner=owner,
            timeout=60,
            network_mode="host",
        )
    except APIError as exc:
        raise EngineError(
            f"Cannot read the routes of the Docker host: {api_error_text(exc)}"
        ) from exc
    text = output.decode("utf-8", "replace")
    if code != 0 or _ROUTE_MARK not in text:
        raise EngineError(
            "Cannot read the routes of the Docker host: the helper's `ip` "
            f"exited with {code}: {text.strip()[-300:]}"
        )
    addresses, _, routes = text.partition(_ROUTE_MARK)
    return parse_addresses(addresses) + parse_routes(routes)


def network_users(client, network):
    """Return the names of every container that uses ``network``.

    Running, stopped and created ones alike, the portal's or not: a
    container's network settings name the network whether or not it runs,
    and a helper created with ``network_mode`` set to the network (never
    started) names it there. ``network`` is a :class:`HostNetwork`.
    """
    users = set()
    for summary in client.api.containers(all=True):
        name = (summary.get("Names") or ["/?"])[0].lstrip("/")
        mode = (summary.get("HostConfig") or {}).get("NetworkMode", "")
        joined = (summary.get("NetworkSettings") or {}).get("Networks") or {}
        if (
            mode in (network.name, network.id)
            or network.name in joined
            or any((e or {}).get("NetworkID") == network.id for e in joined.values())
        ):
            users.add(name)
    try:
        attached = client.api.inspect_network(network.id).get("Containers") or {}
    except NotFound:
        attached = {}
    users.update(c.get("Name") or cid[:12] for cid, c in attached.items())
    return sorted(users)


def remove_network_id(client, network):
    """Remove ``network`` (a :class:`HostNetwork`) by id; return whether it
    went (False when it was already gone)."""
    try:
        client.api.remove_network(network.id)
    except NotFound:
        return False
    except APIError as exc:
        raise EngineError(
            f"Network {network.name} could not be removed: {api_error_text(exc)}"
        ) from exc
    return True
