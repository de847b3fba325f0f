"""PostgreSQL backups end to end: pg_dump streamed into restic, copied to
every tier, and restored with plain restic and pg_restore."""

import pytest

from backups.models import BackupRecord
from backups.operations import backup_service
from backups.tiers import repository
from portal.operations import run_inline
from stacks import engine
from stacks.models import Service
from tests.stacks.live import wait_for

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

SEED = """
CREATE TABLE items (id serial PRIMARY KEY, name text, payload bytea);
INSERT INTO items (name, payload)
  SELECT 'item-' || i, decode(md5(i::text), 'hex') FROM generate_series(1, 2500) i;
CREATE TABLE notes (id int, body text);
INSERT INTO notes SELECT i, repeat('n', 50) FROM generate_series(1, 40) i;
"""


def psql(client, container, sql, database="multimodal"):
    result = engine.exec_run(
        client,
        container,
        [
            "psql",
            "-At",
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "multimodal",
            "-d",
            database,
            "-c",
            sql,
        ],
    )
    assert result.ok, result.stderr_text()
    return result.stdout.decode().strip()


@pytest.fixture
def postgres(running, docker_client):
    env = running("postgres")
    state = engine.service_states(
        docker_client, env.project_name(Service.objects.get(name="postgres").stack)
    )["postgres"]
    psql(docker_client, state.id, SEED)
    return env, state.id


@pytest.fixture
def scratch_postgres(docker_client, docker_labels):
    """A throw-away PostgreSQL server to restore into."""
    container = docker_client.containers.run(
        "stackportal/postgres:local",
        labels=docker_labels,
        environment={
            "POSTGRES_HOST_AUTH_METHOD": "trust",
            "POSTGRES_USER": "multimodal",
        },
        detach=True,
    )

    def healthy():
        container.reload()
        return container.attrs["State"].get("Health", {}).get("Status") == "healthy"

    wait_for(healthy, timeout=90, what="the scratch postgres to be healthy")
    return container


def run_backup(environment, operator, **options):
    service = Service.objects.get(name="postgres")
    operation = run_inline(
        backup_service(environment, service, user=operator, enqueue=False, **options)
    )
    assert operation.status == "succeeded", operation.error
    return operation


def test_full_backup_reaches_every_tier_and_restores_with_plain_restic(
    postgres, operator, scratch_postgres, docker_client
):
    env, _container = postgres
    operation = run_backup(env, operator)
    records = {r.tier.name: r for r in BackupRecord.objects.filter(operation=operation)}
    assert set(records) == {"local", "remote", "cloud", "tape"}
    assert {r.status for r in records.values()} == {"succeeded"}
    local = records["local"]
    assert local.manifest["tables"] == {"public.items": 2500, "public.notes": 40}
    assert local.manifest["server_version"].startswith("15.")
    assert f"record={local.pk}" in local.tags and f"env={env.name}" in local.tags
    assert local.bytes_total > 0 and local.bytes_added > 0
    for name in ("remote", "cloud"):
        assert records[name].copied_from == local
        assert records[name].snapshot_id and records[name].snapshot_id != ""

    # Restore from each repository with restic alone, into a scratch server.
    for tier in ("local", "remote", "cloud"):
        repo = repository(records[tier].tier, env)
        database = f"restored_{tier}"
        psql(
            docker_client,
            scratch_postgres.id,
            f"CREATE DATABASE {database}",
            "postgres",
        )
        with repo.dump(records[tier].snapshot_id, "/multimodal.full.dump") as data:
            restore = engine.exec_stream(
                docker_client,
                scratch_postgres.id,
                ["pg_restore", "-U", "multimodal", "-d", database, "--no-owner"],
                stdin=data,
            )
            with restore:
                b"".join(restore)
        assert restore.result.exit_code == 0, restore.result.stderr_text()
        assert (
            psql(
                docker_client,
                scratch_postgres.id,
                "SELECT count(*) FROM items",
                database,
            )
            == "2500"
        )
        assert psql(
            docker_client,
            scratch_postgres.id,
            "SELECT md5(string_agg(name || encode(payload, 'hex'), ',' ORDER BY id)) "
            "FROM items",
            database,
        ) == psql(
            docker_client,
            _container,
            "SELECT md5(string_agg(name || encode(payload, 'hex'), ',' ORDER BY id)) "
            "FROM items",
        )


def test_schema_and_data_strategies(postgres, operator, docker_client):
    env, _container = postgres
    for strategy, expected in (("schema", b"CREATE TABLE"), ("data", b"item-2500")):
        operation = run_backup(env, operator, strategy=strategy)
        record = BackupRecord.objects.get(operation=operation, tier__name="local")
        assert record.strategy == strategy
        repo = repository(record.tier, env)
        with repo.dump(record.snapshot_id, f"/multimodal.{strategy}.dump") as data:
            dump = b"".join(data)
        listing = engine.exec_run(
            docker_client, _container, ["pg_restore", "-f", "-"], stdin=[dump]
        )
        assert expected in listing.stdout
        if strategy == "schema":
            assert b"item-2500" not in listing.stdout
