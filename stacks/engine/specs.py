"""What the engine is asked to create: plain dataclasses, no Docker calls.

A :class:`StackPlan` (built from the configuration by ``stacks.plan``) holds
the services, networks and volumes of one stack in one environment with
their Docker names and labels; the engine's functions take these specs and
make Docker match them. Names follow Compose, so ``docker compose -p
<project>`` sees the same objects.
"""

import re
from dataclasses import dataclass, field

from . import labels

__all__ = [
    "GPU_DRIVER",
    "HealthSpec",
    "MountSpec",
    "NetworkSpec",
    "PortSpec",
    "ServiceSpec",
    "StackPlan",
    "VolumeSpec",
    "container_name",
    "describe_spec",
    "format_duration",
    "network_docker_name",
    "parse_duration",
    "volume_docker_name",
]

GPU_DRIVER = "nvidia"


def container_name(project, service):
    """Return the container name Compose gives the first replica."""
    return f"{project}-{service}-1"


def network_docker_name(project, network):
    """Return the Docker name of ``network`` (a key) in ``project``."""
    return f"{project}_{network}"


def volume_docker_name(project, volume):
    """Return the Docker name of ``volume`` (a key) in ``project``."""
    return f"{project}_{volume}"


def parse_duration(value):
    """Return a Compose duration ("1m30s", "500ms", 10) in seconds, or None."""
    if value in (None, ""):
        return None
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6, "ns": 1e-9}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|ns|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{value!r} is not a duration (e.g. 30s, 1m30s, 500ms).")
    return sum(float(n) * units[u] for n, u in parts)


def format_duration(seconds):
    """Return ``seconds`` as a Compose duration string."""
    if seconds is None:
        return None
    if float(seconds).is_integer():
        return f"{int(seconds)}s"
    return f"{int(round(seconds * 1000))}ms"


@dataclass(frozen=True)
class PortSpec:
    """A published port: ``host_ip:published -> target/protocol``."""

    target: int
    # None: Docker picks a free host port.
    published: int | None
    host_ip: str
    protocol: str = "tcp"

    def __str__(self):
        published = "" if self.published is None else self.published
        return f"{self.host_ip}:{published}->{self.target}/{self.protocol}"


@dataclass(frozen=True)
class MountSpec:
    """A mount: a named volume (Docker name in ``source``), a bind or a tmpfs."""

    type: str
    target: str
    source: str = ""
    read_only: bool = False
    # The compose key: the volume's key for named volumes, the path as written
    # in the configuration for binds.
    key: str = ""


@dataclass(frozen=True)
class HealthSpec:
    """A healthcheck in Compose terms, durations in seconds."""

    test: tuple = ()
    interval: float | None = None
    timeout: float | None = None
    retries: int | None = None
    start_period: float | None = None
    disable: bool = False


@dataclass
class NetworkSpec:
    """A network a stack's services join."""

    key: str
    docker_name: str
    stack: str
    project: str
    subnet: str = ""
    gateway: str = ""
    driver: str = "bridge"
    internal: bool = False
    # Owned by a stack this one depends on: used, never created or removed.
    external: bool = False
    labels: dict = field(default_factory=dict)


@dataclass
class VolumeSpec:
    """A named volume of a stack."""

    key: str
    docker_name: str
    stack: str
    project: str
    data_type: str = ""
    driver: str = "local"
    external: bool = False
    labels: dict = field(default_factory=dict)


@dataclass
class ServiceSpec:
    """One service of a stack as it should run in an environment."""

    name: str
    stack: str
    project: str
    image: str
    # Build context, for services that have one (rendered; never built here).
    build: str = ""
    command: list | None = None
    entrypoint: list | None = None
    # Values keep their ${VAR} references; resolved at container creation.
    environment: dict = field(default_factory=dict)
    ports: list = field(default_factory=list)
    mounts: list = field(default_factory=list)
    # Network Docker name -> network key, own stack's networks first.
    networks: dict = field(default_factory=dict)
    aliases: list = field(default_factory=list)
    healthcheck: HealthSpec | None = None
    # Services of the same stack this one waits for.
    depends_on: list = field(default_factory=list)
    # (stack, service) pairs in other stacks this one needs running.
    external_depends_on: list = field(default_factory=list)
    gpu: bool = False
    gpu_count: str = "all"
    shm_size: str = ""
    user: str = ""
    restart: str = "unless-stopped"
    labels: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    # The configuration as written (references unresolved, secret values
    # redacted) as JSON, stored on the container in label portal.config so
    # pages can show what a running container was made from. Set by
    # stacks.compose.resolve_spec; not part of the config hash.
    recorded: str = ""

    @property
    def container_name(self):
        return container_name(self.project, self.name)


def describe_spec(spec):
    """Return what a container of ``spec`` is made from, as a JSON-able dict.

    The values as the spec holds them (a spec from ``stack_plan`` keeps its
    ``${VAR}`` references); empty keys are left out. Compose's and the
    portal's own labels are not listed: they follow from the names.
    """
    health = None
    if spec.healthcheck is not None:
        hc = spec.healthcheck
        health = (
            {"disable": True}
            if hc.disable
            else {
                "test": list(hc.test),
                "interval": hc.interval,
                "timeout": hc.timeout,
                "retries": hc.retries,
                "start_period": hc.start_period,
            }
        )
    mounts = []
    for m in spec.mounts:
        if m.type == "tmpfs":
            mounts.append(f"tmpfs:{m.target}")
        else:
            source = m.key or m.source or "(anonymous)"
            mounts.append(f"{source}:{m.target}" + (":ro" if m.read_only else ""))
    found = {
        "image": spec.image,
        "command": spec.command,
        "entrypoint": spec.entrypoint,
        "environment": dict(sorted(spec.environment.items())),
        "ports": [str(p) for p in spec.ports],
        "volumes": mounts,
        "networks": sorted(set(spec.networks.values())),
        "healthcheck": health,
        "gpu": spec.gpu_count if spec.gpu else None,
        "shm_size": spec.shm_size,
        "user": spec.user,
        "restart": spec.restart,
        "labels": {
            k: v
            for k, v in sorted(spec.labels.items())
            if not (labels.is_compose_label(k) or labels.is_portal_label(k))
        },
        "extra": spec.extra,
    }
    return {k: v for k, v in found.items() if v not in (None, "", [], {})}


@dataclass
class StackPlan:
    """Desired state of one stack in one environment."""

    environment: object
    stack: object
    project: str
    services: list = field(default_factory=list)
    networks: list = field(default_factory=list)
    volumes: list = field(default_factory=list)
    # Names of the stacks this one depends on, transitively, dependencies first.
    dependency_stacks: list = field(default_factory=list)

    def service(self, name):
        """Return the spec of service ``name``."""
        for spec in self.services:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @property
    def own_networks(self):
        return [n for n in self.networks if not n.external]

    @property
    def own_volumes(self):
        return [v for v in self.volumes if not v.external]
