"""Restores onto a live service with real restic on the real engine: the
rows of the backup come back; the dry run and bad input touch nothing."""

import pytest
import redis as redis_lib

from backups.models import BackupRecord
from backups.operations import backup_service, restore_backup
from portal.choices import OperationStatus
from portal.models import Operation
from portal.operations import ConfirmationMismatch, PlanError, run_inline
from stacks import engine
from stacks.models import Environment, Service
from tests.backups.records import make_user  # noqa: F401
from tests.backups.test_postgres import SEED, psql
from tests.backups.test_redis import redis_service, run_backup  # noqa: F401
from tests.backups.test_redis import sizes as redis_sizes
from tests.backups.test_redis import values as redis_values
from tests.backups.test_runs import only_local

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(600),
]


def container_of(docker_client, env, name="postgres"):
    service = Service.objects.get(name=name)
    return engine.service_states(docker_client, env.project_name(service.stack))[name]


def counts(docker_client, container):
    return psql(
        docker_client,
        container,
        "SELECT (SELECT count(*) FROM items) || ',' || (SELECT count(*) FROM notes)",
    )


@pytest.fixture
def backed_up(running, operator, docker_client):
    """A seeded postgres backed up into the local tier, then changed."""
    env = running("postgres")
    only_local(env)
    container = container_of(docker_client, env).id
    psql(docker_client, container, SEED)
    operation = run_inline(
        backup_service(
            env, Service.objects.get(name="postgres"), user=operator, enqueue=False
        )
    )
    assert operation.status == "succeeded", operation.error
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    psql(
        docker_client,
        container,
        "DELETE FROM items WHERE id > 100; TRUNCATE notes; "
        "CREATE TABLE later (v int); INSERT INTO later VALUES (1);",
    )
    assert counts(docker_client, container) == "100,0"
    return env, record, container


def restore(env, operator, **options):
    options.setdefault("confirm", f"{env.name}/postgres")
    return restore_backup(
        env,
        Service.objects.get(name="postgres"),
        user=operator,
        enqueue=False,
        **options,
    )


def test_restore_onto_live_postgres_brings_back_the_rows_of_its_backup(
    backed_up, operator, docker_client
):
    env, record, container = backed_up
    operation = restore(env, operator, record=record.pk)
    assert operation.plan["record"] == record.pk
    assert operation.plan["container"]["id"] == container[:12]
    assert operation.plan["overwrites"]["database"] == "multimodal"
    operation = run_inline(operation)
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert counts(docker_client, container) == "2500,40"
    # A table created since the backup is not in the dump: it stays.
    assert psql(docker_client, container, "SELECT count(*) FROM later") == "1"
    assert {c["what"] for c in operation.result["compared"]} >= {
        "rows of public.items",
        "rows of public.notes",
    }
    lines = "\n".join(line.text for line in operation.lines.order_by("seq"))
    assert "postgres: ready" in lines


def test_restore_by_snapshot_id_and_dry_run_changes_nothing(
    backed_up, operator, docker_client
):
    env, record, container = backed_up
    operation = run_inline(
        restore(
            env, operator, snapshot=record.snapshot_id[:8], dry_run=True, confirm=None
        )
    )
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert operation.result["dry_run"] is True
    assert operation.plan["snapshot"] == record.snapshot_id
    assert counts(docker_client, container) == "100,0"


