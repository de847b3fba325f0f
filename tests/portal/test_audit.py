"""The audit log: the hash chain, its verification, and what writes to it."""

import io
import json
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rq.job import Job, JobStatus

from portal.audit import SYSTEM, record, verify_chain
from portal.choices import OperationStatus, Role
from portal.models import AppendOnlyError, AuditEntry, Operation, RoleAssignment
from portal.operations import (
    OperationConflict,
    abandon_operation,
    cancel_operation,
    reap_operations,
    request_operation,
    run_inline,
)
from stacks.config import import_configs
from stacks.models import Service
from tests.portal.helpers import admin_form_data
from tests.stacks.test_config_support import minimal, write_config

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parent.parent.parent


def entries(**filters):
    return list(AuditEntry.objects.filter(**filters).order_by("id"))


def actions(**filters):
    return [e.action for e in entries(**filters)]


@pytest.fixture
def chain(environment):
    """Three entries, oldest first."""
    return [
        record("test.one", environment=environment, data={"n": 1}),
        record("test.two", data={"n": 2, "text": "żółw"}),
        record("test.three", data={"n": 3, "seconds": 2.0, "big": 1e20}),
    ]


@pytest.fixture
def superuser(make_user):
    return make_user("root", is_superuser=True, is_staff=True)


# --- the chain -----------------------------------------------------------------


def test_record_chains_entries(chain):
    first, second, third = chain
    assert [e.pk for e in chain] == [1, 2, 3]
    assert first.prev_hash == ""
    assert second.prev_hash == first.hash
    assert third.prev_hash == second.hash
    assert first.actor is None and first.actor_name == SYSTEM
    assert first.environment_name == "dev"
    assert verify_chain() == []


def test_record_hash_covers_the_stored_row(chain):
    """The hash recomputed from the row read back equals the one written."""
    for entry in AuditEntry.objects.all():
        assert entry.compute_hash() == entry.hash


def test_verify_names_entry_edited_with_queryset_update(chain):
    AuditEntry.objects.filter(pk=2).update(data={"n": 20, "text": "żółw"})
    problems = verify_chain()
    assert [(p.entry_id, "hash mismatch" in p.message) for p in problems] == [(2, True)]
    assert str(problems[0]).startswith("entry 2: hash mismatch")


def test_verify_detects_rewritten_hash(chain):
    """Recomputing the edited entry's hash breaks the link from the next one."""
    entry = AuditEntry.objects.get(pk=2)
    entry.actor_name = "mallory"
    AuditEntry.objects.filter(pk=2).update(
        actor_name="mallory", hash=entry.compute_hash()
    )
    problems = verify_chain()
    assert [p.entry_id for p in problems] == [3]
    assert "prev_hash" in problems[0].message


def test_verify_detects_deleted_middle_entry(chain):
    AuditEntry.objects.filter(pk=2).delete()
    problems = verify_chain()
    assert [p.entry_id for p in problems] == [2, 3]
    assert "entry 2 is gone" in problems[0].message
    assert "prev_hash" in problems[1].message


def test_verify_detects_deleted_newest_entry(chain):
    AuditEntry.objects.filter(pk=3).delete()
    problems = verify_chain()
    assert [p.entry_id for p in problems] == [3]
    assert "newest" in problems[0].message


def test_entry_cannot_be_saved_again_or_deleted(chain):
    entry = AuditEntry.objects.get(pk=1)
    entry.action = "test.other"
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    assert AuditEntry.objects.get(pk=1).action == "test.one"
    assert verify_chain() == []


def test_concurrent_writers_do_not_fork_the_chain():
    """Threads appending at once (each its own connection) keep one chain."""
    errors = []

    def write(n):
        try:
            for i in range(10):
                record("test.concurrent", data={"writer": n, "i": i})
        except Exception as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert AuditEntry.objects.count() == 40
    assert verify_chain() == []


# --- verify_audit ------------------------------------------------------------


def test_verify_audit_command_reports_intact_log(chain):
    out = io.StringIO()
    call_command("verify_audit", stdout=out)
    assert out.getvalue().strip() == (
        f"audit log intact: 3 entries, head {chain[-1].hash[:12]}"
    )


def test_verify_audit_command_lists_problems(chain):
    AuditEntry.objects.filter(pk=1).update(object_repr="edited")
    err = io.StringIO()
    with pytest.raises(CommandError, match="audit log broken: 1 problem"):
        call_command("verify_audit", stderr=err)
    assert err.getvalue().startswith("entry 1: hash mismatch")


