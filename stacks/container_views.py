"""Pages about a stack's containers: resource usage, compose file and diff,
and the console.

Every page needs the ``view`` role on the environment, the console the
Admin role and, in a protected environment, a ``host_policy`` that allows
consoles (:mod:`stacks.access`).
"""

from datetime import UTC, datetime

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal.permissions import require

from . import engine
from .access import console_refusal
from .compose import stack_plan
from .diff import redacted_compose, stack_diff
from .engine import labels
from .models import Environment, Service, Stack
from .secrets import MissingSecret
from .status import state_tone

__all__ = [
    "service_console",
    "stack_compose",
    "stack_compose_file",
    "stack_stats",
    "stack_stats_json",
]


def _stack(request, name, stack):
    environment = get_object_or_404(Environment, name=name)
    require(request.user, "view", environment)
    stack = get_object_or_404(Stack, name=stack)
    return environment, stack


def _service_filter(request, stack):
    names = list(stack.services.values_list("name", flat=True))
    service = request.GET.get("service") or ""
    return (service if service in names else ""), names


def stats_sample(environment, stack, service=""):
    """Return one stats sample of the stack's (or one service's) containers.

    A dict: ``generated``, ``error`` (Docker could not be asked) and
    ``containers``, each with ``service``, ``name``, ``id``, ``state``,
    ``tone``, ``status`` and ``stats`` (figures, or ``{"error": ...}``;
    None for a container that does not run).
    """
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        client = engine.client_for(environment)
        with engine.engine_errors(engine.describe_host(environment)):
            found = engine.list_containers(
                client,
                environment=environment.name,
                stack=stack.name,
                service=service or None,
            )
            running = [c["Id"] for c in found if c.get("State") == "running"]
            samples = engine.sample_stats(client, running)
    except engine.EngineError as exc:
        return {"generated": generated, "error": str(exc), "containers": []}
    containers = []
    for summary in sorted(
        found, key=lambda c: (labels.service_of(c.get("Labels") or {}), c["Id"])
    ):
        state = summary.get("State") or "unknown"
        containers.append(
            {
                "service": labels.service_of(summary.get("Labels") or {}),
                "name": (summary.get("Names") or ["/?"])[0].lstrip("/"),
                "id": summary["Id"][:12],
                "state": state,
                "tone": state_tone(state),
                "status": summary.get("Status") or "",
                "stats": samples.get(summary["Id"]),
            }
        )
    return {"generated": generated, "error": None, "containers": containers}


@login_required
@require_GET
def stack_stats(request, name, stack):
    """Show CPU, memory, network and block I/O of the stack's containers."""
    environment, stack = _stack(request, name, stack)
    service, services = _service_filter(request, stack)
    return render(
        request,
        "stacks/stack_stats.html",
        {
            "environment": environment,
            "stack": stack,
            "service": service,
            "services": services,
            "sample": stats_sample(environment, stack, service),
        },
    )


@login_required
@require_GET
@never_cache
def stack_stats_json(request, name, stack):
    """Return one stats sample as JSON (the stats page asks every few seconds)."""
    environment, stack = _stack(request, name, stack)
    service, _ = _service_filter(request, stack)
    return JsonResponse(stats_sample(environment, stack, service))


@login_required
@require_GET
def stack_compose(request, name, stack):
    """Show what a start would change (``?show=diff``, the default) or the
    rendered compose file (``?show=yaml``), secrets redacted."""
    environment, stack = _stack(request, name, stack)
    show = "yaml" if request.GET.get("show") == "yaml" else "diff"
    context = {
        "environment": environment,
        "stack": stack,
        "show": show,
        "project": environment.project_name(stack),
    }
    try:
        if show == "yaml":
            context["yaml"] = redacted_compose(stack_plan(environment, stack))
        else:
            context["diff"] = stack_diff(environment, stack)
    except (engine.EngineError, MissingSecret, ValueError) as exc:
        context["error"] = str(exc)
    return render(request, "stacks/stack_compose.html", context)


@login_required
@require_GET
def stack_compose_file(request, name, stack):
    """Return the rendered compose file, secrets redacted, as a download."""
    environment, stack = _stack(request, name, stack)
    try:
        text = redacted_compose(stack_plan(environment, stack))
    except (MissingSecret, ValueError) as exc:
        return HttpResponse(
            f"Cannot render the compose file of {stack.name} in "
            f"{environment.name}: {exc}\n",
            status=409,
            content_type="text/plain; charset=utf-8",
        )
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = (
        f'inline; filename="compose.{environment.name}.{stack.name}.yml"'
    )
    return response


@login_required
@require_GET
def service_console(request, name, stack, service):
    """Show a terminal on a shell in the service's container (Admins only)."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, "view", environment)
    stack = get_object_or_404(Stack, name=stack)
    service = get_object_or_404(Service, stack=stack, name=service)
    refusal = console_refusal(request.user, environment)
    if refusal:
        raise PermissionDenied(refusal)
    shell = request.GET.get("shell") or "sh"
    return render(
        request,
        "stacks/service_console.html",
        {
            "environment": environment,
            "stack": stack,
            "service": service,
            "shell": shell if shell in ("sh", "bash") else "sh",
        },
    )
