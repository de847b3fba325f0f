"""Qdrant backups end to end: every collection's snapshot read through the
snapshot API by a helper on the stack's network, streamed into restic, and
restored with plain restic into a fresh Qdrant through the upload endpoint.

The fresh Qdrant is checked against the spec on every exchange
(tests/images/qdrant_contract.py)."""

import tarfile
from urllib.parse import quote

import pytest
import requests

from backups.models import BackupRecord, BackupStrategy
from backups.operations import backup_service
from backups.tarstream import ChunkReader
from backups.tiers import repository
from portal.operations import run_inline
from stacks import engine
from stacks.config import published_ports
from stacks.models import Service
from tests.images import qdrant_contract as contract

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

COLLECTIONS = {"docs": (4, 120), "images": (3, 35)}
SAMPLE_IDS = [1, 17, 35]


@pytest.fixture
def http():
    with requests.Session() as session:
        session.trust_env = False
        yield session


def call(http, base, method, template, body=None, expect=200, files=None, **path):
    """One exchange with a Qdrant; the response is checked against the spec."""
    url = base + template.format(**{k: quote(v, safe="") for k, v in path.items()})
    if body is not None:
        contract.check_request(template, method, body)
    response = http.request(method, url, json=body, files=files, timeout=30)
    assert response.status_code == expect, f"{method} {url}: {response.text}"
    return contract.check_response(template, method, response)


def seed(http, base):
    for name, (size, count) in COLLECTIONS.items():
        call(
            http,
            base,
            "PUT",
            "/collections/{collection_name}",
            {"vectors": {"size": size, "distance": "Cosine"}},
            collection_name=name,
        )
        points = [
            {
                "id": i,
                "vector": [i / 7 + d for d in range(size)],
                "payload": {"n": i, "name": f"{name}-{i}", "tags": ["a", str(i % 3)]},
            }
            for i in range(1, count + 1)
        ]
        call(
            http,
            base,
            "PUT",
            "/collections/{collection_name}/points",
            {"points": points},
            collection_name=name,
        )


def points(http, base, name):
    return call(
        http,
        base,
        "POST",
        "/collections/{collection_name}/points",
        {"ids": SAMPLE_IDS, "with_vector": True},
        collection_name=name,
    )["result"]


def count(http, base, name):
    return call(
        http,
        base,
        "POST",
        "/collections/{collection_name}/points/count",
        {"exact": True},
        collection_name=name,
    )["result"]["count"]


@pytest.fixture
def qdrant(running, http):
    env = running("qdrant")
    service = Service.objects.get(name="qdrant")
    port = next(p.published for p in published_ports(service, env) if p.target == 6333)
    base = f"http://127.0.0.1:{port}"
    seed(http, base)
    return env, base


def run_backup(environment, operator):
    return run_inline(
        backup_service(
            environment,
            Service.objects.get(name="qdrant"),
            user=operator,
            enqueue=False,
        )
    )


def test_collection_snapshots_restore_into_a_fresh_qdrant_with_plain_restic(
    qdrant,
    operator,
    http,
    docker_client,
    docker_labels,
    scratch_network,
    start_scratch,
):
    env, base = qdrant
    operation = run_backup(env, operator)
    assert operation.status == "succeeded", operation.error
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    assert record.strategy == "collection"
    assert {n: c["points"] for n, c in record.manifest["collections"].items()} == {
        "docs": 120,
        "images": 35,
    }
    assert record.manifest["points"] == 155
    assert record.manifest["collections"]["docs"]["vectors"] == {
        "size": 4,
        "distance": "Cosine",
    }
    # Read, then deleted from Qdrant's disk.
    for name in COLLECTIONS:
        listed = call(
            http,
            base,
            "GET",
            "/collections/{collection_name}/snapshots",
            collection_name=name,
        )
        assert listed["result"] == []
    # The helpers that reached the API are gone.
    assert engine.list_helpers(docker_client, purpose="qdrant.api") == []

    fresh = docker_client.containers.create(
        "stackportal/httpstub:local",
        environment={"STANDIN_KIND": "qdrant", "STANDIN_PORT": "6333"},
        labels=docker_labels,
        network=scratch_network.name,
    )
    target = f"http://{start_scratch(fresh, scratch_network, 'a fresh qdrant')}:6333"
    repo = repository(record.tier, env)
    uploaded = []
    with repo.dump(record.snapshot_id, "/collections.tar") as data:
        with tarfile.open(fileobj=ChunkReader(data), mode="r|") as archive:
            for item in archive:
                body = archive.extractfile(item).read()
                if item.name == "collections.json":
                    continue
                name = item.name.removesuffix(".snapshot")
                assert item.pax_headers["QDRANT.collection"] == name
                answer = call(
                    http,
                    target,
                    "POST",
                    "/collections/{collection_name}/snapshots/upload",
                    files={"snapshot": (item.name, body, "application/octet-stream")},
                    collection_name=name,
                )
                assert answer["result"] is True
                uploaded.append(name)
    assert sorted(uploaded) == ["docs", "images"]
    for name in COLLECTIONS:
        assert (
            count(http, target, name) == record.manifest["collections"][name]["points"]
        )
        assert points(http, target, name) == points(http, base, name)


def test_collections_named_in_the_settings_must_exist(qdrant, operator):
    env, _base = qdrant
    strategy = BackupStrategy.objects.get(service="qdrant")
    strategy.settings = {
        **strategy.settings,
        "qdrant_settings": {"collections": ["docs", "missing"]},
    }
    strategy.save()
    operation = run_backup(env, operator)
    assert operation.status == "failed"
    assert operation.error == (
        "Qdrant in qdrant has no collection missing (qdrant_settings.collections); "
        "it has: docs, images."
    )


def test_only_the_collections_named_in_the_settings_are_taken(qdrant, operator):
    env, _base = qdrant
    strategy = BackupStrategy.objects.get(service="qdrant")
    strategy.settings = {
        **strategy.settings,
        "qdrant_settings": {"collections": ["images"]},
    }
    strategy.save()
    operation = run_backup(env, operator)
    assert operation.status == "succeeded", operation.error
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    assert list(record.manifest["collections"]) == ["images"]
    with repository(record.tier, env).dump(record.snapshot_id, "/collections.tar") as d:
        with tarfile.open(fileobj=ChunkReader(d), mode="r|") as archive:
            names = [item.name for item in archive]
    assert names == ["collections.json", "images.snapshot"]
