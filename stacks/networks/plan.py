"""The networks the configuration plans, per environment and Docker host."""

from ..config import network_plan
from ..engine.specs import network_docker_name
from ..models import Environment, Network
from .conflicts import Planned, PlanProblem

__all__ = ["environment_networks", "host_environments", "planned_on_host"]


def environment_networks(environment, rows=None):
    """Return ``(planned, problem)`` of ``environment``.

    ``planned`` lists a :class:`~.conflicts.Planned` per network in stack
    order; ``problem`` is a :class:`~.conflicts.PlanProblem` when its
    subnets cannot be allocated (its subnet pool is too small or invalid),
    and then ``planned`` is empty.
    """
    if rows is None:
        rows = list(
            Network.objects.select_related("stack").order_by(
                "stack__order", "stack__name", "name"
            )
        )
    try:
        subnets = network_plan(environment)
    except ValueError as exc:
        return [], PlanProblem(
            environment=environment.name,
            message=(
                f"environment {environment.name} cannot place its networks: {exc} "
                f"(widen environments.{environment.name}.subnet_pool)"
            ),
            needed=len(rows),
            pool=environment.subnet_pool,
        )
    planned = []
    for row in rows:
        subnet, gateway = subnets[row.name]
        planned.append(
            Planned(
                environment=environment.name,
                stack=row.stack.name,
                network=row.name,
                docker_name=network_docker_name(
                    environment.project_name(row.stack), row.name
                ),
                subnet=subnet,
                gateway=gateway,
                pool=environment.subnet_pool,
            )
        )
    return planned, None


def host_environments(docker_host):
    """Return the environments whose Docker host is ``docker_host``."""
    return list(Environment.objects.filter(docker_host=docker_host))


def planned_on_host(docker_host):
    """Return ``(planned, problems)`` of every environment on ``docker_host``.

    Environments sharing a Docker host share its address space, so their
    plans are checked together.
    """
    rows = list(
        Network.objects.select_related("stack").order_by(
            "stack__order", "stack__name", "name"
        )
    )
    planned, problems = [], []
    for environment in host_environments(docker_host):
        found, problem = environment_networks(environment, rows)
        planned.extend(found)
        if problem is not None:
            problems.append(problem)
    return planned, problems
