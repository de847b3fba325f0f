"""The drill and restore buttons and what the pages say of drills: the four
permission cases, the proof, and a failed drill's reason."""

from datetime import timedelta

import pytest
from django.urls import reverse

from backups.choices import ProofStatus
from backups.models import RestoreDrill
from portal.models import Operation
from tests.backups.records import *  # noqa: F403

pytestmark = pytest.mark.django_db

WHY = (
    "Record #{pk} restored, but it does not match its manifest: rows of "
    "public.notes: 40 expected (the manifest), 0 found."
)


@pytest.fixture
def world(make_backup_environment, make_user, make_record):
    env = make_backup_environment("drillpages", tiers=("local",))
    other = make_backup_environment("drillpages-other")
    record = make_record(env, age=timedelta(hours=2))
    users = {
        "nobody": make_user("nobody"),
        "viewer": make_user("viewer", "viewer", env),
        "operator": make_user("operator", "operator", env),
        "elsewhere": make_user("elsewhere", "operator", other),
    }
    return env, record, users


def drill_row(record, status, error=""):
    return RestoreDrill.objects.create(
        record=record,
        status=status,
        error=error,
        duration_s=3.5,
        proof={
            "compared": [
                {"what": "rows of public.items", "expected": 5, "found": 5, "ok": True},
                {
                    "what": "rows of public.notes",
                    "expected": 40,
                    "found": 0 if error else 40,
                    "ok": not error,
                },
            ],
            "image": "stackportal/postgres:local",
        },
    )


@pytest.mark.parametrize("view", ["record_drill", "record_restore"])
@pytest.mark.parametrize(
    "who,expected", [(None, 302), ("nobody", 403), ("viewer", 403), ("elsewhere", 403)]
)
def test_drill_and_restore_need_their_verb_on_the_records_environment(
    client, world, view, who, expected
):
    _env, record, users = world
    if who:
        client.force_login(users[who])
    response = client.post(
        reverse(f"backups:{view}", args=[record.environment.name, record.pk])
    )
    assert response.status_code == expected
    if expected == 302:
        assert response.url.startswith(reverse("login"))
    assert not Operation.objects.exists()


@pytest.mark.parametrize("view", ["record_drill", "record_restore"])
def test_a_record_named_under_another_environment_is_not_found(
    client, world, make_backup_environment, make_user, view
):
    """An operator of the other environment cannot reach this record through
    the URL of theirs."""
    _env, record, users = world
    other = make_backup_environment("drillpages-third")
    client.force_login(make_user("third", "operator", other))
    response = client.post(reverse(f"backups:{view}", args=[other.name, record.pk]))
    assert response.status_code == 404
    assert not Operation.objects.exists()


def test_operator_queues_a_drill_of_the_record(client, world, redis_conn):
    env, record, users = world
    client.force_login(users["operator"])
    response = client.post(reverse("backups:record_drill", args=[env.name, record.pk]))
    operation = Operation.objects.get()
    assert response.url == operation.get_absolute_url()
    assert operation.kind == "backup.drill" and operation.queue_name == "long"
    assert operation.parameters == {"record": record.pk}
    assert operation.plan["snapshot"] == record.snapshot_id


def test_pages_show_a_proven_backup_and_a_failed_drill_with_why(client, world):
    env, record, users = world
    client.force_login(users["viewer"])
    page = reverse("backups:environment_backups", args=[env.name])
    drill_row(record, ProofStatus.PASSED)
    text = client.get(page).content.decode()
    assert 'data-field="proof">proven</span>' in text
    why = WHY.format(pk=record.pk)
    drill_row(record, ProofStatus.FAILED, why)
    text = client.get(page).content.decode()
    assert 'data-field="proof">drill failed</span>' in text
    assert why[:150] in text
    detail = client.get(record.get_absolute_url()).content.decode()
    assert f'data-field="drill-error">{why}</span>' in detail
    assert 'data-fact="rows of public.notes"' in detail
    # A viewer sees no buttons.
    assert 'data-field="drill"' not in detail
    assert 'data-field="restore-button"' not in detail


def test_restore_page_of_a_service_that_does_not_run_says_so(client, world):
    env, record, users = world
    client.force_login(users["operator"])
    text = client.get(
        reverse("backups:record_restore", args=[env.name, record.pk])
    ).content.decode()
    assert (
        f"Service {record.service_name} has no running container in {env.name}" in text
    )
    assert 'data-field="restore-form"' not in text


def test_admin_action_drills_the_selected_records_with_the_check_verb(
    client, world, make_user, redis_conn
):
    from django.contrib.auth.models import Permission

    env, record, _users = world
    url = reverse("admin:backups_backuprecord_changelist")
    data = {"action": "drill_selected", "_selected_action": [str(record.pk)]}
    staff = make_user("stu", "viewer", env, is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_backuprecord"))
    client.force_login(staff)
    text = client.post(url, data, follow=True).content.decode()
    assert f"#{record.pk}: " in text and "may not" in text
    assert not Operation.objects.exists()
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    text = client.post(url, data, follow=True).content.decode()
    operation = Operation.objects.get()
    assert f"Drills queued: #{record.pk} (operation {str(operation.pk)[:8]})" in text
    assert operation.kind == "backup.drill" and operation.parameters == {
        "record": record.pk
    }


@pytest.mark.parametrize(
    "command",
    [
        ["drill", "--service", "postgres"],
        ["drill", "--scheduled"],
        ["restore", "--service", "postgres", "--record", "1", "--dry-run"],
    ],
)
def test_drill_and_restore_commands_ask_for_the_role_first(world, command):
    from io import StringIO

    from django.core.management import CommandError, call_command

    env, _record, users = world
    with pytest.raises(CommandError, match="may not"):
        call_command(
            "backup", *command, "--env", env.name, "--user", "viewer", stdout=StringIO()
        )
    assert not Operation.objects.exists()
