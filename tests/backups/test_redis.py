"""Redis backups end to end: BGSAVE's dump.rdb and the append-only directory
streamed into restic, restored with plain restic into a fresh Redis."""

import io
import re
import tarfile
import uuid

import pytest
import redis

from backups.models import BackupRecord
from backups.operations import backup_service
from backups.strategies.redis import parse_info, parse_keyspace
from backups.tarstream import member, tar_stream
from backups.tiers import repository
from portal.operations import run_inline
from stacks import engine
from stacks.config import published_ports
from stacks.models import Service

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

REDIS_IMAGE = "stackportal/redis:local"
# The redis user of the stand-in image (Debian's package).
REDIS_UID = 100
# Values with the bytes a text protocol could trip on.
AWKWARD = b"\x00\r\n\xff binary \x01" * 7


def test_info_fields_are_matched_whole():
    """``async_loading:0`` is no answer to ``loading``."""
    text = (
        "# Persistence\r\nasync_loading:0\r\nloading:1\r\nrdb_saves:3\r\n"
        "# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=5\r\ndb10:keys=2,expires=0\r\n"
        "db2:keys=7,expires=0,avg_ttl=0\r\n"
    )
    fields = parse_info(text)
    assert fields["loading"] == "1" and fields["async_loading"] == "0"
    assert parse_keyspace(fields) == {"db0": 12, "db2": 7, "db10": 2}
    assert list(parse_keyspace(fields)) == ["db0", "db2", "db10"]


def fill(port):
    """Write keys of every type into databases 0 and 2; return the key names."""
    names = {0: [], 2: []}
    main = redis.Redis(host="127.0.0.1", port=port, db=0, socket_timeout=10)
    other = redis.Redis(host="127.0.0.1", port=port, db=2, socket_timeout=10)
    try:
        pipe = main.pipeline()
        for i in range(3000):
            pipe.set(f"item:{i}", AWKWARD + str(i).encode())
        pipe.hset("profile", mapping={f"f{i}": f"v{i}" for i in range(50)})
        pipe.rpush("queue", *[f"job-{i}" for i in range(200)])
        pipe.sadd("tags", *[f"t{i}" for i in range(30)])
        pipe.zadd("scores", {f"p{i}": i / 3 for i in range(40)})
        pipe.execute()
        names[0] = ["item:0", "item:1234", "item:2999", "profile", "queue", "tags"]
        names[0].append("scores")
        pipe = other.pipeline()
        for i in range(37):
            pipe.set(f"session:{i}", f"user-{i}", ex=86400)
        pipe.execute()
        names[2] = ["session:0", "session:36"]
    finally:
        main.close()
        other.close()
    return names


def values(host, port, names):
    """Return {(db, key): (type, value, has a TTL)} of the sample keys."""
    read = {
        b"string": lambda c, k: c.get(k),
        b"hash": lambda c, k: c.hgetall(k),
        b"list": lambda c, k: c.lrange(k, 0, -1),
        b"set": lambda c, k: sorted(c.smembers(k)),
        b"zset": lambda c, k: c.zrange(k, 0, -1, withscores=True),
    }
    found = {}
    for db, keys in names.items():
        conn = redis.Redis(host=host, port=port, db=db, socket_timeout=10)
        try:
            for key in keys:
                kind = conn.type(key)
                found[(db, key)] = (kind, read[kind](conn, key), conn.ttl(key) > 0)
        finally:
            conn.close()
    return found


def sizes(host, port, databases):
    found = {}
    for db in databases:
        conn = redis.Redis(host=host, port=port, db=db, socket_timeout=10)
        try:
            found[f"db{db}"] = conn.dbsize()
        finally:
            conn.close()
    return found


@pytest.fixture
def redis_service(running, docker_client):
    env = running("redis")
    service = Service.objects.get(name="redis")
    state = engine.service_states(docker_client, env.project_name(service.stack))[
        "redis"
    ]
    port = next(p.published for p in published_ports(service, env) if p.target == 6379)
    names = fill(port)
    return env, state.id, port, names


def run_backup(environment, operator, strategy):
    operation = run_inline(
        backup_service(
            environment,
            Service.objects.get(name="redis"),
            user=operator,
            strategy=strategy,
            enqueue=False,
        )
    )
    return operation


