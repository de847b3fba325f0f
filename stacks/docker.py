"""Docker Engine adapter: apply a stack plan through docker-py.

No ``docker compose`` binary is assumed. Each function here is one step the
lifecycle jobs (``stacks.jobs``) compose: make sure a network, a volume or an
image is there, reconcile one service's container against its config hash,
wait for health, stop, list, follow logs, check ports and GPUs.

Objects are always found by label (``com.docker.compose.project`` plus
``portal.managed``), never by name. Names are still the ones Compose would
give, so an operator can take over with the Compose CLI and the rendered file.

Expected failures raise :class:`StackError` with a message for the operator;
anything else is a bug or an engine outage and propagates.
"""

import errno
import hashlib
import json
import os
import queue
import re
import socket
import threading
import time
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.types import (
    DeviceRequest,
    Healthcheck,
    IPAMConfig,
    IPAMPool,
    LogConfig,
    Mount,
    Ulimit,
)

from .compose import (
    GPU_DRIVER,
    HASH_LABEL,
    MANAGED_LABEL,
    NETWORK_LABEL,
    PROJECT_LABEL,
    SERVICE_LABEL,
    VOLUME_LABEL,
    parse_duration,
)

__all__ = [
    "ContainerState",
    "StackError",
    "check_gpu",
    "check_ports",
    "client_for",
    "close_clients",
    "config_hash",
    "container_create_options",
    "ensure_image",
    "ensure_network",
    "ensure_volume",
    "is_local_host",
    "project_containers",
    "reconcile_service",
    "remove_container",
    "remove_network",
    "service_states",
    "stop_container",
    "stop_timeout",
    "stream_logs",
    "wait_ready",
]

CLIENT_TIMEOUT = 120
DEFAULT_STOP_TIMEOUT = 10


class StackError(Exception):
    """An expected failure of a stack operation; the message names the cause."""


# --------------------------------------------------------------------------
# Clients


_clients = {}
_clients_lock = threading.Lock()


def _tls_config(environment):
    """Return a TLSConfig from the environment's ``docker_cert_path`` setting."""
    cert_path = (environment.settings or {}).get("docker_cert_path")
    if not cert_path:
        return False
    path = Path(cert_path)
    return docker.tls.TLSConfig(
        client_cert=(str(path / "cert.pem"), str(path / "key.pem")),
        ca_cert=str(path / "ca.pem"),
        verify=(environment.settings or {}).get("docker_tls_verify", True),
    )


def client_for(environment):
    """Return a docker-py client for the environment's Docker host.

    Clients are cached per process and host, so a worker reuses its
    connection pool; the pid is part of the key because a forked work horse
    must not share the parent's sockets.
    """
    host = environment.docker_host
    tls = _tls_config(environment)
    key = (os.getpid(), host, repr(getattr(tls, "cert", None)))
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            try:
                client = docker.DockerClient(
                    base_url=host,
                    tls=tls,
                    timeout=CLIENT_TIMEOUT,
                    # ssh:// through the ssh binary: no paramiko dependency.
                    use_ssh_client=host.startswith("ssh://"),
                )
            except DockerException as exc:
                raise StackError(
                    f"Cannot reach the Docker host {host} of environment "
                    f"{environment.name}: {exc}"
                ) from exc
            _clients[key] = client
    return client


def close_clients():
    """Close and forget every cached client of this process."""
    with _clients_lock:
        for key, client in list(_clients.items()):
            if key[0] == os.getpid():
                client.close()
            del _clients[key]


def is_local_host(environment):
    """Return whether the environment's Docker engine runs on this machine."""
    return environment.docker_host.startswith(("unix://", "npipe://")) or any(
        environment.docker_host.startswith(f"tcp://{h}")
        for h in ("127.0.0.1", "localhost", "[::1]")
    )


def _api_error_text(exc):
    return getattr(exc, "explanation", None) or str(exc)


# --------------------------------------------------------------------------
# Listing