def test_verify_audit_exit_codes(chain):
    """0 for an intact log, 1 once an entry was changed."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PORTAL_TEST_DB": str(connection.settings_dict["NAME"]),
    }

    def run():
        return subprocess.run(
            [sys.executable, "manage.py", "verify_audit"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    intact = run()
    assert intact.returncode == 0, intact.stderr
    assert "audit log intact: 3 entries" in intact.stdout
    AuditEntry.objects.filter(pk=3).update(action="test.forged")
    broken = run()
    assert broken.returncode == 1
    assert "entry 3: hash mismatch" in broken.stderr


# --- operations --------------------------------------------------------------


def test_operation_run_records_requested_started_finished(
    redis_conn, operator, environment, stack
):
    operation = request_operation(
        "test.steps",
        user=operator,
        environment=environment,
        stack=stack,
        parameters={"steps": 2, "API_TOKEN": "abc"},
        enqueue=False,
    )
    operation = run_inline(operation)
    assert operation.status == OperationStatus.SUCCEEDED
    found = entries(object_type="portal.operation", object_id=str(operation.pk))
    assert [e.action for e in found] == [
        "operation.requested",
        "operation.started",
        "operation.finished",
    ]
    assert {e.actor for e in found} == {operator}
    assert {e.actor_name for e in found} == {"olga"}
    assert {e.environment_name for e in found} == {"dev"}
    assert found[0].object_repr == "test.steps dev/core"
    requested, started, finished = (e.data for e in found)
    assert requested["kind"] == "test.steps"
    assert requested["stack"] == "core"
    assert requested["parameters"] == {"steps": 2, "API_TOKEN": "********"}
    assert requested["plan"]["content"] == {"steps": 2}
    assert started["worker"].startswith("inline:")
    assert finished["status"] == "succeeded"
    assert verify_chain() == []


def test_failed_operation_records_the_error_line(
    redis_conn, run_jobs, operator, environment, stack
):
    """Through a worker; an errored run keeps the exception's line."""
    operation = request_operation(
        "test.steps",
        user=operator,
        environment=environment,
        stack=stack,
        parameters={"steps": 3, "crash_at": 2},
    )
    run_jobs("default")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.ERRORED
    (finished,) = entries(action="operation.finished")
    assert finished.actor == operator
    assert finished.data["status"] == "errored"
    assert finished.data["error"] == "RuntimeError: step 2 crashed"


def test_refused_request_records_nothing(redis_conn, operator, environment, stack):
    """The entry is written in the request's transaction, or not at all."""
    request_operation("test.steps", user=operator, environment=environment, stack=stack)
    with pytest.raises(OperationConflict):
        request_operation(
            "test.steps",
            user=operator,
            environment=environment,
            stack=stack,
            wait=False,
        )
    assert actions() == ["operation.requested"]


def test_cancel_records_who_canceled(
    redis_conn, make_user, operator, environment, stack
):
    operation = request_operation(
        "test.steps", user=operator, environment=environment, stack=stack
    )
    boss = make_user("boss", Role.ADMIN, environment)
    cancel_operation(operation, user=boss)
    canceled = entries(action="operation.canceled")
    assert [(e.actor, e.data["status"], e.data["was"]) for e in canceled] == [
        (boss, "canceled", "queued")
    ]
    assert actions() == ["operation.requested", "operation.canceled"]


def test_abandon_records_the_reason(redis_conn, operator, environment, stack):
    operation = request_operation(
        "test.steps", user=operator, environment=environment, stack=stack
    )
    Operation.objects.filter(pk=operation.pk).update(
        status=OperationStatus.RUNNING, started=timezone.now(), worker_name="ghost"
    )
    assert abandon_operation(operation, "worker ghost is gone")
    (entry,) = entries(action="operation.abandoned")
    assert entry.actor is None and entry.actor_name == SYSTEM
    assert entry.data["reason"] == "worker ghost is gone"
    assert entry.data["status"] == "failed"


def test_reaper_names_a_failed_rq_job_in_words(
    redis_conn, operator, environment, stack
):
    operation = request_operation(
        "test.steps", user=operator, environment=environment, stack=stack
    )
    # A live worker elsewhere whose job ended as failed.
    redis_conn.hset("rq:worker:far", mapping={"hostname": "far", "pid": "1"})
    Job.fetch(str(operation.pk), connection=redis_conn).set_status(JobStatus.FAILED)
    Operation.objects.filter(pk=operation.pk).update(
        status=OperationStatus.RUNNING,
        started=timezone.now(),
        heartbeat=timezone.now(),
        worker_name="far",
    )
    ((_, reason),) = reap_operations(dry_run=True)
    assert reason == "its RQ job failed without finishing it"


