"""Where backups stand (backups.status) and whether a backup of an
environment is still going (backups.operations.running_backup)."""

import socket
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from backups.operations import running_backup
from backups.status import backup_states, environment_backups, format_age
from portal.models import Operation
from portal.operations import request_operation
from stacks.models import Service
from tests.backups.records import *  # noqa: F403

pytestmark = pytest.mark.django_db


@pytest.fixture
def env(make_backup_environment):
    return make_backup_environment("status", tiers=("local", "remote"))


@pytest.fixture
def admin(make_user):
    return make_user("root", is_superuser=True)


def test_rows_cover_every_scheduled_strategy_and_tier_in_order(env, make_record):
    make_record(env, "postgres", "schema", age=timedelta(days=20))
    rows = backup_states([env])
    keys = [(r.service, r.strategy, r.tier) for r in rows]
    assert keys[:5] == [
        ("postgres", "full", "local"),
        ("postgres", "full", "remote"),
        ("postgres", "schema", "local"),
        ("redis", "rdb", "local"),
        ("redis", "rdb", "remote"),
    ]
    assert len(keys) == 8 * 2 + 1
    schema = rows[2]
    assert schema.state == "on demand" and not schema.overdue
    assert {r.state for r in rows if r.strategy != "schema"} == {"never"}


def test_age_against_the_allowed_age(env, make_record):
    make_record(env, age=timedelta(hours=29))
    make_record(env, tier="remote", age=timedelta(hours=31))
    make_record(env, "vllm", "volumes", age=timedelta(days=8))
    rows = {(r.service, r.tier): r for r in backup_states([env])}
    assert rows["postgres", "local"].state == "ok"
    assert rows["postgres", "remote"].state == "overdue"
    assert rows["postgres", "remote"].describe() == (
        "postgres full in remote: newest good backup 1 d 07 h old (allowed 1 d 06 h)"
    )
    # vllm is weekly: 8 days is within 8 d 18 h.
    assert rows["vllm", "local"].state == "ok"
    assert rows["vllm", "local"].allowed_text == "8 d 18 h"


def test_newest_good_record_wins_and_failures_are_counted_since_it(env, make_record):
    make_record(env, status="failed", age=timedelta(hours=10))
    make_record(env, age=timedelta(hours=9))
    newest = make_record(env, age=timedelta(hours=5))
    make_record(env, status="failed", age=timedelta(hours=3))
    left = make_record(env, status="running", age=timedelta(hours=2))
    row = next(
        r
        for r in backup_states([env])
        if (r.service, r.tier)
        == (
            "postgres",
            "local",
        )
    )
    assert row.record == newest
    assert (row.failures, row.failures_total) == (2, 3)
    backups = environment_backups(env)
    assert [r.pk for r in backups.failures][0] == left.pk
    assert left.shown_status == "failed"


def test_a_running_record_of_an_active_operation_is_not_a_failure(
    env, admin, make_record, redis_conn
):
    operation = request_operation(
        "backup.service",
        user=admin,
        environment=env,
        service=Service.objects.get(name="postgres"),
        enqueue=False,
    )
    make_record(env, status="running", operation=operation)
    row = backup_states([env])[0]
    assert (row.failures, row.failures_total) == (0, 0)
    assert environment_backups(env).running == [operation]


def test_format_age():
    assert format_age(timedelta(seconds=42)) == "42.0 s"
    assert format_age(timedelta(minutes=12, seconds=5)) == "12 min"
    assert format_age(timedelta(hours=5, minutes=3)) == "5 h 03 min"
    assert format_age(timedelta(days=2, hours=4, minutes=59)) == "2 d 04 h"


# -- running_backup --------------------------------------------------------------


def _finished_inline(env, admin, pid):
    operation = request_operation(
        "backup.service",
        user=admin,
        environment=env,
        service=Service.objects.get(name="redis"),
        enqueue=False,
    )
    Operation.objects.filter(pk=operation.pk).update(
        status="failed",
        finished=timezone.now() - timedelta(seconds=2),
        worker_name=f"inline:{socket.gethostname()}:{pid}",
    )
    return operation


def test_no_backup_running(env):
    assert running_backup(env) is None


def test_an_active_backup_operation_is_running(env, admin, redis_conn):
    operation = request_operation(
        "backup.service",
        user=admin,
        environment=env,
        service=Service.objects.get(name="postgres"),
        enqueue=False,
    )
    assert running_backup(env) == operation


def test_a_live_command_between_two_services_is_still_running(env, admin):
    """The previous `backup full` finished one service a moment ago and its
    process lives: it is about to request the next one."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        operation = _finished_inline(env, admin, process.pid)
        assert running_backup(env) == operation
    finally:
        process.kill()
        process.wait()
    assert running_backup(env) is None


def test_an_operation_finished_long_ago_does_not_count(env, admin):
    process = subprocess.Popen(["sleep", "60"])
    try:
        operation = _finished_inline(env, admin, process.pid)
        Operation.objects.filter(pk=operation.pk).update(
            finished=timezone.now() - timedelta(minutes=5)
        )
        assert running_backup(env) is None
    finally:
        process.kill()
        process.wait()
