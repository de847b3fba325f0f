"""Pages of backups: an environment's backups, one record, and the buttons."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from portal.choices import OperationStatus, Verb
from portal.operations import OperationConflict
from portal.permissions import require, user_can
from stacks.models import Environment, Service

from . import operations
from .choices import RecordStatus
from .forms import TYPE_CHOICES, BackupEnvironmentForm, BackupServiceForm, VerifyForm
from .instructions import restore_instructions
from .models import BackupRecord, BackupStrategy
from .schema import STRATEGIES
from .status import environment_backups as backups_of
from .status import format_age
from .verify import integrity_settings


def _page(environment):
    return reverse("backups:environment_backups", args=[environment.name])


@login_required
@require_GET
def environment_backups(request, name):
    """Show where an environment's backups stand, and the backup buttons."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, Verb.VIEW, environment)
    backups = backups_of(environment)
    strategies = {s.service: s for s in BackupStrategy.objects.all()}
    services = [
        {
            "service": service,
            "strategy": strategies[service.name],
            "choices": STRATEGIES[strategies[service.name].method],
            "allowed": format_age(strategies[service.name].allowed_age),
        }
        for service in operations.backed_up_services()
    ]
    return render(
        request,
        "backups/environment_backups.html",
        {
            "environment": environment,
            "backups": backups,
            "services": services,
            "can_backup": user_can(request.user, Verb.BACKUP, environment),
            "can_check": user_can(request.user, Verb.CHECK, environment),
            "integrity": integrity_settings(),
            "type_choices": TYPE_CHOICES,
            "terminal_statuses": list(OperationStatus.TERMINAL),
        },
    )


@login_required
@require_POST
def backup_service(request, name):
    """Queue a backup of one service; back to the backups page."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, Verb.BACKUP, environment)
    form = BackupServiceForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Not a backup request: {_errors(form)}")
        return redirect(_page(environment))
    data = form.cleaned_data
    service = get_object_or_404(Service, name=data["service"])
    try:
        operation = operations.backup_service(
            environment,
            service,
            user=request.user,
            strategy=data["strategy"] or None,
            backup_type=data["backup_type"] or None,
        )
    except (OperationConflict, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect(_page(environment))
    plan = operation.plan or {}
    messages.success(
        request,
        f"Queued operation {operation.pk}: back up {service.name} "
        f"({plan.get('strategy', '?')}, {plan.get('backup_type', '?')}).",
    )
    return redirect(_page(environment))


@login_required
@require_POST
def backup_environment(request, name):
    """Queue a backup of every service that has a strategy, one operation each."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, Verb.BACKUP, environment)
    form = BackupEnvironmentForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Not a backup request: {_errors(form)}")
        return redirect(_page(environment))
    backup_type = form.cleaned_data["backup_type"] or None
    targets = operations.environment_backup_targets(environment)
    if not targets:
        messages.info(request, "Nothing to back up: no service has a backup strategy.")
    queued = []
    for target in targets:
        try:
            operations.request_backup(
                environment, target, user=request.user, backup_type=backup_type
            )
        except (OperationConflict, ValueError) as exc:
            messages.error(request, f"{target}: {exc}")
            continue
        queued.append(str(target))
    if queued:
        messages.success(
            request,
            f"Queued {len(queued)} backup operation(s) in {environment.name}: "
            f"{', '.join(queued)}.",
        )
    return redirect(_page(environment))


@login_required
@require_POST
def verify_environment(request, name):
    """Queue a verification of the environment's repositories."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, Verb.CHECK, environment)
    form = VerifyForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Not a verification request: {_errors(form)}")
        return redirect(_page(environment))
    try:
        operation = operations.verify_backups(
            environment, user=request.user, subset=form.cleaned_data["subset"]
        )
    except (OperationConflict, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect(_page(environment))
    tiers = ", ".join(
        f"{tier} {subset}"
        for tier, subset in (operation.plan or {}).get("tiers", {}).items()
    )
    messages.success(
        request, f"Queued operation {operation.pk}: verify {tiers or 'no repository'}."
    )
    return redirect(_page(environment))


@login_required
@require_GET
def record_detail(request, pk):
    """Show one backup record: what it holds, where, and how to restore it."""
    record = get_object_or_404(
        BackupRecord.objects.select_related(
            "environment", "tier", "operation", "service__stack", "copied_from__tier"
        ),
        pk=pk,
    )
    require(request.user, Verb.VIEW, record.environment)
    source = record.copied_from or record
    family = [source, *source.copies.select_related("tier").order_by("tier__order")]
    return render(
        request,
        "backups/record_detail.html",
        {
            "record": record,
            "environment": record.environment,
            "family": family,
            "manifest_json": json.dumps(record.manifest, indent=2, sort_keys=True),
            "instructions": (
                restore_instructions(record)
                if record.status == RecordStatus.SUCCEEDED
                else None
            ),
        },
    )


def _errors(form):
    return "; ".join(
        f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()
    )
