"""Validation: what runs on the Docker host is what the plan says.

For every stack of an environment that has anything on the host:

- each of its own planned networks exists with the planned subnet,
  gateway, driver, ``internal`` flag and labels;
- each of its containers is attached to exactly the networks its service's
  plan names (its own stack's and those of the stacks it depends on), no
  fewer and no more;
- each running container resolves the names it uses for its dependencies
  (``depends_on``, in its stack and across stacks, and service names in
  its ``*_HOST``/``*_URL`` variables) to an address of that dependency,
  asked from inside its own network namespace.

A stack with no container and no network on the host is not running and
is skipped.
"""

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .. import engine
from ..compose import stack_plan
from ..engine import labels
from ..models import Service, Stack
from ..secrets import InvalidReference, MissingSecret

__all__ = ["Finding", "Validation", "names_used", "validate_environment"]

# Variables whose values name a host: FOO_HOST, FOO_URL, FOO_ENDPOINT ...
_HOST_KEY = re.compile(r"(?:^|_)(HOST|HOSTS|URL|URI|ENDPOINT|BASE_URL)$")
_REFERENCE = re.compile(r"\$\{[^}]*\}")


@dataclass
class Finding:
    """One thing validation looked at."""

    ok: bool
    stack: str
    subject: str
    text: str

    def as_dict(self):
        return {
            "ok": self.ok,
            "stack": self.stack,
            "subject": self.subject,
            "text": self.text,
        }


@dataclass
class Validation:
    """The findings of one validation run."""

    environment: str
    findings: list = field(default_factory=list)
    skipped: list = field(default_factory=list)

    @property
    def failures(self):
        return [f for f in self.findings if not f.ok]

    def add(self, ok, stack, subject, text):
        finding = Finding(ok, stack, subject, text)
        self.findings.append(finding)
        return finding


def _hosts_in(value):
    """Return the host names a variable's value points at."""
    text = _REFERENCE.sub("", str(value)).strip()
    if not text:
        return []
    if "://" in text:
        try:
            host = urlsplit(text).hostname
        except ValueError:
            return []
        return [host] if host else []
    return [part.split(":")[0] for part in text.split(",") if part]


def names_used(spec, services):
    """Return ``{name: why}``: the service names ``spec`` reaches others by.

    ``services`` is the set of configured service names; only those count
    (an external host is not the portal's to check).
    """
    found = {}
    for name in spec.depends_on:
        found.setdefault(name, "depends_on")
    for _stack, name in spec.external_depends_on:
        found.setdefault(name, "depends_on")
    for key, value in sorted(spec.environment.items()):
        if not _HOST_KEY.search(key):
            continue
        for host in _hosts_in(value):
            if host in services and host != spec.name:
                found.setdefault(host, key)
    return found


def _check_network(result, spec, network):
    """Compare our network ``spec`` with the host's ``network``."""
    problems = []
    if spec.subnet and spec.subnet not in network.subnets:
        problems.append(
            f"subnet {', '.join(network.subnets) or 'none'}, planned {spec.subnet}"
        )
    if spec.gateway and spec.gateway not in network.gateways:
        problems.append(
            f"gateway {', '.join(filter(None, network.gateways)) or 'none'}, "
            f"planned {spec.gateway}"
        )
    if (spec.driver or "bridge") != network.driver:
        problems.append(f"driver {network.driver}, planned {spec.driver or 'bridge'}")
    if bool(spec.internal) != network.internal:
        problems.append(
            f"internal {str(network.internal).lower()}, planned "
            f"{str(bool(spec.internal)).lower()}"
        )
    wanted = {
        **spec.labels,
        labels.COMPOSE_PROJECT: spec.project,
        labels.COMPOSE_NETWORK: spec.key,
    }
    wrong = sorted(k for k, v in wanted.items() if network.labels.get(k) != v)
    if wrong:
        problems.append(f"labels {', '.join(wrong)} missing or different")
    if problems:
        result.add(
            False,
            spec.stack,
            spec.docker_name,
            f"network {spec.docker_name}: " + "; ".join(problems),
        )
    else:
        result.add(
            True,
            spec.stack,
            spec.docker_name,
            f"network {spec.docker_name}: {spec.subnet or 'any subnet'}, gateway "
            f"{spec.gateway or '-'}, {network.driver}, labels as planned",
        )


