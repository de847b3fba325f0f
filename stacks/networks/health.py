"""Health of each stack, checked from inside the stack's network.

The seed's ``check-network-health`` ran ``pg_isready`` and ``redis-cli
ping`` in two fixed containers and curled Qdrant and MinIO on the host's
ports. Here every service of a running stack is probed by its service
name, from a helper attached to the stack's own network, so the probe
takes the path the other services take (Docker DNS, the network, the
container port) and needs no published port:

============  ==========================================================
service       probe
============  ==========================================================
PostgreSQL    ``pg_isready -h <service> -p 5432``
Redis         ``redis-cli -h <service> -p 6379 PING``, answer ``PONG``
Qdrant        ``GET http://<service>:6333/healthz``
MinIO         ``GET http://<service>:9000/minio/health/live``
others        ``GET`` of the URL their healthcheck asks for, with the host
              replaced by the service name; else a TCP connect to their
              first container port; services with neither are not probed
============  ==========================================================

Every result is timed and kept as a :class:`~stacks.models.HealthProbe`
row, the history the environment page shows.
"""

import re
from dataclasses import dataclass
from datetime import timedelta

from django.utils import timezone

from .. import engine
from ..compose import stack_plan
from ..models import HealthProbe, Stack

__all__ = ["ProbeSpec", "check_health", "probes_for"]

_URL = re.compile(
    r"https?://(?:localhost|127\.0\.0\.1|0\.0\.0\.0|\[::1\])(?::(\d+))?(/[^\s\"']*)?"
)
_ALIASES = {"postgresql": "postgres"}
# Seconds each probe may take.
PROBE_TIMEOUT = 5


@dataclass(frozen=True)
class ProbeSpec:
    """How one service is probed."""

    service: str
    kind: str  # postgres, redis, http, tcp
    port: int
    path: str = ""

    @property
    def target(self):
        if self.kind == "http":
            return f"http://{self.service}:{self.port}{self.path}"
        return f"{self.service}:{self.port}"

    def as_probe(self):
        return {
            "id": self.service,
            "kind": self.kind,
            "host": self.service,
            "port": self.port,
            "path": self.path,
            "timeout": PROBE_TIMEOUT,
        }


def _image_name(image):
    name = image.rsplit("/", 1)[-1]
    return name.split(":", 1)[0].split("@", 1)[0]


def _what(spec):
    """Return postgres, redis, qdrant, minio or "" for a service spec."""
    names = {spec.name, _image_name(spec.image)}
    names = {_ALIASES.get(n, n) for n in names}
    for kind in ("postgres", "redis", "qdrant", "minio"):
        if any(n == kind or n.startswith(f"{kind}-") for n in names):
            return kind
    return ""


def probes_for(spec):
    """Return the :class:`ProbeSpec` of a service spec, or None."""
    ports = [p.target for p in spec.ports]
    what = _what(spec)
    if what == "postgres":
        return ProbeSpec(spec.name, "postgres", 5432)
    if what == "redis":
        return ProbeSpec(spec.name, "redis", 6379)
    if what == "qdrant":
        return ProbeSpec(spec.name, "http", 6333, "/healthz")
    if what == "minio":
        return ProbeSpec(spec.name, "http", 9000, "/minio/health/live")
    test = " ".join((spec.healthcheck.test if spec.healthcheck else ()) or ())
    match = _URL.search(test)
    if match:
        port = int(match.group(1) or 80)
        return ProbeSpec(spec.name, "http", port, match.group(2) or "/")
    if ports:
        return ProbeSpec(spec.name, "tcp", ports[0])
    return None


def prune_probes(environment, keep_days, *, now=None):
    """Delete ``environment``'s probes older than ``keep_days``; return how many.

    ``keep_days`` of 0 or less keeps every probe.
    """
    if keep_days is None or keep_days <= 0:
        return 0
    cutoff = (now or timezone.now()) - timedelta(days=keep_days)
    deleted, _ = HealthProbe.objects.filter(
        environment=environment, checked__lt=cutoff
    ).delete()
    return deleted


def check_health(environment, *, client=None, owner="", operation=None, log=None):
    """Probe every running stack of ``environment``; return the saved rows.

    One helper per stack runs that stack's probes. A stack whose containers
    are not all there is probed all the same (a missing service is a failed
    probe), while a stack with no container at all is skipped. Returns
    ``(rows, skipped)``: the :class:`HealthProbe` rows saved and the names
    of the stacks skipped.
    """
    client = client or engine.client_for(environment)
    with engine.engine_errors(engine.describe_host(environment)):
        running = {
            engine.ContainerState(c).labels.get(engine.labels.STACK)
            for c in engine.list_containers(client, environment=environment.name)
            if engine.labels.HELPER not in (c.get("Labels") or {})
        }
    rows, skipped = [], []
    for stack in Stack.objects.all():
        if stack.name not in running:
            skipped.append(stack.name)
            continue
        plan = stack_plan(environment, stack)
        specs = [p for p in map(probes_for, plan.services) if p is not None]
        own = plan.own_networks
        if not specs or not own:
            skipped.append(stack.name)
            continue
        network = own[0].docker_name
        with engine.engine_errors(f"health probes of stack {stack.name}"):
            results, seconds = engine.run_probes(
                client,
                network,
                [s.as_probe() for s in specs],
                environment=environment,
                owner=owner,
            )
        if log is not None:
            log.info(
                f"{stack.name}: {len(results)} probe(s) from inside {network} "
                f"in {seconds:.2f}s"
            )
        now = timezone.now()
        by_id = {r["id"]: r for r in results}
        for spec in specs:
            answer = by_id.get(spec.service) or {}
            rows.append(
                HealthProbe(
                    environment=environment,
                    stack=stack.name,
                    service=spec.service,
                    kind=spec.kind,
                    target=spec.target,
                    network=network,
                    ok=bool(answer.get("ok")),
                    seconds=answer.get("seconds"),
                    address=answer.get("address") or "",
                    detail=str(answer.get("detail") or "no answer")[:500],
                    checked=now,
                    operation=operation,
                )
            )
    HealthProbe.objects.bulk_create(rows)
    return rows, skipped
