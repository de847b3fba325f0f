"""The wipe page: choose what to wipe, read the exact plan, type the
confirmation, request it (an approval follows in protected environments)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from portal.choices import OperationStatus, Verb
from portal.operations import (
    INFO_KEY,
    ConfirmationMismatch,
    OperationConflict,
    PlanError,
    get_runner,
    plan_hash,
)
from portal.permissions import require

from . import engine
from .choices import DataType
from .models import Environment, Stack
from .operations import wipe

__all__ = ["wipe_page"]

KINDS = {"stack": "wipe.stack", "data": "wipe.data", "environment": "wipe.environment"}


def _target(environment, scope, value):
    """Return (kind, stack, parameters, confirmation) of a chosen wipe."""
    if scope == "stack":
        stack = get_object_or_404(Stack, name=value)
        return KINDS[scope], stack, {}, f"{environment.name}/{stack.name}"
    if scope == "data":
        if value not in DataType.values:
            raise PlanError(f"Unknown data type {value!r}.")
        return KINDS[scope], None, {"data_type": value}, f"{environment.name}/{value}"
    if scope == "environment":
        return KINDS[scope], None, {}, f"{environment.name}/all"
    raise PlanError(f"Unknown wipe scope {scope!r} (stack, data or environment).")


@login_required
@require_http_methods(["GET", "POST"])
def wipe_page(request, name):
    """GET: the choices, and with ``scope`` the plan; POST: request it."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, Verb.WIPE, environment)
    source = request.POST if request.method == "POST" else request.GET
    scope, value = source.get("scope", ""), source.get("value", "")
    context = {
        "environment": environment,
        "stacks": Stack.objects.all(),
        "data_types": DataType.choices,
        "scope": scope,
        "value": value,
    }
    if not scope:
        return render(request, "stacks/wipe.html", context)
    try:
        kind, stack, parameters, confirmation = _target(environment, scope, value)
        with engine.engine_errors(engine.describe_host(environment)):
            plan = get_runner(kind).plan(
                environment=environment, stack=stack, parameters=parameters
            )
    except (PlanError, engine.EngineError) as exc:
        context["error"] = str(exc)
        return render(request, "stacks/wipe.html", context, status=400)
    context.update(
        plan=plan,
        info=plan.get(INFO_KEY) or {},
        plan_hash=plan_hash(plan),
        confirmation=confirmation,
    )
    if request.method == "GET":
        return render(request, "stacks/wipe.html", context)
    if request.POST.get("plan_hash") != context["plan_hash"]:
        context["error"] = (
            "What is there changed since the plan was shown (containers, volumes "
            "or networks came or went): read the new plan below, then confirm again."
        )
        return render(request, "stacks/wipe.html", context, status=409)
    try:
        operation = wipe(
            environment,
            user=request.user,
            stack=stack,
            data_type=parameters.get("data_type"),
            confirm=request.POST.get("confirm", ""),
            dry_run=bool(request.POST.get("dry_run")),
        )
    except ConfirmationMismatch as exc:
        context["error"] = str(exc)
        return render(request, "stacks/wipe.html", context, status=400)
    except (OperationConflict, ValueError) as exc:
        context["error"] = str(exc)
        return render(request, "stacks/wipe.html", context, status=409)
    except PermissionDenied:
        raise
    if operation.status == OperationStatus.AWAITING_APPROVAL:
        messages.warning(
            request,
            f"{environment.name} is protected: operation {operation.pk} waits for "
            "the approval of another Approver of it.",
        )
    else:
        messages.success(
            request, f"Queued operation {operation.pk}: {plan['summary']}."
        )
    return redirect(operation)
