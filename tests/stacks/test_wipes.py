"""Wipes on the real engine: exactly the planned objects, by label, in one
environment only; the dry run changes nothing; a mistyped confirmation
is refused before anything exists; a plan gone stale stops the run."""

import pytest

from portal.choices import OperationStatus
from portal.models import AuditEntry, Operation
from portal.operations import ConfirmationMismatch, run_inline
from stacks import engine
from stacks.models import Service
from stacks.operations import start_stack, wipe
from tests.stacks import test_lifecycle as lifecycle
from tests.stacks.test_lifecycle import assert_succeeded, exec_out, stack

# The lifecycle tests' fixtures: the real configuration, copies of demo.
configs = lifecycle.configs
make_environment = lifecycle.make_environment
operator = lifecycle.operator

pytestmark = [pytest.mark.docker, pytest.mark.django_db(transaction=True)]

SQL = ["psql", "-X", "-qAt", "-U", "multimodal", "-d", "multimodal", "-c"]


def start_postgres(env, operator):
    operation = run_inline(
        start_stack(
            env,
            stack("core"),
            service=Service.objects.get(name="postgres"),
            user=operator,
            enqueue=False,
        )
    )
    assert_succeeded(operation)


def postgres(client, env):
    return engine.service_states(client, env.project_name(stack("core")))["postgres"]


def seed(client, env):
    code, out = exec_out(
        client,
        postgres(client, env).id,
        SQL + ["CREATE TABLE kept (v text); INSERT INTO kept VALUES ('row');"],
    )
    assert code == 0, out


def rows(client, env):
    code, out = exec_out(
        client,
        postgres(client, env).id,
        SQL + ["SELECT count(*) FROM pg_tables WHERE tablename = 'kept'"],
    )
    assert code == 0, out
    return int(out)


def world(client, env):
    """Return the ids of every container, volume and network of ``env``."""
    return (
        {c["Id"] for c in engine.list_containers(client, environment=env.name)},
        {v["Name"] for v in engine.list_volumes(client, environment=env.name)},
        {n["Id"] for n in engine.list_networks(client, environment=env.name)},
    )


@pytest.fixture
def two(make_environment, operator, docker_client):
    """Two copies of demo with postgres running and a table in each."""
    first, second = make_environment("a"), make_environment("b")
    for env in (first, second):
        start_postgres(env, operator)
        seed(docker_client, env)
    return first, second


def test_wipe_db_empties_this_environment_only_and_the_dry_run_nothing(
    two, operator, docker_client
):
    first, second = two
    before = world(docker_client, first), world(docker_client, second)

    dry = run_inline(
        wipe(first, data_type="db", dry_run=True, user=operator, enqueue=False)
    )
    assert_succeeded(dry)
    plan = dry.plan
    (volume,) = plan["volumes"]
    assert volume["data_type"] == "db" and volume["action"] == "empty"
    assert first.name in volume["name"] and second.name not in volume["name"]
    ((container),) = plan["containers"]
    assert container["service"] == "postgres"
    assert container["action"] == "stop, start again"
    assert plan["services"] == ["postgres"]
    assert (
        plan["info"]["volume_bytes"][volume["name"]] > 0
        or plan["info"]["sizes_unknown"]
    )
    # Nothing moved: the same objects, the same row, the container running.
    assert (world(docker_client, first), world(docker_client, second)) == before
    assert rows(docker_client, first) == 1
    assert postgres(docker_client, first).state == "running"

    with pytest.raises(ConfirmationMismatch, match=f"Type {first.name}/db to confirm"):
        wipe(first, data_type="db", confirm=f"{second.name}/db", user=operator)
    assert not Operation.objects.filter(kind="wipe.data", parameters__dry_run=False)

    real = run_inline(
        wipe(
            first,
            data_type="db",
            confirm=f"{first.name}/db",
            user=operator,
            enqueue=False,
        )
    )
    assert_succeeded(real)
    assert real.result["emptied"] == [volume["name"]]
    # The volume and the container stay; the data is gone; postgres is back
    # (it initialised an empty cluster).
    assert world(docker_client, first) == before[0]
    assert postgres(docker_client, first).ready
    assert rows(docker_client, first) == 0
    # The other environment's identically configured volume is untouched.
    assert world(docker_client, second) == before[1]
    assert rows(docker_client, second) == 1
    entry = AuditEntry.objects.get(action="operation.finished", object_id=real.pk)
    assert entry.data["status"] == "succeeded"
    requested = AuditEntry.objects.get(action="operation.requested", object_id=real.pk)
    assert requested.data["plan"]["sha256"]


def test_stack_wipe_removes_exactly_the_stack(two, operator, docker_client):
    first, second = two
    other = world(docker_client, second)
    operation = wipe(
        first,
        stack=stack("core"),
        confirm=f"{first.name}/core",
        user=operator,
        enqueue=False,
    )
    planned = {c["id"] for c in operation.plan["containers"]}
    assert len(planned) == 1 and operation.plan["networks"]
    operation = run_inline(operation)
    assert_succeeded(operation)
    containers, volumes, networks = world(docker_client, first)
    assert not containers and not volumes and not networks
    assert world(docker_client, second) == other
    assert rows(docker_client, second) == 1


def test_a_plan_gone_stale_stops_before_anything_is_touched(
    two, operator, docker_client
):
    first, _second = two
    operation = wipe(
        first,
        data_type="db",
        confirm=f"{first.name}/db",
        user=operator,
        enqueue=False,
    )
    # Between the plan and the run, the container goes.
    old = postgres(docker_client, first)
    engine.remove_container(docker_client, old.id)
    operation = run_inline(operation)
    assert operation.status == OperationStatus.FAILED
    assert operation.error.startswith(
        "The plan no longer matches what is there: changed containers (gone: "
    )
    assert "Nothing was changed; request a new plan." in operation.error
    # The data is still there.
    (volume,) = operation.plan["volumes"]
    names = set()
    for chunk in engine.read_volume(docker_client, volume["name"], environment=first):
        names.add(b"PG_VERSION" in chunk)
    assert True in names


def test_bad_requests_are_refused_before_anything_exists(two, operator):
    first, _second = two
    with pytest.raises(ValueError, match="Unknown data type 'everything'"):
        wipe(first, data_type="everything", confirm="x", user=operator)
    with pytest.raises(ConfirmationMismatch, match=f"Type {first.name}/all"):
        wipe(first, user=operator)
    assert not Operation.objects.filter(kind__startswith="wipe.").exists()
