"""The system user: who commands act as without --user, on the demo only.

``bootstrap_demo`` (run by scripts/demo.sh) creates it on the real
configuration; the commands then run on real rows, with real Redis.
"""

import os
import subprocess
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from portal.choices import OperationStatus, Role
from portal.models import AuditEntry, Operation, RoleAssignment

pytestmark = pytest.mark.django_db(transaction=True)

SYSTEM = "portal-system"


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.fixture
def bootstrapped(monkeypatch):
    """Run bootstrap_demo as scripts/demo.sh does; return its output."""
    monkeypatch.setenv("PORTAL_ADMIN_PASSWORD", "demo-admin-password")
    return run("bootstrap_demo")


def test_bootstrap_demo_creates_the_system_user_with_a_role_on_demo_only(
    bootstrapped,
):
    user = get_user_model().objects.get(username=SYSTEM)
    assert user.is_active
    assert not user.is_staff
    assert not user.is_superuser
    assert not user.has_usable_password()
    assert [
        (a.environment.name, a.role) for a in RoleAssignment.objects.filter(user=user)
    ] == [("demo", Role.OPERATOR)]
    assert (
        f"system user '{SYSTEM}' ready: commands without --user act as it, as "
        "Operator of environment demo only; it cannot log in"
    ) in bootstrapped


def test_bootstrap_demo_again_changes_nothing(bootstrapped):
    again = run("bootstrap_demo")
    assert get_user_model().objects.filter(username=SYSTEM).count() == 1
    assert RoleAssignment.objects.filter(user__username=SYSTEM).count() == 1
    assert "system user" not in again


def test_system_user_cannot_log_in(bootstrapped, client):
    assert authenticate(username=SYSTEM, password="") is None
    assert authenticate(username=SYSTEM, password="!") is None
    assert not client.login(username=SYSTEM, password="")
    response = client.post(
        "/accounts/login/", {"username": SYSTEM, "password": "anything"}
    )
    assert "_auth_user_id" not in client.session
    assert response.status_code == 200


def test_stack_start_without_user_on_demo_acts_as_the_system_user(
    bootstrapped, redis_conn
):
    out = run("stack", "start", "core", "--env", "demo", "--enqueue")
    operation = Operation.objects.get(kind="stack.start")
    assert operation.status == OperationStatus.QUEUED
    assert operation.requested_by.username == SYSTEM
    assert f"Operation {operation.pk}: stack.start on demo/core" in out
    entry = AuditEntry.objects.get(action="operation.requested")
    assert entry.actor.username == SYSTEM
    assert entry.actor_name == SYSTEM
    assert entry.object_id == str(operation.pk)


@pytest.mark.parametrize("environment", ["development", "production", "prod"])
def test_stack_start_without_user_elsewhere_is_refused(
    bootstrapped, redis_conn, environment
):
    name = "production" if environment == "prod" else environment
    with pytest.raises(CommandError) as info:
        run("stack", "start", "core", "--env", environment)
    assert str(info.value) == (
        f"{SYSTEM} may not start in environment {name}. No --user was given, so "
        f"the command acted as the system user '{SYSTEM}'. Pass --user USERNAME "
        "(with make: PORTAL_USER=USERNAME) to act as a user with a role there."
    )
    assert not Operation.objects.exists()
    assert not AuditEntry.objects.filter(action="operation.requested").exists()


def test_named_user_is_refused_without_the_system_user_hint(bootstrapped, redis_conn):
    get_user_model().objects.create_user("sam", password="pw")
    with pytest.raises(CommandError) as info:
        run("stack", "start", "core", "--env", "staging", "--user", "sam")
    assert str(info.value) == "sam may not start in environment staging."


def test_command_without_user_before_bootstrap_says_to_pass_one(redis_conn):
    call_command("import_configs", stdout=StringIO())
    with pytest.raises(CommandError) as info:
        run("stack", "start", "core", "--env", "demo")
    assert str(info.value) == (
        f"No --user given, and the system user '{SYSTEM}' that commands then act "
        "as does not exist (scripts/demo.sh creates it, as Operator of the demo "
        "environment). Pass --user USERNAME (with make: PORTAL_USER=USERNAME), "
        "or set PORTAL_SYSTEM_USER to an active user."
    )
    assert not Operation.objects.exists()


def test_configured_system_user_replaces_the_default(
    bootstrapped, redis_conn, settings
):
    settings.PORTAL_SYSTEM_USER = "cron"
    with pytest.raises(CommandError, match="the system user 'cron' that commands"):
        run("stack", "start", "core", "--env", "demo")


def make(*args):
    """Run ``make args`` in the project on the test database."""
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=settings.BASE_DIR,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "PORTAL_TEST_DB": str(connection.settings_dict["NAME"]),
            "REDIS_URL": settings.REDIS_URL,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.docker
def test_make_target_without_flags_works_on_demo_only(bootstrapped, docker_client):
    result = make("status-core")
    assert result.returncode == 0, result.stderr
    echoed, status = result.stdout.splitlines()[:2]
    # No --user: the command acts as the system user.
    assert echoed.split() == (
        ".venv/bin/python manage.py stack status core --env demo".split()
    )
    assert status.startswith("Stack core in demo (project multimodal-demo-core): ")
    result = make("status-core", "ENVIRONMENT=staging")
    assert result.returncode != 0
    assert (
        f"CommandError: {SYSTEM} may not view in environment staging. No --user "
        f"was given, so the command acted as the system user '{SYSTEM}'. Pass "
        "--user USERNAME (with make: PORTAL_USER=USERNAME) to act as a user with "
        "a role there.\n"
    ) in result.stderr
    assert "Traceback" not in result.stderr
