"""Conflict checks of planned subnets: on demand, and before a start.

:func:`check_environment` reads the environment's Docker host (networks,
default address pools, routes and interface addresses) and reports every
conflict of the environment's planned networks with what is there and with
the plans of the other environments on that host. :func:`preflight` does
the same for the networks a start is about to create and refuses the start
with the conflicts' own message, before Docker would answer "Pool
overlaps with other one on this address space".
"""

from dataclasses import dataclass, field

from .. import engine
from .conflicts import find_conflicts
from .hostfacts import occupants, read_host
from .plan import planned_on_host

__all__ = ["CheckResult", "check_environment", "preflight"]


@dataclass
class CheckResult:
    """A conflict check of one environment."""

    environment: str
    docker_host: str
    planned: list = field(default_factory=list)
    report: object = None
    facts: object = None

    @property
    def ok(self):
        return self.report.ok and not self.facts.errors

    def as_dict(self):
        report = self.report
        return {
            "environment": self.environment,
            "docker_host": self.docker_host,
            "ok": self.ok,
            "conflicts": [c.as_dict() for c in report.conflicts],
            "warnings": [c.as_dict() for c in report.warnings],
            "problems": [p.message for p in report.problems],
            "unread": list(self.facts.errors),
            "host": {
                "networks": len(self.facts.networks),
                "routes": sum(1 for a in self.facts.addresses if a.kind == "route"),
                "interfaces": sum(
                    1 for a in self.facts.addresses if a.kind == "interface"
                ),
                "pools": [
                    {"base": base, "size": size} for base, size in self.facts.pools
                ],
                "pools_configured": self.facts.pools_configured,
            },
        }


def check_environment(environment, *, client=None, owner="", facts=None):
    """Return the :class:`CheckResult` of ``environment``'s planned networks.

    Raises EngineError when the Docker host cannot be asked at all.
    """
    client = client or engine.client_for(environment)
    planned, problems = planned_on_host(environment.docker_host)
    facts = facts or read_host(client, environment, owner=owner)
    report = find_conflicts(
        planned,
        occupants(facts),
        focus=lambda p: p.environment == environment.name,
        problems=[p for p in problems if p.environment == environment.name],
    )
    return CheckResult(
        environment=environment.name,
        docker_host=environment.docker_host,
        planned=planned,
        report=report,
        facts=facts,
    )


def _in_place(spec, networks):
    """Return whether our network ``spec`` exists with its planned subnet."""
    for network in networks:
        if network.name == spec.docker_name and (
            not spec.subnet or spec.subnet in network.subnets
        ):
            return True
    return False


def preflight(client, environment, plan, *, log, owner=""):
    """Refuse a start whose new networks conflict; warn about risks.

    Only the stack's own networks that do not exist yet with their planned
    subnet are checked (one in place was accepted by Docker already and is
    left alone), so a start of a running stack costs one list call. For the
    others the host's routes are read by a helper container.

    Raises EngineError naming every conflict, its other side and a free
    subnet.
    """
    networks = engine.host_networks(client)
    pending = {
        spec.docker_name for spec in plan.own_networks if not _in_place(spec, networks)
    }
    if not pending:
        return
    planned, problems = planned_on_host(environment.docker_host)
    facts = read_host(client, environment, owner=owner, networks=networks)
    for error in facts.errors:
        log.warning(f"network check: {error}")
    report = find_conflicts(
        planned,
        occupants(facts),
        focus=lambda p: p.environment == environment.name and p.docker_name in pending,
    )
    for warning in report.warnings:
        log.warning(f"network check: {warning.message()}")
    if report.conflicts:
        raise engine.EngineError(
            f"Cannot start stack {plan.stack.name} in {environment.name}: "
            f"{len(report.conflicts)} network conflict(s) on the "
            f"{engine.describe_host(environment)}: "
            + " ".join(c.message() for c in report.conflicts)
        )
    log.info(
        f"network check: {', '.join(sorted(pending))} clear of "
        f"{len(facts.networks)} network(s), "
        f"{len(facts.addresses)} route(s) and address(es), "
        f"{len(facts.pools)} default pool(s)"
    )
