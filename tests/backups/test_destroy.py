"""Destructive operations in a protected environment, on the real engine:
four eyes on every path (page, admin, command, WebSocket), a plan-bound
approval that a changed plan voids, expiry, rejection, and a wipe that
refuses to start without a fresh verified backup of its scope and links
that backup when it runs."""

import asyncio
from io import StringIO

import pytest
from django.conf import settings
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from backups.operations import backup_service, verify_backups
from portal.asgi import application
from portal.choices import OperationStatus, Role
from portal.models import Approval, AuditEntry, Operation, RoleAssignment
from portal.operations import (
    ApprovalRefused,
    approve_operation,
    expire_approvals,
    reject_operation,
    run_inline,
)
from stacks import engine
from stacks.models import Service
from stacks.operations import wipe
from tests.backups.records import *  # noqa: F403
from tests.backups.test_runs import only_local, postgres_container, seed
from tests.websockets import Communicator

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

COUNT = [
    "psql",
    "-X",
    "-qAt",
    "-U",
    "multimodal",
    "-d",
    "multimodal",
    "-c",
    "SELECT count(*) FROM pg_tables WHERE tablename = 'blobs'",
]


@pytest.fixture
def protected(running, docker_client, make_user):
    """A protected copy of demo with postgres running and seeded; its
    requester (Operator and Approver) and a second Approver."""
    env = running("postgres")
    only_local(env)
    env.protected = True
    env.save()
    seed(docker_client, env)
    alice = make_user("alice", "operator", env, email="alice@example.org")
    RoleAssignment.objects.create(user=alice, environment=env, role=Role.APPROVER)
    bob = make_user("bob", "approver", env, email="bob@example.org")
    return env, alice, bob


def tables(client, env):
    result = engine.exec_run(client, postgres_container(client, env), COUNT)
    assert result.ok, result.stderr_text()
    return int(result.stdout.decode())


def request_wipe(env, user):
    return wipe(env, data_type="db", confirm=f"{env.name}/db", user=user)


def session_cookie(user):
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


def decide_by_websocket(operation, user, frame):
    cookie = session_cookie(user)

    async def talk():
        headers = [
            (b"origin", b"http://127.0.0.1"),
            (b"host", b"127.0.0.1"),
            (b"cookie", f"{settings.SESSION_COOKIE_NAME}={cookie}".encode()),
        ]
        comm = Communicator(
            application, f"/ws/operations/{operation.pk}/", headers=headers
        )
        connected, _code = await comm.connect()
        assert connected
        await comm.send_json_to(frame)
        while True:
            answer = await comm.receive_json_from(timeout=20)
            if answer["type"] == "decision":
                break
        await comm.disconnect()
        return answer

    return asyncio.run(talk())


def status_of(operation):
    operation.refresh_from_db()
    return operation.status


def test_the_requester_cannot_approve_on_any_path(protected, docker_client):
    env, alice, bob = protected
    operation = request_wipe(env, alice)
    assert operation.status == OperationStatus.AWAITING_APPROVAL
    approval = operation.approval
    assert approval.status == Approval.Status.WAITING
    assert approval.plan_hash and approval.expires > timezone.now()
    # The approvers were told, the requester was not.
    (message,) = mail.outbox
    assert message.to == ["bob@example.org"]
    assert message.subject == f"Approval needed - wipe.data on {env.name}/*"
    assert str(operation.pk) in message.body
    assert AuditEntry.objects.filter(
        action="approval.requested", object_id=operation.pk
    ).exists()

    # The dashboard lists it for bob, never for the requester.
    dashboards = {}
    for user in (alice, bob):
        client = Client()
        client.force_login(user)
        dashboards[user.username] = client.get("/").content.decode()
    assert 'data-panel="approvals"' not in dashboards["alice"]
    assert 'data-panel="approvals"' in dashboards["bob"]
    assert (
        f'<tr data-operation="{operation.pk}"><td><a href="/operations/'
        in (dashboards["bob"])
    )

    # The function every path calls.
    with pytest.raises(PermissionDenied, match="needs the approval of another"):
        approve_operation(operation, user=alice)
    # The page.
    client = Client()
    client.force_login(alice)
    response = client.post(
        reverse("portal:operation_approve", args=[operation.pk]),
        {"decision": "approve"},
    )
    assert response.status_code == 403
    # The admin action.
    alice.is_staff = True
    alice.save()
    client.force_login(alice)
    response = client.post(
        reverse("admin:portal_operation_changelist"),
        {"action": "approve_selected", "_selected_action": [str(operation.pk)]},
        follow=True,
    )
    assert "needs the approval of another Approver" in response.content.decode()
    # The command.
    with pytest.raises(CommandError, match="needs the approval of another"):
        call_command(
            "approve_operation", str(operation.pk), "--user", "alice", stdout=StringIO()
        )
    # The command without --user acts as the system user: never an approver.
    with pytest.raises(CommandError):
        call_command("approve_operation", str(operation.pk), stdout=StringIO())
    # The WebSocket.
    answer = decide_by_websocket(operation, alice, {"action": "approve"})
    assert answer["ok"] is False and "another Approver" in answer["message"]
    assert status_of(operation) == OperationStatus.AWAITING_APPROVAL

    # Waiting, it holds no place in the line and went to no worker.
    assert not operation.dispatched
    assert tables(docker_client, env) == 1


