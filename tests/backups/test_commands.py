"""manage.py backup status|full|service|list|schedule and manage.py crontab,
on real rows and real operations; the cron lines parsed with croniter and run
with /bin/sh as cron runs them."""

import getpass
import os
import shlex
import subprocess
import sys
from datetime import datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from croniter import croniter
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from backups.models import BackupPolicy, BackupRecord
from portal.models import Operation
from portal.operations import request_operation
from stacks.models import Service
from tests.backups.records import *  # noqa: F403
from tests.conftest import TEST_REDIS_URL

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
# The scheduled strategy of every service of the real configuration.
SCHEDULED = {
    "postgres": "full",
    "redis": "rdb",
    "qdrant": "collection",
    "minio": "bucket",
    "vllm": "volumes",
    "multimodal-worker": "volumes",
    "allure-results": "volumes",
    "elasticsearch": "volumes",
}


@pytest.fixture
def env(make_backup_environment):
    return make_backup_environment("cmd")


@pytest.fixture
def admin(make_user):
    return make_user("root", is_superuser=True)


def run(*args, expect_error=None):
    """Run ``manage.py <args>``; return (stdout, stderr, error message)."""
    out, err = StringIO(), StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
    except CommandError as exc:
        if expect_error is None:
            raise
        return out.getvalue(), err.getvalue(), str(exc)
    assert expect_error is None or expect_error is False, "no CommandError raised"
    return out.getvalue(), err.getvalue(), None


# -- status ---------------------------------------------------------------------


def test_status_exits_nonzero_and_names_the_overdue(env, admin, make_record):
    make_record(env, age=timedelta(hours=2))
    make_record(env, "redis", "rdb", age=timedelta(days=2))
    out, _err, error = run(
        "backup", "status", "--env", env.name, "--user", "root", expect_error=True
    )
    assert error == f"7 scheduled backup(s) of {env.name} overdue."
    lines = out.splitlines()
    assert lines[0] == f"Backups of {env.name} in local, scheduled 30 2 * * *"
    assert lines[1].split() == [
        "SERVICE",
        "STRATEGY",
        "TIER",
        "NEWEST",
        "GOOD",
        "AGE",
        "ALLOWED",
        "SIZE",
        "ADDED",
        "SNAPSHOT",
        "STATE",
        "PROOF",
    ]
    postgres = next(line for line in lines if line.startswith("postgres "))
    assert "2 h 00 min" in postgres and "1 d 06 h" in postgres
    assert postgres.split()[-2:] == ["ok", "unverified"] and "3.0 MB" in postgres
    assert "Overdue (7):" in out
    assert (
        "  redis rdb in local: newest good backup 2 d 00 h old (allowed 1 d 06 h)"
        in (out)
    )
    assert "  qdrant collection in local: never backed up" in out


def test_status_succeeds_when_nothing_is_overdue(env, admin, make_record):
    for service, strategy in SCHEDULED.items():
        make_record(env, service, strategy, age=timedelta(hours=3))
    # A schema dump taken by hand two weeks ago is listed, not judged.
    make_record(env, "postgres", "schema", age=timedelta(days=14))
    out, _err, error = run(
        "backup", "status", "--env", env.name, "--user", "root", expect_error=True
    )
    schema = next(line for line in out.splitlines() if " schema " in line)
    assert schema.split()[-3:] == ["on", "demand", "unverified"]
    # Good backups, none verified or proven yet: the RPO is not met.
    assert error == (
        f"{len(SCHEDULED)} scheduled backup(s) of {env.name} have no proven or "
        "verified backup within their allowed age."
    )
    assert "  postgres full in local: no proven or verified backup" in out.splitlines()
    BackupRecord.objects.filter(environment=env).update(verified=timezone.now())
    out, _err, _error = run("backup", "status", "--env", env.name, "--user", "root")
    assert out.splitlines()[-1] == (
        f"No scheduled backup of {env.name} is overdue; each has a proven or "
        "verified backup within its allowed age."
    )


def test_status_names_failures_since_the_last_good_backup(env, admin, make_record):
    make_record(env, age=timedelta(hours=5))
    failed = make_record(
        env,
        status="failed",
        age=timedelta(hours=1),
        error="Traceback...\nlocal tier of x: wrong repository password",
    )
    out, _err, _error = run(
        "backup", "status", "--env", env.name, "--user", "root", expect_error=True
    )
    assert f"Failed: postgres full in local #{failed.pk} at " in out
    assert out.count("local tier of x: wrong repository password") == 1
    postgres = next(line for line in out.splitlines() if line.startswith("postgres "))
    assert postgres.endswith("ok, 1 failed since  unverified")


