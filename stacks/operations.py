"""Service functions for stack lifecycle: what views, admin and commands call.

Each function checks nothing itself beyond its arguments:
:func:`portal.operations.request_operation` checks the user's role on the
environment, computes the runner's plan (which for a stop or restart holds
the blast radius), takes the environment's line and queues the job. The
work itself is in :mod:`stacks.jobs`.
"""

from django.conf import settings

from portal.operations import request_operation

from .models import Service, Stack

__all__ = [
    "blast_radius",
    "dependent_stacks",
    "get_config",
    "register_radius_extra",
    "restart_stack",
    "start_stack",
    "stack_parameters",
    "stop_stack",
    "wipe",
]

DEFAULTS = {
    # Seconds a start waits for each level of services to become healthy.
    "HEALTH_TIMEOUT": 180,
    # When cron runs each environment's network health probes (five cron
    # fields; empty: never), and how many days of probes are kept.
    "NETWORK_HEALTH_SCHEDULE": "*/15 * * * *",
    "NETWORK_HEALTH_KEEP_DAYS": 14,
}


def get_config():
    """Return the stack knobs: ``settings.PORTAL_STACKS`` over the defaults."""
    return {**DEFAULTS, **getattr(settings, "PORTAL_STACKS", {})}


_ACTION_PARAMETERS = {
    "start": ("with_dependencies", "health_timeout"),
    "stop": ("remove", "with_dependents"),
    "restart": ("health_timeout",),
}


def stack_parameters(action, **values):
    """Return the operation parameters of ``action`` that are set in ``values``."""
    return {
        key: value
        for key, value in values.items()
        if key in _ACTION_PARAMETERS[action] and value not in (None, False)
    }


def start_stack(
    environment,
    stack,
    *,
    user,
    wait=True,
    service=None,
    with_dependencies=False,
    health_timeout=None,
    enqueue=True,
):
    """Request a start of ``stack`` (or one ``service`` of it); return the Operation.

    Args:
        with_dependencies: start the stacks it depends on first; without it a
            dependency stack that is not running fails the start, naming it.
        health_timeout: seconds to wait for health per level of services.
        wait: wait in line behind a running operation on the stack rather
            than be refused.
        enqueue: hand it to a worker; False leaves it for ``run_inline``.
    """
    return request_operation(
        "stack.start",
        user=user,
        environment=environment,
        stack=stack,
        service=service,
        parameters=stack_parameters(
            "start", with_dependencies=with_dependencies, health_timeout=health_timeout
        ),
        wait=wait,
        enqueue=enqueue,
    )


def stop_stack(
    environment,
    stack,
    *,
    user,
    wait=True,
    service=None,
    remove=False,
    with_dependents=False,
    enqueue=True,
):
    """Request a stop of ``stack`` (or one ``service``); return the Operation.

    Args:
        remove: also remove the containers and the stack's networks (like
            ``docker compose down``); volumes always stay.
        with_dependents: stop the stacks that depend on this one first.
    """
    return request_operation(
        "stack.stop",
        user=user,
        environment=environment,
        stack=stack,
        service=service,
        parameters=stack_parameters(
            "stop", remove=remove, with_dependents=with_dependents
        ),
        wait=wait,
        enqueue=enqueue,
    )


def restart_stack(
    environment,
    stack,
    *,
    user,
    wait=True,
    service=None,
    health_timeout=None,
    enqueue=True,
):
    """Request a restart of ``stack`` (or one ``service``); return the Operation.

    Services stop in reverse dependency order, then start in order, waiting
    for health; changed configuration is applied on the way up.
    """
    return request_operation(
        "stack.restart",
        user=user,
        environment=environment,
        stack=stack,
        service=service,
        parameters=stack_parameters("restart", health_timeout=health_timeout),
        wait=wait,
        enqueue=enqueue,
    )


# Figures other apps add to a blast radius, by key: ``{key: function}``;
# each function takes ``(environment, stack, stopping)`` (the names of the
# services that stop) and returns a JSON-able value, or None to add nothing.
_radius_extras = {}


