"""Pages of environments and stacks."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from portal.operations import OperationConflict
from portal.panels import environment_panels
from portal.permissions import allowed_verbs, require, user_can, visible_environments

from . import operations
from .credentials import check_environment
from .models import Environment, Stack
from .secrets import InvalidEnvFile
from .status import environment_status

# The verbs a stack button asks for, and the operations function it calls
# (stacks.operations.<verb>_stack).
STACK_ACTIONS = ("start", "stop", "restart")


@login_required
def environment_list(request):
    """List the environments."""
    return render(
        request,
        "stacks/environment_list.html",
        {"environments": visible_environments(request.user)},
    )


@login_required
@require_GET
def environment_detail(request, name):
    """Show one environment's stacks and services with their live state."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, "view", environment)
    stacks = list(Stack.objects.prefetch_related("services", "dependents"))
    status = environment_status(environment, stacks=stacks)
    allowed = allowed_verbs(request.user, environment, (*STACK_ACTIONS, "wipe"))
    # Stacks that depend on another one, read from the prefetched reverse
    # relation: their Start form offers "with dependencies".
    depending = {d.pk for stack in stacks for d in stack.dependents.all()}
    rows = []
    for stack, stack_status in zip(stacks, status["stacks"], strict=True):
        rows.append(
            {
                "stack": stack,
                "status": stack_status,
                "has_dependencies": stack.pk in depending,
                "blast_radius": _blast_radius(environment, stack)
                if allowed["stop"] or allowed["restart"]
                else "",
            }
        )
    return render(
        request,
        "stacks/environment_detail.html",
        {
            "environment": environment,
            "status": status,
            "rows": rows,
            "allowed": allowed,
            "panels": environment_panels(environment, request.user),
            "credentials": _credentials(request.user, environment),
        },
    )


@login_required
@require_GET
@never_cache
def environment_status_json(request, name):
    """Return the live state of the environment's stacks as JSON."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, "view", environment)
    return JsonResponse(environment_status(environment))


@login_required
@require_POST
def stack_action(request, name, stack, action):
    """Ask for a stack to be started, stopped or restarted.

    A start takes the form's ``with_dependencies`` box: start the stacks it
    depends on first.
    """
    environment = get_object_or_404(Environment, name=name)
    stack = get_object_or_404(Stack, name=stack)
    require(request.user, action, environment)
    request_action = getattr(operations, f"{action}_stack")
    options = {}
    if action == "start":
        options["with_dependencies"] = request.POST.get("with_dependencies") in (
            "1",
            "on",
            "true",
        )
    try:
        operation = request_action(environment, stack, user=request.user, **options)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return redirect(environment.get_absolute_url())
    except (OperationConflict, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect(environment.get_absolute_url())
    messages.success(request, f"Queued operation {operation.pk}: {action} {stack}.")
    return redirect(operation.get_absolute_url())


@login_required
@require_GET
def stack_logs(request, name, stack):
    """Show the live logs of a stack's containers."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, "view", environment)
    stack = get_object_or_404(Stack, name=stack)
    services = list(stack.services.values_list("name", flat=True))
    service = request.GET.get("service") or ""
    if service and service not in services:
        service = ""
    return render(
        request,
        "stacks/stack_logs.html",
        {
            "environment": environment,
            "stack": stack,
            "services": services,
            "service": service,
            "tail": request.GET.get("tail", ""),
            "grep": request.GET.get("grep", ""),
        },
    )


def _credentials(user, environment):
    """Return what the page shows of the environment's credential check.

    Everyone who may view the environment sees the overall status; the
    status of each variable (which ones are weak) needs the ``check`` verb.
    Values are never part of it.
    """
    try:
        report = check_environment(environment)
    except InvalidEnvFile as exc:
        return {"error": str(exc)}
    return {"report": report, "details": user_can(user, "check", environment)}


def _blast_radius(environment, stack):
    """Return the text shown before stopping or restarting ``stack``."""
    return _describe_radius(operations.blast_radius(environment, stack))


def _describe_radius(radius):
    """Return :func:`stacks.operations.blast_radius` as one line of text."""
    parts = [f"stops {', '.join(radius['stops']) or 'nothing'}"]
    dependents = [
        f"{d['stack']}/{d['service']}"
        + (" (running)" if d.get("running") else "")
        + (f" needs {', '.join(d['depends_on'])}" if d.get("depends_on") else "")
        for d in radius["dependents"]
    ]
    if dependents:
        parts.append(f"services depending on them: {'; '.join(dependents)}")
    if radius["dependent_stacks"]:
        parts.append(
            f"stacks depending on this one: {', '.join(radius['dependent_stacks'])}"
        )
    # Figures other apps register (stacks.operations.register_radius_extra)
    # bring their own text, e.g. the GPU memory the stop frees.
    parts.extend(
        value["text"]
        for value in radius.values()
        if isinstance(value, dict) and value.get("text")
    )
    return ". ".join(parts) + "."
