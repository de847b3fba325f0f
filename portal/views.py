"""The dashboard, pages of operations (list, detail with live log, cancel,
host check), the Prometheus metrics and the server error page."""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpResponse, HttpResponseServerError, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template import loader
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import requires_csrf_token
from django.views.decorators.http import require_GET, require_POST

from .choices import OperationStatus, Verb
from .metrics import CONTENT_TYPE, render_metrics, token_matches
from .models import Operation, environment_model
from .operations import (
    ApprovalRefused,
    OperationConflict,
    approve_operation,
    cancel_operation,
    reject_operation,
    request_operation,
    waiting_for,
)
from .panels import dashboard_panels
from .permissions import require, user_can, visible_environments

PAGE_SIZE = 50

logger = logging.getLogger(__name__)


def _get_operation(request, pk, verb=Verb.VIEW):
    operation = get_object_or_404(
        Operation.objects.select_related(
            "environment", "stack", "service", "requested_by", "approved_by"
        ),
        pk=pk,
    )
    require(request.user, verb, operation.environment)
    return operation


@login_required
def dashboard(request):
    """Show the fleet at a glance: every registered dashboard panel.

    The stacks app adds the environments and their stacks' health, the core
    the running and queued operations (:mod:`portal.dashboard`), backups
    the age of each service's last backup; other apps add theirs.
    """
    environments = list(visible_environments(request.user))
    return render(
        request,
        "portal/dashboard.html",
        {
            "environments": environments,
            "panels": dashboard_panels(request.user, environments),
        },
    )


@login_required
def operation_list(request):
    """List the operations of the environments the user may view."""
    environments = visible_environments(request.user)
    operations = Operation.objects.filter(environment__in=environments).select_related(
        "environment", "stack", "service", "requested_by"
    )
    env = request.GET.get("env", "")
    status = request.GET.get("status", "")
    kind = request.GET.get("kind", "")
    if env:
        operations = operations.filter(environment__name=env)
    if status == "active":
        operations = operations.filter(status__in=OperationStatus.ACTIVE)
    elif status:
        operations = operations.filter(status=status)
    if kind:
        operations = operations.filter(kind=kind)
    page = Paginator(operations, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "portal/operation_list.html",
        {
            "page": page,
            "operations": page.object_list,
            "environments": environments,
            "statuses": OperationStatus.choices,
            "filters": {"env": env, "status": status, "kind": kind},
            "query": query.urlencode(),
            "any_active": any(op.is_active for op in page.object_list),
            "checkable": [
                e for e in environments if user_can(request.user, Verb.CHECK, e)
            ],
        },
    )


def _approval_context(request, operation):
    """Return what the operation page shows of its approval, if any."""
    approval = getattr(operation, "approval", None)
    if approval is None:
        return {"approval": None}
    waiting = (
        approval.is_waiting and operation.status == OperationStatus.AWAITING_APPROVAL
    )
    mine = operation.requested_by_id == request.user.pk
    return {
        "approval": approval,
        "can_decide": waiting
        and not mine
        and user_can(request.user, Verb.APPROVE, operation.environment),
        "own_request": waiting and mine,
    }


@login_required
def operation_detail(request, pk):
    """Show one operation: plan, status, progress, live log, result."""
    operation = _get_operation(request, pk)
    return render(
        request,
        "portal/operation_detail.html",
        {
            **_approval_context(request, operation),
            "operation": operation,
            "can_cancel": operation.is_active
            and user_can(request.user, Verb.CANCEL, operation.environment),
            "terminal_statuses": list(OperationStatus.TERMINAL),
        },
    )


@login_required
@never_cache
def operation_result(request, pk):
    """Return the operation's result as an HTML fragment (tables and lists).

    The operation page asks for it when the final status arrives.
    """
    operation = _get_operation(request, pk)
    return render(request, "portal/_operation_result.html", {"operation": operation})


@login_required
@require_POST
def operation_cancel(request, pk):
    """Cancel an operation (POST only), then show it."""
    operation = _get_operation(request, pk, Verb.CANCEL)
    if operation.is_terminal:
        messages.info(
            request, f"Operation {operation.pk} is already {operation.status}."
        )
    else:
        operation = cancel_operation(operation, user=request.user)
        if operation.is_terminal:
            messages.success(request, f"Canceled operation {operation.pk}.")
        else:
            messages.success(
                request,
                f"Cancel requested; operation {operation.pk} stops at its next step.",
            )
    return redirect(operation)


