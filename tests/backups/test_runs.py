"""Backup operations as a worker runs them: a worker killed mid-backup, a
wrong password, an environment backup with a broken service, retention."""

import os
import signal
import subprocess
from pathlib import Path

import pytest

from backups.models import BackupPolicy, BackupRecord, StorageTier
from backups.operations import backup_environment, backup_service, prune_backups
from backups.tiers import repository
from portal.operations import reap_operations, run_inline
from stacks import engine
from stacks.models import Service
from tests.portal.helpers import wait_for

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

# 30,000 rows of 1 KiB of md5 output: a dump that zlib cannot shrink much.
SEED = """
CREATE TABLE blobs (id int PRIMARY KEY, data bytea);
INSERT INTO blobs
  SELECT i, decode(string_agg(md5(i::text || '-' || j::text), ''), 'hex')
    FROM generate_series(1, 30000) i, generate_series(1, 64) j GROUP BY i;
"""


def postgres_container(client, environment):
    service = Service.objects.get(name="postgres")
    return engine.service_states(client, environment.project_name(service.stack))[
        "postgres"
    ].id


def seed(client, environment, sql=SEED):
    result = engine.exec_run(
        client,
        postgres_container(client, environment),
        [
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-U",
            "multimodal",
            "-d",
            "multimodal",
            "-c",
            sql,
        ],
    )
    assert result.ok, result.stderr_text()


def only_local(environment):
    BackupPolicy.objects.filter(environment=environment).update(tiers=["local"])


def restic_running(repo_url):
    """Return the pids of restic backups writing to ``repo_url``."""
    found = subprocess.run(
        ["pgrep", "-f", f"restic --repo {repo_url} backup "],
        capture_output=True,
        text=True,
    )
    return [int(p) for p in found.stdout.split()]


def test_worker_killed_mid_backup_leaves_no_good_record_and_a_sound_repository(
    running, operator, docker_client, worker_process
):
    env = running("postgres")
    only_local(env)
    seed(docker_client, env)
    repo = repository(StorageTier.objects.get(name="local"), env)
    repo.ensure()
    worker = worker_process(kind="long", imports=())
    operation = backup_service(env, Service.objects.get(name="postgres"), user=operator)
    pids = wait_for(
        lambda: restic_running(repo.url), timeout=120, message="restic to start"
    )
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    # Gone, not only dead: a zombie's pid still holds its lock.
    wait_for(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in pids),
        timeout=30,
        message="restic to be gone",
    )

    reap_operations()
    operation.refresh_from_db()
    assert operation.status == "failed"
    assert not BackupRecord.objects.filter(operation=operation, status="succeeded")
    assert repo.snapshots() == []
    repo.unlock()
    assert repo.check().ok

    again = run_inline(
        backup_service(
            env, Service.objects.get(name="postgres"), user=operator, enqueue=False
        )
    )
    assert again.status == "succeeded", again.error
    (left,) = BackupRecord.objects.filter(operation=operation)
    assert left.status == "failed" and left.error.startswith("Abandoned")
    assert len(repo.snapshots()) == 1


def test_wrong_repository_password_fails_the_backup_naming_the_tier(
    running, operator, docker_client
):
    env = running("postgres")
    only_local(env)
    tier = StorageTier.objects.get(name="local")
    repository(tier, env).ensure()
    env.settings["variables"]["BACKUP_REPOSITORY_PASSWORD"] = "wrong-one"
    env.save()
    operation = run_inline(
        backup_service(
            env, Service.objects.get(name="postgres"), user=operator, enqueue=False
        )
    )
    assert operation.status == "failed"
    assert operation.error == (
        f"local tier of {env.name}: wrong repository password (the value of the "
        "variable the tier's password names does not open this repository)"
    )
    assert "wrong-one" not in operation.error


def test_environment_backup_runs_every_service_and_fails_only_the_broken_one(
    running, operator
):
    """Only postgres runs: the other services' backups fail, each on its own,
    and postgres's succeeds."""
    env = running("postgres")
    only_local(env)
    operations = backup_environment(env, user=operator, enqueue=False)
    # Every service, then the configuration.
    assert operations[-1].kind == "backup.config"
    services = {op.service.name: op for op in operations[:-1]}
    assert {"postgres", "redis", "qdrant", "minio"} <= set(services)
    finished = {name: run_inline(op) for name, op in services.items()}
    assert finished["postgres"].status == "succeeded", finished["postgres"].error
    config = run_inline(operations[-1])
    assert config.status == "succeeded", config.error
    redis = finished["redis"]
    assert redis.status == "failed"
    assert redis.error.startswith(
        f"Service redis has no running container in {env.name}"
    )
    assert BackupRecord.objects.filter(
        environment=env, service_name="postgres", status="succeeded"
    ).exists()


def test_prune_dry_run_lists_what_goes_and_removes_nothing(running, operator):
    env = running("postgres")
    only_local(env)
    tier = StorageTier.objects.get(name="local")
    tier.settings = {**tier.settings, "keep": {"last": 1}}
    tier.save()
    postgres = Service.objects.get(name="postgres")
    for _ in range(3):
        op = run_inline(backup_service(env, postgres, user=operator, enqueue=False))
        assert op.status == "succeeded", op.error
    repo = repository(tier, env)
    before = {s["id"] for s in repo.snapshots()}
    assert len(before) == 3

    dry = run_inline(prune_backups(env, user=operator, dry_run=True, enqueue=False))
    assert dry.status == "succeeded", dry.error
    assert dry.plan["tiers"]["local"] == {"last": 1}
    assert len(dry.result["tiers"]["local"]["removed"]) == 2
    assert {s["id"] for s in repo.snapshots()} == before
    assert not BackupRecord.objects.filter(pruned__isnull=False).exists()
    lines = list(dry.lines.values_list("text", flat=True))
    assert any("would remove 2 snapshot(s), 1 kept" in line for line in lines)

    real = run_inline(prune_backups(env, user=operator, enqueue=False))
    assert real.status == "succeeded", real.error
    after = {s["id"] for s in repo.snapshots()}
    assert len(after) == 1 and after < before
    pruned = BackupRecord.objects.filter(environment=env, pruned__isnull=False)
    assert pruned.count() == 2
    newest = BackupRecord.objects.filter(environment=env).order_by("-id").first()
    assert newest.restorable and newest.snapshot_id in after
    assert repo.check().ok
