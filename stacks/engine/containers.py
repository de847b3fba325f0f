"""Containers: the one listing, reconcile by config hash, stop, remove.

:func:`list_containers` is how every page, consumer and job finds
containers: one list call filtered by the portal's labels, returning the
list API's summaries (Id, Names, Labels, State, Status with the health in
parentheses, Ports, NetworkSettings, Image, Created), so no container is
inspected on its own.
"""

import hashlib
import json

from docker.errors import APIError, NotFound
from docker.types import DeviceRequest, Healthcheck, LogConfig, Mount, Ulimit

from . import labels
from .errors import EngineError, api_error_text
from .specs import GPU_DRIVER, parse_duration

__all__ = [
    "DEFAULT_STOP_TIMEOUT",
    "ContainerState",
    "config_hash",
    "container_create_options",
    "container_tail",
    "extra_options",
    "healthcheck_of",
    "last_health_output",
    "list_containers",
    "project_containers",
    "reconcile_service",
    "remove_container",
    "service_states",
    "start_container",
    "stop_container",
    "stop_timeout",
]

DEFAULT_STOP_TIMEOUT = 10


def list_containers(client, *, all=True, **label_values):
    """Return the summaries (list API dicts) of the containers with these labels.

    ``label_values`` are :func:`stacks.engine.labels.selector` keywords:
    ``environment``, ``stack``, ``service``, ``project``, ``helper``, ...
    One list call; without any, every container the portal manages.
    """
    filters = labels.selector(managed="true", **label_values)
    return client.api.containers(all=all, filters={"label": filters})


def project_containers(client, project, service=None, *, all=True):
    """Return the container summaries of Compose project ``project``."""
    return list_containers(
        client, all=all, project=project, compose_service=service or None
    )


class ContainerState:
    """What one container summary says about its service."""

    def __init__(self, summary):
        self.summary = summary
        self.id = summary["Id"]
        self.name = (summary.get("Names") or ["/?"])[0].lstrip("/")
        self.labels = summary.get("Labels") or {}
        self.service = labels.service_of(self.labels)
        self.state = summary.get("State", "")
        status = summary.get("Status", "")
        self.health = ""
        for word in ("healthy", "unhealthy", "health: starting"):
            if f"({word})" in status:
                self.health = word.replace("health: ", "")
        self.status = status
        self.config_hash = self.labels.get(labels.COMPOSE_CONFIG_HASH, "")

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
        "labels": {
            k: v for k, v in spec.labels.items() if k != labels.COMPOSE_CONFIG_HASH
        },
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


def extra_options(extra):
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


def healthcheck_of(spec):
    """Return the docker-py ``Healthcheck`` of ``spec`` (None: the image's)."""
    hc = spec.healthcheck
    if hc is None:
        return None
    if hc.disable:
        return Healthcheck(test=["NONE"])
    return Healthcheck(
        test=list(hc.test) or None,
        interval=_ns(hc.interval),
        timeout=_ns(hc.timeout),
        retries=hc.retries,
        start_period=_ns(hc.start_period),
    )


def stop_timeout(spec):
    """Return the seconds ``docker stop`` waits before killing ``spec``."""
    value = (spec.extra or {}).get("stop_grace_period")
    return int(parse_duration(value) or DEFAULT_STOP_TIMEOUT)


def container_create_options(client, spec, *, config_hash):
    """Return (create_container kwargs, other network names, ignored keys)."""
    api = client.api
    create, host, ignored = extra_options(spec.extra)
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
    healthcheck = healthcheck_of(spec)
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
        "labels": {
            **spec.labels,
            labels.COMPOSE_CONFIG_HASH: config_hash,
            **({labels.CONFIG: spec.recorded} if spec.recorded else {}),
        },
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
        text = api_error_text(exc)
        if exc.status_code == 409:
            raise EngineError(
                f"Service {spec.name}: a container named {spec.container_name} "
                "exists but does not carry this project's labels; remove it."
            ) from exc
        raise EngineError(f"Service {spec.name}: container not created: {text}")
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
        text = api_error_text(exc)
        if "could not select device driver" in text:
            raise EngineError(
                f"Service {spec.name} needs a GPU but the Docker host has none "
                f"usable: {text}"
            ) from exc
        if "port is already allocated" in text or "address already in use" in text:
            raise EngineError(f"Service {spec.name}: port in use: {text}") from exc
        raise EngineError(f"Service {spec.name}: container did not start: {text}")


def start_container(client, cid, name=""):
    """Start the existing container ``cid``; raise EngineError on failure."""
    try:
        client.api.start(cid)
    except APIError as exc:
        raise EngineError(
            f"Container {name or cid[:12]} did not start: {api_error_text(exc)}"
        ) from exc


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
        same = (current.get("Labels") or {}).get(labels.COMPOSE_CONFIG_HASH) == wanted
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


def container_tail(client, cid, lines=5):
    """Return the last ``lines`` log lines of ``cid`` joined by " | "."""
    try:
        raw = client.api.logs(cid, tail=lines, stdout=True, stderr=True)
    except APIError:
        return ""
    return " | ".join(
        line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line
    )


def last_health_output(state):
    """Return the last health check's exit code and output, in one line."""
    log = ((state.get("Health") or {}).get("Log")) or []
    if not log:
        return "no health check has run yet"
    last = log[-1]
    output = " ".join((last.get("Output") or "").split())
    return f"exit {last.get('ExitCode')}: {output or '(no output)'}"
