"""Cleanups through the services' APIs on the real engine, against the
demo's stand-ins (Qdrant's collections, Elasticsearch's indices, S3's
objects), backup snapshot retention in real restic repositories, and
archive_then_delete on real PostgreSQL."""

import csv
import io
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from backups.models import BackupRecord
from backups.operations import backup_service
from backups.tiers import repository
from portal.operations import run_inline
from retention.cleaners import Context, s3_client
from retention.models import CleanupRecord, CollectionSighting, EnvironmentRetention
from retention.operations import request_cleanup
from retention.policies import environment_items
from stacks import engine
from stacks.models import Service
from tests.backups.test_postgres import psql
from tests.images.test_standins import build_images

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

# Requests from inside a stand-in container (python3 is there): method,
# URL, JSON body.
HTTP = """
import json, sys, urllib.request
method, url, body = sys.argv[1:4]
request = urllib.request.Request(url, data=body.encode() or None, method=method,
                                 headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=10) as response:
    print(response.read().decode())
"""


def container_of(env, client, name):
    service = Service.objects.get(name=name)
    return engine.service_states(client, env.project_name(service.stack))[name].id


def call(client, container, method, url, body=None):
    result = engine.exec_run(
        client,
        container,
        ["python3", "-c", HTTP, method, url, json.dumps(body) if body else ""],
    )
    assert result.ok, result.stderr_text() + result.stdout.decode()
    return json.loads(result.stdout)


def clean(env, operator, service, dry_run=False):
    operation = run_inline(
        request_cleanup(
            env, user=operator, service=service, dry_run=dry_run, enqueue=False
        )
    )
    assert operation.status == "succeeded", operation.error
    return {r.item: r for r in CleanupRecord.objects.filter(operation=operation)}


@pytest.fixture
def standins(docker_client):
    """Point stackportal/httpstub:local at this tree's stand-in (its hash tag
    is cached: a rebuild only when configs/images/httpstub changed)."""
    return build_images.build_all(docker_client, ["httpstub"], log=lambda line: None)


@pytest.fixture
def env(running):
    environment = running()
    EnvironmentRetention.objects.update_or_create(
        environment=environment, defaults={"backup_before_cleanup": False}
    )
    return environment


def test_qdrant_collections_go_by_the_time_first_seen(
    env, running, docker_client, operator
):
    running("qdrant")
    qdrant = container_of(env, docker_client, "qdrant")
    base = "http://127.0.0.1:6333/collections"
    for name in ("search_history", "embeddings", "other"):
        call(docker_client, qdrant, "PUT", f"{base}/{name}",
             {"vectors": {"size": 4, "distance": "Cosine"}})  # fmt: skip
    first = clean(env, operator, "qdrant", dry_run=True)
    # Qdrant reports no creation time: a collection is as old as the
    # portal's first sighting of it; both were seen just now.
    assert first["qdrant/collections/search_history"].kept == 1
    assert first["qdrant/collections/search_history"].matched == 0
    CollectionSighting.objects.filter(environment=env).update(
        first_seen=timezone.now() - timedelta(days=40)
    )
    planned = clean(env, operator, "qdrant", dry_run=True)
    assert planned["qdrant/collections/search_history"].matched == 1  # 30 days
    assert planned["qdrant/collections/embeddings"].matched == 0  # 60 days
    names = {
        c["name"]
        for c in call(docker_client, qdrant, "GET", base)["result"]["collections"]
    }
    assert names == {"search_history", "embeddings", "other"}

    done = clean(env, operator, "qdrant")
    assert done["qdrant/collections/search_history"].removed == 1
    names = {
        c["name"]
        for c in call(docker_client, qdrant, "GET", base)["result"]["collections"]
    }
    assert names == {"embeddings", "other"}
    assert not CollectionSighting.objects.filter(name="search_history").exists()


def test_elasticsearch_indices_go_by_their_creation_date(
    standins, env, running, docker_client, operator
):
    # Elasticsearch's stack (monitoring) builds on the core stack.
    running("postgres", "redis", "qdrant", "minio", "elasticsearch")
    es = container_of(env, docker_client, "elasticsearch")
    now_ms = timezone.now().timestamp() * 1000
    day = 86_400_000
    for name, age in (
        ("logs-old", 40), ("logs-new", 2), ("metrics-old", 20), ("traces-new", 3),
        ("unrelated-old", 400),
    ):  # fmt: skip
        created = {"creation_date": int(now_ms - age * day)}
        call(docker_client, es, "PUT", f"http://127.0.0.1:9200/{name}",
             {"settings": {"index": created}})  # fmt: skip
        call(docker_client, es, "POST", f"http://127.0.0.1:9200/{name}/_doc", {"m": 1})

    def indices():
        rows = call(
            docker_client, es, "GET",
            "http://127.0.0.1:9200/_cat/indices?format=json&h=index",
        )  # fmt: skip
        return sorted(r["index"] for r in rows)

    before = indices()
    planned = clean(env, operator, "elasticsearch", dry_run=True)
    assert indices() == before
    assert planned["elasticsearch/indices/logs"].matched == 1
    assert planned["elasticsearch/indices/logs"].kept == 1
    assert planned["elasticsearch/indices/metrics"].matched == 1
    assert planned["elasticsearch/indices/logs"].matched_bytes > 0
    done = clean(env, operator, "elasticsearch")
    assert done["elasticsearch/indices/logs"].removed == 1
    assert indices() == ["logs-new", "traces-new", "unrelated-old"]


