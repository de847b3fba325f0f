"""MinIO backups end to end through the S3 API: against the demo's S3
stand-in and against moto's S3 server, restored with plain restic into a
fresh S3 server of the same kind and compared with the manifest."""

import hashlib
import importlib.util
import subprocess
import sys
import tarfile
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from backups.models import BackupRecord, BackupStrategy
from backups.operations import backup_service
from backups.strategies.minio import member_name
from backups.tarstream import ChunkReader
from backups.tiers import repository
from portal.operations import run_inline
from stacks.config import published_ports
from stacks.models import Service, ServiceOverride
from tests.backups.conftest import free_port, wait_port

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

ROOT = Path(__file__).resolve().parents[2]
# The demo's variables (configs/stacks.yaml): the stand-in checks them.
USER, SECRET = "demo-minio", "demo-minio-password"
BIG = bytes(range(256)) * (20 * 1024)  # 5 MiB
ODD_KEYS = ["../escape", "/leading", "folder/", "a//b", "ünï cødé+&=.txt"]


def _build_images():
    spec = importlib.util.spec_from_file_location(
        "build_images", ROOT / "scripts" / "build_images.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def s3_client(endpoint, key=USER, secret=SECRET):
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, proxies={}),
    )


def seed(s3):
    """Fill three buckets; return {bucket: {key: body}}."""
    data = {
        "media": {
            "photos/2024/cat.jpg": b"\xff\xd8 not really a jpeg " * 100,
            "big.bin": BIG,
            **{key: key.encode() * 3 for key in ODD_KEYS},
        },
        "logs": {
            f"day/{i:05d}.log": f"line {i}\n".encode() * (i % 7) for i in range(1203)
        },
        "empty": {},
    }
    for bucket, objects in data.items():
        s3.create_bucket(Bucket=bucket)
        for key, body in objects.items():
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType="text/plain" if key.endswith(".log") else "application/x-t",
                Metadata={"source": bucket},
            )
    return data


def restore(archive_chunks, s3):
    """Put every object of a buckets.tar into ``s3``; return {bucket: {key: body}}."""
    restored = {}
    with tarfile.open(fileobj=ChunkReader(archive_chunks), mode="r|") as archive:
        for item in archive:
            bucket = item.pax_headers["S3.bucket"]
            if item.isdir():
                s3.create_bucket(Bucket=bucket)
                restored[bucket] = {}
                continue
            key = item.pax_headers["S3.key"]
            assert item.name == member_name(bucket, key)
            body = archive.extractfile(item).read()
            meta = {
                name[len("S3.meta.") :]: value
                for name, value in item.pax_headers.items()
                if name.startswith("S3.meta.")
            }
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                ContentType=item.pax_headers["S3.content_type"],
                Metadata=meta,
            )
            restored[bucket][key] = body
    return restored


def check_against_manifest(manifest, s3):
    """The restored server holds what the manifest counted, byte for byte."""
    for bucket, facts in manifest["buckets"].items():
        listed = [
            entry
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for entry in page.get("Contents", [])
        ]
        assert len(listed) == facts["objects"], bucket
        assert sum(e["Size"] for e in listed) == facts["bytes"], bucket
        for key, digest in facts["sample"].items():
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert hashlib.sha256(body).hexdigest() == digest, (bucket, key)


def run_backup(environment, operator):
    return run_inline(
        backup_service(
            environment, Service.objects.get(name="minio"), user=operator, enqueue=False
        )
    )


@pytest.fixture
def httpstub_image(docker_client):
    """The hash tag of this checkout's stand-in image (other checkouts on the
    same engine may point :local at theirs)."""
    return _build_images().build_all(docker_client, ["httpstub"], log=lambda _: None)[
        "httpstub"
    ]


@pytest.fixture
def minio(backup_environment, running, httpstub_image):
    service = Service.objects.get(name="minio")
    override = ServiceOverride.objects.get(
        environment=backup_environment, service=service
    )
    override.values = {**override.values, "image": httpstub_image}
    override.save()
    env = running("minio")
    port = next(p.published for p in published_ports(service, env) if p.target == 9000)
    return env, f"http://127.0.0.1:{port}"