@login_required
def approval_list(request):
    """List the operations waiting for an approval the user may give, and the
    user's own requests that wait."""
    return render(
        request,
        "portal/approval_list.html",
        {
            "waiting": waiting_for(request.user),
            "own": Operation.objects.filter(
                requested_by=request.user,
                status=OperationStatus.AWAITING_APPROVAL,
            ).select_related("environment", "stack", "service", "approval"),
        },
    )


@login_required
@require_POST
def operation_approve(request, pk):
    """Approve (or, with ``reject``, reject) an operation; then show it."""
    operation = _get_operation(request, pk, Verb.APPROVE)
    try:
        if request.POST.get("decision") == "reject":
            operation = reject_operation(
                operation, user=request.user, reason=request.POST.get("reason", "")
            )
            messages.success(request, f"Rejected operation {operation.pk}.")
        else:
            operation = approve_operation(operation, user=request.user)
            messages.success(
                request,
                f"Approved operation {operation.pk}; it is queued on "
                f"{operation.queue_name}.",
            )
    except ApprovalRefused as exc:
        messages.error(request, str(exc))
    return redirect(operation)


@login_required
def operation_log_text(request, pk):
    """Return the whole stored log as plain text."""
    operation = _get_operation(request, pk)

    def lines():
        for seq, created, level, text in (
            operation.lines.order_by("seq")
            .values_list("seq", "created", "level", "text")
            .iterator(chunk_size=2000)
        ):
            yield f"{seq:>7} {created:%Y-%m-%d %H:%M:%S} {level.upper():<7} {text}\n"

    response = StreamingHttpResponse(lines(), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'inline; filename="operation-{operation.pk}.log"'
    return response


@login_required
@require_POST
def host_check(request):
    """Queue a host.check of the environment named in the form."""
    environment = get_object_or_404(
        environment_model(), name=request.POST.get("env", "")
    )
    try:
        operation = request_operation(
            "host.check", user=request.user, environment=environment
        )
    except OperationConflict as exc:
        messages.error(request, str(exc))
        return redirect("portal:operation_list")
    messages.success(
        request, f"Queued operation {operation.pk}", extra_tags=f"op-{operation.pk}"
    )
    return redirect(operation)


@never_cache
@require_GET
def metrics(request):
    """Serve the Prometheus metrics of the environments the caller may see.

    ``Authorization: Bearer <PORTAL_METRICS_TOKEN>`` sees every environment
    (a Prometheus scraper); a signed-in user sees those they may view; any
    other request gets 401, and so does a wrong token.
    """
    header = request.headers.get("Authorization", "")
    if header:
        if not token_matches(header):
            return _unauthorized(
                "The bearer token is not the metrics token (PORTAL_METRICS_TOKEN)."
                if settings.PORTAL_METRICS_TOKEN
                else "No metrics token is configured (PORTAL_METRICS_TOKEN is "
                "empty); sign in, or set it and restart the portal.",
                error="invalid_token",
            )
        environments = environment_model().objects.all()
    elif request.user.is_authenticated and request.user.is_active:
        environments = visible_environments(request.user)
    else:
        return _unauthorized(
            "Metrics need a bearer token (Authorization: Bearer "
            "<PORTAL_METRICS_TOKEN>) or a signed-in user."
        )
    return HttpResponse(render_metrics(environments), content_type=CONTENT_TYPE)


def _unauthorized(message, *, error=None):
    challenge = 'Bearer realm="stack-portal"'
    if error:
        challenge += f', error="{error}"'
    response = HttpResponse(
        message + "\n", status=401, content_type="text/plain; charset=utf-8"
    )
    response["WWW-Authenticate"] = challenge
    return response


@requires_csrf_token
def server_error(request, template_name="500.html"):
    """Answer 500 with the site's error page, in its layout when possible.

    Django's own handler renders without the request (no navigation, no
    user); this one tries with it, and falls back to that when rendering
    itself fails (the database being down is a common cause of a 500).
    """
    try:
        return HttpResponseServerError(
            loader.render_to_string(template_name, request=request)
        )
    except Exception:  # noqa: BLE001 - the error page must not fail
        logger.exception("the error page could not be rendered with the request")
    try:
        return HttpResponseServerError(loader.render_to_string(template_name))
    except Exception:  # noqa: BLE001
        return HttpResponseServerError(
            "<h1>Server Error (500)</h1>", content_type="text/html"
        )
