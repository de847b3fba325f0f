"""Live state of an environment's stacks and services, read from Docker.

One ``GET /containers/json?all=1&filters=...`` per Docker host and refresh:
the list API already carries State, Status (with the health suffix), Ports,
Labels, Image and Created, so no container is inspected on its own. The
containers are joined to the configured stacks and services by their
``portal.stack`` / ``portal.service`` labels (falling back to the Compose
ones). Everything returned is plain JSON-able dicts.
"""

import re
from datetime import UTC, datetime

from portal.ui import exit_tone, tone

from . import engine
from .engine import labels
from .models import Stack

__all__ = ["environment_status", "environments_status", "state_tone"]

# "Up 3 minutes (healthy)", "Up About an hour (health: starting)",
# "Exited (137) 5 seconds ago", "Restarting (1) 2 seconds ago", "Created".
_HEALTH_RE = re.compile(r"\((healthy|unhealthy|health: starting)\)\s*$")
_EXIT_RE = re.compile(r"^(?:Exited|Restarting) \((-?\d+)\)")
_UP_RE = re.compile(
    r"^Up (.+?)(?: \(Paused\))?(?: \((?:healthy|unhealthy|health: starting)\))?$"
)


def environment_status(environment, *, client=None, stacks=None):
    """Return the state of every stack and service of ``environment``.

    Args:
        client: Docker client to use; default: the environment's shared
            one (``stacks.engine.client_for``).
        stacks: configured stacks with their services prefetched; default:
            all of them.
    """
    if stacks is None:
        stacks = _configured_stacks()
    try:
        client = client or engine.client_for(environment)
        with engine.engine_errors("Docker engine not reachable"):
            containers = engine.list_containers(client, environment=environment.name)
    except engine.EngineError as exc:
        return _build(environment, stacks, [], error=str(exc))
    return _build(environment, stacks, containers)


def environments_status(environments, *, get_client=None):
    """Return ``{name: status}`` for several environments.

    Environments sharing a Docker host cost one list request together.
    ``get_client(environment)`` defaults to ``stacks.engine.client_for``.
    """
    get_client = get_client or engine.client_for
    stacks = _configured_stacks()
    by_host = {}
    for env in environments:
        by_host.setdefault(env.docker_host, []).append(env)
    result = {}
    for envs in by_host.values():
        try:
            with engine.engine_errors("Docker engine not reachable"):
                containers = engine.list_containers(
                    get_client(envs[0]), environment=True
                )
        except engine.EngineError as exc:
            for env in envs:
                result[env.name] = _build(env, stacks, [], error=str(exc))
            continue
        for env in envs:
            mine = [
                c
                for c in containers
                if (c.get("Labels") or {}).get(labels.ENVIRONMENT) == env.name
            ]
            result[env.name] = _build(env, stacks, mine)
    return result


def _configured_stacks():
    return list(Stack.objects.prefetch_related("services"))


def _build(environment, stacks, containers, error=None):
    by_service = {}
    for attrs in containers:
        found = attrs.get("Labels") or {}
        stack = found.get(labels.STACK)
        service = labels.service_of(found) or None
        by_service.setdefault((stack, service), []).append(attrs)

    stack_rows = []
    for stack in stacks:
        service_rows = []
        for service in stack.services.all():
            found = by_service.pop((stack.name, service.name), [])
            service_rows.append(_service_row(service.name, found, error))
        stack_rows.append(
            {
                "name": stack.name,
                "description": stack.description,
                "project": environment.project_name(stack),
                **_aggregate(service_rows, error),
                "services": service_rows,
            }
        )

    # Containers labelled for this environment that the configuration does
    # not know (a removed service, a renamed stack): shown, not hidden.
    unknown = [
        {"stack": stack, **_service_row(service, found, None)}
        for (stack, service), found in sorted(
            by_service.items(), key=lambda i: str(i[0])
        )
    ]
    states = [s["state"] for s in stack_rows]
    return {
        "environment": environment.name,
        "docker_host": environment.docker_host,
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "error": error,
        "summary": {
            "stacks": len(stack_rows),
            "services": sum(len(s["services"]) for s in stack_rows),
            "running": sum(s["running"] for s in stack_rows),
            "containers": len(containers),
            "stacks_running": states.count("running"),
        },
        "stacks": stack_rows,
        "unknown": unknown,
    }