@pytest.fixture
def moto_server():
    """Start a moto S3 server of this test's own; yield its URL."""

    def start():
        port = free_port()
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1"]
            + ["-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started.append(process)
        wait_port(port, process, "moto_server")
        return f"http://127.0.0.1:{port}"

    started = []
    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def test_buckets_of_the_demo_standin_restore_into_a_fresh_one(
    minio,
    operator,
    docker_client,
    docker_labels,
    scratch_network,
    start_scratch,
    httpstub_image,
):
    env, endpoint = minio
    data = seed(s3_client(endpoint))
    operation = run_backup(env, operator)
    assert operation.status == "succeeded", operation.error
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    manifest = record.manifest
    assert manifest["endpoint"] == endpoint
    assert {b: (f["objects"], f["bytes"]) for b, f in manifest["buckets"].items()} == {
        bucket: (len(objects), sum(len(v) for v in objects.values()))
        for bucket, objects in data.items()
    }
    assert manifest["objects"] == 1210
    for bucket, facts in manifest["buckets"].items():
        assert len(facts["sample"]) == min(3, len(data[bucket]))
        for key, digest in facts["sample"].items():
            assert hashlib.sha256(data[bucket][key]).hexdigest() == digest
    # The secret never reaches what the portal keeps.
    lines = " ".join(line.text for line in operation.lines.all())
    assert SECRET not in lines and SECRET not in str(manifest)

    fresh = docker_client.containers.create(
        httpstub_image,
        environment={
            "STANDIN_KIND": "s3",
            "STANDIN_PORT": "9000",
            "STANDIN_STORAGE": "/data",
            "MINIO_ROOT_USER": "restore-user",
            "MINIO_ROOT_PASSWORD": "restore-secret",
        },
        labels=docker_labels,
        network=scratch_network.name,
    )
    address = start_scratch(fresh, scratch_network, "a fresh S3 stand-in")
    target = s3_client(f"http://{address}:9000", "restore-user", "restore-secret")
    with repository(record.tier, env).dump(record.snapshot_id, "/buckets.tar") as d:
        restored = restore(d, target)
    assert restored == data
    check_against_manifest(manifest, target)
    head = target.head_object(Bucket="media", Key="big.bin")
    assert head["Metadata"] == {"source": "media"}
    assert head["ContentType"] == "application/x-t"


def test_buckets_of_moto_restore_into_a_fresh_moto(minio, operator, moto_server):
    env, _standin = minio
    source = moto_server()
    data = seed(s3_client(source))
    strategy = BackupStrategy.objects.get(service="minio")
    strategy.settings = {
        **strategy.settings,
        "minio_settings": {"backup_all_buckets": True, "endpoint": source},
    }
    strategy.save()
    operation = run_backup(env, operator)
    assert operation.status == "succeeded", operation.error
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    assert record.manifest["endpoint"] == source
    assert record.manifest["objects"] == 1210
    target = s3_client(moto_server())
    with repository(record.tier, env).dump(record.snapshot_id, "/buckets.tar") as d:
        assert restore(d, target) == data
    check_against_manifest(record.manifest, target)


def test_buckets_named_in_the_settings_must_exist(minio, operator):
    env, endpoint = minio
    s3_client(endpoint).create_bucket(Bucket="kept")
    strategy = BackupStrategy.objects.get(service="minio")
    strategy.settings = {
        **strategy.settings,
        "minio_settings": {"backup_all_buckets": False, "buckets": ["kept", "gone"]},
    }
    strategy.save()
    operation = run_backup(env, operator)
    assert operation.status == "failed"
    assert operation.error == (
        "minio has no bucket gone (minio_settings.buckets); it has: kept."
    )


def test_wrong_credentials_name_the_endpoint_and_not_the_secret(minio, operator):
    env, endpoint = minio
    settings = dict(env.settings)
    settings["variables"] = {
        **settings["variables"],
        "MINIO_ROOT_PASSWORD": "wrong-one",
    }
    env.settings = settings
    env.save()
    operation = run_backup(env, operator)
    assert operation.status == "failed"
    assert operation.error.startswith(
        f"MinIO of minio at {endpoint}: listing the buckets failed: "
        "SignatureDoesNotMatch: The request signature we calculated does not match"
    )
    assert "wrong-one" not in operation.error
