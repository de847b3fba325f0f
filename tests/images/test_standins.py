"""The locally built stand-in images behave like the services they replace.

Containers run on a network each test creates and are reached from the host by
their address on it; nothing is published on the host's interfaces.
"""

import hashlib
import importlib.util
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import docker.errors
import psycopg
import pytest
import redis
import requests

from . import qdrant_contract as contract

ROOT = Path(__file__).resolve().parents[2]
QDRANT_PORT = 6333

pytestmark = pytest.mark.docker


def _load_build_images():
    spec = importlib.util.spec_from_file_location(
        "build_images", ROOT / "scripts" / "build_images.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


build_images = _load_build_images()


# --- helpers -------------------------------------------------------------------------


def wait_healthy(container, timeout=60):
    """Poll until Docker reports the container healthy; fail with its logs otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        container.reload()
        state = container.attrs["State"]
        if state.get("Health", {}).get("Status") == "healthy":
            return
        if state["Status"] in ("exited", "dead") or time.monotonic() > deadline:
            logs = container.logs(tail=30).decode(errors="replace")
            pytest.fail(
                f"{container.name} not healthy (status {state['Status']}, "
                f"health {state.get('Health', {}).get('Status')}):\n{logs}"
            )
        time.sleep(0.25)


def ip_on(container, network):
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]


def exec_in(client, container, cmd):
    """Run ``cmd`` in the container; return (exit code, output)."""
    exec_id = client.api.exec_create(container.id, cmd)["Id"]
    output = client.api.exec_start(exec_id)
    return client.api.exec_inspect(exec_id)["ExitCode"], output


@pytest.fixture
def http():
    """A requests session ignoring proxy settings: containers are reached directly."""
    with requests.Session() as session:
        session.trust_env = False
        yield session


@pytest.fixture
def images(docker_client):
    return build_images.build_all(docker_client, log=lambda line: None)


@pytest.fixture
def network(docker_client, docker_labels):
    net = docker_client.networks.create(
        f"sp-test-{uuid.uuid4().hex[:10]}", driver="bridge", labels=docker_labels
    )
    yield net
    try:
        net.remove()
    except docker.errors.APIError:
        pass


@pytest.fixture
def spawn(docker_client, docker_labels, network, images):
    """Return run(image_name, aliases=(), **kwargs): a container on ``network``."""
    created = []

    def run(name, aliases=(), **kwargs):
        endpoint = docker_client.api.create_endpoint_config(aliases=list(aliases))
        container = docker_client.containers.run(
            images[name],
            detach=True,
            network=network.name,
            labels=docker_labels,
            networking_config={network.name: endpoint},
            **kwargs,
        )
        created.append(container)
        return container

    yield run
    for container in created:
        try:
            container.remove(v=True, force=True)
        except docker.errors.NotFound:
            pass


class Qdrant:
    """Calls the Qdrant stand-in and checks every exchange against the spec."""

    def __init__(self, http, base_url):
        self.http, self.base_url = http, base_url

    def __call__(
        self, method, template, body=None, expect=200, params=None, files=None, **path
    ):
        url = self.base_url + template.format(
            **{k: quote(v, safe="") for k, v in path.items()}
        )
        if body is not None:
            contract.check_request(template, method, body)
        response = self.http.request(
            method, url, json=body, params=params, files=files, timeout=10
        )
        assert response.status_code == expect, (
            f"{method} {url}: {response.status_code} {response.text}"
        )
        return contract.check_response(template, method, response)


# --- tests ---------------------------------------------------------------------------


def test_build_all_second_call_is_cached(docker_client):
    first = build_images.build_all(docker_client, log=lambda line: None)
    lines = []
    second = build_images.build_all(docker_client, log=lines.append)

    assert second == first
    assert sorted(first) == sorted(build_images.IMAGES)
    for name, tag in first.items():
        assert (
            f"stackportal/{name}:{build_images.LOCAL_TAG}"
            in docker_client.images.get(tag).tags
        )
    assert len(lines) == 1 + len(build_images.IMAGES)
    assert all(" cached" in line for line in lines), lines


def test_postgres_standin_accepts_password_login_from_host(spawn, network):
    pg = spawn(
        "postgres",
        environment={
            "POSTGRES_PASSWORD": "s3cret",
            "POSTGRES_USER": "portal",
            "POSTGRES_DB": "portal_app",
        },
    )
    wait_healthy(pg)
    host = ip_on(pg, network)

    with psycopg.connect(
        host=host,
        port=5432,
        user="portal",
        password="s3cret",
        dbname="portal_app",
        connect_timeout=5,
    ) as conn:
        version, database = conn.execute(
            "select version(), current_database()"
        ).fetchone()
    assert "PostgreSQL 15" in version
    assert database == "portal_app"
    with pytest.raises(
        psycopg.OperationalError, match="password authentication failed"
    ):
        psycopg.connect(
            host=host,
            port=5432,
            user="portal",
            password="wrong",
            dbname="portal_app",
            connect_timeout=5,
        )


def test_redis_standin_takes_server_args_and_answers_ping(
    docker_client, spawn, network
):
    container = spawn("redis", command=["redis-server", "--appendonly", "yes"])
    wait_healthy(container)

    code, output = exec_in(docker_client, container, ["redis-cli", "ping"])
    assert (code, output.strip()) == (0, b"PONG")
    code, output = exec_in(
        docker_client, container, ["redis-cli", "config", "get", "appendonly"]
    )
    assert (code, output.split()) == (0, [b"appendonly", b"yes"])
    client = redis.Redis(host=ip_on(container, network), port=6379, socket_timeout=5)
    try:
        assert client.ping() is True
    finally:
        client.close()


def test_qdrant_standin_snapshot_round_trip_matches_spec(spawn, network, http):
    container = spawn(
        "httpstub",
        environment={
            "STANDIN_KIND": "qdrant",
            "STANDIN_NAME": "qdrant",
            "STANDIN_PORT": str(QDRANT_PORT),
        },
    )
    wait_healthy(container)
    q = Qdrant(http, f"http://{ip_on(container, network)}:{QDRANT_PORT}")
    coll = "docs"
    points = [
        {"id": i, "vector": [i, 0.5, 0.25, 1.0], "payload": {"n": i}}
        for i in range(1, 26)
    ]
    one_path = "/collections/{collection_name}"
    count_path = "/collections/{collection_name}/points/count"
    snapshots_path = "/collections/{collection_name}/snapshots"
    snapshot_path = "/collections/{collection_name}/snapshots/{snapshot_name}"

    assert (
        q(
            "PUT",
            one_path,
            {"vectors": {"size": 4, "distance": "Cosine"}},
            collection_name=coll,
        )["result"]
        is True
    )
    assert {"name": coll} in q("GET", "/collections")["result"]["collections"]
    upsert = q(
        "PUT",
        "/collections/{collection_name}/points",
        {"points": points},
        params={"wait": "true"},
        collection_name=coll,
    )
    assert upsert["result"]["status"] == "completed"
    assert (
        q("POST", count_path, {"exact": True}, collection_name=coll)["result"]["count"]
        == 25
    )
    assert q("GET", one_path, collection_name=coll)["result"]["points_count"] == 25

    snapshot = q("POST", snapshots_path, collection_name=coll)["result"]
    assert snapshot["name"] in [
        s["name"] for s in q("GET", snapshots_path, collection_name=coll)["result"]
    ]
    data = q("GET", snapshot_path, collection_name=coll, snapshot_name=snapshot["name"])
    assert len(data) == snapshot["size"]
    assert hashlib.sha256(data).hexdigest() == snapshot["checksum"]

    assert q("DELETE", one_path, collection_name=coll)["result"] is True
    q("GET", one_path, expect=404, collection_name=coll)
    location = f"file:///qdrant/storage/snapshots/{coll}/{snapshot['name']}"
    recovered = q(
        "PUT",
        "/collections/{collection_name}/snapshots/recover",
        {"location": location, "checksum": snapshot["checksum"]},
        collection_name=coll,
    )
    assert recovered["result"] is True
    assert q("POST", count_path, {}, collection_name=coll)["result"]["count"] == 25
    record = q(
        "POST",
        "/collections/{collection_name}/points",
        {"ids": [7], "with_vector": True},
        collection_name=coll,
    )["result"]
    assert record == [{"id": 7, "payload": {"n": 7}, "vector": [7, 0.5, 0.25, 1.0]}]

    uploaded = q(
        "POST",
        "/collections/{collection_name}/snapshots/upload",
        collection_name="docs_copy",
        files={"snapshot": (snapshot["name"], data, "application/octet-stream")},
        params={"checksum": snapshot["checksum"]},
    )
    assert uploaded["result"] is True
    assert (
        q("POST", count_path, {}, collection_name="docs_copy")["result"]["count"] == 25
    )

    assert (
        q(
            "DELETE",
            snapshot_path,
            collection_name=coll,
            snapshot_name=snapshot["name"],
        )["result"]
        is True
    )
    assert q("GET", snapshots_path, collection_name=coll)["result"] == []


def test_qdrant_standin_keeps_collections_across_restart(spawn, network, http):
    container = spawn(
        "httpstub",
        environment={"STANDIN_KIND": "qdrant", "STANDIN_PORT": str(QDRANT_PORT)},
    )
    wait_healthy(container)
    q = Qdrant(http, f"http://{ip_on(container, network)}:{QDRANT_PORT}")
    q(
        "PUT",
        "/collections/{collection_name}",
        {"vectors": {"size": 2, "distance": "Dot"}},
        collection_name="kept",
    )
    q(
        "PUT",
        "/collections/{collection_name}/points",
        {"batch": {"ids": [1, 2, 3], "vectors": [[1, 0], [0, 1], [1, 1]]}},
        collection_name="kept",
    )

    container.restart(timeout=10)
    wait_healthy(container)

    q = Qdrant(http, f"http://{ip_on(container, network)}:{QDRANT_PORT}")
    assert q(
        "POST",
        "/collections/{collection_name}/points/count",
        {},
        collection_name="kept",
    )["result"] == {"count": 3}


def test_httpstub_health_follows_its_dependencies(spawn, network, http):
    app = spawn(
        "httpstub",
        environment={
            "STANDIN_NAME": "webui",
            "STANDIN_DEPENDS": "backend:9000,backend:9001",
        },
    )
    wait_healthy(app)  # /healthz, the container healthcheck, ignores dependencies
    url = f"http://{ip_on(app, network)}:8080/health"

    down = http.get(url, timeout=10)
    assert down.status_code == 503
    assert down.json()["depends"] == {"backend:9000": False, "backend:9001": False}

    backend = spawn(
        "httpstub",
        aliases=["backend"],
        environment={"STANDIN_NAME": "backend", "STANDIN_PORT": "9000,9001"},
    )
    wait_healthy(backend)
    up = http.get(url, timeout=10)
    assert up.status_code == 200
    assert up.json()["depends"] == {"backend:9000": True, "backend:9001": True}
    assert up.json()["name"] == "webui"


def test_httpstub_lists_the_configured_vllm_model(spawn, network, http):
    container = spawn(
        "httpstub",
        environment={"STANDIN_KIND": "vllm", "VLLM_MODEL": "Qwen/Qwen2.5-7B"},
    )
    wait_healthy(container)

    models = http.get(
        f"http://{ip_on(container, network)}:8080/v1/models", timeout=10
    ).json()
    assert [m["id"] for m in models["data"]] == ["Qwen/Qwen2.5-7B"]
    # The engine copies the container's output into its log asynchronously.
    deadline = time.monotonic() + 20
    while b"GET /v1/models" not in container.logs():
        assert time.monotonic() < deadline, container.logs()[-2000:]
        time.sleep(0.1)


def test_busybox_standin_runs_shell_commands(spawn):
    container = spawn(
        "busybox", command=["sh", "-c", "echo hello from busybox; ls /bin | wc -l"]
    )

    assert container.wait(timeout=30)["StatusCode"] == 0
    lines = container.logs().decode().split()
    assert lines[:3] == ["hello", "from", "busybox"]
    assert int(lines[3]) > 100  # applet links installed


# --- the S3 stand-in (MinIO in the demo), through boto3 -------------------------------

S3_PORT = 9000
S3_USER, S3_SECRET = "standin-user", "standin-secret-key"
# Keys S3 allows and a careless server mangles: spaces, plus, equals, ampersand,
# percent, unicode, a trailing slash, a long one.
ODD_KEYS = [
    "plain.txt",
    "with space/and+plus=eq&amp%25.bin",
    "ünïcødé/日本語.txt",
    "folder/",
    "deep/" + "x" * 900,
]


def s3_client(endpoint, key=S3_USER, secret=S3_SECRET):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(
            s3={"addressing_style": "path"},
            retries={"max_attempts": 1},
            proxies={},
        ),
    )


@pytest.fixture
def s3_standin(spawn, network):
    container = spawn(
        "httpstub",
        environment={
            "STANDIN_KIND": "s3",
            "STANDIN_NAME": "minio",
            "STANDIN_PORT": str(S3_PORT),
            "STANDIN_STORAGE": "/data",
            "MINIO_ROOT_USER": S3_USER,
            "MINIO_ROOT_PASSWORD": S3_SECRET,
        },
    )
    wait_healthy(container)
    return container, f"http://{ip_on(container, network)}:{S3_PORT}"


def test_s3_standin_serves_buckets_and_objects_to_boto3(s3_standin, network, http):
    container, endpoint = s3_standin
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket="media")
    s3.create_bucket(Bucket="empty")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["empty", "media"]
    with pytest.raises(s3.exceptions.BucketAlreadyOwnedByYou):
        s3.create_bucket(Bucket="media")
    s3.head_bucket(Bucket="media")

    bodies = {key: hashlib.sha256(key.encode()).digest() * 40 for key in ODD_KEYS}
    for key, body in bodies.items():
        s3.put_object(
            Bucket="media",
            Key=key,
            Body=body,
            ContentType="application/x-test",
            Metadata={"origin": "test"},
        )
    for key, body in bodies.items():
        got = s3.get_object(Bucket="media", Key=key)
        assert got["Body"].read() == body
        assert got["ContentType"] == "application/x-test"
        assert got["Metadata"] == {"origin": "test"}
        assert got["ETag"] == f'"{hashlib.md5(body).hexdigest()}"'
        head = s3.head_object(Bucket="media", Key=key)
        assert head["ContentLength"] == len(body)
    listed = s3.list_objects_v2(Bucket="media")
    assert [o["Key"] for o in listed["Contents"]] == sorted(ODD_KEYS)
    assert [o["Size"] for o in listed["Contents"]] == [
        len(bodies[k]) for k in sorted(ODD_KEYS)
    ]

    # Pagination: 3 keys a page over 5 keys and 23 more.
    for i in range(23):
        s3.put_object(Bucket="media", Key=f"page/{i:03d}", Body=b"p" * i)
    pages = list(
        s3.get_paginator("list_objects_v2").paginate(
            Bucket="media", PaginationConfig={"PageSize": 3}
        )
    )
    assert len(pages) == 10
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert keys == sorted([*ODD_KEYS, *(f"page/{i:03d}" for i in range(23))])
    by_folder = s3.list_objects_v2(Bucket="media", Delimiter="/", Prefix="")
    assert [p["Prefix"] for p in by_folder["CommonPrefixes"]] == [
        "deep/",
        "folder/",
        "page/",
        "with space/",
        "ünïcødé/",
    ]
    assert [o["Key"] for o in by_folder["Contents"]] == ["plain.txt"]

    s3.delete_object(Bucket="media", Key="plain.txt")
    with pytest.raises(s3.exceptions.ClientError) as gone:
        s3.head_object(Bucket="media", Key="plain.txt")
    assert gone.value.response["Error"]["Code"] == "404"
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket="media", Key="plain.txt")
    with pytest.raises(s3.exceptions.ClientError, match="BucketNotEmpty"):
        s3.delete_bucket(Bucket="media")
    s3.delete_bucket(Bucket="empty")

    # Objects are files on the volume: a restart keeps them.
    container.restart(timeout=10)
    wait_healthy(container)
    s3 = s3_client(f"http://{ip_on(container, network)}:{S3_PORT}")
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["media"]
    assert (
        s3.get_object(Bucket="media", Key=ODD_KEYS[2])["Body"].read()
        == (bodies[ODD_KEYS[2]])
    )


def test_s3_standin_streams_a_large_object(s3_standin):
    _container, endpoint = s3_standin
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket="big")
    body = bytes(range(256)) * (96 * 1024)  # 24 MiB
    s3.put_object(Bucket="big", Key="blob", Body=body)
    got = s3.get_object(Bucket="big", Key="blob")["Body"]
    digest, size = hashlib.sha256(), 0
    for chunk in got.iter_chunks(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    assert (size, digest.hexdigest()) == (len(body), hashlib.sha256(body).hexdigest())


def test_s3_standin_requires_the_access_key_and_a_valid_signature(s3_standin, http):
    _container, endpoint = s3_standin
    import botocore.exceptions

    codes = {}
    for name, key, secret in (
        ("other key", "someone-else", S3_SECRET),
        ("wrong secret", S3_USER, "not-the-secret"),
    ):
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            s3_client(endpoint, key, secret).list_buckets()
        codes[name] = refused.value.response["Error"]["Code"]
    assert codes == {
        "other key": "InvalidAccessKeyId",
        "wrong secret": "SignatureDoesNotMatch",
    }
    anonymous = http.get(endpoint + "/", timeout=10)
    assert anonymous.status_code == 403
    assert "<Code>AccessDenied</Code>" in anonymous.text
    # Health checks need no signature.
    assert http.get(endpoint + "/minio/health/live", timeout=10).status_code == 200


def test_restic_image_runs_the_hosts_restic(spawn):
    """Volume backups run this restic next to the data: the host's own."""
    import subprocess

    host = subprocess.run(
        ["restic", "version"], capture_output=True, text=True, check=True
    ).stdout.split()[:2]
    container = spawn("restic", command=["restic", "version"])
    assert container.wait(timeout=60)["StatusCode"] == 0
    assert container.logs().decode().split()[:2] == host


def test_elasticsearch_standin_lists_creates_and_deletes_indices(spawn, network, http):
    """The calls retention makes: _cat/indices (JSON, chosen columns, sizes in
    bytes, creation dates in epoch ms), index create with a creation date,
    documents, and delete; an unknown index is a 404 as Elasticsearch's."""
    container = spawn(
        "httpstub",
        environment={
            "STANDIN_KIND": "elasticsearch",
            "STANDIN_NAME": "elasticsearch",
            "STANDIN_PORT": "9200",
            "STANDIN_STORAGE": "/usr/share/elasticsearch/data",
        },
    )
    wait_healthy(container)
    base = f"http://{ip_on(container, network)}:9200"
    assert http.get(base + "/", timeout=5).json()["version"]["number"] == "8.11.0"
    old = 1_600_000_000_000
    created = http.put(
        base + "/logs-2020.09.13",
        json={"settings": {"index": {"creation_date": old}}},
        timeout=5,
    )
    assert created.json() == {
        "acknowledged": True,
        "shards_acknowledged": True,
        "index": "logs-2020.09.13",
    }
    assert http.post(base + "/logs-new/_doc", json={"m": "x"}, timeout=5).ok
    rows = http.get(
        base + "/_cat/indices/logs-*",
        params={"format": "json", "h": "index,creation.date,store.size,docs.count",
                "bytes": "b"},
        timeout=5,
    ).json()  # fmt: skip
    by_name = {row["index"]: row for row in rows}
    assert by_name["logs-2020.09.13"]["creation.date"] == str(old)
    assert by_name["logs-new"]["docs.count"] == "1"
    assert int(by_name["logs-new"]["store.size"]) > 0
    assert http.delete(base + "/logs-2020.09.13", timeout=5).json() == {
        "acknowledged": True
    }
    missing = http.delete(base + "/logs-2020.09.13", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "index_not_found_exception"
    # Indices persist across a restart.
    container.restart()
    wait_healthy(container)
    base = f"http://{ip_on(container, network)}:9200"
    text = http.get(base + "/_cat/indices", params={"h": "index"}, timeout=5).text
    assert text.split() == ["logs-new"]