def test_status_refuses_a_user_without_a_role(env, make_user):
    make_user("nobody")
    _out, _err, error = run(
        "backup", "status", "--env", env.name, "--user", "nobody", expect_error=True
    )
    assert error == f"nobody may not view in environment {env.name}."


def test_status_without_user_acts_as_the_system_user(env):
    _out, _err, error = run("backup", "status", "--env", env.name, expect_error=True)
    assert error.startswith("No --user given, and the system user 'portal-system'")


# -- list, schedule -------------------------------------------------------------


def test_list_filters_records(env, admin, make_record):
    good = make_record(env, age=timedelta(hours=2))
    make_record(env, "redis", "rdb", age=timedelta(hours=1))
    left = make_record(env, status="running", age=timedelta(minutes=30))
    out, _err, _error = run(
        "backup", "list", "--env", env.name, "--service", "postgres", "--user", "root"
    )
    lines = out.splitlines()
    assert lines[0].split()[:6] == [
        "ID",
        "CREATED",
        "SERVICE",
        "STRATEGY",
        "TIER",
        "STATUS",
    ]
    assert [line.split()[0] for line in lines[1:]] == [str(left.pk), str(good.pk)]
    assert "Abandoned: the operation that took it ended without finishing it." in out
    out, _err, _error = run(
        "backup", "list", "--env", env.name, "--status", "failed", "--user", "root"
    )
    assert [line.split()[0] for line in out.splitlines()[1:]] == [str(left.pk)]
    out, _err, _error = run(
        "backup", "list", "--env", env.name, "--tier", "remote", "--user", "root"
    )
    assert out == f"No backup records of {env.name} match.\n"


def schedule_blocks(out):
    """Return {name: (heading, next-runs line, cron line)} of ``backup
    schedule``'s output, and the lines before the first block."""
    lines = out.splitlines()
    blocks, head = {}, []
    i = 0
    while i < len(lines):
        line = lines[i]
        name, sep, _rest = line.partition(": ")
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if sep and not line.startswith(" ") and following.startswith("  next runs"):
            blocks[name] = (line, lines[i + 1], lines[i + 2].strip())
            i += 3
            continue
        if not blocks:
            head.append(line)
        i += 1
    return blocks, head


def test_schedule_shows_the_cron_line_and_next_runs(env, admin):
    out, _err, _error = run("backup", "schedule", "--env", env.name, "--user", "root")
    blocks, head = schedule_blocks(out)
    assert head == []
    assert set(blocks) == {
        f"backup-{env.name}",
        f"backup-verify-{env.name}",
        f"backup-alerts-{env.name}",
        f"backup-drill-{env.name}",
    }
    heading, next_line, cron = blocks[f"backup-{env.name}"]
    assert heading == (
        f"backup-{env.name}: 30 2 * * * (back up every service into local)"
    )
    runs = next_line.removeprefix("  next runs (host time): ").split(", ")
    expected = croniter("30 2 * * *", datetime.now())
    assert runs == [f"{expected.get_next(datetime):%Y-%m-%d %H:%M}" for _ in range(3)]
    schedule, user, command = _split_line(cron)
    assert schedule == "30 2 * * *"
    assert shlex.split(command)[2:7] == [
        "backup",
        "full",
        "--env",
        env.name,
        "--scheduled",
    ]


def test_schedule_of_an_environment_without_one(env, admin):
    BackupPolicy.objects.filter(environment=env).update(schedule="")
    out, _err, _error = run("backup", "schedule", "--env", env.name, "--user", "root")
    blocks, head = schedule_blocks(out)
    assert head == [
        f"Environment {env.name} has no backup schedule (backup_schedule in "
        "configs/backup-strategies.yaml)."
    ]
    # What is already there is still verified, and its age still watched.
    assert set(blocks) == {
        f"backup-verify-{env.name}",
        f"backup-alerts-{env.name}",
        f"backup-drill-{env.name}",
    }


