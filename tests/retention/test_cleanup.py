"""Cleanups on the real engine: PostgreSQL rows, Redis keys and the files of
a volume older than their policy go, younger ones stay; the dry run leaves
every count as it was; a backup before the cleanup is verified before the
first delete."""

import pytest

from backups.models import BackupRecord
from portal.operations import run_inline
from retention.models import CleanupRecord, EnvironmentRetention, RetentionItem
from retention.operations import request_cleanup
from stacks import engine
from stacks.models import Service
from tests.backups.test_postgres import psql
from tests.conftest import RUN_ID, TEST_LABEL

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

# 40 rows of 20 days, 25 of 2 days (postgres/tables/logs keeps 7 days), 3
# without a date (they stay).
ROWS = """
CREATE TABLE logs (id serial PRIMARY KEY, created_at timestamptz, body text);
INSERT INTO logs (created_at, body)
  SELECT now() - interval '20 days' - i * interval '1 minute', repeat('o', 200)
  FROM generate_series(1, 40) i;
INSERT INTO logs (created_at, body)
  SELECT now() - interval '2 days' - i * interval '1 minute', repeat('y', 200)
  FROM generate_series(1, 25) i;
INSERT INTO logs (created_at, body) VALUES (NULL, 'x'), (NULL, 'y'), (NULL, 'z');
"""


def redis(client, container, *args):
    result = engine.exec_run(client, container, ["redis-cli", *args])
    assert result.ok, result.stderr_text()
    return result.stdout.decode().strip()


def seed_keys(client, container):
    """Session keys (redis/keys/session_cache: session_cache:*, 1 day): 30 idle for
    two days (RESTORE ... IDLETIME), 20 fresh; other keys are no item's."""
    for i in range(20):
        redis(client, container, "SET", f"session_cache:young:{i}", "v" * 100)
        redis(client, container, "SET", f"other:{i}", "v")
    payload = redis(client, container, "--no-raw", "DUMP", "session_cache:young:0")
    assert payload
    script = (
        "local v = redis.call('DUMP', KEYS[1]) "
        "for i = 1, 30 do redis.call('RESTORE', 'session_cache:old:' .. i, 0, v, "
        "'IDLETIME', 172800) end return 30"
    )
    assert (
        redis(client, container, "EVAL", script, "1", "session_cache:young:0") == "30"
    )


def key_counts(client, container):
    return (
        int(redis(client, container, "EVAL", "return #redis.call('KEYS', ARGV[1])",
                  "0", "session_cache:old:*")),
        int(redis(client, container, "EVAL", "return #redis.call('KEYS', ARGV[1])",
                  "0", "session_cache:young:*")),
        int(redis(client, container, "EVAL", "return #redis.call('KEYS', ARGV[1])",
                  "0", "other:*")),
    )  # fmt: skip


def row_counts(client, container):
    return psql(
        client,
        container,
        "SELECT count(*) FILTER (WHERE created_at < now() - interval '7 days'), "
        "count(*) FILTER (WHERE created_at >= now() - interval '7 days'), "
        "count(*) FILTER (WHERE created_at IS NULL) FROM logs",
    )


FILES = """
set -e
mk() { mkdir -p "$(dirname "$1")"; head -c "$3" /dev/zero > "$1"; touch -d "$2" "$1"; }
old="$(date -d @$(( $(date +%s) - 40 * 86400 )) '+%Y-%m-%d %H:%M:%S')"
mid="$(date -d @$(( $(date +%s) - 10 * 86400 )) '+%Y-%m-%d %H:%M:%S')"
new="$(date -d @$(( $(date +%s) - 3600 )) '+%Y-%m-%d %H:%M:%S')"
for i in 1 2 3; do
  mk /data/logs/debug/old$i.log "$mid" 1000       # debug: 7 days -> goes
  mk /data/logs/error/mid$i.log "$mid" 1000       # error: 30 days -> stays
  mk /data/logs/error/old$i.log "$old" 1000       # -> goes
  mk /data/images/old$i.png "$old" 500            # the volume's 14 days -> goes
  mk /data/images/new$i.png "$new" 500            # stays
done
"""


def file_counts(client, volume):
    result = client.containers.run(
        "stackportal/busybox:local",
        ["sh", "-c", "cd /data && find . -type f | sort"],
        volumes={volume: {"bind": "/data", "mode": "ro"}},
        labels={TEST_LABEL: RUN_ID},
        remove=True,
    )
    return result.decode().split()