def project_containers(client, project, service=None, *, all=True):
    """Return the container summaries (API list dicts) of ``project``.

    One list call; summaries carry Id, Names, Labels, State, Status (with the
    health in parentheses), Ports and NetworkSettings.
    """
    labels = [f"{PROJECT_LABEL}={project}", f"{MANAGED_LABEL}=true"]
    if service:
        labels.append(f"{SERVICE_LABEL}={service}")
    return client.api.containers(all=all, filters={"label": labels})


class ContainerState:
    """What one container summary says about its service."""

    def __init__(self, summary):
        self.summary = summary
        self.id = summary["Id"]
        self.name = (summary.get("Names") or ["/?"])[0].lstrip("/")
        self.labels = summary.get("Labels") or {}
        self.service = self.labels.get(SERVICE_LABEL, "")
        self.state = summary.get("State", "")
        status = summary.get("Status", "")
        self.health = ""
        for word in ("healthy", "unhealthy", "health: starting"):
            if f"({word})" in status:
                self.health = word.replace("health: ", "")
        self.status = status
        self.config_hash = self.labels.get(HASH_LABEL, "")

    @property
    def ready(self):
        """Running, and healthy when the container has a healthcheck."""
        return self.state == "running" and self.health in ("", "healthy")

    def ports(self):
        return sorted(
            f"{p.get('IP', '')}:{p['PublicPort']}->{p['PrivatePort']}/{p['Type']}"
            for p in self.summary.get("Ports") or []
            if p.get("PublicPort")
        )


def service_states(client, project):
    """Return {service: ContainerState} for the containers of ``project``."""
    states = {}
    for summary in project_containers(client, project):
        state = ContainerState(summary)
        # With leftovers of a crashed run, prefer the running container.
        if state.service not in states or state.state == "running":
            states[state.service] = state
    return states


# --------------------------------------------------------------------------
# Images


def ensure_image(client, ref, *, service, log, pull=True, progress_every=5.0):
    """Return the id of image ``ref``, pulling it when it is not local.

    Pull progress goes to ``log`` at most every ``progress_every`` seconds per
    layer, plus each layer's status changes (waiting, downloading, done).
    """
    try:
        return client.api.inspect_image(ref)["Id"]
    except ImageNotFound:
        pass
    if not pull:
        raise StackError(f"Image {ref} of service {service} is not on the host.")
    log.info(f"{service}: pulling image {ref}")
    started = time.monotonic()
    layers = {}
    try:
        for event in client.api.pull(ref, stream=True, decode=True):
            if "error" in event:
                raise StackError(
                    f"Image {ref} of service {service} could not be pulled: "
                    f"{event['error']}"
                )
            _log_pull_event(event, layers, log, service, progress_every)
    except APIError as exc:
        raise StackError(
            f"Image {ref} of service {service} could not be pulled: "
            f"{_api_error_text(exc)}"
        ) from exc
    try:
        image_id = client.api.inspect_image(ref)["Id"]
    except ImageNotFound as exc:
        raise StackError(
            f"Image {ref} of service {service} is still missing after the pull."
        ) from exc
    log.info(f"{service}: pulled {ref} in {time.monotonic() - started:.1f}s")
    return image_id


_LAYER_ID = re.compile(r"[0-9a-f]{12}")


def _log_pull_event(event, layers, log, service, every):
    layer, status = event.get("id"), event.get("status", "")
    if not layer or not _LAYER_ID.fullmatch(layer):
        # "Pulling from library/x" (id: the tag), "Digest: ...", "Status: ..."
        if status:
            log.info(f"{service}: {status}")
        return
    now = time.monotonic()
    last = layers.get(layer)
    detail = event.get("progressDetail") or {}
    if last and last[0] == status and now - last[1] < every:
        return
    layers[layer] = (status, now)
    if detail.get("total"):
        pct = 100 * detail.get("current", 0) / detail["total"]
        log.info(f"{service}: layer {layer} {status} {pct:.0f}%")
    else:
        log.info(f"{service}: layer {layer} {status}")


