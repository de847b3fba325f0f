"""Pages of backups: an environment's backups, one record, and the buttons."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from portal.choices import OperationStatus, Verb
from portal.operations import OperationConflict, PlanError
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
    drills = list(record.drills.select_related("operation")[:10])
    family = [source, *source.copies.select_related("tier").order_by("tier__order")]
    return render(
        request,
        "backups/record_detail.html",
        {
            "record": record,
            "environment": record.environment,
            "family": family,
            "manifest_json": json.dumps(record.manifest, indent=2, sort_keys=True),
            "drills": drills,
            "can_check": user_can(request.user, Verb.CHECK, record.environment),
            "can_restore": user_can(request.user, Verb.RESTORE, record.environment),
            "instructions": (
                restore_instructions(record)
                if record.status == RecordStatus.SUCCEEDED
                else None
            ),
        },
    )


def _record(environment, pk):
    return get_object_or_404(
        BackupRecord.objects.select_related(
            "environment", "tier", "service__stack", "copied_from"
        ),
        environment=environment,
        pk=pk,
    )


@login_required
@require_POST
def record_drill(request, name, pk):
    """Queue a restore drill of one record; on to its operation."""
    environment = get_object_or_404(Environment, name=name)
    require(request.user, Verb.CHECK, environment)
    record = _record(environment, pk)
    try:
        operation = operations.drill_backup(environment, record, user=request.user)
    except (OperationConflict, ValueError) as exc:
        messages.error(request, str(exc))
        return redirect(record.get_absolute_url())
    messages.success(
        request,
        f"Queued operation {operation.pk}: restore drill of record #{record.pk}.",
    )
    return redirect(operation.get_absolute_url())


@login_required
@require_http_methods(["GET", "POST"])
def record_restore(request, name, pk):
    """Show the plan of a restore of one record onto its live service (GET);
    request it with the typed confirmation, or as a dry run (POST)."""
    environment = get_object_or_404(Environment, name=name)
    record = _record(environment, pk)
    service = record.service
    require(request.user, Verb.RESTORE, environment)
    expected = f"{environment.name}/{record.service_name}"
    if request.method == "POST":
        dry_run = request.POST.get("dry_run") == "1"
        try:
            if service is None:
                raise PlanError(
                    f"Service {record.service_name} is no longer configured: there "
                    "is nothing to restore onto."
                )
            operation = operations.restore_backup(
                environment,
                service,
                user=request.user,
                record=record,
                dry_run=dry_run,
                confirm=None if dry_run else request.POST.get("confirm", ""),
            )
        except (OperationConflict, ValueError) as exc:
            messages.error(request, str(exc))
            return redirect(
                reverse("backups:record_restore", args=[environment.name, record.pk])
            )
        if operation.status == OperationStatus.AWAITING_APPROVAL:
            messages.info(
                request,
                f"Operation {operation.pk} awaits the approval of another Approver "
                f"of {environment.name} (the approvals page).",
            )
        else:
            messages.success(
                request,
                f"Queued operation {operation.pk}: "
                + ("plan of a " if dry_run else "")
                + f"restore of {record.service_name} from record #{record.pk}.",
            )
        return redirect(operation.get_absolute_url())
    plan, problem = None, None
    try:
        if service is None:
            raise PlanError(
                f"Service {record.service_name} is no longer configured: there is "
                "nothing to restore onto."
            )
        plan = operations.restore_plan(environment, service, record=record)
    except ValueError as exc:
        problem = str(exc)
    return render(
        request,
        "backups/record_restore.html",
        {
            "record": record,
            "environment": environment,
            "plan": plan,
            "plan_json": json.dumps(plan, indent=2, sort_keys=True) if plan else "",
            "problem": problem,
            "expected": expected,
        },
    )


def _errors(form):
    return "; ".join(
        f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()
    )
