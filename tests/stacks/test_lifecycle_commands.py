"""``manage.py stack`` and the make targets that call it."""

import subprocess
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from portal.choices import OperationStatus
from portal.models import Operation

from .test_lifecycle import configs, env, make_environment, operator  # noqa: F401

ROOT = Path(settings.BASE_DIR)


def stack_command(*args, user):
    out = StringIO()
    call_command("stack", *args, "--user", user.username, stdout=out)
    return out.getvalue()


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_stack_command_start_status_logs_stop(env, operator):  # noqa: F811
    out = stack_command("start", "core", "--env", env.name, user=operator)
    assert "postgres: healthy after" in out
    assert "succeeded." in out
    operation = Operation.objects.get(kind="stack.start", environment=env)
    assert operation.status == OperationStatus.SUCCEEDED
    assert operation.inline

    out = stack_command("status", "core", "--env", env.name, user=operator)
    header, *rows = out.splitlines()
    assert header.startswith(f"Stack core in {env.name} (project multimodal-{env.name}")
    assert "running, healthy, 4/4 running" in header
    table = {row.split()[0]: row.split() for row in rows[1:]}
    assert sorted(table) == ["minio", "postgres", "qdrant", "redis"]
    assert table["postgres"][1:4] == [
        "running",
        "healthy",
        f"multimodal-{env.name}-core-postgres-1",
    ]
    assert f"127.0.0.1:{5432 + env.port_offset}->5432/tcp" in table["postgres"]

    out = stack_command(
        "logs",
        "core",
        "--env",
        env.name,
        "--service",
        "postgres",
        "--tail",
        "20",
        user=operator,
    )
    assert out.splitlines()
    assert all(line.startswith("postgres | ") for line in out.splitlines())
    assert "ready to accept connections" in out

    out = stack_command("stop", "core", "--env", env.name, user=operator)
    assert "postgres: stopped" in out
    out = stack_command("status", "core", "--env", env.name, user=operator)
    assert "stopped" in out.splitlines()[0]


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_stack_command_fails_with_the_operation_error(env, operator):  # noqa: F811
    with pytest.raises(CommandError) as excinfo:
        stack_command("start", "inference", "--env", env.name, user=operator)
    assert "failed" in str(excinfo.value)
    assert "depends on stacks that are not running" in str(excinfo.value)
    # How to start them too, on the command line and on the page.
    assert "manage.py stack start --with-dependencies" in str(excinfo.value)
    assert '"with dependencies" next to Start' in str(excinfo.value)


@pytest.mark.django_db
def test_stack_command_rejects_unknown_stack_and_service(configs, operator):  # noqa: F811
    with pytest.raises(CommandError, match="No stack 'nope'"):
        stack_command("start", "nope", "--env", "demo", user=operator)
    with pytest.raises(CommandError, match="No service 'vllm' in stack core"):
        stack_command(
            "start", "core", "--env", "demo", "--service", "vllm", user=operator
        )


@pytest.mark.parametrize("verb", ["start", "stop", "restart", "status", "logs"])
@pytest.mark.parametrize(
    "stack", ["core", "inference", "ai", "ui", "testing", "monitoring"]
)
def test_make_targets_call_the_stack_command(verb, stack):
    result = subprocess.run(
        ["make", "-n", f"{verb}-{stack}", "ENVIRONMENT=staging", "PORTAL_USER=ops"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    follow = " --follow" if verb == "logs" else ""
    assert (
        result.stdout.split()
        == (
            f".venv/bin/python manage.py stack {verb} {stack}{follow} "
            "--env staging --user ops"
        ).split()
    )


def test_make_targets_default_to_demo():
    result = subprocess.run(
        ["make", "-n", "start-core"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--env demo" in result.stdout
