"""Requests of cleanups: the plan names each item with its retention and
where it comes from; an admin edit changes the next plan (and is audited);
a protected environment's cleanup waits for an approval (its dry run does
not); a scheduled run that misses its window does not run late."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from portal.choices import Role
from portal.models import AuditEntry
from portal.operations import PlanError, request_operation, run_inline
from retention.jobs import KIND, cleanup_plan
from retention.models import CleanupRecord, RetentionItem
from retention.operations import request_cleanup
from stacks.config import import_configs
from stacks.models import Environment
from tests.portal.helpers import admin_form_data
from tests.retention.test_config import staff

pytestmark = pytest.mark.django_db


def entry(plan, key):
    (found,) = [e for e in plan["items"] if e["key"] == key]
    return found


def test_an_admin_edit_changes_the_next_plan_and_is_audited(client):
    import_configs()
    staging = Environment.objects.get(name="staging")
    before = entry(cleanup_plan(staging, {}), "postgres/tables/logs")
    assert (before["days"], before["source"]) == (7, "item")
    assert before["target"] == "table public.logs by created_at"

    logs = RetentionItem.objects.get(policy__service="postgres", name="logs")
    url = reverse("admin:retention_retentionitem_change", args=[logs.pk])
    client.force_login(staff("ada", Role.ADMIN))
    data = admin_form_data(client.get(url))
    data["retention_days"] = "2"
    assert client.post(url, data).status_code == 302
    after = entry(cleanup_plan(staging, {}), "postgres/tables/logs")
    assert (after["days"], after["source"]) == (2, "item")
    audit = AuditEntry.objects.filter(
        action="object.changed", object_repr="postgres.tables.logs"
    ).latest("id")
    assert audit.actor_name == "ada" and "retention_days" in str(audit.data)

    # Without its own days, the item takes its service's, then the
    # environment's: the plan says which.
    data["retention_days"] = ""
    assert client.post(url, data).status_code == 302
    assert entry(cleanup_plan(staging, {}), "postgres/tables/logs")["source"] == (
        "service"
    )


def test_a_plan_for_an_unknown_service_is_refused():
    import_configs()
    with pytest.raises(PlanError, match="No service or retention policy 'nosuch'"):
        cleanup_plan(Environment.objects.get(name="demo"), {"service": "nosuch"})


def test_a_protected_cleanup_waits_for_an_approval_its_dry_run_does_not(operator):
    import_configs()
    production = Environment.objects.get(name="production")
    assert production.protected
    real = request_cleanup(production, user=operator, service="redis", enqueue=False)
    assert real.status == "awaiting_approval"
    assert real.plan["items"] and real.approval.plan_hash
    dry = request_cleanup(
        production, user=operator, service="redis", dry_run=True, enqueue=False
    )
    assert dry.status != "awaiting_approval"


def test_a_scheduled_run_that_missed_its_window_does_not_run_late(operator):
    import_configs()
    demo = Environment.objects.get(name="demo")
    late = request_operation(
        KIND,
        user=operator,
        environment=demo,
        parameters={
            "dry_run": False,
            "service": "postgres",
            "scheduled": True,
            "not_after": (timezone.now() - timedelta(minutes=1)).isoformat(),
        },
        enqueue=False,
    )
    late = run_inline(late)
    assert late.status == "failed"
    assert "Missed its window" in late.error
    assert not CleanupRecord.objects.filter(operation=late).exists()


def test_a_run_whose_policy_changed_since_its_plan_stops(operator):
    import_configs()
    demo = Environment.objects.get(name="demo")
    operation = request_cleanup(demo, user=operator, service="postgres", enqueue=False)
    RetentionItem.objects.filter(policy__service="postgres", name="logs").update(
        retention_days=1
    )
    operation = run_inline(operation)
    assert operation.status == "failed"
    assert "plan no longer matches" in operation.error
    assert not CleanupRecord.objects.filter(operation=operation).exists()