def test_an_approved_wipe_refuses_to_start_without_a_fresh_verified_backup_then_runs(
    protected, docker_client, run_jobs
):
    env, alice, bob = protected
    operation = request_wipe(env, alice)
    answer = decide_by_websocket(operation, bob, {"action": "approve"})
    assert answer["ok"] is True, answer
    operation.refresh_from_db()
    assert operation.status == OperationStatus.QUEUED
    assert operation.approved_by == bob
    run_jobs("long")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.FAILED
    assert operation.error.startswith(
        f"{env.name} is protected: a wipe needs a fresh verified backup of what it "
        "destroys first. postgres: no verified full backup in local newer than 6 h "
        "(there is no verified one)."
    )
    assert tables(docker_client, env) == 1

    # A backup, then a verification of it.
    postgres = Service.objects.get(name="postgres")
    backup = run_inline(backup_service(env, postgres, user=alice, enqueue=False))
    assert backup.status == "succeeded", backup.error
    check = run_inline(verify_backups(env, user=alice, subset="none", enqueue=False))
    assert check.status == "succeeded", check.error

    operation = request_wipe(env, alice)
    out = StringIO()
    call_command("approve_operation", str(operation.pk), "--user", "bob", stdout=out)
    assert f"Operation {operation.pk} approved by bob" in out.getvalue()
    run_jobs("long")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    (evidence,) = operation.result["backups"]
    record = backup.backup_records.get(tier__name="local")
    assert evidence["record"] == record.pk
    assert evidence["url"] == record.get_absolute_url()
    assert tables(docker_client, env) == 0
    assert AuditEntry.objects.filter(
        action="approval.approved", object_id=operation.pk, actor_name="bob"
    ).exists()
    # The requester heard of each decision.
    assert any(
        m.to == ["alice@example.org"] and "approved by bob" in m.body
        for m in mail.outbox
    )


def test_a_changed_plan_voids_the_approval(protected, docker_client):
    env, alice, bob = protected
    operation = request_wipe(env, alice)
    engine.remove_container(docker_client, postgres_container(docker_client, env))
    with pytest.raises(ApprovalRefused, match="changed since it was requested"):
        approve_operation(operation, user=bob)
    operation.refresh_from_db()
    assert operation.status == OperationStatus.CANCELED
    assert operation.approval.status == Approval.Status.VOIDED
    assert AuditEntry.objects.filter(
        action="approval.voided", object_id=operation.pk
    ).exists()


def test_expiry_and_rejection(protected):
    env, alice, bob = protected
    late = request_wipe(env, alice)
    Approval.objects.filter(operation=late).update(
        expires=timezone.now() - timezone.timedelta(minutes=1)
    )
    assert [op.pk for op in expire_approvals()] == [late.pk]
    late.refresh_from_db()
    assert late.status == OperationStatus.CANCELED
    assert late.error.startswith("Not approved before ")
    with pytest.raises(ApprovalRefused, match="not waiting for an approval"):
        approve_operation(late, user=bob)
    assert AuditEntry.objects.filter(action="approval.expired", object_id=late.pk)

    refused = request_wipe(env, alice)
    with pytest.raises(ApprovalRefused, match="needs a reason"):
        reject_operation(refused, user=bob, reason=" ")
    reject_operation(refused, user=bob, reason="not during the release")
    refused.refresh_from_db()
    assert refused.status == OperationStatus.CANCELED
    assert refused.error == "Rejected by bob: not during the release"
    assert refused.approval.reason == "not during the release"
    assert Operation.objects.filter(environment=env, status="running").count() == 0