# --------------------------------------------------------------------------
# Networks and volumes


def _subnets(network_attrs):
    return [
        (c.get("Subnet", ""), c.get("Gateway", ""))
        for c in ((network_attrs.get("IPAM") or {}).get("Config") or [])
    ]


def _network_by_name(client, name):
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
        net = _network_by_name(client, spec.docker_name)
        if net is None:
            raise StackError(
                f"Network {spec.docker_name} of stack {spec.stack} does not exist; "
                f"start stack {spec.stack} first."
            )
        return net["Id"]
    found = client.api.networks(
        filters={
            "label": [f"{PROJECT_LABEL}={spec.project}", f"{NETWORK_LABEL}={spec.key}"]
        }
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
            raise StackError(
                f"Network {spec.docker_name} has subnet "
                f"{', '.join(s for s, _ in actual) or 'none'} but the plan says "
                f"{spec.subnet}; stop the containers on it first "
                f"({len(attached)} attached)."
            )
        log.info(f"network {spec.docker_name}: subnet changed, recreating")
        client.api.remove_network(net["Id"])
    else:
        other = _network_by_name(client, spec.docker_name)
        if other is not None:
            raise StackError(
                f"A network named {spec.docker_name} exists but was not created "
                "by the portal (no matching labels); remove or rename it."
            )
    ipam = None
    if spec.subnet:
        ipam = IPAMConfig(
            pool_configs=[IPAMPool(subnet=spec.subnet, gateway=spec.gateway or None)]
        )
    labels = {
        **spec.labels,
        PROJECT_LABEL: spec.project,
        NETWORK_LABEL: spec.key,
    }
    try:
        created = client.api.create_network(
            spec.docker_name,
            driver=spec.driver or "bridge",
            ipam=ipam,
            internal=spec.internal,
            labels=labels,
            check_duplicate=True,
        )
    except APIError as exc:
        text = _api_error_text(exc)
        if "overlap" in text.lower():
            holder = _overlapping_network(client, spec.subnet)
            raise StackError(
                f"Network {spec.docker_name}: subnet {spec.subnet} overlaps "
                f"{holder or 'an existing network'} on the Docker host."
            ) from exc
        raise StackError(f"Network {spec.docker_name} could not be created: {text}")
    log.info(
        f"network {spec.docker_name}: created"
        + (f" ({spec.subnet}, gateway {spec.gateway})" if spec.subnet else "")
    )
    return created["Id"]


def _overlapping_network(client, subnet):
    import ipaddress

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
        filters={
            "label": [f"{PROJECT_LABEL}={spec.project}", f"{NETWORK_LABEL}={spec.key}"]
        }
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
            raise StackError(
                f"Volume {spec.docker_name} of stack {spec.stack} does not exist; "
                f"start stack {spec.stack} first."
            )
        labels = {
            **spec.labels,
            PROJECT_LABEL: spec.project,
            VOLUME_LABEL: spec.key,
        }
        client.api.create_volume(
            name=spec.docker_name, driver=spec.driver or "local", labels=labels
        )
        log.info(f"volume {spec.docker_name}: created ({spec.data_type})")
        return spec.docker_name
    labels = attrs.get("Labels") or {}
    if not spec.external and labels.get(PROJECT_LABEL) != spec.project:
        # Data first: an existing volume of that name is used, not replaced.
        log.warning(
            f"volume {spec.docker_name}: exists without the portal's labels; "
            "using it as it is"
        )
    return spec.docker_name


# --------------------------------------------------------------------------
# Containers


def config_hash(spec, *, image_id):
    """Return the sha256 of the canonical container spec.

    ``spec`` is the resolved one the container is created from (references
    replaced by their values). The hash covers all of it: the image id (so a
    rebuilt tag recreates), a hash of the resolved environment (so a changed
    secret recreates), ports, mounts, networks and aliases, healthcheck, GPU,
    labels and extra options. Only the hash is stored, in a label.
    """
    env_hash = hashlib.sha256(
        json.dumps(sorted(spec.environment.items())).encode()
    ).hexdigest()
    canonical = {
        "image": spec.image,
        "image_id": image_id,
        "command": spec.command,
        "entrypoint": spec.entrypoint,
        "env_hash": env_hash,
        "ports": [str(p) for p in spec.ports],
        "mounts": [[m.type, m.source, m.target, m.read_only] for m in spec.mounts],
        "networks": sorted(spec.networks),
        "aliases": sorted(spec.aliases),
        "healthcheck": None
        if spec.healthcheck is None
        else [
            list(spec.healthcheck.test),
            spec.healthcheck.interval,
            spec.healthcheck.timeout,
            spec.healthcheck.retries,
            spec.healthcheck.start_period,
            spec.healthcheck.disable,
        ],
        "gpu": spec.gpu_count if spec.gpu else None,
        "shm_size": spec.shm_size,
        "user": spec.user,
        "restart": spec.restart,
        "labels": {k: v for k, v in spec.labels.items() if k != HASH_LABEL},
        "extra": spec.extra,
    }
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _ns(seconds):
    return None if seconds is None else int(seconds * 1_000_000_000)


def _restart_policy(value):
    if not value or value == "no":
        return None
    name, _, count = value.partition(":")
    policy = {"Name": name}
    if count:
        policy["MaximumRetryCount"] = int(count)
    return policy


def _memory(value):
    if value in (None, ""):
        return None
    return value if isinstance(value, int) else str(value).lower().rstrip("b") or None


def _extra_options(extra):
    """Split Compose pass-through keys into create and host-config options.

    Returns (create_kwargs, host_kwargs, ignored keys).
    """
    create, host, ignored = {}, {}, []
    for key, value in (extra or {}).items():
        if key in ("cap_add", "cap_drop", "sysctls", "dns", "group_add", "devices"):
            host[key] = value
        elif key in ("privileged", "init", "read_only"):
            host[key] = bool(value)
        elif key == "security_opt":
            host["security_opt"] = list(value)
        elif key == "pid":
            host["pid_mode"] = value
        elif key == "ipc":
            host["ipc_mode"] = value
        elif key == "extra_hosts":
            host["extra_hosts"] = (
                dict(h.split(":", 1) for h in value)
                if isinstance(value, list)
                else value
            )
        elif key == "tmpfs":
            paths = [value] if isinstance(value, str) else list(value)
            host["tmpfs"] = {p.split(":", 1)[0]: p.partition(":")[2] for p in paths}
        elif key == "ulimits":
            host["ulimits"] = [
                Ulimit(name=n, soft=v, hard=v)
                if isinstance(v, int)
                else Ulimit(name=n, soft=v.get("soft"), hard=v.get("hard"))
                for n, v in value.items()
            ]
        elif key in ("mem_limit", "mem_reservation", "memswap_limit"):
            host[key] = _memory(value)
        elif key == "cpus":
            host["nano_cpus"] = int(float(value) * 1e9)
        elif key == "pids_limit":
            host["pids_limit"] = int(value)
        elif key == "logging":
            host["log_config"] = LogConfig(
                type=value.get("driver", "json-file"), config=value.get("options") or {}
            )
        elif key == "deploy":
            limits = ((value or {}).get("resources") or {}).get("limits") or {}
            if limits.get("memory"):
                host["mem_limit"] = _memory(limits["memory"])
            if limits.get("cpus"):
                host["nano_cpus"] = int(float(limits["cpus"]) * 1e9)
            reservations = ((value or {}).get("resources") or {}).get("reservations")
            if (reservations or {}).get("memory"):
                host["mem_reservation"] = _memory(reservations["memory"])
        elif key in ("working_dir", "hostname", "domainname", "stop_signal"):
            create[key] = value
        elif key in ("tty", "stdin_open"):
            create[key] = bool(value)
        elif key == "stop_grace_period":
            create["stop_timeout"] = int(parse_duration(value) or DEFAULT_STOP_TIMEOUT)
        elif key.startswith("x-") or key in ("profiles", "labels", "build"):
            continue
        else:
            ignored.append(key)
    return create, host, ignored


def stop_timeout(spec):
    """Return the seconds ``docker stop`` waits before killing ``spec``."""
    value = (spec.extra or {}).get("stop_grace_period")
    return int(parse_duration(value) or DEFAULT_STOP_TIMEOUT)


def container_create_options(client, spec, *, config_hash):
    """Return (create_container kwargs, other network names, ignored keys)."""
    api = client.api
    create, host, ignored = _extra_options(spec.extra)
    port_bindings = {}
    for p in spec.ports:
        port_bindings.setdefault(f"{p.target}/{p.protocol}", []).append(
            (p.host_ip, p.published)
        )
    mounts = [
        Mount(
            target=m.target,
            source=m.source or None,
            type=m.type,
            read_only=m.read_only,
        )
        for m in spec.mounts
    ]
    if spec.gpu:
        count = -1 if str(spec.gpu_count).lower() == "all" else int(spec.gpu_count)
        host["device_requests"] = [
            DeviceRequest(driver=GPU_DRIVER, count=count, capabilities=[["gpu"]])
        ]
    if spec.shm_size:
        host["shm_size"] = spec.shm_size
    networks = list(spec.networks)
    host_config = api.create_host_config(
        port_bindings=port_bindings or None,
        mounts=mounts or None,
        restart_policy=_restart_policy(spec.restart),
        network_mode=networks[0] if networks else None,
        **host,
    )
    healthcheck = None
    if spec.healthcheck is not None:
        hc = spec.healthcheck
        if hc.disable:
            healthcheck = Healthcheck(test=["NONE"])
        else:
            healthcheck = Healthcheck(
                test=list(hc.test) or None,
                interval=_ns(hc.interval),
                timeout=_ns(hc.timeout),
                retries=hc.retries,
                start_period=_ns(hc.start_period),
            )
    networking_config = None
    if networks:
        # API 1.41 takes one endpoint at create; the others are connected
        # before start, as Compose does on older engines.
        networking_config = api.create_networking_config(
            {networks[0]: api.create_endpoint_config(aliases=list(spec.aliases))}
        )
    kwargs = {
        "image": spec.image,
        "name": spec.container_name,
        "command": spec.command,
        "entrypoint": spec.entrypoint,
        "environment": dict(spec.environment),
        "user": spec.user or None,
        "ports": [(p.target, p.protocol) for p in spec.ports] or None,
        "labels": {**spec.labels, HASH_LABEL: config_hash},
        "host_config": host_config,
        "networking_config": networking_config,
        "healthcheck": healthcheck,
        "detach": True,
        # Proxies from ~/.docker/config.json would change the environment
        # behind the config hash's back.
        "use_config_proxy": False,
        **create,
    }
    return kwargs, networks[1:], ignored


def _create(client, spec, *, config_hash, log):
    kwargs, more_networks, ignored = container_create_options(
        client, spec, config_hash=config_hash
    )
    if ignored:
        log.warning(f"{spec.name}: options not applied: {', '.join(sorted(ignored))}")
    try:
        created = client.api.create_container(**kwargs)
    except APIError as exc:
        text = _api_error_text(exc)
        if exc.status_code == 409:
            raise StackError(
                f"Service {spec.name}: a container named {spec.container_name} "
                "exists but does not carry this project's labels; remove it."
            ) from exc
        raise StackError(f"Service {spec.name}: container not created: {text}")
    cid = created["Id"]
    for network in more_networks:
        client.api.connect_container_to_network(
            cid, network, aliases=list(spec.aliases)
        )
    return cid


def _start(client, spec, cid):
    try:
        client.api.start(cid)
    except APIError as exc:
        text = _api_error_text(exc)
        if "could not select device driver" in text:
            raise StackError(
                f"Service {spec.name} needs a GPU but the Docker host has none "
                f"usable: {text}"
            ) from exc
        if "port is already allocated" in text or "address already in use" in text:
            raise StackError(f"Service {spec.name}: port in use: {text}") from exc
        raise StackError(f"Service {spec.name}: container did not start: {text}")


def stop_container(client, cid, *, timeout=DEFAULT_STOP_TIMEOUT):
    """Stop container ``cid``; a missing one counts as stopped."""
    try:
        client.api.stop(cid, timeout=timeout)
    except NotFound:
        pass


def remove_container(client, cid, *, timeout=DEFAULT_STOP_TIMEOUT):
    """Stop and remove ``cid`` with its anonymous volumes (named ones stay)."""
    stop_container(client, cid, timeout=timeout)
    try:
        client.api.remove_container(cid, v=True, force=True)
    except NotFound:
        pass


def reconcile_service(client, spec, *, image_id, network_ids, log):
    """Bring the container of ``spec`` to the desired state; return (action, id).

    ``spec`` is resolved: its environment holds the values the container
    gets (see :func:`stacks.compose.resolve_spec`).

    Actions: ``unchanged`` (running, same config hash: left alone),
    ``started`` (same hash, was stopped), ``recreated`` (hash differs, or a
    network it was on has been replaced), ``created`` (there was none).
    ``network_ids`` maps the Docker names of its networks to their ids.
    """
    wanted = config_hash(spec, image_id=image_id)
    existing = project_containers(client, spec.project, spec.name)
    existing.sort(key=lambda s: s.get("State") != "running")
    current, extras = (existing[0], existing[1:]) if existing else (None, [])
    for summary in extras:
        log.warning(f"{spec.name}: removing extra container {summary['Id'][:12]}")
        remove_container(client, summary["Id"], timeout=stop_timeout(spec))
    action = "created"
    if current is not None:
        same = (current.get("Labels") or {}).get(HASH_LABEL) == wanted
        attached = (current.get("NetworkSettings") or {}).get("Networks") or {}
        stale = [
            name
            for name, nid in network_ids.items()
            if name in attached and attached[name].get("NetworkID") not in ("", nid)
        ]
        if same and not stale:
            if current.get("State") == "running":
                return "unchanged", current["Id"]
            if current.get("State") == "paused":
                client.api.unpause(current["Id"])
                return "started", current["Id"]
            _start(client, spec, current["Id"])
            return "started", current["Id"]
        if stale:
            log.info(f"{spec.name}: network {', '.join(stale)} was replaced")
        remove_container(client, current["Id"], timeout=stop_timeout(spec))
        action = "recreated"
    cid = _create(client, spec, config_hash=wanted, log=log)
    _start(client, spec, cid)
    return action, cid


def _tail(client, cid, lines=5):
    try:
        raw = client.api.logs(cid, tail=lines, stdout=True, stderr=True)
    except APIError:
        return ""
    return " | ".join(
        line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line
    )


def _last_health_output(state):
    log = ((state.get("Health") or {}).get("Log")) or []
    if not log:
        return "no health check has run yet"
    last = log[-1]
    output = " ".join((last.get("Output") or "").split())
    return f"exit {last.get('ExitCode')}: {output or '(no output)'}"


def wait_ready(
    client, targets, *, timeout, check_cancel=None, poll=0.3, log=None, settle=1.0
):
    """Wait until every container in ``targets`` ({service: id}) is ready.

    Ready is healthy for a container with a healthcheck (its own or the
    image's), and running for ``settle`` seconds for one without, so that a
    process that dies right after its start is caught. Fails at once when one
    turns unhealthy, exits or restarts, and after ``timeout`` seconds
    otherwise, naming the service and its last health check output.
    """
    deadline = time.monotonic() + timeout
    pending = dict(targets)
    waited = {}
    running_since = {}
    started = time.monotonic()
    while pending:
        for service, cid in list(pending.items()):
            attrs = client.api.inspect_container(cid)
            state = attrs["State"]
            health = (state.get("Health") or {}).get("Status")
            if state["Status"] in ("exited", "dead") or attrs.get("RestartCount"):
                restarts = attrs.get("RestartCount")
                raise StackError(
                    f"Service {service} stopped during start (exit code "
                    f"{state.get('ExitCode')}"
                    f"{f', restarted {restarts}x' if restarts else ''}"
                    f"); last log lines: {_tail(client, cid) or '(none)'}"
                )
            if health == "unhealthy":
                raise StackError(
                    f"Service {service} is unhealthy; last health check: "
                    f"{_last_health_output(state)}"
                )
            if state["Status"] == "running" and health is None:
                since = running_since.setdefault(service, time.monotonic())
                if time.monotonic() - since < settle:
                    continue
            if state["Status"] == "running" and health in (None, "healthy"):
                waited[service] = time.monotonic() - started
                if log is not None:
                    log.info(
                        f"{service}: {'healthy' if health else 'running'} "
                        f"after {waited[service]:.1f}s"
                    )
                del pending[service]
        if not pending:
            break
        if time.monotonic() > deadline:
            service, cid = next(iter(pending.items()))
            state = client.api.inspect_container(cid)["State"]
            raise StackError(
                f"Service {service} is not healthy after {timeout:.0f}s "
                f"(health: {(state.get('Health') or {}).get('Status', 'none')}); "
                f"last health check: {_last_health_output(state)}"
            )
        if check_cancel is not None:
            check_cancel()
        time.sleep(poll)
    return waited


# --------------------------------------------------------------------------
# Preflight checks


def check_gpu(client, environment, services):
    """Fail when a GPU service is planned on a host without the NVIDIA runtime."""
    wanting = [s.name for s in services if s.gpu]
    if not wanting:
        return
    runtimes = client.info().get("Runtimes") or {}
    if GPU_DRIVER not in runtimes:
        raise StackError(
            f"Service {', '.join(wanting)} needs a GPU, but the Docker host of "
            f"environment {environment.name} ({environment.docker_host}) has no "
            f"NVIDIA runtime (runtimes: {', '.join(sorted(runtimes)) or 'none'}). "
            "Turn GPUs off for this environment (gpu_enabled) or for the service "
            "(override gpu: false)."
        )


def _ips_overlap(a, b):
    wild = ("", "0.0.0.0", "::")
    return a == b or a in wild or b in wild


def _describe_holder(name, labels):
    env, stack, svc = (
        labels.get("portal.environment"),
        labels.get("portal.stack"),
        labels.get(SERVICE_LABEL),
    )
    if env:
        return f"container {name} (environment {env}, stack {stack}, service {svc})"
    return f"container {name}"


def _process_holding(port, protocol):
    """Return "process NAME (pid N)" listening on ``port``, best effort."""
    inodes = set()
    tables = ["tcp", "tcp6"] if protocol == "tcp" else ["udp", "udp6"]
    for table in tables:
        try:
            rows = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, st, inode = fields[1], fields[3], fields[9]
            if int(local.rsplit(":", 1)[1], 16) == port and (
                protocol == "udp" or st == "0A"
            ):
                inodes.add(f"socket:[{inode}]")
    if not inodes:
        return None
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    comm = (pid_dir / "comm").read_text().strip()
                    return f"process {comm} (pid {pid_dir.name})"
        except OSError:
            continue
    return None


def _bind_free(host_ip, port, protocol):
    """Return None when ``host_ip:port`` can be bound, else the errno text."""
    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        # Sockets in TIME_WAIT are no obstacle for Docker either.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host_ip or "0.0.0.0", port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return os.strerror(exc.errno)
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"{host_ip} is not an address of this host"
            raise
    return None


def check_ports(client, environment, plan):
    """Fail when a port ``plan`` publishes is taken on the Docker host.

    Checked against every running container's published ports (naming the
    holder; containers of this same project are being reconciled and do not
    count) and, for a local engine, by binding the address.
    """
    wanted = [
        (svc, p) for svc in plan.services for p in svc.ports if p.published is not None
    ]
    problems = []
    seen = {}
    for svc, p in wanted:
        key = (p.published, p.protocol)
        for other_svc, other in seen.get(key, []):
            if _ips_overlap(other.host_ip, p.host_ip):
                problems.append(
                    f"port {p.published}/{p.protocol} is published by both "
                    f"{other_svc.name} and {svc.name}"
                )
        seen.setdefault(key, []).append((svc, p))
    held, ours = {}, set()
    for summary in client.api.containers():
        labels = summary.get("Labels") or {}
        name = (summary.get("Names") or ["/?"])[0].lstrip("/")
        for port in summary.get("Ports") or []:
            if not port.get("PublicPort"):
                continue
            key = (port["PublicPort"], port.get("Type", "tcp"))
            if labels.get(PROJECT_LABEL) == plan.project:
                ours.add(key)
                continue
            held.setdefault(key, []).append((port.get("IP", ""), name, labels))
    local = is_local_host(environment)
    for svc, p in wanted:
        key = (p.published, p.protocol)
        holders = [
            _describe_holder(name, labels)
            for ip, name, labels in held.get(key, [])
            if _ips_overlap(ip, p.host_ip)
        ]
        if holders:
            problems.append(
                f"service {svc.name}: port {p.published}/{p.protocol} on "
                f"{p.host_ip} is already published by {holders[0]}"
            )
            continue
        if local and key not in ours:
            reason = _bind_free(p.host_ip, p.published, p.protocol)
            if reason:
                holder = _process_holding(p.published, p.protocol)
                problems.append(
                    f"service {svc.name}: port {p.published}/{p.protocol} on "
                    f"{p.host_ip} is in use on the host"
                    + (f" by {holder}" if holder else f" ({reason})")
                )
    if problems:
        raise StackError(
            f"Cannot start stack {plan.stack.name} in {environment.name}: "
            + "; ".join(problems)
            + "."
        )


# --------------------------------------------------------------------------
# Logs


def stream_logs(client, project, *, services=None, tail=100, follow=False, stop=None):
    """Yield (service, line) from the containers of ``project``.

    Without ``follow`` the lines of all containers come merged by time. With
    ``follow`` one thread per container feeds a queue until every stream
    ends or ``stop`` (a threading.Event) is set.
    """
    containers = [
        ContainerState(s)
        for s in project_containers(client, project)
        if not services or ContainerState(s).service in services
    ]
    containers.sort(key=lambda c: c.service)
    if not follow:
        lines = []
        for c in containers:
            raw = client.api.logs(c.id, tail=tail, timestamps=True)
            for line in raw.decode("utf-8", "replace").splitlines():
                stamp, _, text = line.partition(" ")
                lines.append((stamp, c.service, text))
        lines.sort(key=lambda item: item[0])
        for _, service, text in lines:
            yield service, text
        return
    stop = stop or threading.Event()
    out = queue.Queue(maxsize=10000)
    done = object()

    def pump(c):
        try:
            stream = client.api.logs(c.id, stream=True, follow=True, tail=tail)
            buffer = b""
            for chunk in stream:
                if stop.is_set():
                    break
                buffer += chunk
                *complete, buffer = buffer.split(b"\n")
                for line in complete:
                    out.put((c.service, line.decode("utf-8", "replace")))
            if buffer:
                out.put((c.service, buffer.decode("utf-8", "replace")))
        except (APIError, OSError):
            pass
        finally:
            out.put(done)

    threads = [
        threading.Thread(target=pump, args=(c,), daemon=True) for c in containers
    ]
    for thread in threads:
        thread.start()
    remaining = len(threads)
    while remaining and not stop.is_set():
        try:
            item = out.get(timeout=0.5)
        except queue.Empty:
            continue
        if item is done:
            remaining -= 1
            continue
        yield item