def register_radius_extra(key, function):
    """Add ``function``'s answer to every blast radius under ``key``.

    Apps register in their ``AppConfig.ready()`` (the GPU memory a stop
    frees, for instance), so this module needs to know none of them.
    """
    _radius_extras[key] = function
    return function


def dependent_stacks(stack):
    """Return the stacks that depend on ``stack``, transitively, nearest first.

    Stopping them in the returned order stops dependents before their
    dependencies.
    """
    found = []
    for other in Stack.objects.exclude(pk=stack.pk).prefetch_related("depends_on"):
        closure = other.dependency_closure()
        if any(dep.pk == stack.pk for dep in closure):
            found.append((other, len(closure)))
    # A stack with a longer closure sits further up the dependency chain.
    return [s for s, _ in sorted(found, key=lambda item: (-item[1], item[0].order))]


def blast_radius(environment, stack, service=None, *, states=None):
    """Return what else is hit when ``stack`` (or one ``service``) stops.

    The result lists the services that stop, then the services of this and
    other stacks whose ``depends_on`` names one of them, and the stacks that
    depend on this one (whose containers lose the stopped services), and
    what other apps registered with :func:`register_radius_extra`. With
    ``states`` (``{project: {service: ContainerState}}``, from the Docker
    host) each dependent says whether it is running now.
    """
    if service is not None:
        stopping = [service.name]
    else:
        stopping = list(stack.services.values_list("name", flat=True))
    stopping_set = set(stopping)
    dependents = []
    rows = (
        Service.objects.filter(depends_on__name__in=stopping_set)
        .exclude(name__in=stopping_set)
        .select_related("stack")
        .prefetch_related("depends_on")
        .distinct()
        .order_by("stack__order", "order", "name")
    )
    for row in rows:
        entry = {
            "stack": row.stack.name,
            "service": row.name,
            "depends_on": sorted(
                d.name for d in row.depends_on.all() if d.name in stopping_set
            ),
        }
        if states is not None:
            state = states.get(environment.project_name(row.stack), {}).get(row.name)
            entry["running"] = bool(state and state.state == "running")
        dependents.append(entry)
    stacks = [s.name for s in dependent_stacks(stack)] if service is None else []
    radius = {
        "environment": environment.name,
        "stack": stack.name,
        "stops": stopping,
        "dependents": dependents,
        "dependent_stacks": stacks,
    }
    for key, function in sorted(_radius_extras.items()):
        value = function(environment, stack, stopping)
        if value is not None:
            radius[key] = value
    return radius


def wipe(
    environment,
    *,
    user,
    stack=None,
    data_type=None,
    confirm=None,
    dry_run=False,
    not_after=None,
    wait=True,
    enqueue=True,
):
    """Request a wipe; return the Operation.

    Of ``stack`` (``wipe.stack``), of the volumes of ``data_type``
    (``wipe.data``), or with neither of the whole environment
    (``wipe.environment``). ``confirm`` is the typed
    ``<environment>/<stack, data type or all>``; a ``dry_run`` needs none
    and changes nothing. In a protected environment the operation waits for
    an approval (see :mod:`portal.operations.approvals`); ``not_after`` (an
    aware datetime) is the window a scheduled run must start in.
    """
    if stack is not None and data_type:
        raise ValueError("A wipe is of a stack or of a data type, not both.")
    parameters = {"dry_run": bool(dry_run)}
    if data_type:
        parameters["data_type"] = data_type
    if not_after is not None:
        parameters["not_after"] = not_after.isoformat()
    kind = (
        "wipe.stack"
        if stack is not None
        else ("wipe.data" if data_type else "wipe.environment")
    )
    return request_operation(
        kind,
        user=user,
        environment=environment,
        stack=stack,
        parameters=parameters,
        wait=wait,
        enqueue=enqueue,
        confirm=confirm,
    )