def _addresses(summary):
    joined = (summary.get("NetworkSettings") or {}).get("Networks") or {}
    return {e.get("IPAddress") for e in joined.values() if e and e.get("IPAddress")}


def validate_environment(environment, *, client=None, owner="", log=None):
    """Return the :class:`Validation` of ``environment`` on its Docker host.

    Raises EngineError when the host cannot be asked.
    """
    client = client or engine.client_for(environment)
    result = Validation(environment=environment.name)
    service_names = set(Service.objects.values_list("name", flat=True))
    with engine.engine_errors(engine.describe_host(environment)):
        networks = engine.host_networks(client)
        containers = [
            c
            for c in engine.list_containers(client, environment=environment.name)
            if labels.HELPER not in (c.get("Labels") or {})
        ]
    by_name = {n.name: n for n in networks}
    by_service = {}
    for summary in containers:
        state = engine.ContainerState(summary)
        if state.service not in by_service or state.state == "running":
            by_service[state.service] = summary
    for stack in Stack.objects.all():
        try:
            plan = stack_plan(environment, stack)
        except (ValueError, MissingSecret, InvalidReference) as exc:
            result.add(False, stack.name, stack.name, f"no plan: {exc}")
            continue
        mine = [
            c
            for c in containers
            if (c.get("Labels") or {}).get(labels.STACK) == stack.name
        ]
        present = [n for n in plan.own_networks if n.docker_name in by_name]
        if not mine and not present:
            result.skipped.append(stack.name)
            continue
        for spec in plan.own_networks:
            network = by_name.get(spec.docker_name)
            if network is None:
                result.add(
                    False,
                    stack.name,
                    spec.docker_name,
                    f"network {spec.docker_name} is missing (planned {spec.subnet})",
                )
            else:
                _check_network(result, spec, network)
        for summary in mine:
            _check_container(result, plan, summary)
        for summary in mine:
            state = engine.ContainerState(summary)
            if state.state != "running":
                continue
            try:
                spec = plan.service(state.service)
            except KeyError:
                continue
            wanted = names_used(spec, service_names)
            if not wanted:
                continue
            answers = engine.resolve_names(
                client,
                state.id,
                sorted(wanted),
                environment=environment,
                owner=owner,
            )
            for name, (found, error) in sorted(answers.items()):
                target = by_service.get(name)
                expected = _addresses(target) if target else set()
                subject = f"{spec.name} -> {name}"
                if not found:
                    result.add(
                        False,
                        stack.name,
                        subject,
                        f"{spec.name} cannot resolve {name} ({wanted[name]}): "
                        f"{error}"
                        + ("" if target else f"; no container of {name} exists"),
                    )
                elif expected and not expected & set(found):
                    result.add(
                        False,
                        stack.name,
                        subject,
                        f"{spec.name} resolves {name} to {', '.join(found)}, but "
                        f"{name}'s container has {', '.join(sorted(expected))}",
                    )
                else:
                    result.add(
                        True,
                        stack.name,
                        subject,
                        f"{spec.name} resolves {name} ({wanted[name]}) to "
                        f"{', '.join(found)}",
                    )
            if log is not None:
                log.info(f"{spec.name}: {len(answers)} name(s) asked from inside")
    return result


def _check_container(result, plan, summary):
    """Compare a container's networks with its service's plan."""
    state = engine.ContainerState(summary)
    try:
        spec = plan.service(state.service)
    except KeyError:
        result.add(
            False,
            plan.stack.name,
            state.name,
            f"container {state.name} is labelled for service {state.service}, "
            f"which stack {plan.stack.name} does not have",
        )
        return
    joined = set((summary.get("NetworkSettings") or {}).get("Networks") or {})
    wanted = set(spec.networks)
    missing, extra = sorted(wanted - joined), sorted(joined - wanted)
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"not attached to {', '.join(missing)}")
        if extra:
            parts.append(f"attached to {', '.join(extra)}, which the plan does not say")
        result.add(
            False,
            plan.stack.name,
            state.name,
            f"container {state.name} ({spec.name}): " + "; ".join(parts),
        )
    else:
        result.add(
            True,
            plan.stack.name,
            state.name,
            f"container {state.name} ({spec.name}): on {', '.join(sorted(wanted))}",
        )
