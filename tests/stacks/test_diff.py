"""What a start would change, against containers a real start made: the
verdict per service as reconcile decides it (config hash), the diff of the
configuration a container was made from (label portal.config) with
today's, and secrets never shown.

Runs the real configs/stacks.yaml in a copy of demo (see test_lifecycle).
"""

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from stacks.compose import stack_plan
from stacks.diff import redacted_compose, stack_diff
from stacks.engine import labels
from stacks.models import Service, ServiceOverride
from stacks.operations import start_stack, stop_stack
from tests.stacks.test_lifecycle import (  # noqa: F401  (fixtures)
    assert_succeeded,
    configs,
    env,
    make_environment,
    operator,
    run,
    stack,
)

pytestmark = [
    pytest.mark.docker,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.timeout(300),
]


class World:
    """A copy of demo, a superuser, and a way to start or stop redis there."""

    def __init__(self, environment, user, run_jobs):
        self.env, self.operator, self.run_jobs = environment, user, run_jobs

    def redis(self, action=start_stack):
        redis = Service.objects.get(name="redis")
        operation = action(self.env, stack("core"), user=self.operator, service=redis)
        assert_succeeded(run(operation, self.run_jobs))


@pytest.fixture
def world(env, operator, run_jobs):  # noqa: F811
    return World(env, operator, run_jobs)


def verdicts(result):
    return {s["service"]: s["verdict"] for s in result["services"]}


def by_service(result, name):
    return next(s for s in result["services"] if s["service"] == name)


def test_a_fresh_start_leaves_nothing_to_change(docker_client, world):
    copy = world.env
    world.redis()
    result = stack_diff(copy, stack("core"))
    assert verdicts(result) == {
        "postgres": "create",
        "redis": "unchanged",
        "qdrant": "create",
        "minio": "create",
    }
    redis = by_service(result, "redis")
    assert redis["recorded"] and redis["changed"] == [] and redis["diff"] == []
    assert result["summary"] == {"create": 3, "unchanged": 1}
    # The container carries what it was made from, as configured.
    container = docker_client.containers.get(redis["container"])
    recorded = json.loads(container.labels[labels.CONFIG])
    assert recorded["image"] == "stackportal/redis:local"


def test_a_changed_override_shows_as_a_diff_and_a_recreate(world):
    copy = world.env
    world.redis()
    override = ServiceOverride.objects.get(environment=copy, service__name="redis")
    override.values = {**override.values, "environment": {"REDIS_EXTRA": "on"}}
    override.save()
    redis = by_service(stack_diff(copy, stack("core")), "redis")
    assert redis["verdict"] == "recreate"
    assert redis["changed"] == ["environment"]
    assert "configuration changed (environment)" in redis["why"]
    assert "+environment:" in redis["diff"] and "+  REDIS_EXTRA: 'on'" in redis["diff"]
    # A start applies it; then nothing is left to change.
    world.redis()
    assert by_service(stack_diff(copy, stack("core")), "redis")["verdict"] == (
        "unchanged"
    )


def test_a_value_behind_a_reference_changes_without_being_shown(world):
    """A variable's new value recreates the container (its hash covers the
    resolved environment); neither value appears anywhere in the answer."""
    copy = world.env
    override = ServiceOverride.objects.get(environment=copy, service__name="redis")
    override.values = {
        **override.values,
        "environment": {"REDIS_AUTH_TOKEN": "${REDIS_TEST_TOKEN}"},
    }
    override.save()
    copy.settings = {
        **copy.settings,
        "variables": {**copy.settings["variables"], "REDIS_TEST_TOKEN": "tok-before-1"},
    }
    copy.save()
    world.redis()
    copy.settings["variables"]["REDIS_TEST_TOKEN"] = "tok-after-2"
    copy.save()
    result = stack_diff(copy, stack("core"))
    redis = by_service(result, "redis")
    assert redis["verdict"] == "recreate" and redis["changed"] == []
    assert "a value behind a ${VAR} reference changed" in redis["why"]
    text = json.dumps(result)
    assert "tok-before-1" not in text and "tok-after-2" not in text


def test_a_stopped_container_would_be_started(world):
    world.redis()
    world.redis(stop_stack)
    result = stack_diff(world.env, stack("core"))
    assert by_service(result, "redis")["verdict"] == "start"


def test_compose_text_hides_literal_secrets(world):
    copy = world.env
    override = ServiceOverride.objects.get(environment=copy, service__name="redis")
    override.values = {
        **override.values,
        "environment": {"ADMIN_PASSWORD": "literal-secret-789", "MODE": "plain"},
    }
    override.save()
    text = redacted_compose(stack_plan(copy, stack("core")))
    assert "literal-secret-789" not in text
    assert "ADMIN_PASSWORD: '********'" in text and "MODE: plain" in text
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}" in text


def test_stack_diff_command_prints_verdicts_and_exits_1_on_changes(world):
    """manage.py stack diff: the table, the diff of what changed, and an exit
    status like diff(1)."""
    world.redis()
    user = ["--user", world.operator.username]
    out = io.StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command(
            "stack", "diff", "core", "--env", world.env.name, *user, stdout=out
        )
    assert excinfo.value.returncode == 1
    assert "3 of 4 services of core would change on a start." in str(excinfo.value)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["SERVICE", "A", "START", "WOULD", "WHY"]
    assert any(line.split()[:2] == ["redis", "unchanged"] for line in lines)
    assert any(line.split()[:2] == ["postgres", "create"] for line in lines)
    assert "+image: stackportal/postgres:local" in lines
