"""Management commands on real rows: run_operation, check_host, cancel, reap."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from portal.choices import OperationStatus, Role
from portal.models import Operation
from portal.operations import request_operation

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args, **kwargs):
    out = StringIO()
    call_command(*args, stdout=out, **kwargs)
    return out.getvalue()


def test_run_operation_inline_prints_log_and_succeeds(
    redis_conn, operator, environment, stack
):
    out = run(
        "run_operation",
        "test.steps",
        "--env",
        "d",
        "--stack",
        "core",
        "--param",
        "steps=2",
        "--user",
        "olga",
    )
    operation = Operation.objects.get()
    assert operation.status == OperationStatus.SUCCEEDED
    assert operation.inline
    assert operation.requested_by == operator
    assert f"Operation {operation.pk}: test.steps on dev/core" in out
    assert 'Plan: {"steps": 2}' in out
    assert "INFO    step 1 of 2" in out
    assert "INFO    step 2 of 2" in out
    assert 'Result: {"steps": 2}' in out
    assert out.rstrip().endswith(f"Operation {operation.pk} succeeded.")


def test_run_operation_inline_failure_exits_non_zero(
    redis_conn, operator, environment, stack
):
    with pytest.raises(CommandError, match="failed: step 2 failed"):
        run(
            "run_operation",
            "test.steps",
            "--env",
            "dev",
            "--stack",
            "core",
            "--param",
            "steps=3",
            "--param",
            "fail_at=2",
            "--user",
            "olga",
        )
    assert Operation.objects.get().status == OperationStatus.FAILED


def test_run_operation_needs_a_user(redis_conn, environment, stack):
    with pytest.raises(CommandError, match="--user"):
        run("run_operation", "test.steps", "--env", "dev")
    assert not Operation.objects.exists()


def test_run_operation_uses_configured_system_user(
    redis_conn, settings, make_user, environment
):
    make_user("cron", Role.OPERATOR, environment)
    settings.PORTAL_SYSTEM_USER = "cron"
    run("run_operation", "test.steps", "--env", "dev")
    assert Operation.objects.get().requested_by.username == "cron"


def test_run_operation_unknown_user(redis_conn, environment):
    with pytest.raises(CommandError, match="No user 'nobody'"):
        run("run_operation", "test.steps", "--env", "dev", "--user", "nobody")


def test_run_operation_checks_the_role(redis_conn, viewer, environment):
    with pytest.raises(CommandError, match="victor may not start in environment dev"):
        run("run_operation", "test.steps", "--env", "dev", "--user", "victor")
    assert not Operation.objects.exists()


def test_run_operation_unknown_kind_lists_known(redis_conn, operator, environment):
    with pytest.raises(CommandError, match="known: .*host.check"):
        run("run_operation", "no.such", "--env", "dev", "--user", "olga")


def test_run_operation_enqueue_leaves_it_to_a_worker(redis_conn, operator, environment):
    out = run(
        "run_operation", "test.steps", "--env", "dev", "--user", "olga", "--enqueue"
    )
    operation = Operation.objects.get()
    assert operation.status == OperationStatus.QUEUED
    assert not operation.inline
    assert "Queued on default." in out
    assert redis_conn.exists(f"rq:job:{operation.pk}")


def test_run_operation_no_queue_refuses_when_busy(
    redis_conn, operator, environment, stack
):
    busy = request_operation(
        "test.steps", user=operator, environment=environment, stack=stack
    )
    with pytest.raises(
        CommandError, match=f"operation {busy.pk} \\(test.steps, queued\\)"
    ):
        run(
            "run_operation",
            "test.steps",
            "--env",
            "dev",
            "--stack",
            "core",
            "--user",
            "olga",
            "--enqueue",
            "--no-queue",
        )


@pytest.mark.slow
def test_run_operation_enqueue_wait_follows_the_worker(
    worker_process, operator, environment, stack
):
    worker_process()
    out = run(
        "run_operation",
        "test.steps",
        "--env",
        "dev",
        "--stack",
        "core",
        "--param",
        "steps=3",
        "--param",
        "sleep=0.05",
        "--user",
        "olga",
        "--enqueue",
        "--wait",
    )
    assert [
        line.split(None, 2)[2] for line in out.splitlines() if " INFO " in line
    ] == [
        "step 1 of 3",
        "step 2 of 3",
        "step 3 of 3",
    ]
    assert "succeeded." in out
    with pytest.raises(CommandError, match="errored: RuntimeError: step 1 crashed"):
        run(
            "run_operation",
            "test.steps",
            "--env",
            "dev",
            "--param",
            "crash_at=1",
            "--user",
            "olga",
            "--enqueue",
            "--wait",
        )


def test_cancel_operation_command(redis_conn, operator, environment, stack):
    operation = request_operation(
        "test.steps", user=operator, environment=environment, stack=stack
    )
    out = run("cancel_operation", str(operation.pk), "--user", "olga")
    assert f"Operation {operation.pk} canceled." in out
    operation.refresh_from_db()
    assert operation.status == OperationStatus.CANCELED
    with pytest.raises(CommandError, match="already canceled"):
        run("cancel_operation", str(operation.pk), "--user", "olga")


def test_cancel_operation_command_checks_the_role(
    redis_conn, operator, viewer, environment, stack
):
    operation = request_operation(
        "test.steps", user=operator, environment=environment, stack=stack
    )
    with pytest.raises(CommandError, match="victor may not cancel"):
        run("cancel_operation", str(operation.pk), "--user", "victor")
    with pytest.raises(CommandError, match="No operation 'nope'"):
        run("cancel_operation", "nope", "--user", "olga")


def test_reap_operations_command(
    redis_conn, operator, viewer, environment, other_environment, make_user, stack
):
    def ghost(env):
        admin = make_user(f"root-{env.name}", is_superuser=True)
        operation = request_operation(
            "test.steps", user=admin, environment=env, stack=stack
        )
        Operation.objects.filter(pk=operation.pk).update(
            status=OperationStatus.RUNNING,
            worker_name="ghost",
            heartbeat=timezone.now(),
        )
        return operation

    mine, theirs = ghost(environment), ghost(other_environment)
    out = run("reap_operations", "--user", "olga", "--dry-run")
    assert f"Would fail {mine.pk}" in out
    assert str(theirs.pk) not in out
    assert Operation.objects.filter(status=OperationStatus.RUNNING).count() == 2

    out = run("reap_operations", "--user", "olga")
    assert f"Failed {mine.pk} (test.steps on dev/core): worker ghost is gone" in out
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.status == OperationStatus.FAILED
    assert theirs.status == OperationStatus.RUNNING


@pytest.mark.docker
def test_check_host_reports_the_engine(
    redis_conn, docker_client, make_user, environment
):
    make_user("ops", Role.OPERATOR, environment)
    out = run("check_host", "--env", "dev", "--user", "ops")
    operation = Operation.objects.get()
    assert operation.kind == "host.check"
    assert operation.status == OperationStatus.SUCCEEDED
    assert not operation.mutating
    result = operation.result
    info = docker_client.info()
    assert result["engine_version"] == docker_client.version()["Version"]
    assert result["api_version"] == docker_client.version()["ApiVersion"]
    assert result["storage_driver"] == info["Driver"]
    assert result["docker_root_dir"] == info["DockerRootDir"]
    assert result["disk"]["method"] == "statvfs"
    assert 0 < result["disk"]["free_bytes"] <= result["disk"]["total_bytes"]
    assert result["gpu"]["runtime"] == ("nvidia" in info["Runtimes"])
    assert result["containers"]["total"] >= 0 and result["images"] >= 1
    assert "Disk of " in out


@pytest.mark.docker
def test_host_check_measures_disk_in_a_helper_container(
    redis_conn, docker_client, docker_labels, settings, make_user, environment
):
    settings.PORTAL_EXTRA_LABELS = docker_labels
    environment.settings = {"disk_probe": "container"}
    environment.save()
    make_user("ops", Role.OPERATOR, environment)
    run("run_operation", "host.check", "--env", "dev", "--user", "ops")
    disk = Operation.objects.get().result["disk"]
    assert disk["method"] == "container"
    assert 0 < disk["free_bytes"] <= disk["total_bytes"]


@pytest.mark.docker
def test_host_check_strict_fails_on_warnings(
    redis_conn, docker_client, make_user, environment
):
    environment.settings = {"min_free_disk_gb": 10**9}
    environment.save()
    make_user("ops", Role.OPERATOR, environment)
    with pytest.raises(CommandError, match="failed: .*warning.*GiB free"):
        run(
            "run_operation",
            "host.check",
            "--env",
            "dev",
            "--user",
            "ops",
            "--param",
            "strict=true",
        )
    assert Operation.objects.get().status == OperationStatus.FAILED