def test_schedule_shows_the_verification_and_alert_lines(env, admin):
    out, _err, _error = run("backup", "schedule", "--env", env.name, "--user", "root")
    blocks, _head = schedule_blocks(out)
    heading, _next, cron = blocks[f"backup-verify-{env.name}"]
    assert heading == (
        f"backup-verify-{env.name}: 0 5 * * * (check the repositories and re-read "
        "the next 1/7 of their packs (all within 7 days))"
    )
    schedule, user, command = _split_line(cron)
    assert schedule == "0 5 * * *"
    assert shlex.split(command)[2:7] == [
        "backup",
        "verify",
        "--env",
        env.name,
        "--scheduled",
    ]
    _heading, _next, cron = blocks[f"backup-alerts-{env.name}"]
    schedule, user, command = _split_line(cron)
    assert schedule == "*/15 * * * *"
    assert shlex.split(command)[2:6] == ["backup", "alerts", "--env", env.name]


# -- full, service: real operations ----------------------------------------------


@pytest.mark.docker
@pytest.mark.django_db(transaction=True)
def test_full_runs_every_service_reports_each_and_fails(
    env, admin, redis_conn, docker_client
):
    """Nothing runs in this environment: each backup fails on its own with
    the reason, the others still run, and the command exits non-zero."""
    out, err, error = run(
        "backup", "full", "--env", env.name, "--user", "root", expect_error=True
    )
    operations = Operation.objects.filter(environment=env, kind="backup.service")
    assert operations.count() == len(SCHEDULED)
    assert {op.status for op in operations} == {"failed"}
    names = [op.service.name for op in operations.order_by("created")]
    # The configuration needs no running service: it is backed up.
    config = Operation.objects.get(environment=env, kind="backup.config")
    assert config.status == "succeeded", config.error
    assert error == (
        f"{len(SCHEDULED)} of {len(SCHEDULED) + 1} backups of {env.name} did not "
        f"succeed: {', '.join(names)}."
    )
    assert "== backup.config\n" in out
    for name in names:
        assert f"== {name}\n" in out
        assert (
            f"Service {name} has no running container in {env.name} (none); start "
            "it to back it up." in out
        )
        assert f"{name}: Operation " in err
    assert f"Backup of {env.name}:" in out


@pytest.mark.django_db(transaction=True)
def test_scheduled_full_skips_while_a_backup_of_the_environment_runs(
    env, admin, redis_conn
):
    running = request_operation(
        "backup.service",
        user=admin,
        environment=env,
        service=Service.objects.get(name="postgres"),
        enqueue=False,
    )
    out, _err, _error = run(
        "backup", "full", "--env", env.name, "--scheduled", "--user", "root"
    )
    assert out.startswith(
        f"Skipped: a backup of {env.name} is still running (operation "
        f"{running.pk}, backup.service of {env.name}/core/postgres, queued since "
    )
    assert out.rstrip().endswith("this scheduled run does nothing.")
    assert Operation.objects.filter(environment=env).count() == 1


