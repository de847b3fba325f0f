"""Pages of environments and stacks."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from portal.choices import OperationStatus, Verb
from portal.models import Operation
from portal.operations import OperationConflict
from portal.panels import environment_panels
from portal.permissions import require, verbs_of, visible_environments

from . import engine, operations
from .access import console_refusal
from .actions import (
    ACTIONS,
    SERVICE_ACTION_STATES,
    STACK_ACTION_STATES,
    when,
)
from .credentials import check_environment
from .models import Environment, Service, Stack
from .secrets import InvalidEnvFile
from .status import environment_status, environments_status

# The verbs a stack button asks for, and the operations function it calls
# (stacks.operations.<verb>_stack).
STACK_ACTIONS = ACTIONS
# A stack card is open on load when something runs in it; stopped and
# missing stacks (and an unreachable engine's unknown ones) are folded.
_OPEN = ("running", "partial", "restarting")


@login_required
def environment_list(request):
    """List the environments with the state of their stacks."""
    environments = list(visible_environments(request.user))
    statuses = environments_status(environments)
    return render(
        request,
        "stacks/environment_list.html",
        {
            "environments": environments,
            "rows": [(env, statuses[env.name]) for env in environments],
        },
    )


def _active_operations(environment):
    """Return the environment's active operations, oldest first."""
    return list(
        Operation.objects.filter(
            environment=environment, status__in=OperationStatus.ACTIVE
        )
        .select_related("stack", "service", "requested_by")
        .order_by("created")
    )


@login_required
@require_GET
def environment_detail(request, name):
    """Show one environment's stacks and services with their live state."""
    environment = get_object_or_404(Environment, name=name)
    verbs = verbs_of(request.user, environment)
    if Verb.VIEW not in verbs:
        require(request.user, Verb.VIEW, environment)
    stacks = list(Stack.objects.prefetch_related("services", "dependents"))
    status = environment_status(environment, stacks=stacks)
    allowed = {verb: verb in verbs for verb in (*STACK_ACTIONS, Verb.WIPE)}
    busy = {}
    for op in _active_operations(environment):
        busy.setdefault(op.stack.name if op.stack else "*", []).append(op)
    # Stacks that depend on another one, read from the prefetched reverse
    # relation: their Start form offers "with dependencies".
    depending = {d.pk for stack in stacks for d in stack.dependents.all()}
    rows = []
    for stack, stack_status in zip(stacks, status["stacks"], strict=True):
        ops = busy.get(stack.name, []) + busy.get("*", [])
        rows.append(
            {
                "stack": stack,
                "status": stack_status,
                "has_dependencies": stack.pk in depending,
                "operations": ops,
                "open": (
                    len(stacks) == 1 or stack_status["state"] in _OPEN or bool(ops)
                ),
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
            "any_action": any(allowed[verb] for verb in STACK_ACTIONS),
            "when_stack": {a: when(STACK_ACTION_STATES, a) for a in ACTIONS},
            "when_service": {a: when(SERVICE_ACTION_STATES, a) for a in ACTIONS},
            "console": console_refusal(request.user, environment, verbs=verbs) is None,
            "panels": environment_panels(environment, request.user),
            "credentials": _credentials(request.user, environment),
        },
    )


@login_required
@require_GET
@never_cache
def environment_status_json(request, name):
    """Return the live state of the environment's stacks as JSON.

    ``operations`` lists the active operations (id, kind, stack, service,
    status, url), so the page can say what is running on each stack.
    """
    environment = get_object_or_404(Environment, name=name)
    require(request.user, "view", environment)
    data = environment_status(environment)
    data["operations"] = [
        {
            "id": str(op.pk),
            "kind": op.kind,
            "stack": op.stack.name if op.stack else None,
            "service": op.service.name if op.service else None,
            "status": op.status,
            "requested_by": op.requested_by.username if op.requested_by else "",
            "url": op.get_absolute_url(),
        }
        for op in _active_operations(environment)
    ]
    return JsonResponse(data)


@login_required
@require_POST
def stack_action(request, name, stack, action, service=None):
    """Ask for a stack (or one of its services) to be started, stopped or
    restarted.

    A start of a whole stack takes the form's ``with_dependencies`` box:
    start the stacks it depends on first.
    """
    environment = get_object_or_404(Environment, name=name)
    stack = get_object_or_404(Stack, name=stack)
    if service is not None:
        service = get_object_or_404(Service, stack=stack, name=service)
    require(request.user, action, environment)
    request_action = getattr(operations, f"{action}_stack")
    options = {"service": service}
    if action == "start" and service is None:
        options["with_dependencies"] = request.POST.get("with_dependencies") in (
            "1",
            "on",
            "true",
        )
    target = f"{stack}/{service}" if service else str(stack)
    back = environment.get_absolute_url() + f"#stack-{stack.name}"
    try:
        operation = request_action(environment, stack, user=request.user, **options)
    except ValidationError as exc:
        for message in exc.messages:
            messages.error(request, message)
        return redirect(back)
    except (OperationConflict, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect(back)
    # Tagged with the operation, so its page drops the message once it no
    # longer holds (the operation left the queue).
    messages.success(
        request,
        f"Queued operation {operation.pk}: {action} {target}.",
        extra_tags=f"op-{operation.pk}",
    )
    return redirect(operation.get_absolute_url())


@login_required
@require_GET
@never_cache
def stack_impact(request, name, stack):
    """Show what else stops when the stack (or ``?service=``) stops.

    The page's confirm dialog reads it as JSON (``Accept:
    application/json``), the stack card's Impact box as a fragment
    (``X-Fragment: 1``); otherwise a page.
    """
    environment = get_object_or_404(Environment, name=name)
    require(request.user, "view", environment)
    stack = get_object_or_404(Stack, name=stack)
    service = None
    if request.GET.get("service"):
        service = get_object_or_404(Service, stack=stack, name=request.GET["service"])
    states = None
    try:
        client = engine.client_for(environment)
        with engine.engine_errors(engine.describe_host(environment)):
            states = {
                environment.project_name(s): engine.service_states(
                    client, environment.project_name(s)
                )
                for s in [stack, *operations.dependent_stacks(stack)]
            }
    except engine.EngineError:
        states = None
    radius = operations.blast_radius(environment, stack, service, states=states)
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({**radius, "text": describe_radius(radius)})
    template = (
        "stacks/_impact.html"
        if request.headers.get("X-Fragment")
        else "stacks/stack_impact.html"
    )
    return render(
        request,
        template,
        {
            "environment": environment,
            "stack": stack,
            "service": service,
            "radius": radius,
            "states_known": states is not None,
        },
    )


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
    return {"report": report, "details": Verb.CHECK in verbs_of(user, environment)}


def describe_radius(radius):
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
