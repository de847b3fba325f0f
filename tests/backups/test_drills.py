"""Restore drills on the real engine with real restic: each strategy's
snapshot restored into a throw-away copy of its service, compared with its
manifest, the proof stored; the live service never touched; nothing left
behind."""

import pytest

from backups.choices import ProofStatus
from backups.models import BackupRecord, RestoreDrill
from backups.operations import backup_service, drill_backup
from portal.operations import PlanError, run_inline
from stacks import engine
from stacks.models import Service

# Fixtures of the strategies' own tests (a seeded MinIO stand-in, vLLM
# with a models volume, a copy of configs/).
from tests.backups.test_config_backup import config_dir  # noqa: F401
from tests.backups.test_minio import httpstub_image, minio  # noqa: F401
from tests.backups.test_postgres import SEED, psql
from tests.backups.test_runs import only_local
from tests.backups.test_volumes import vllm  # noqa: F401

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(600),
]


def back_up(env, operator, name, **options):
    operation = run_inline(
        backup_service(
            env, Service.objects.get(name=name), user=operator, enqueue=False, **options
        )
    )
    assert operation.status == "succeeded", operation.error
    return BackupRecord.objects.get(operation=operation, tier__name="local")


def drill(env, record, operator):
    operation = run_inline(drill_backup(env, record, user=operator, enqueue=False))
    return operation, RestoreDrill.objects.get(operation=operation)


def leftovers(docker_client, env):
    return engine.list_scratch(docker_client, environment=env.name)


def live_container(docker_client, env, name):
    service = Service.objects.get(name=name)
    return engine.service_states(docker_client, env.project_name(service.stack))[name]


@pytest.fixture
def postgres_record(running, operator, docker_client):
    env = running("postgres")
    only_local(env)
    container = live_container(docker_client, env, "postgres").id
    psql(docker_client, container, SEED)
    return env, back_up(env, operator, "postgres"), container


def test_postgres_drill_passes_with_its_proof_and_leaves_nothing(
    postgres_record, operator, docker_client
):
    env, record, container = postgres_record
    before = docker_client.api.inspect_container(container)
    operation, proof = drill(env, record, operator)
    assert operation.status == "succeeded", operation.error
    assert proof.status == ProofStatus.PASSED
    compared = {c["what"]: c for c in proof.proof["compared"]}
    assert compared["rows of public.items"] == {
        "what": "rows of public.items",
        "expected": 2500,
        "found": 2500,
        "ok": True,
    }
    assert compared["rows of public.notes"]["found"] == 40
    assert compared["tables"]["found"] == 2
    assert proof.proof["image"] == before["Config"]["Image"]
    assert proof.proof["versions"]["drill"].startswith("15.")
    assert proof.duration_s > 0 and set(proof.proof["steps"]) >= {"load", "measure"}
    # The live service was not touched: same container, never restarted.
    after = docker_client.api.inspect_container(container)
    assert after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert leftovers(docker_client, env) == []
    record.refresh_from_db()
    assert record.last_drill() == proof


def test_drill_of_data_that_differs_from_its_manifest_fails_naming_it(
    postgres_record, operator, docker_client
):
    """The manifest says notes held 40 rows when the data was read; the dump
    holds none (a table emptied between the manifest and the dump)."""
    env, _record, container = postgres_record
    psql(docker_client, container, "DELETE FROM notes")
    record = back_up(env, operator, "postgres")
    assert record.manifest["tables"]["public.notes"] == 0
    record.manifest = {
        **record.manifest,
        "tables": {**record.manifest["tables"], "public.notes": 40},
    }
    record.save(update_fields=["manifest"])
    operation, proof = drill(env, record, operator)
    assert operation.status == "failed"
    assert proof.status == ProofStatus.FAILED
    assert [d["what"] for d in proof.differences] == ["rows of public.notes"]
    assert (
        "rows of public.notes: 40 expected (the manifest), 0 found" in operation.error
    )
    assert proof.error == operation.error
    assert leftovers(docker_client, env) == []


def test_drill_of_a_record_of_another_environment_is_refused(
    postgres_record, operator, backup_environment
):
    from stacks.models import Environment

    env, record, _container = postgres_record
    other = Environment.objects.get(name="demo")
    with pytest.raises(PlanError, match=f"is of environment {env.name}, not demo"):
        drill_backup(other, record, user=operator, enqueue=False)


def passes(env, record, operator, docker_client):
    operation, proof = drill(env, record, operator)
    assert operation.status == "succeeded", operation.error
    assert proof.status == ProofStatus.PASSED, proof.error
    assert proof.proof["compared"] and all(c["ok"] for c in proof.proof["compared"])
    assert leftovers(docker_client, env) == []
    return {c["what"]: c["found"] for c in proof.proof["compared"]}


def test_redis_rdb_drill_counts_the_keys_of_every_database(
    running, operator, docker_client
):
    from stacks.config import published_ports
    from tests.backups.test_redis import fill

    env = running("redis")
    only_local(env)
    service = Service.objects.get(name="redis")
    port = next(p.published for p in published_ports(service, env) if p.target == 6379)
    fill(port)
    found = passes(
        env, back_up(env, operator, "redis", strategy="rdb"), operator, docker_client
    )
    assert found["keys in db0"] == 3004 and found["keys in db2"] == 37


