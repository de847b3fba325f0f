"""Throw-away copies of a service: a container of its image, fresh volumes,
a network of their own.

A restore drill loads a backup into something that is not the live
service: a container created from the service's own (resolved) spec, with
fresh volumes where the service mounts its named volumes, on a network of
its own where it answers to the service's name. Everything created here
carries the portal's helper labels (``portal.helper`` = the purpose,
``portal.helper.owner`` = the operation), so what a killed worker leaves
behind is found with :func:`list_scratch` and removed with
:func:`remove_scratch`, containers, networks and volumes alike.
"""

import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import Mount

from . import labels
from .containers import extra_options, healthcheck_of
from .errors import EngineError, api_error_text

__all__ = [
    "ScratchObject",
    "list_scratch",
    "published_port",
    "remove_scratch",
    "scratch_container",
    "scratch_name",
    "scratch_network",
    "scratch_volume",
]

# Docker names of scratch objects start with this.
NAME_PREFIX = "portal-scratch-"


def scratch_name():
    """Return a fresh name for a scratch object."""
    return f"{NAME_PREFIX}{uuid.uuid4().hex[:12]}"


def _labels(environment, purpose, owner):
    name = getattr(environment, "name", environment)
    return labels.helper_labels(name, purpose, owner)


@contextmanager
def scratch_network(client, *, environment, purpose, owner="", internal=True):
    """Create a labelled bridge network; yield its name; remove it after.

    ``internal`` cuts it off from everything outside (no route out; a port
    published by a container only on such a network is not reachable).
    """
    name = scratch_name()
    try:
        client.api.create_network(
            name,
            driver="bridge",
            internal=internal,
            labels=_labels(environment, purpose, owner),
            check_duplicate=True,
        )
    except APIError as exc:
        raise EngineError(
            f"Scratch network for {purpose} not created: {api_error_text(exc)}"
        ) from exc
    try:
        yield name
    finally:
        try:
            client.api.remove_network(name)
        except NotFound:
            pass


@contextmanager
def scratch_volume(client, *, environment, purpose, owner=""):
    """Create a labelled empty volume; yield its name; remove it after."""
    name = scratch_name()
    try:
        client.api.create_volume(
            name=name, driver="local", labels=_labels(environment, purpose, owner)
        )
    except APIError as exc:
        raise EngineError(
            f"Scratch volume for {purpose} not created: {api_error_text(exc)}"
        ) from exc
    try:
        yield name
    finally:
        try:
            client.api.remove_volume(name, force=True)
        except NotFound:
            pass


@contextmanager
def scratch_container(
    client,
    spec,
    *,
    environment,
    purpose,
    owner="",
    network,
    mounts=(),
    publish=(),
    command=None,
):
    """Create a container of ``spec``'s image and settings; yield its id;
    remove it (and its anonymous volumes) after.

    ``spec`` is a resolved :class:`~.specs.ServiceSpec` (its references
    replaced by values: never log it). What makes it a scratch copy rather
    than the service: the helper labels instead of the service's, no
    restart policy, no GPU, only ``mounts`` (:class:`~.specs.MountSpec`, in
    place of the service's), ``network`` as its only network with the
    service's name as alias (None: no network at all), and of its ports
    only ``publish`` (container ports), each on a free port of the host's
    127.0.0.1. ``command`` replaces the spec's when given. Not started.
    """
    api = client.api
    _create, host, _ignored = extra_options(spec.extra)
    port_bindings = {f"{port}/tcp": ("127.0.0.1", None) for port in publish}
    host_config = api.create_host_config(
        mounts=[_mount(m) for m in mounts] or None,
        port_bindings=port_bindings or None,
        network_mode=network or "none",
        **{
            k: v
            for k, v in host.items()
            if k in ("mem_limit", "mem_reservation", "nano_cpus", "tmpfs", "ulimits")
        },
        **({"shm_size": spec.shm_size} if spec.shm_size else {}),
    )
    try:
        created = api.create_container(
            spec.image,
            name=scratch_name(),
            command=command if command is not None else spec.command,
            entrypoint=spec.entrypoint,
            environment=dict(spec.environment),
            user=spec.user or None,
            ports=[(port, "tcp") for port in publish] or None,
            labels=_labels(environment, purpose, owner),
            host_config=host_config,
            networking_config=(
                api.create_networking_config(
                    {network: api.create_endpoint_config(aliases=[spec.name])}
                )
                if network
                else None
            ),
            healthcheck=healthcheck_of(spec),
            detach=True,
            use_config_proxy=False,
        )
    except ImageNotFound as exc:
        raise EngineError(
            f"Image {spec.image} of {spec.name} is not on the Docker host: "
            f"{api_error_text(exc)}"
        ) from exc
    except APIError as exc:
        raise EngineError(
            f"Scratch container of {spec.name} not created: {api_error_text(exc)}"
        ) from exc
    cid = created["Id"]
    try:
        yield cid
    finally:
        try:
            api.remove_container(cid, v=True, force=True)
        except NotFound:
            pass


def _mount(mount):
    return Mount(
        target=mount.target,
        source=mount.source or None,
        type=mount.type,
        read_only=mount.read_only,
    )


def published_port(client, container_id, port):
    """Return the host port a running container publishes ``port`` on."""
    attrs = client.api.inspect_container(container_id)
    bound = ((attrs.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{port}/tcp")
    for binding in bound or []:
        if binding.get("HostPort"):
            return int(binding["HostPort"])
    raise EngineError(
        f"Container {container_id[:12]} publishes no host port for {port}/tcp."
    )


@dataclass(frozen=True)
class ScratchObject:
    """A helper container, network or volume, with what started it."""

    kind: str
    id: str
    name: str
    purpose: str
    owner: str


def list_scratch(client, *, environment=None, purpose=None):
    """Return the helper containers, networks and volumes (of
    ``environment``, of ``purpose``) as :class:`ScratchObject`\\ s."""
    selector = labels.selector(
        managed="true",
        helper=purpose or True,
        environment=getattr(environment, "name", environment) or None,
    )
    found = []
    for summary in client.api.containers(all=True, filters={"label": selector}):
        found.append(_object("container", summary["Id"], summary, summary))
    for network in client.api.networks(filters={"label": selector}):
        found.append(_object("network", network["Id"], network, network))
    for volume in client.api.volumes(filters={"label": selector}).get("Volumes") or []:
        found.append(_object("volume", volume["Name"], volume, volume))
    return found


def _object(kind, ident, attrs, source):
    object_labels = source.get("Labels") or {}
    names = attrs.get("Names")
    name = names[0].lstrip("/") if names else attrs.get("Name") or ident
    return ScratchObject(
        kind=kind,
        id=ident,
        name=name,
        purpose=object_labels.get(labels.HELPER, ""),
        owner=object_labels.get(labels.HELPER_OWNER, ""),
    )


def remove_scratch(client, objects):
    """Remove ``objects`` (containers first, then networks and volumes);
    return the names removed. Ones already gone count as removed."""
    order = {"container": 0, "network": 1, "volume": 2}
    removed = []
    for item in sorted(objects, key=lambda o: order[o.kind]):
        try:
            if item.kind == "container":
                client.api.remove_container(item.id, v=True, force=True)
            elif item.kind == "network":
                client.api.remove_network(item.id)
            else:
                client.api.remove_volume(item.id, force=True)
        except NotFound:
            pass
        except APIError as exc:
            raise EngineError(
                f"Leftover {item.kind} {item.name} of {item.purpose} not removed: "
                f"{api_error_text(exc)}"
            ) from exc
        removed.append(f"{item.kind} {item.name}")
    return removed