def state_tone(state, health=None, exit_code=None):
    """Return the tone of a service's state: a clean exit is not an alarm."""
    if health == "unhealthy" or state == "dead":
        return "bad"
    if state == "exited":
        return exit_tone(exit_code) or "idle"
    return tone(state, "container") or "idle"


def _service_row(name, containers, error):
    if not containers:
        state = "unknown" if error else "missing"
        return {
            "name": name,
            "state": state,
            "tone": state_tone(state),
            "health": None,
            "status": "",
            "uptime": None,
            "exit_code": None,
            "ports": [],
            "container_id": None,
            "container_name": None,
            "image": None,
            "created": None,
            "replicas": 0,
        }
    # A running container wins over leftovers; then the newest.
    containers = sorted(
        containers,
        key=lambda c: (c.get("State") == "running", c.get("Created") or 0),
        reverse=True,
    )
    primary = containers[0]
    status = primary.get("Status") or ""
    health = _HEALTH_RE.search(status)
    exit_code = _EXIT_RE.match(status)
    up = _UP_RE.match(status)
    created = primary.get("Created")
    names = primary.get("Names") or []
    state = primary.get("State") or "unknown"
    health = health.group(1).replace("health: ", "") if health else None
    exit_code = int(exit_code.group(1)) if exit_code else None
    return {
        "name": name,
        "state": state,
        "tone": state_tone(state, health, exit_code),
        "health": health,
        "status": status,
        "uptime": up.group(1) if up and state == "running" else None,
        "exit_code": exit_code,
        "ports": _ports(primary.get("Ports") or []),
        "container_id": primary["Id"][:12],
        "container_name": names[0].lstrip("/") if names else None,
        "image": primary.get("Image"),
        "created": (
            datetime.fromtimestamp(created, UTC).isoformat(timespec="seconds")
            if created
            else None
        ),
        "replicas": len(containers),
    }


def _ports(ports):
    """Format list-API ports as ``127.0.0.1:8080->80/tcp``, IPv4/IPv6 merged."""
    seen, out = set(), []
    for p in sorted(ports, key=lambda p: (p.get("PrivatePort", 0), p.get("IP", ""))):
        private = f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}"
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            key = (private, p["PublicPort"])
            if key in seen:
                continue
            seen.add(key)
            host = f"[{ip}]" if ":" in ip else ip
            out.append(f"{host}:{p['PublicPort']}->{private}")
        elif (private, None) not in seen:
            seen.add((private, None))
            out.append(private)
    return out


def _aggregate(services, error):
    """Return a stack's state and counts from its service rows."""
    total = len(services)
    running = sum(1 for s in services if s["state"] == "running")
    present = sum(1 for s in services if s["state"] not in ("missing", "unknown"))
    healths = {s["health"] for s in services if s["state"] == "running"}
    if error:
        state = "unknown"
    elif total == 0 or present == 0:
        state = "missing"
    elif running == total:
        state = "running"
    elif running:
        state = "partial"
    elif any(s["state"] == "restarting" for s in services):
        state = "restarting"
    else:
        state = "stopped"
    if "unhealthy" in healths:
        health = "unhealthy"
    elif "starting" in healths:
        health = "starting"
    elif "healthy" in healths:
        health = "healthy"
    else:
        health = None
    return {
        "state": state,
        "tone": "bad" if health == "unhealthy" else (tone(state) or "idle"),
        "health": health,
        "running": running,
        "total": total,
    }
