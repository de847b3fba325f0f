"""What holds addresses on a Docker host, as conflict-check occupants."""

from dataclasses import dataclass, field

from .. import engine
from ..engine import labels
from .conflicts import Occupant

__all__ = ["HostFacts", "occupants", "portal_owner", "read_host"]


@dataclass
class HostFacts:
    """One reading of a Docker host."""

    docker_host: str
    networks: list = field(default_factory=list)
    addresses: list = field(default_factory=list)
    pools: list = field(default_factory=list)
    pools_configured: bool = False
    #: Why a part could not be read (the check goes on without it).
    errors: list = field(default_factory=list)


def read_host(client, environment, *, owner="", addresses=True, networks=None):
    """Return :class:`HostFacts` of the environment's Docker host.

    Networks and the daemon's pools come from the Engine API, routes and
    interface addresses from a helper in the host's network namespace
    (``addresses=False`` skips it). A routes helper that cannot run is
    recorded in ``errors`` rather than raised: the other counts still hold.
    """
    facts = HostFacts(docker_host=environment.docker_host)
    with engine.engine_errors(engine.describe_host(environment)):
        facts.networks = (
            networks if networks is not None else engine.host_networks(client)
        )
        facts.pools, facts.pools_configured = engine.daemon_address_pools(client)
    if addresses:
        try:
            with engine.engine_errors("routes helper"):
                facts.addresses = engine.host_addresses(
                    client, environment=environment, owner=owner
                )
        except engine.EngineError as exc:
            facts.errors.append(
                f"routes and interfaces of {environment.docker_host} unread: {exc}"
            )
    return facts


def portal_owner(network):
    """Return the planned Docker name ``network`` is, by its labels, or "".

    A portal network carries ``portal.managed`` and Compose's project and
    network labels; its name is ``<project>_<network>``.
    """
    found = network.labels
    if found.get(labels.MANAGED) != "true":
        return ""
    project = found.get(labels.COMPOSE_PROJECT)
    key = found.get(labels.COMPOSE_NETWORK)
    if project and key and network.name == f"{project}_{key}":
        return network.name
    return ""


def _network_detail(network):
    found = network.labels
    if found.get(labels.MANAGED) == "true" and found.get(labels.ENVIRONMENT):
        return (
            f"environment {found[labels.ENVIRONMENT]}, "
            f"stack {found.get(labels.STACK, '?')}"
        )
    return "not the portal's"


def occupants(facts):
    """Return the :class:`~.conflicts.Occupant` records of ``facts``.

    Routes and addresses on a Docker network's own bridge are that
    network's and are not counted twice.
    """
    found = []
    bridges = set()
    for network in facts.networks:
        if network.bridge:
            bridges.add(network.bridge)
        owner = portal_owner(network)
        detail = _network_detail(network)
        for subnet in network.subnets:
            found.append(Occupant("network", subnet, network.name, detail, owner))
    for address in facts.addresses:
        if address.device in bridges or address.device.startswith("veth"):
            continue
        if address.kind == "route":
            detail = address.type
            if address.type == "unicast" or address.text.startswith(address.type):
                detail = ""
            if address.table and address.table != "main":
                detail = ", ".join(filter(None, [detail, f"table {address.table}"]))
            found.append(Occupant("route", address.subnet, address.text, detail))
        else:
            found.append(Occupant("interface", address.subnet, address.device))
    for base, size in facts.pools:
        detail = f"split into /{size}" if size else ""
        if not facts.pools_configured:
            detail += ", Docker's built-in default"
        found.append(Occupant("pool", base, base, detail.strip(", ")))
    return found
