"""Fixtures of the live-data tests: configured rows, users with roles, and
labelled containers made the way the adapter labels them.

Imported by test_status.py, test_views.py, test_log_consumer.py and the
browser tests; each fixture creates exactly what it names.
"""

import time

import pytest
from django.contrib.auth import get_user_model

from portal.choices import Role
from portal.models import RoleAssignment
from stacks.models import Environment, Service, Stack
from tests.conftest import RUN_ID

__all__ = [
    "BUSYBOX",
    "make_container",
    "make_environment",
    "make_service",
    "make_stack",
    "make_user",
    "wait_for",
]

BUSYBOX = "stackportal/busybox:local"


@pytest.fixture
def make_environment(db):
    # Names carry the run id: the engine is shared with other test runs,
    # and containers are found by the environment label.
    def make(name="live", **fields):
        return Environment.objects.create(name=f"{name}-{RUN_ID}", **fields)

    return make


@pytest.fixture
def make_stack(db):
    def make(name="web", **fields):
        return Stack.objects.create(name=name, **fields)

    return make


@pytest.fixture
def make_service(db):
    def make(stack, name, **fields):
        fields.setdefault("image", BUSYBOX)
        return Service.objects.create(stack=stack, name=name, **fields)

    return make


@pytest.fixture
def make_user(db):
    """Return a function making a user with ``role`` on ``environment``."""

    def make(username, role=None, environment=None, **fields):
        user = get_user_model().objects.create_user(
            username=username, password="pw-" + username, **fields
        )
        if role is not None:
            RoleAssignment.objects.create(
                user=user, role=Role(role), environment=environment
            )
        return user

    return make


@pytest.fixture
def make_container(docker_client, docker_labels):
    """Return a function running a busybox container labelled as the adapter
    labels a stack's service (plus the test run's label).

    ``script`` runs under ``sh -c`` with init=True, so it stops on a signal;
    scripts must be bounded (see test-world.md on log floods).
    """

    def make(environment, stack, service, script, *, wait=True, **options):
        project = environment.project_name(stack)
        labels = {
            "com.docker.compose.project": project,
            "com.docker.compose.service": service,
            "portal.managed": "true",
            "portal.environment": environment.name,
            "portal.stack": stack.name,
            "portal.service": service,
            **docker_labels,
        }
        options.setdefault(
            "log_config", {"Type": "json-file", "Config": {"max-size": "50m"}}
        )
        container = docker_client.containers.run(
            BUSYBOX,
            ["sh", "-c", script],
            name=f"{project}-{service}-1",
            labels=labels,
            detach=True,
            init=True,
            **options,
        )
        if wait:
            wait_for(lambda: _state(container) != "created", what=f"{service} to start")
        return container

    return make


def _state(container):
    container.reload()
    return container.status


def wait_for(predicate, timeout=20.0, interval=0.05, what="condition"):
    """Poll ``predicate`` until it returns a true value; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
