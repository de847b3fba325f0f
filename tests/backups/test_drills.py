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
from tests.backups.test_postgres import SEED, psql
from tests.backups.test_runs import only_local

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