def test_rdb_backup_restores_into_a_fresh_redis_with_plain_restic(
    redis_service,
    operator,
    docker_client,
    docker_labels,
    scratch_network,
    start_scratch,
):
    env, _container, port, names = redis_service
    operation = run_backup(env, operator, "rdb")
    assert operation.status == "succeeded", operation.error
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    assert record.strategy == "rdb"
    assert record.manifest["databases"] == {"db0": 3004, "db2": 37}
    assert record.manifest["keys"] == 3041
    assert record.manifest["redis_version"].startswith("7.")
    copies = BackupRecord.objects.filter(operation=operation).exclude(pk=record.pk)
    assert {c.status for c in copies} == {"succeeded"}
    lines = [line.text for line in operation.lines.all()]
    assert any("Background saving" in line for line in lines), lines

    # Plain restic: the file goes into a fresh volume, then a fresh Redis
    # starts on it and loads it.
    volume = docker_client.volumes.create(
        f"sp-restore-{uuid.uuid4().hex[:10]}", labels=docker_labels
    )
    repo = repository(record.tier, env)
    with repo.dump(record.snapshot_id, "/dump.rdb") as data:
        engine.write_volume(
            docker_client,
            volume.name,
            tar_stream([(member("volume/dump.rdb", record.bytes_total), data)]),
            environment=env,
        )
    restored = docker_client.containers.create(
        REDIS_IMAGE,
        labels=docker_labels,
        network=scratch_network.name,
        volumes={volume.name: {"bind": "/data", "mode": "rw"}},
    )
    host = start_scratch(restored, scratch_network, "the restored redis")
    assert sizes(host, 6379, [0, 2]) == record.manifest["databases"]
    assert values(host, 6379, names) == values("127.0.0.1", port, names)


def test_aof_backup_holds_the_append_only_directory_and_restores(
    redis_service,
    operator,
    docker_client,
    docker_labels,
    scratch_network,
    start_scratch,
):
    env, _container, port, names = redis_service
    operation = run_backup(env, operator, "aof")
    assert operation.status == "succeeded", operation.error
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    assert record.manifest["keys"] == 3041
    repo = repository(record.tier, env)

    restored = docker_client.containers.create(
        REDIS_IMAGE,
        command=["redis-server", "--appendonly", "yes"],
        labels=docker_labels,
        network=scratch_network.name,
    )
    # The tar's members are appendonlydir/...: unpacked into /data before
    # the server first starts, it reads them as its own.
    with repo.dump(record.snapshot_id, "/appendonlydir.tar") as data:
        assert docker_client.api.put_archive(restored.id, "/data", data)
    unpacked, _stat = docker_client.api.get_archive(restored.id, "/data/appendonlydir")
    with tarfile.open(fileobj=io.BytesIO(b"".join(unpacked))) as tar:
        files = sorted(
            re.sub(r"\.\d+\.", ".N.", m.name.rpartition("/")[2])
            for m in tar.getmembers()
            if m.isfile()
        )
        owners = {m.uid for m in tar.getmembers()}
    # The base (an RDB preamble), the increments and their manifest; owned by
    # the server's own user, as Redis wrote them.
    assert files == [
        "appendonly.aof.N.base.rdb",
        "appendonly.aof.N.incr.aof",
        "appendonly.aof.manifest",
    ]
    assert owners == {REDIS_UID}
    host = start_scratch(restored, scratch_network, "the restored redis")
    assert sizes(host, 6379, [0, 2]) == record.manifest["databases"]
    assert values(host, 6379, names) == values("127.0.0.1", port, names)


def test_aof_backup_of_a_server_without_appendonly_says_so(
    redis_service, operator, docker_client
):
    env, container, _port, _names = redis_service
    result = engine.exec_run(
        docker_client, container, ["redis-cli", "CONFIG", "SET", "appendonly", "no"]
    )
    assert result.stdout.strip() == b"OK"
    operation = run_backup(env, operator, "aof")
    assert operation.status == "failed"
    assert operation.error == (
        "Redis in redis runs without appendonly (CONFIG GET appendonly: no), so it "
        "has no append-only files to back up; use the rdb strategy, or run "
        "redis-server with --appendonly yes."
    )
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    assert record.status == "failed" and not record.snapshot_id