def test_s3_objects_go_by_last_modified(env, running, docker_client, operator):
    running("minio")
    minio = container_of(env, docker_client, "minio")
    (item,) = [
        i
        for i in environment_items(env, service="minio")
        if i.key == "minio/buckets/temp"
    ]
    ctx = Context(
        environment=env,
        client=docker_client,
        log=None,
        check_cancel=lambda: None,
    )
    client, bucket, _prefix = s3_client(ctx, item)
    client.create_bucket(Bucket="temp")
    for i in range(5):
        client.put_object(Bucket="temp", Key=f"old/{i}", Body=b"o" * 100)
        client.put_object(Bucket="temp", Key=f"new/{i}", Body=b"n" * 100)
    # Age the old objects in the stand-in's store, then restart it.
    script = (
        "import glob, json, time\n"
        "for path in glob.glob('/data/s3/temp/meta/*.json'):\n"
        "    meta = json.load(open(path))\n"
        "    if meta['key'].startswith('old/'):\n"
        "        meta['modified'] = time.time() - 3 * 86400\n"
        "        json.dump(meta, open(path, 'w'))\n"
    )
    assert engine.exec_run(docker_client, minio, ["python3", "-c", script]).ok
    docker_client.api.restart(minio)
    from tests.stacks.live import wait_for

    def healthy():
        state = docker_client.api.inspect_container(minio)["State"]
        return state.get("Health", {}).get("Status") == "healthy"

    wait_for(healthy, timeout=60, what="minio stand-in healthy again")

    def keys():
        listing = client.list_objects_v2(Bucket="temp").get("Contents", [])
        return sorted(o["Key"] for o in listing)

    before = keys()
    planned = clean(env, operator, "minio", dry_run=True)
    assert keys() == before and len(before) == 10
    temp = planned["minio/buckets/temp"]
    assert (temp.matched, temp.matched_bytes, temp.kept) == (5, 500, 5)
    done = clean(env, operator, "minio")
    assert done["minio/buckets/temp"].removed == 5
    assert keys() == [f"new/{i}" for i in range(5)]


def test_backup_snapshots_older_than_the_policy_are_forgotten(
    env, running, docker_client, operator
):
    running("redis")
    for _ in range(2):
        operation = run_inline(
            backup_service(
                env, Service.objects.get(name="redis"), user=operator, enqueue=False
            )
        )
        assert operation.status == "succeeded", operation.error
    records = BackupRecord.objects.filter(environment=env, service_name="redis")
    first_op = records.order_by("created").first().operation_id
    old = records.filter(operation_id=first_op)
    assert old.count() == 4  # the first tier and three copies
    old.update(created=timezone.now() - timedelta(days=30))  # redis keeps 7
    old_records = list(old.select_related("tier"))

    old_records = [r for r in old_records if r.tier.is_repository]
    planned = clean(env, operator, "redis", dry_run=True)
    snapshots = planned["redis/backups"]
    # The tape's copies stay: tapes are rotated, not forgotten.
    assert (snapshots.matched, snapshots.kept) == (3, 5)
    for record in old_records:
        ids = {s["id"] for s in repository(record.tier, env).snapshots()}
        assert record.snapshot_id in ids

    done = clean(env, operator, "redis")
    assert done["redis/backups"].removed == 3
    for record in records.filter(
        operation_id=first_op, pk__in=[r.pk for r in old_records]
    ):
        assert record.pruned is not None
        ids = {s["id"] for s in repository(record.tier, env).snapshots()}
        # The cloud tier's repository is the session's for this environment
        # name: other tests' snapshots may be there too. The young one stays.
        young = records.exclude(operation_id=first_op).get(tier=record.tier)
        assert record.snapshot_id not in ids and young.snapshot_id in ids
        assert young.pruned is None


def test_archive_then_delete_archives_verified_rows_first(
    env, running, docker_client, operator
):
    running("postgres")
    pg = container_of(env, docker_client, "postgres")
    psql(
        docker_client,
        pg,
        "CREATE TABLE audit_logs (id int, created_at timestamptz, what text);"
        "INSERT INTO audit_logs SELECT i, now() - interval '100 days', 'old ' || i "
        "FROM generate_series(1, 12) i;"
        "INSERT INTO audit_logs SELECT i, now() - interval '10 days', 'new ' || i "
        "FROM generate_series(13, 20) i;",
    )
    done = clean(env, operator, "postgres")
    record = done["postgres/tables/audit_logs"]
    assert (record.status, record.removed) == ("removed", 12)
    assert psql(docker_client, pg, "SELECT count(*) FROM audit_logs") == "8"
    archive = record.backup_record
    assert archive.strategy == "archive" and archive.verified is not None
    assert archive.manifest["rows"] == 12
    copies = BackupRecord.objects.filter(copied_from=archive, status="succeeded")
    assert copies.count() == 3
    repo = repository(archive.tier, env)
    with repo.dump(archive.snapshot_id, "/audit_logs.csv") as data:
        rows = list(csv.DictReader(io.StringIO(b"".join(data).decode())))
    assert sorted(int(r["id"]) for r in rows) == list(range(1, 13))