def test_lost_job_error_names_the_status_in_words(
    redis_conn, operator, environment, stack
):
    operation = request_operation(
        "test.steps", user=operator, environment=environment, stack=stack
    )
    Job.fetch(str(operation.pk), connection=redis_conn).set_status(JobStatus.FAILED)
    Operation.objects.filter(pk=operation.pk).update(
        dispatched=timezone.now() - timedelta(minutes=5)
    )
    reap_operations()
    operation.refresh_from_db()
    assert operation.status == OperationStatus.ERRORED
    assert operation.error.startswith("Its RQ job failed before it started: ")
    assert "JobStatus" not in operation.error


# --- configuration import -------------------------------------------------------


def test_import_records_one_entry_and_none_when_unchanged(tmp_path):
    path = write_config(tmp_path, minimal())
    call_command("import_configs", "--file", str(path), stdout=io.StringIO())
    (entry,) = entries(action="config.imported")
    assert entry.actor is None and entry.actor_name == SYSTEM
    assert entry.data["counts"]["created"] > 0
    assert entry.data["file"].endswith("stacks.yaml")
    assert entry.data["changed_total"] == entry.data["counts"]["created"]

    call_command("import_configs", "--file", str(path), stdout=io.StringIO())
    call_command(
        "import_configs", "--file", str(path), "--dry-run", stdout=io.StringIO()
    )
    assert len(entries(action="config.imported")) == 1


def test_import_by_a_user_records_the_user(tmp_path, make_user):
    user = make_user("ines")
    path = write_config(tmp_path, minimal())
    import_configs(path, user=user)
    data = minimal()
    data["config"]["project_name"] = "renamed"
    import_configs(write_config(tmp_path, data), user=user)
    imported = entries(action="config.imported")
    assert [e.actor for e in imported] == [user, user]
    assert imported[1].data["counts"]["updated"] == 1


def test_import_command_user_must_administer_every_environment(
    tmp_path, make_user, environment
):
    path = str(write_config(tmp_path, minimal()))
    make_user("ops", "operator", environment)
    make_user("local-admin", "admin", environment)
    admin = make_user("root-admin", "admin")
    for name in ("ops", "local-admin"):
        with pytest.raises(CommandError, match=f"{name} may not import"):
            call_command("import_configs", "--file", path, "--user", name)
    with pytest.raises(CommandError, match="No user named 'ghost'"):
        call_command("import_configs", "--file", path, "--user", "ghost")
    assert entries(action="config.imported") == []
    call_command(
        "import_configs", "--file", path, "--user", "root-admin", stdout=io.StringIO()
    )
    (entry,) = entries(action="config.imported")
    assert entry.actor == admin and entry.actor_name == "root-admin"


def test_dry_run_import_records_nothing(tmp_path):
    import_configs(write_config(tmp_path, minimal()), dry_run=True)
    assert entries() == []


# --- the admin ------------------------------------------------------------------


@pytest.fixture
def service(stack):
    return Service.objects.create(
        stack=stack,
        name="postgres",
        image="postgres:16",
        environment={"POSTGRES_DB": "app", "POSTGRES_PASSWORD": "s3cret"},
    )


def test_admin_change_of_service_records_diff_and_user(client, superuser, service):
    client.force_login(superuser)
    url = reverse("admin:stacks_service_change", args=[service.pk])
    data = admin_form_data(client.get(url))
    data["image"] = "postgres:17"
    data["environment"] = json.dumps(
        {"POSTGRES_DB": "app", "POSTGRES_PASSWORD": "n3w-s3cret"}
    )
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    service.refresh_from_db()
    assert service.image == "postgres:17"

    (entry,) = entries(action="object.changed")
    assert entry.actor == superuser and entry.actor_name == "root"
    assert (entry.object_type, entry.object_id) == ("stacks.service", str(service.pk))
    assert entry.object_repr == "postgres"
    redacted = {"POSTGRES_DB": "app", "POSTGRES_PASSWORD": "********"}
    assert entry.data["changes"] == {
        "image": ["postgres:16", "postgres:17"],
        "environment": [redacted, redacted],
    }
    assert "s3cret" not in json.dumps(entry.data)
    assert verify_chain() == []


def test_admin_save_without_changes_records_nothing(client, superuser, service):
    client.force_login(superuser)
    url = reverse("admin:stacks_service_change", args=[service.pk])
    response = client.post(url, admin_form_data(client.get(url)))
    assert response.status_code == 302
    assert entries() == []