@pytest.fixture
def cache_volume(backup_environment, docker_client):
    """The environment's multimodal_cache volume, with files of three ages."""
    name = f"{backup_environment.name}_multimodal_cache"
    docker_client.volumes.create(
        name,
        labels={
            TEST_LABEL: RUN_ID,
            engine.labels.MANAGED: "true",
            engine.labels.ENVIRONMENT: backup_environment.name,
            engine.labels.COMPOSE_VOLUME: "multimodal_cache",
        },
    )
    docker_client.containers.run(
        "stackportal/busybox:local",
        ["sh", "-c", FILES],
        volumes={name: {"bind": "/data", "mode": "rw"}},
        labels={TEST_LABEL: RUN_ID},
        remove=True,
    )
    return name


def container_of(env, client, name):
    service = Service.objects.get(name=name)
    return engine.service_states(client, env.project_name(service.stack))[name].id


def no_backup_first(environment):
    EnvironmentRetention.objects.update_or_create(
        environment=environment, defaults={"backup_before_cleanup": False}
    )


def test_dry_run_changes_nothing_and_the_cleanup_removes_only_the_old(
    running, docker_client, operator, cache_volume
):
    env = running("postgres", "redis")
    no_backup_first(env)
    pg = container_of(env, docker_client, "postgres")
    rd = container_of(env, docker_client, "redis")
    psql(docker_client, pg, ROWS)
    seed_keys(docker_client, rd)
    rows, keys = row_counts(docker_client, pg), key_counts(docker_client, rd)
    files = file_counts(docker_client, cache_volume)
    assert rows == "40|25|3" and keys == (30, 20, 20) and len(files) == 15

    for service in ("postgres", "redis", "multimodal-worker"):
        dry = run_inline(
            request_cleanup(
                env, user=operator, service=service, dry_run=True, enqueue=False
            )
        )
        assert dry.status == "succeeded", dry.error
        assert dry.result["removed"] == 0
    # Nothing changed: the same rows, keys (and their idle times: the
    # measure touches none) and files.
    assert row_counts(docker_client, pg) == rows
    assert key_counts(docker_client, rd) == keys
    assert file_counts(docker_client, cache_volume) == files
    planned = {
        r.item: r for r in CleanupRecord.objects.filter(environment=env, dry_run=True)
    }
    logs = planned["postgres/tables/logs"]
    assert (logs.status, logs.matched, logs.kept) == ("planned", 40, 28)
    assert logs.matched_bytes > 40 * 200 and logs.oldest < logs.newest
    cache = planned["redis/keys/session_cache"]
    assert (cache.matched, cache.kept) == (30, 20)
    assert planned["multimodal-worker/log_types/debug_logs"].matched == 3
    error_logs = planned["multimodal-worker/log_types/error_logs"]
    assert (error_logs.matched, error_logs.kept) == (3, 3)
    whole = planned["volumes/multimodal_cache"]
    # The volume's own 14 days: only the images; the logs are their items'.
    assert (whole.matched, whole.kept, whole.matched_bytes) == (3, 3, 1500)

    for service in ("postgres", "redis", "multimodal-worker"):
        real = run_inline(
            request_cleanup(env, user=operator, service=service, enqueue=False)
        )
        assert real.status == "succeeded", real.error
    assert row_counts(docker_client, pg) == "0|25|3"
    assert key_counts(docker_client, rd) == (0, 20, 20)
    left = file_counts(docker_client, cache_volume)
    assert sorted(left) == sorted(
        [f"./logs/error/mid{i}.log" for i in (1, 2, 3)]
        + [f"./images/new{i}.png" for i in (1, 2, 3)]
    )
    done = CleanupRecord.objects.filter(environment=env, dry_run=False)
    removed = {r.item: (r.status, r.removed) for r in done if r.removed}
    assert removed == {
        "postgres/tables/logs": ("removed", 40),
        "redis/keys/session_cache": ("removed", 30),
        "multimodal-worker/log_types/debug_logs": ("removed", 3),
        "multimodal-worker/log_types/error_logs": ("removed", 3),
        "volumes/multimodal_cache": ("removed", 3),
    }
    assert done.get(item="volumes/multimodal_cache").freed_bytes == 1500


def test_backup_before_cleanup_is_verified_before_the_first_delete(
    running, docker_client, operator
):
    env = running("postgres")
    pg = container_of(env, docker_client, "postgres")
    psql(docker_client, pg, ROWS)
    RetentionItem.objects.filter(policy__service="postgres").exclude(
        name="logs"
    ).delete()
    # Small batches: many statements, each its own transaction.
    RetentionItem.objects.filter(policy__service="postgres", name="logs").update(
        settings={"batch_size": 7}
    )
    operation = run_inline(
        request_cleanup(env, user=operator, service="postgres", enqueue=False)
    )
    assert operation.status == "succeeded", operation.error
    assert row_counts(docker_client, pg) == "0|25|3"
    record = CleanupRecord.objects.get(operation=operation, item="postgres/tables/logs")
    # 68 rows on 2 pages: a page per batch, and a last pass.
    assert record.removed == 40 and record.detail["pages_per_batch"] == 1
    assert record.detail["batches"] >= 3
    backup = BackupRecord.objects.get(pk=record.backup_record_id)
    assert backup.status == "succeeded" and backup.verified is not None
    assert backup.operation_id == operation.pk
    # The backup's manifest was taken before the delete: all 68 rows.
    assert backup.manifest["tables"]["public.logs"] == 68
    lines = [line.text for line in operation.lines.order_by("seq")]
    verified = next(i for i, t in enumerate(lines) if "verified before" in t)
    deleted = next(i for i, t in enumerate(lines) if "row(s) deleted" in t)
    assert verified < deleted


