"""Networks and volumes: create, find by label, remove."""

import ipaddress

from docker.errors import APIError, NotFound
from docker.types import IPAMConfig, IPAMPool

from . import labels
from .errors import EngineError, api_error_text

__all__ = [
    "containers_using_volume",
    "delete_network",
    "ensure_network",
    "ensure_volume",
    "list_networks",
    "list_volumes",
    "network_by_name",
    "overlapping_network",
    "remove_network",
    "remove_volume",
    "volume_sizes",
]


def _subnets(network_attrs):
    return [
        (c.get("Subnet", ""), c.get("Gateway", ""))
        for c in ((network_attrs.get("IPAM") or {}).get("Config") or [])
    ]


def network_by_name(client, name):
    # The name filter matches substrings; keep the exact one.
    for net in client.api.networks(names=[name]):
        if net["Name"] == name:
            return net
    return None


def ensure_network(client, spec, *, log):
    """Make sure network ``spec`` exists with its planned subnet; return its id.

    An external network (a dependency stack's) must exist already. Our own
    network with a different subnet is recreated when no container uses it.
    """
    if spec.external:
        net = network_by_name(client, spec.docker_name)
        if net is None:
            raise EngineError(
                f"Network {spec.docker_name} of stack {spec.stack} does not exist; "
                f"start stack {spec.stack} first."
            )
        return net["Id"]
    found = client.api.networks(
        filters={"label": labels.selector(project=spec.project, network=spec.key)}
    )
    if found:
        net = found[0]
        planned = (spec.subnet, spec.gateway or "")
        actual = _subnets(net)
        if not spec.subnet or any(
            s == planned[0] and (not planned[1] or g == planned[1]) for s, g in actual
        ):
            return net["Id"]
        attached = client.api.inspect_network(net["Id"]).get("Containers") or {}
        if attached:
            raise EngineError(
                f"Network {spec.docker_name} has subnet "
                f"{', '.join(s for s, _ in actual) or 'none'} but the plan says "
                f"{spec.subnet}; stop the containers on it first "
                f"({len(attached)} attached)."
            )
        log.info(f"network {spec.docker_name}: subnet changed, recreating")
        client.api.remove_network(net["Id"])
    else:
        other = network_by_name(client, spec.docker_name)
        if other is not None:
            raise EngineError(
                f"A network named {spec.docker_name} exists but was not created "
                "by the portal (no matching labels); remove or rename it."
            )
    ipam = None
    if spec.subnet:
        ipam = IPAMConfig(
            pool_configs=[IPAMPool(subnet=spec.subnet, gateway=spec.gateway or None)]
        )
    network_labels = {
        **spec.labels,
        labels.COMPOSE_PROJECT: spec.project,
        labels.COMPOSE_NETWORK: spec.key,
    }
    try:
        created = client.api.create_network(
            spec.docker_name,
            driver=spec.driver or "bridge",
            ipam=ipam,
            internal=spec.internal,
            labels=network_labels,
            check_duplicate=True,
        )
    except APIError as exc:
        text = api_error_text(exc)
        if "overlap" in text.lower():
            holder = overlapping_network(client, spec.subnet)
            raise EngineError(
                f"Network {spec.docker_name}: subnet {spec.subnet} overlaps "
                f"{holder or 'an existing network'} on the Docker host."
            ) from exc
        raise EngineError(f"Network {spec.docker_name} could not be created: {text}")
    log.info(
        f"network {spec.docker_name}: created"
        + (f" ({spec.subnet}, gateway {spec.gateway})" if spec.subnet else "")
    )
    return created["Id"]


def overlapping_network(client, subnet):
    """Return "network NAME (SUBNET)" of a network overlapping ``subnet``."""

    try:
        planned = ipaddress.ip_network(subnet)
    except ValueError:
        return None
    for net in client.api.networks():
        for other, _ in _subnets(net):
            try:
                if planned.overlaps(ipaddress.ip_network(other)):
                    return f"network {net['Name']} ({other})"
            except ValueError:
                continue
    return None


def remove_network(client, spec, *, log):
    """Remove our network ``spec`` unless a container still uses it.

    Returns whether it is gone.
    """
    found = client.api.networks(
        filters={"label": labels.selector(project=spec.project, network=spec.key)}
    )
    for net in found:
        attached = client.api.inspect_network(net["Id"]).get("Containers") or {}
        if attached:
            names = sorted(c.get("Name", "?") for c in attached.values())
            log.info(
                f"network {spec.docker_name}: kept, still used by {', '.join(names)}"
            )
            return False
        try:
            client.api.remove_network(net["Id"])
        except NotFound:
            pass
        log.info(f"network {spec.docker_name}: removed")
    return True


def ensure_volume(client, spec, *, log):
    """Make sure named volume ``spec`` exists; return its name."""
    try:
        attrs = client.api.inspect_volume(spec.docker_name)
    except NotFound:
        if spec.external:
            raise EngineError(
                f"Volume {spec.docker_name} of stack {spec.stack} does not exist; "
                f"start stack {spec.stack} first."
            )
        volume_labels = {
            **spec.labels,
            labels.COMPOSE_PROJECT: spec.project,
            labels.COMPOSE_VOLUME: spec.key,
        }
        client.api.create_volume(
            name=spec.docker_name, driver=spec.driver or "local", labels=volume_labels
        )
        log.info(f"volume {spec.docker_name}: created ({spec.data_type})")
        return spec.docker_name
    found = attrs.get("Labels") or {}
    if not spec.external and found.get(labels.COMPOSE_PROJECT) != spec.project:
        # Data first: an existing volume of that name is used, not replaced.
        log.warning(
            f"volume {spec.docker_name}: exists without the portal's labels; "
            "using it as it is"
        )
    return spec.docker_name


def list_volumes(client, **label_values):
    """Return the portal's volumes (list API dicts) with these labels
    (:func:`stacks.engine.labels.selector` keywords), sorted by name."""
    answer = client.api.volumes(
        filters={"label": labels.selector(managed="true", **label_values)}
    )
    return sorted(answer.get("Volumes") or [], key=lambda v: v["Name"])


def list_networks(client, **label_values):
    """Return the portal's networks (list API dicts) with these labels,
    sorted by name."""
    found = client.api.networks(
        filters={"label": labels.selector(managed="true", **label_values)}
    )
    return sorted(found, key=lambda n: n["Name"])


def volume_sizes(client):
    """Return {volume name: bytes it holds} as the engine measures it
    (``docker system df``); a size the engine does not know is None."""
    sizes = {}
    for volume in client.api.df().get("Volumes") or []:
        size = (volume.get("UsageData") or {}).get("Size", -1)
        sizes[volume["Name"]] = size if size is not None and size >= 0 else None
    return sizes


def containers_using_volume(client, name):
    """Return the summaries of every container (running or not) that
    mounts volume ``name``."""
    return client.api.containers(all=True, filters={"volume": name})


def remove_volume(client, name):
    """Remove volume ``name``; a missing one counts as removed."""
    try:
        client.api.remove_volume(name)
    except NotFound:
        pass
    except APIError as exc:
        raise EngineError(f"Volume {name} not removed: {api_error_text(exc)}") from exc


def delete_network(client, network_id, name=""):
    """Remove network ``network_id``; a missing one counts as removed."""
    try:
        client.api.remove_network(network_id)
    except NotFound:
        pass
    except APIError as exc:
        raise EngineError(
            f"Network {name or network_id} not removed: {api_error_text(exc)}"
        ) from exc
