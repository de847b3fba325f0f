"""Pages of the network checks: the map, the actions, the health history."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.choices import Verb
from portal.operations import OperationConflict
from portal.permissions import require, user_can, visible_environments

from .models import Environment, HealthProbe
from .networks import operations
from .networks.picture import host_picture

# The buttons of the network page: action -> (verb, service function,
# keyword arguments, label).
NETWORK_ACTIONS = {
    "conflicts": (
        Verb.CHECK,
        operations.check_network_conflicts,
        {},
        "Check conflicts",
    ),
    "validate": (Verb.CHECK, operations.validate_networks, {}, "Validate"),
    "health": (Verb.CHECK, operations.check_network_health, {}, "Check health"),
    "orphans": (
        Verb.CLEANUP,
        operations.cleanup_networks,
        {"dry_run": True},
        "Find orphans (dry run)",
    ),
    "cleanup": (
        Verb.CLEANUP,
        operations.cleanup_networks,
        {"dry_run": False},
        "Remove orphans",
    ),
}

# Rows of health history shown per environment.
HISTORY_ROWS = 300


@login_required
@require_GET
def network_map(request):
    """Show every Docker host with its environments, subnets and conflicts."""
    environments = list(visible_environments(request.user))
    visible = {e.name for e in environments}
    hosts = {}
    for environment in environments:
        hosts.setdefault(environment.docker_host, []).append(environment)
    pictures = []
    for docker_host, envs in hosts.items():
        picture = host_picture(docker_host, envs, visible=visible)
        picture.actions = [
            {
                "environment": env,
                "buttons": [
                    (action, label)
                    for action, (verb, _f, _k, label) in NETWORK_ACTIONS.items()
                    if user_can(request.user, verb, env)
                ],
            }
            for env in envs
        ]
        pictures.append(picture)
    return render(request, "stacks/network_map.html", {"pictures": pictures})


@login_required
@require_POST
def network_action(request, name, action):
    """Ask for a network check, validation, health probe or cleanup."""
    environment = get_object_or_404(Environment, name=name)
    if action not in NETWORK_ACTIONS:
        raise Http404(f"No network action {action!r}.")
    verb, request_action, options, label = NETWORK_ACTIONS[action]
    require(request.user, verb, environment)
    try:
        operation = request_action(environment, user=request.user, **options)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return redirect("stacks:network_map")
    except (OperationConflict, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect("stacks:network_map")
    messages.success(
        request, f"Queued operation {operation.pk}: {label.lower()} in {environment}."
    )
    return redirect(operation.get_absolute_url())


@login_required
@require_GET
def network_health(request, name):
    """Show the health probes of an environment, newest first."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, Verb.VIEW, environment)
    rows = list(
        HealthProbe.objects.filter(environment=environment).order_by(
            "-checked", "stack", "service"
        )[:HISTORY_ROWS]
    )
    return render(
        request,
        "stacks/network_health.html",
        {
            "environment": environment,
            "rows": rows,
            "can_check": user_can(request.user, Verb.CHECK, environment),
        },
    )