def test_bad_input_is_refused_before_anything_is_touched(
    backed_up, operator, docker_client, backup_environment
):
    env, record, container = backed_up
    with pytest.raises(PlanError, match="No backup record #999999"):
        restore(env, operator, record=999999)
    with pytest.raises(PlanError, match="No backup record holds snapshot deadbeef"):
        restore(env, operator, snapshot="deadbeef")
    with pytest.raises(PlanError, match="is not a restic snapshot id"):
        restore(env, operator, snapshot="../etc")
    with pytest.raises(PlanError, match="is of postgres, not redis"):
        restore_backup(
            env,
            Service.objects.get(name="redis"),
            user=operator,
            record=record.pk,
            confirm=f"{env.name}/redis",
            enqueue=False,
        )
    demo = Environment.objects.get(name="demo")
    with pytest.raises(PlanError, match=f"is of environment {env.name}, not demo"):
        restore_backup(
            demo,
            Service.objects.get(name="postgres"),
            user=operator,
            snapshot=record.snapshot_id,
            confirm="demo/postgres",
            enqueue=False,
        )
    with pytest.raises(ConfirmationMismatch):
        restore(env, operator, record=record.pk, confirm=f"{env.name}/redis")
    assert not Operation.objects.filter(kind="backup.restore").exists()
    assert counts(docker_client, container) == "100,0"


def test_restore_command_plans_refuses_and_restores(backed_up, operator, docker_client):
    from io import StringIO

    from django.core.management import CommandError, call_command

    env, record, container = backed_up
    args = ("backup", "restore", "--env", env.name, "--user", operator.username)
    args += ("--service", "postgres")
    out = StringIO()
    call_command(*args, "--record", str(record.pk), "--dry-run", stdout=out)
    assert "Dry run: nothing was changed." in out.getvalue()
    assert counts(docker_client, container) == "100,0"
    with pytest.raises(CommandError, match="No backup record holds snapshot 0bad"):
        call_command(*args, "--snapshot", "0bad", "--confirm", "x", stdout=StringIO())
    out = StringIO()
    call_command(*args, "--record", str(record.pk), stdout=out)
    assert f"container {container_of(docker_client, env).name}" in out.getvalue()
    assert (
        out.getvalue()
        .rstrip()
        .endswith(
            f"Nothing was changed. To run it: --confirm {env.name}/postgres "
            f"(CONFIRM={env.name}/postgres for make)."
        )
    )
    assert counts(docker_client, container) == "100,0"
    out = StringIO()
    call_command(
        *args,
        "--snapshot",
        record.snapshot_id[:10],
        "--confirm",
        f"{env.name}/postgres",
        stdout=out,
    )
    assert "succeeded" in out.getvalue()
    assert counts(docker_client, container) == "2500,40"


def test_restore_button_plans_confirms_and_restores_through_a_worker(
    backed_up, operator, docker_client, client, run_jobs
):
    from django.urls import reverse

    env, record, container = backed_up
    client.force_login(operator)
    page = client.get(record.get_absolute_url()).content.decode()
    url = reverse("backups:record_restore", args=[env.name, record.pk])
    assert f'href="{url}"' in page
    plan_page = client.get(url).content.decode()
    name = container_of(docker_client, env).name
    assert f"<code>{name}</code> ({container[:12]})" in plan_page
    assert f"Type <code>{env.name}/postgres</code> to confirm" in plan_page
    # A mistyped confirmation: refused, nothing requested.
    response = client.post(url, {"confirm": f"{env.name}/redis"}, follow=True)
    assert f"{env.name}/postgres" in response.content.decode()
    assert not Operation.objects.filter(kind="backup.restore").exists()
    response = client.post(url, {"confirm": f"{env.name}/postgres"})
    operation = Operation.objects.get(kind="backup.restore")
    assert response.url == operation.get_absolute_url()
    assert operation.requested_by == operator and operation.status == "queued"
    run_jobs("long")
    operation.refresh_from_db()
    assert operation.status == OperationStatus.SUCCEEDED, operation.error
    assert counts(docker_client, container) == "2500,40"