def test_full_enqueue_queues_one_operation_per_service(
    env, admin, redis_conn, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        out, _err, _error = run(
            "backup",
            "full",
            "--env",
            env.name,
            "--enqueue",
            "--backup-type",
            "full",
            "--user",
            "root",
        )
    operations = Operation.objects.filter(environment=env)
    services = operations.filter(kind="backup.service")
    assert sorted(op.service.name for op in services) == sorted(SCHEDULED)
    # And the configuration, last.
    assert operations.filter(kind="backup.config", service=None).count() == 1
    assert operations.count() == len(SCHEDULED) + 1
    assert {op.status for op in operations} == {"queued"}
    assert {op.parameters["backup_type"] for op in operations} == {"full"}
    assert out.count("Queued on long.") == len(SCHEDULED) + 1
    assert "  postgres             ok      operation " in out


def test_service_passes_strategy_and_backup_type(env, admin, redis_conn):
    out, _err, _error = run(
        "backup",
        "service",
        "--env",
        env.name,
        "--service",
        "postgres",
        "--type",
        "schema",
        "--backup-type",
        "differential",
        "--enqueue",
        "--user",
        "root",
    )
    operation = Operation.objects.get(environment=env)
    assert operation.parameters == {"strategy": "schema", "backup_type": "differential"}
    assert operation.plan["tiers"] == [{"name": "local", "kind": "filesystem"}]
    assert (
        f"Operation {operation.pk}: backup.service on {env.name}/core/postgres" in out
    )


def test_service_with_a_strategy_it_does_not_have(env, admin):
    _out, _err, error = run(
        "backup",
        "service",
        "--env",
        env.name,
        "--service",
        "redis",
        "--type",
        "full",
        "--user",
        "root",
        expect_error=True,
    )
    assert error == "Service redis (rdb) has no 'full' backup (it has: rdb, aof)."


def test_service_refused_to_a_viewer(env, make_user):
    make_user("vera", "viewer", env)
    _out, _err, error = run(
        "backup",
        "service",
        "--env",
        env.name,
        "--service",
        "postgres",
        "--user",
        "vera",
        expect_error=True,
    )
    assert error == f"vera may not back up in environment {env.name}."


# -- crontab --------------------------------------------------------------------


def _split_line(line):
    """Return (schedule, user, command) of a cron.d line."""
    fields = line.split(None, 6)
    return " ".join(fields[:5]), fields[5], fields[6]


def parse_cron_file(text):
    """Return (variables, [(comment lines, schedule, user, command)])."""
    variables, entries, comments = {}, [], []
    for line in text.splitlines():
        if not line.strip():
            comments = []
        elif line.startswith("#"):
            comments.append(line)
        elif "=" in line.split()[0]:
            name, _, value = line.partition("=")
            variables[name] = value
        else:
            entries.append((comments, *_split_line(line)))
            comments = []
    return variables, entries


def test_crontab_renders_one_line_per_scheduled_environment(env, admin, tmp_path):
    out, err, _error = run("crontab", "--user", "root", "--log-dir", str(tmp_path))
    variables, entries = parse_cron_file(out)
    assert variables["SHELL"] == "/bin/sh"
    assert variables["DJANGO_SETTINGS_MODULE"] == os.environ["DJANGO_SETTINGS_MODULE"]
    policies = {
        p.environment.name: p.schedule
        for p in BackupPolicy.objects.select_related("environment").exclude(schedule="")
    }
    seen, verified, drilled = {}, {}, {}
    start = datetime(2025, 1, 1)
    for comments, schedule, user, command in entries:
        assert croniter.is_valid(schedule)
        argv = shlex.split(command)
        assert argv[0] == os.path.abspath(sys.executable)
        assert argv[1] == str(ROOT / "manage.py")
        name = argv[5]
        if argv[2] != "backup":
            continue  # another app's schedule (retention's cleanups)
        if argv[3] == "alerts":
            assert schedule == "*/15 * * * *"
            continue
        if argv[3] == "drill":
            assert argv[2:5] == ["backup", "drill", "--env"]
            assert "--scheduled" in argv
            assert schedule == "30 5 * * 0"
            drilled[name] = user
            continue
        if argv[3] == "verify":
            assert argv[2:5] == ["backup", "verify", "--env"]
            assert argv[-2:] == [f">>{tmp_path}/backup-verify-{name}.log", "2>&1"] or (
                argv[-3:] == [">>", f"{tmp_path}/backup-verify-{name}.log", "2>&1"]
            )
            assert schedule == "0 5 * * *"
            verified[name] = user
            continue
        assert argv[2:5] == ["backup", "full", "--env"]
        assert argv[6:] == [
            "--scheduled",
            "--user",
            "root",
            ">>",
            f"{tmp_path}/backup-{name}.log",
            "2>&1",
        ]
        # croniter reads the line's fields as the stored schedule.
        assert croniter(schedule, start).get_next(datetime) == croniter(
            policies[name], start
        ).get_next(datetime)
        assert comments[-1].startswith(f"# {name}: back up every service into ")
        seen[name] = user
    assert set(seen) == set(policies) and env.name in seen
    assert set(seen.values()) == {getpass.getuser()}
    # Every environment with tiers has its repositories verified.
    assert env.name in verified and set(verified) >= set(policies)
    assert set(drilled) == set(verified)
    assert err == ""


def test_crontab_warns_when_the_acting_user_may_not_back_up(env, make_user):
    make_user("vera", "viewer", env)
    out, err, _error = run("crontab", "--env", env.name, "--user", "vera")
    warning = (
        f"vera may not back up in {env.name}: this line will be refused (pass --user "
        "to crontab, or grant that user a role there)"
    )
    check = warning.replace("may not back up", "may not run checks")
    assert f"# WARNING: {warning}\n" in out and f"# WARNING: {check}\n" in out
    # Three checks: the restore drills, the verification and the network
    # health probes.
    assert err == (
        f"Warning: {warning}.\nWarning: {check}.\nWarning: {check}.\n"
        f"Warning: {check}.\n"
    )


def test_crontab_install_writes_the_file_and_the_log_folder(env, admin, tmp_path):
    target = tmp_path / "cron.d" / "stack-portal"
    target.parent.mkdir()
    logs = tmp_path / "logs"
    out, _err, _error = run(
        "crontab",
        "--env",
        env.name,
        "--install",
        str(target),
        "--log-dir",
        str(logs),
        "--run-as",
        "backup",
    )
    assert out == f"Installed 5 cron line(s) in {target}; logs in {logs}.\n"
    assert logs.is_dir()
    assert target.stat().st_mode & 0o777 == 0o644
    _variables, entries = parse_cron_file(target.read_text())
    alerts, (_comments, schedule, user, command), drill, verify, health = entries
    assert health[1:3] == ("*/15 * * * *", "backup")
    assert (
        f"check_network_health --env {env.name} >> {logs}/network-health-" in health[3]
    )
    assert alerts[1:3] == ("*/15 * * * *", "backup")
    assert drill[1:3] == ("30 5 * * 0", "backup")
    assert f"backup drill --env {env.name} --scheduled" in drill[3]
    assert verify[1:3] == ("0 5 * * *", "backup")
    assert f"backup verify --env {env.name} --scheduled" in verify[3]
    assert (schedule, user) == ("30 2 * * *", "backup")
    assert f"--env {env.name} --scheduled >> {logs}/backup-{env.name}.log 2>&1" in (
        command
    )


def test_crontab_refuses_an_invalid_schedule_and_writes_nothing(env, tmp_path):
    BackupPolicy.objects.filter(environment=env).update(schedule="61 2 * * *")
    target = tmp_path / "stack-portal"
    _out, _err, error = run(
        "crontab", "--env", env.name, "--install", str(target), expect_error=True
    )
    assert error == (
        "Not a cron schedule; fix it where it is set (the admin, the YAML files, or "
        "PORTAL_STACKS for network-health), then run crontab "
        f"again:\n  {env.name}: schedule of backup-{env.name}: '61 2 * * *' is not a "
        "valid cron expression"
    )
    assert not target.exists()


def _run_cron_line(text, tmp_path):
    """Run the backup line of cron file ``text`` as cron does; return its log."""
    variables, entries = parse_cron_file(text)
    ((_comments, _schedule, _user, command),) = [
        entry for entry in entries if " backup full " in entry[3]
    ]
    environ = {
        **variables,
        "HOME": os.environ.get("HOME", "/root"),
        "PORTAL_TEST_DB": settings.DATABASES["default"]["NAME"],
        "PORTAL_TEST_REDIS_URL": TEST_REDIS_URL,
        "CHANNELS_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
    }
    done = subprocess.run(
        ["/bin/sh", "-c", command], env=environ, timeout=240, check=False
    )
    return done.returncode


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_cron_line_runs_the_backup_and_skips_while_one_runs(
    env, admin, redis_conn, docker_client, tmp_path
):
    """The installed line, run by /bin/sh with cron's environment: while a
    backup of the environment runs it skips and exits 0; otherwise it runs
    every service's backup (which fail: nothing runs there) and exits 1."""
    out, _err, _error = run(
        "crontab", "--env", env.name, "--user", "root", "--log-dir", str(tmp_path)
    )
    log = tmp_path / f"backup-{env.name}.log"
    blocker = request_operation(
        "backup.service",
        user=admin,
        environment=env,
        service=Service.objects.get(name="redis"),
        enqueue=False,
    )
    assert _run_cron_line(out, tmp_path) == 0
    assert (
        f"Skipped: a backup of {env.name} is still running (operation {blocker.pk}"
        in (log.read_text())
    )
    assert Operation.objects.filter(environment=env).count() == 1

    Operation.objects.filter(pk=blocker.pk).update(status="canceled")
    assert _run_cron_line(out, tmp_path) == 1
    text = log.read_text()
    assert (
        f"CommandError: {len(SCHEDULED)} of {len(SCHEDULED) + 1} backups of "
        f"{env.name}" in (text)
    )
    ran = Operation.objects.filter(environment=env, status="failed")
    assert ran.count() == len(SCHEDULED)
    assert {op.requested_by.username for op in ran} == {"root"}