def test_admin_inline_change_records_the_inline_row(client, superuser, service):
    """Changing a service in its stack's page records the service's change."""
    client.force_login(superuser)
    url = reverse("admin:stacks_stack_change", args=[service.stack.pk])
    data = admin_form_data(client.get(url))
    data["services-0-image"] = "postgres:17"
    response = client.post(url, data)
    assert response.status_code == 302
    (entry,) = entries()
    assert entry.action == "object.changed"
    assert entry.object_type == "stacks.service"
    assert entry.data == {
        "changes": {"image": ["postgres:16", "postgres:17"]},
        "parent": "core",
    }


def test_admin_delete_records_the_fields(client, superuser, service):
    client.force_login(superuser)
    url = reverse("admin:stacks_service_delete", args=[service.pk])
    response = client.post(url, {"post": "yes"})
    assert response.status_code == 302
    (entry,) = entries(action="object.deleted")
    assert entry.object_id == str(service.pk)
    assert entry.data["fields"]["image"] == "postgres:16"
    assert entry.data["fields"]["environment"]["POSTGRES_PASSWORD"] == "********"


def test_admin_role_grant_and_revoke_are_recorded(
    client, superuser, make_user, environment
):
    target = make_user("newbie")
    client.force_login(superuser)
    response = client.post(
        reverse("admin:portal_roleassignment_add"),
        {"user": target.pk, "environment": environment.pk, "role": "operator"},
    )
    assert response.status_code == 302
    grant = RoleAssignment.objects.get(user=target)
    (entry,) = entries(action="role.granted")
    assert entry.actor == superuser
    assert entry.environment_name == "dev"
    assert (entry.object_type, entry.object_id) == (
        "portal.roleassignment",
        str(grant.pk),
    )
    assert entry.data["fields"]["user"] == "newbie"
    assert entry.data["fields"]["role"] == "operator"

    response = client.post(
        reverse("admin:portal_roleassignment_delete", args=[grant.pk]),
        {"post": "yes"},
    )
    assert response.status_code == 302
    (revoked,) = entries(action="role.revoked")
    assert revoked.object_id == str(grant.pk)
    assert revoked.data["fields"]["role"] == "operator"
    assert verify_chain() == []


def test_admin_delete_action_records_each_object(
    client, superuser, make_user, environment
):
    grants = [
        RoleAssignment.objects.create(
            user=make_user(name), role=Role.VIEWER, environment=environment
        )
        for name in ("a", "b")
    ]
    client.force_login(superuser)
    response = client.post(
        reverse("admin:portal_roleassignment_changelist"),
        {
            "action": "delete_selected",
            "_selected_action": [g.pk for g in grants],
            "post": "yes",
        },
    )
    assert response.status_code == 302
    assert not RoleAssignment.objects.exists()
    assert sorted(e.object_id for e in entries(action="role.revoked")) == sorted(
        str(g.pk) for g in grants
    )


def test_admin_superuser_flag_change_is_recorded(client, superuser, make_user):
    user = make_user("promoted", is_staff=True)
    client.force_login(superuser)
    url = reverse("admin:auth_user_change", args=[user.pk])
    data = admin_form_data(client.get(url))
    data["is_superuser"] = "on"
    response = client.post(url, data)
    assert response.status_code == 302
    (entry,) = entries(action="object.changed")
    assert entry.object_type == "auth.user"
    assert entry.data["changes"] == {"is_superuser": [False, True]}


def test_audit_admin_is_read_only(client, superuser, chain):
    client.force_login(superuser)
    listing = client.get(reverse("admin:portal_auditentry_changelist"))
    assert listing.status_code == 200
    assert b"test.two" in listing.content
    assert b"delete_selected" not in listing.content
    searched = client.get(
        reverse("admin:portal_auditentry_changelist"), {"action__exact": "test.one"}
    )
    assert list(searched.context["cl"].result_list) == [chain[0]]
    detail = client.get(reverse("admin:portal_auditentry_change", args=[1]))
    assert detail.status_code == 200
    assert client.get(reverse("admin:portal_auditentry_add")).status_code == 403
    deleted = client.post(
        reverse("admin:portal_auditentry_delete", args=[1]), {"post": "yes"}
    )
    assert deleted.status_code == 403
    assert AuditEntry.objects.count() == 3


def test_deleting_a_user_keeps_the_entry_valid(make_user, environment):
    """The actor link goes; the name stays, and so does the hash."""
    user = make_user("leaver")
    record("test.by-user", actor=user)
    get_user_model().objects.filter(pk=user.pk).delete()
    (entry,) = entries()
    assert entry.actor is None and entry.actor_name == "leaver"
    assert verify_chain() == []