def test_protected_restore_needs_another_approver_and_a_fresh_verified_backup(
    backed_up,
    operator,
    docker_client,
    make_user,  # noqa: F811
    run_jobs,
):
    from django.core.exceptions import PermissionDenied

    from backups.operations import verify_backups
    from portal.operations import approve_operation

    env, record, container = backed_up
    env.protected = True
    env.save(update_fields=["protected"])
    approver = make_user("approver", "approver", env)

    def request_and_approve():
        operation = restore(env, operator, record=record.pk)
        assert operation.status == OperationStatus.AWAITING_APPROVAL
        with pytest.raises(PermissionDenied, match="four eyes"):
            approve_operation(operation, user=operator)
        approve_operation(operation, user=approver)
        run_jobs("long")
        operation.refresh_from_db()
        return operation

    # The only backup is not verified: the restore refuses to start.
    refused = request_and_approve()
    assert refused.status == OperationStatus.FAILED
    assert "needs a fresh verified backup" in refused.error
    assert "no verified full backup in local" in refused.error
    assert counts(docker_client, container) == "100,0"
    # A backup of the state about to be overwritten, verified: it runs.
    latest = run_inline(
        backup_service(
            env, Service.objects.get(name="postgres"), user=operator, enqueue=False
        )
    )
    assert latest.status == "succeeded", latest.error
    checked = run_inline(verify_backups(env, user=operator, enqueue=False))
    assert checked.status == "succeeded", checked.error
    done = request_and_approve()
    assert done.status == OperationStatus.SUCCEEDED, done.error
    assert done.approved_by == approver
    fresh = BackupRecord.objects.get(operation=latest, tier__name="local")
    assert [b["record"] for b in done.result["backups"]] == [fresh.pk]
    assert counts(docker_client, container) == "2500,40"


# -- Redis: the server stopped, its files replaced, started again ---------------


@pytest.mark.parametrize("strategy", ["rdb", "aof"])
def test_restore_onto_live_redis_brings_back_the_keys_of_its_backup(
    redis_service,  # noqa: F811  (the fixture of test_redis)
    operator,
    docker_client,
    strategy,
):
    """The demo's Redis runs with appendonly: an rdb backup goes back as the
    base of a fresh append-only folder, an aof backup as the folder itself.
    Either way what the server holds afterwards is the backup, whole: keys
    changed since come back, keys deleted since return, keys added since go."""
    env, container, port, names = redis_service
    only_local(env)
    before = redis_values("127.0.0.1", port, names)
    operation = run_backup(env, operator, strategy)
    assert operation.status == "succeeded", operation.error
    record = BackupRecord.objects.get(operation=operation, tier__name="local")

    main = redis_lib.Redis(host="127.0.0.1", port=port, db=0, socket_timeout=10)
    other = redis_lib.Redis(host="127.0.0.1", port=port, db=2, socket_timeout=10)
    try:
        main.delete("profile", "queue")
        main.set("item:0", b"changed")
        main.set("later", b"written after the backup")
        other.flushdb()
        assert main.exists("profile", "queue") == 0 and other.dbsize() == 0
    finally:
        main.close()
        other.close()

    redis = Service.objects.get(name="redis")
    planned = restore_backup(
        env,
        redis,
        user=operator,
        enqueue=False,
        record=record.pk,
        confirm=f"{env.name}/redis",
    )
    assert planned.plan["container"]["id"] == container[:12]
    overwrites = planned.plan["overwrites"]
    assert overwrites["dir"] == "/data" and "dump.rdb" in overwrites["files"]
    operation = run_inline(planned)
    assert operation.status == OperationStatus.SUCCEEDED, operation.error

    assert redis_values("127.0.0.1", port, names) == before
    assert redis_sizes("127.0.0.1", port, [0, 2]) == record.manifest["databases"]
    check = redis_lib.Redis(host="127.0.0.1", port=port, db=0, socket_timeout=10)
    try:
        assert check.exists("later") == 0
    finally:
        check.close()
    # The same container, stopped and started again.
    after = container_of(docker_client, env, "redis")
    assert after.id == container and after.state == "running"
    lines = "\n".join(line.text for line in operation.lines.order_by("seq"))
    assert "redis: stopping Redis to replace its files in " in lines
    assert "redis: ready" in lines
    assert {c["what"] for c in operation.result["compared"]} >= {"keys"}
