"""The retention page and panel, its buttons, the commands, the schedules
through ``manage.py crontab``, and the notifications of a cleanup."""

import shlex
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from portal.choices import Role
from portal.models import Operation, RoleAssignment
from portal.operations import run_inline
from retention.models import CleanupRecord, RetentionSetting
from retention.operations import request_cleanup
from stacks.config import import_configs
from stacks.models import Environment

pytestmark = pytest.mark.django_db


@pytest.fixture
def imported():
    from django.contrib.auth import get_user_model

    import_configs()
    get_user_model().objects.create_superuser("root")
    return Environment.objects.get(name="staging")


def user(username, role, environment):
    from django.contrib.auth import get_user_model

    found = get_user_model().objects.create_user(username, password="pw")
    RoleAssignment.objects.create(user=found, role=role, environment=environment)
    return found


def record(environment, item, service, **fields):
    values = {
        "environment": environment,
        "service_name": service,
        "item": item,
        "kind": "rows",
        "strategy": "delete_old_rows",
        "days": 7,
        "source": "item",
        "cutoff": timezone.now(),
        "status": "removed",
        **fields,
    }
    return CleanupRecord.objects.create(**values)


def run(*args, expect_error=False):
    out, err = StringIO(), StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        assert expect_error, str(exc)
        return out.getvalue(), str(exc)
    assert not expect_error, "no CommandError"
    return out.getvalue(), None


def test_the_page_shows_each_item_its_precedence_runs_and_bytes_freed(client, imported):
    viewer = user("vera", Role.VIEWER, imported)
    record(imported, "postgres/tables/logs", "postgres", matched=40, kept=25,
           removed=40, freed_bytes=2_000_000, dry_run=False)  # fmt: skip
    client.force_login(viewer)
    page = client.get(reverse("retention:environment_retention", args=["staging"]))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'data-item="postgres/tables/logs"' in html
    assert "7 days (the item)" in html
    # redis/keys/session_cache: its own 1 day; multimodal-worker's
    # debug_logs 7; the environment's default where nothing else says.
    assert "1 day (the item)" in html
    assert 'data-service="postgres"' in html and "1.9\xa0MB" in html
    assert 'data-action="cleanup"' not in html  # a viewer has no buttons
    response = client.post(
        reverse("retention:cleanup", args=["staging"]), {"dry_run": "1"}
    )
    assert response.status_code == 403

    detail = client.get(reverse("stacks:environment_detail", args=["staging"]))
    panel = detail.content.decode()
    assert 'data-panel="retention"' in panel
    assert "Next cleanup" in panel and "0 2 * * *" in panel


def test_the_dry_run_button_requests_a_dry_run(client, imported):
    operator = user("otto", Role.OPERATOR, imported)
    client.force_login(operator)
    response = client.post(
        reverse("retention:cleanup", args=["staging"]),
        {"dry_run": "1", "service": "postgres"},
    )
    operation = Operation.objects.get(kind="retention.cleanup")
    assert response.status_code == 302
    assert response["Location"] == operation.get_absolute_url()
    assert operation.parameters == {"dry_run": True, "service": "postgres"}
    assert operation.requested_by == operator


def test_crontab_has_one_cleanup_per_environment_of_the_file(imported, tmp_path):
    out, _ = run("crontab", "--user", "root", "--log-dir", str(tmp_path))
    lines = [line for line in out.splitlines() if " retention cleanup " in line]
    found = {}
    for line in lines:
        words = shlex.split(line)
        schedule = " ".join(words[:5])
        argv = words[words.index("retention") :]
        assert argv[:3] == ["retention", "cleanup", "--env"]
        assert argv[4] == "--scheduled"
        found[argv[3]] = schedule
    assert found == {
        "development": "0 1 * * *",
        "staging": "0 2 * * *",
        "production": "0 3 * * 0",
        "testing": "0 0 * * *",
    }
    out, _ = run("retention", "schedule", "--env", "production", "--user", "root")
    assert "0 3 * * 0" in out and "--scheduled" in out


def test_status_shows_each_item_and_where_its_days_come_from(imported):
    out, _ = run(
        "retention", "status", "--env", "staging", "--service", "postgres",
        "--user", "root",
    )  # fmt: skip
    assert "Retention of staging: default 14 days (environment)" in out
    assert "postgres/tables/logs" in out and "7 days (the item)" in out
    assert "not measured (make retention-test)" in out
    out, error = run(
        "retention", "cleanup", "--env", "staging", "--service", "nosuch",
        "--user", "root", expect_error=True,
    )  # fmt: skip
    assert "No service or retention policy 'nosuch'" in error


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_a_cleanup_notifies_its_start_and_completion(imported, settings):
    from django.contrib.auth import get_user_model

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    admin = get_user_model().objects.get(username="root")
    demo = Environment.objects.get(name="demo")
    # prometheus's items delete nothing (Prometheus keeps its own
    # retention): the cleanup completes without touching any data.
    done = run_inline(
        request_cleanup(demo, user=admin, service="prometheus", enqueue=False)
    )
    assert done.status == "succeeded", done.error
    subjects = [m.subject for m in mail.outbox]
    assert subjects == [
        "Data Cleanup Started - demo",
        "Data Cleanup Completed - demo",
    ]
    assert "Services processed: none" in mail.outbox[1].body
    assert "Estimated cleanup time: unknown (no earlier cleanup)" in (
        mail.outbox[0].body
    )
    mail.outbox.clear()
    run_inline(request_cleanup(demo, user=admin, service="prometheus", enqueue=False))
    assert "Estimated cleanup time: about " in mail.outbox[0].body
    assert mail.outbox[0].to == ["admin@example.com"]
    # Notifications off: none.
    glob = RetentionSetting.objects.get(key="global")
    glob.value["notifications"]["enabled"] = False
    glob.save()
    mail.outbox.clear()
    run_inline(request_cleanup(demo, user=admin, service="prometheus", enqueue=False))
    assert mail.outbox == []


def test_metrics_report_freed_bytes_pending_items_and_last_runs(
    client, imported, settings
):
    from prometheus_client.parser import text_string_to_metric_families

    settings.PORTAL_METRICS_TOKEN = "retention-metrics-token"
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.get(username="root")
    done = request_cleanup(imported, user=root, service="postgres", dry_run=True)
    record(imported, "postgres/tables/logs", "postgres", operation=done,
           matched=40, removed=40, freed_bytes=9000, dry_run=False)  # fmt: skip
    record(imported, "redis/keys/session_cache", "redis", kind="keys",
           matched=12, status="planned", dry_run=True)  # fmt: skip
    response = client.get(
        reverse("portal:metrics"),
        HTTP_AUTHORIZATION="Bearer retention-metrics-token",
    )
    found = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    labels = (("environment", "staging"), ("service", "postgres"))
    assert found[("portal_retention_freed_bytes_total", labels)] == 9000
    assert found[("portal_retention_removed_total", labels)] == 40
    pending = (
        ("environment", "staging"),
        ("item", "redis/keys/session_cache"),
        ("kind", "keys"),
        ("service", "redis"),
    )
    assert found[("portal_retention_pending", pending)] == 12