def test_gnu_find_measures_and_deletes_in_its_own_walk(
    backup_environment, cache_volume, operator, docker_client
):
    """With a Debian helper image (GNU find: -printf, -delete) the same
    files go and stay as with BusyBox's find."""
    env = backup_environment
    env.settings = {**env.settings, "helper_image": "stackportal/base:local"}
    env.save()
    no_backup_first(env)
    dry = run_inline(
        request_cleanup(
            env, user=operator, service="multimodal-worker", dry_run=True,
            enqueue=False,
        )
    )  # fmt: skip
    assert dry.status == "succeeded", dry.error
    planned = {r.item: r for r in CleanupRecord.objects.filter(operation=dry)}
    whole = planned["volumes/multimodal_cache"]
    assert (whole.matched, whole.kept, whole.matched_bytes) == (3, 3, 1500)
    assert whole.oldest <= whole.newest
    real = run_inline(
        request_cleanup(env, user=operator, service="multimodal-worker", enqueue=False)
    )
    assert real.status == "succeeded", real.error
    left = file_counts(docker_client, cache_volume)
    assert sorted(left) == sorted(
        [f"./logs/error/mid{i}.log" for i in (1, 2, 3)]
        + [f"./images/new{i}.png" for i in (1, 2, 3)]
    )


def test_a_failed_item_fails_the_run_and_notifies_it(
    running, docker_client, operator, settings
):
    """An item that cannot be measured (no date column) fails, the others
    are still handled, and cleanup_failed names it; a stopped service's
    items are skipped, not failed."""
    from django.core import mail

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    env = running("postgres")
    no_backup_first(env)
    pg = container_of(env, docker_client, "postgres")
    psql(docker_client, pg, "CREATE TABLE logs (id int)")
    failed = run_inline(
        request_cleanup(env, user=operator, service="postgres", enqueue=False)
    )
    assert failed.status == "failed"
    assert "postgres/tables/logs" in failed.error and "created_at" in failed.error
    assert [m.subject for m in mail.outbox] == [
        f"Data Cleanup Started - {env.name}",
        f"Data Cleanup Failed - {env.name}",
    ]
    assert "postgres/tables/logs" in mail.outbox[1].body
    records = {r.item: r for r in CleanupRecord.objects.filter(operation=failed)}
    assert records["postgres/tables/logs"].status == "failed"
    assert records["postgres/tables/sessions"].status == "skipped"

    # redis is not running: skipped, with the reason; the run succeeds.
    mail.outbox.clear()
    skipped = run_inline(
        request_cleanup(env, user=operator, service="redis", enqueue=False)
    )
    assert skipped.status == "succeeded", skipped.error
    session = CleanupRecord.objects.get(
        operation=skipped, item="redis/keys/session_cache"
    )
    assert session.status == "skipped"
    assert "redis has no running container" in session.detail["note"]
    assert mail.outbox[-1].subject == f"Data Cleanup Completed - {env.name}"


def test_the_commands_dry_run_and_back_up_what_the_policies_delete(
    running, docker_client, operator
):
    from io import StringIO

    from django.core.management import call_command

    env = running("postgres")
    pg = container_of(env, docker_client, "postgres")
    psql(docker_client, pg, ROWS)
    out = StringIO()
    call_command(
        "retention", "test", "--env", env.name, "--service", "postgres",
        "--user", operator.username, stdout=out,
    )  # fmt: skip
    text = out.getvalue()
    lines = [line for line in text.splitlines() if line.startswith("postgres/")]
    logs = next(line for line in lines if line.startswith("postgres/tables/logs "))
    assert logs.split()[1:3] == ["planned", "40"]
    assert any(line.split()[1] == "skipped" for line in lines)
    assert row_counts(docker_client, pg) == "40|25|3"

    out = StringIO()
    call_command(
        "retention", "backup", "--env", env.name, "--service", "postgres",
        "--user", operator.username, stdout=out,
    )  # fmt: skip
    assert BackupRecord.objects.filter(
        environment=env, service_name="postgres", status="succeeded"
    ).exists()
    assert row_counts(docker_client, pg) == "40|25|3"