def test_qdrant_drill_counts_the_points_of_every_collection(
    running, operator, docker_client
):
    import requests

    from stacks.config import published_ports
    from tests.backups.test_qdrant import seed

    env = running("qdrant")
    only_local(env)
    service = Service.objects.get(name="qdrant")
    port = next(p.published for p in published_ports(service, env) if p.target == 6333)
    with requests.Session() as http:
        http.trust_env = False
        seed(http, f"http://127.0.0.1:{port}")
    found = passes(env, back_up(env, operator, "qdrant"), operator, docker_client)
    assert found["points of docs"] == 120 and found["points of images"] == 35


def test_minio_drill_counts_objects_bytes_and_hashes_the_sample(
    minio,  # noqa: F811
    operator,
    docker_client,
):
    from tests.backups.test_minio import s3_client, seed

    env, endpoint = minio
    only_local(env)
    seed(s3_client(endpoint))
    found = passes(env, back_up(env, operator, "minio"), operator, docker_client)
    assert found["objects in logs"] == 1203 and found["objects in empty"] == 0
    assert any(what.startswith("sha256 of media/") for what in found)


def test_volume_drill_counts_files_bytes_and_hashes_the_sample(
    vllm,  # noqa: F811
    operator,
    docker_client,
):
    env, _volume = vllm
    only_local(env)
    found = passes(env, back_up(env, operator, "vllm"), operator, docker_client)
    assert found["files in vllm_cache"] == 26
    assert any(what.startswith("sha256 of vllm_cache/") for what in found)


def test_configuration_drill_hashes_every_file(
    backup_environment,
    config_dir,  # noqa: F811
    operator,
    docker_client,
):
    from backups.operations import backup_config

    env = backup_environment
    only_local(env)
    operation = run_inline(backup_config(env, user=operator, enqueue=False))
    assert operation.status == "succeeded", operation.error
    record = BackupRecord.objects.get(operation=operation, tier__name="local")
    found = passes(env, record, operator, docker_client)
    assert "sha256 of configs/stacks.yaml" in found


def test_objects_left_by_a_killed_drill_are_removed_by_the_next(
    postgres_record, operator, docker_client
):
    """A drill that died (its operation ended while its copy still existed)
    left a labelled volume and network; the next drill finds and removes
    them, and leaves alone those of a drill still running."""
    from portal.choices import OperationStatus
    from portal.models import Operation

    env, record, _container = postgres_record
    dead, _proof = drill(env, record, operator)
    alive, _proof = drill(env, record, operator)
    Operation.objects.filter(pk=alive.pk).update(status=OperationStatus.RUNNING)
    made = []
    for owner in (dead.pk, alive.pk):
        with engine.scratch_volume(
            docker_client, environment=env, purpose="backup.drill", owner=owner
        ) as volume:
            made.append(volume)
    # The context removed them; make them again as a crash would leave them.
    for owner, name in zip((dead.pk, alive.pk), made, strict=True):
        docker_client.api.create_volume(
            name=name,
            labels=engine.labels.helper_labels(env.name, "backup.drill", owner),
        )
    # The killed drill's proof row was left running.
    RestoreDrill.objects.filter(operation=dead).update(status=ProofStatus.RUNNING)
    operation, _proof = drill(env, record, operator)
    assert operation.status == "succeeded", operation.error
    lines = "\n".join(line.text for line in operation.lines.order_by("seq"))
    assert f"Removed volume {made[0]}, left by a drill or restore that ended" in lines
    left = RestoreDrill.objects.get(operation=dead)
    assert (left.status, left.error) == (
        ProofStatus.ERROR,
        "Abandoned: the drill's operation ended without finishing it.",
    )
    remaining = {o.name for o in leftovers(docker_client, env)}
    assert remaining == {made[1]}
    docker_client.api.remove_volume(made[1])


def test_drill_command_drills_the_newest_backup_and_fails_on_a_difference(
    postgres_record, operator
):
    from io import StringIO

    from django.core.management import CommandError, call_command

    env, record, _container = postgres_record
    out = StringIO()
    args = ("backup", "drill", "--env", env.name, "--user", operator.username)
    call_command(*args, "--service", "postgres", stdout=out)
    text = out.getvalue()
    assert f"== drill of postgres record #{record.pk} (full, local, latest)" in text
    assert f"Record #{record.pk} proven restorable" in text
    record.manifest = {**record.manifest, "tables": {"public.items": 7}}
    record.save(update_fields=["manifest"])
    with pytest.raises(CommandError) as failed:
        call_command(*args, "--record", str(record.pk), stdout=StringIO())
    assert "rows of public.items: 7 expected (the manifest), 2500 found" in str(
        failed.value
    )
    with pytest.raises(CommandError, match="no restorable backup"):
        call_command(*args, "--service", "redis", stdout=StringIO())
