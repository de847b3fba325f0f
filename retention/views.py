"""The retention page of an environment, and its buttons (dry run, cleanup)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from portal.choices import Verb
from portal.operations import OperationConflict
from portal.permissions import require, user_can
from stacks.models import Environment

from .operations import request_cleanup
from .policies import cleanup_settings
from .status import freed_by_service, item_rows, last_runs, next_run


def _page(environment):
    return reverse("retention:environment_retention", args=[environment.name])


@login_required
@require_GET
def environment_retention(request, name):
    """The plan of the next run (each item's policy, where its days come
    from, its newest measurement), the last runs, bytes freed per service."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, Verb.VIEW, environment)
    settings = cleanup_settings(environment)
    freed = freed_by_service(environment, days=30)
    return render(
        request,
        "retention/environment_retention.html",
        {
            "environment": environment,
            "settings": settings,
            "next_run": next_run(settings.schedule),
            "rows": item_rows(environment),
            "runs": last_runs(environment, limit=15),
            "freed": freed,
            "can_clean": user_can(request.user, Verb.CLEANUP, environment),
        },
    )


@login_required
@require_POST
def cleanup(request, name):
    """Request a dry run (``dry_run=1``) or a cleanup, of one ``service`` or all."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, Verb.CLEANUP, environment)
    dry_run = request.POST.get("dry_run") == "1"
    service = (request.POST.get("service") or "").strip() or None
    try:
        operation = request_cleanup(
            environment, user=request.user, service=service, dry_run=dry_run
        )
    except (OperationConflict, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect(_page(environment))
    what = "Dry run" if dry_run else "Cleanup"
    if operation.status == "awaiting_approval":
        messages.info(
            request,
            f"{what} of {environment.name} awaits an approval: {environment.name} is "
            "protected.",
        )
    else:
        messages.success(request, f"{what} of {environment.name} queued.")
    return redirect(operation.get_absolute_url())
