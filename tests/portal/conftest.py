"""Factories of the portal tests: environments, stacks, users with roles."""

import pytest
from django.contrib.auth import get_user_model

import tests.portal.runners  # noqa: F401  (registers the test.* kinds)
from portal.choices import Role
from portal.models import RoleAssignment
from stacks.models import Environment, Stack


@pytest.fixture
def environment(db):
    return Environment.objects.create(name="dev", alias="d")


@pytest.fixture
def other_environment(db):
    return Environment.objects.create(name="prod")


@pytest.fixture
def stack(db):
    return Stack.objects.create(name="core")


@pytest.fixture
def other_stack(db):
    return Stack.objects.create(name="ai")


@pytest.fixture
def make_user(db):
    """Return a function making a user with ``role`` on ``environment``."""

    def make(username, role=None, environment=None, **fields):
        user = get_user_model().objects.create_user(
            username=username, password="pw", **fields
        )
        if role is not None:
            RoleAssignment.objects.create(user=user, role=role, environment=environment)
        return user

    return make


@pytest.fixture
def operator(make_user, environment):
    return make_user("olga", Role.OPERATOR, environment)


@pytest.fixture
def viewer(make_user, environment):
    return make_user("victor", Role.VIEWER, environment)


@pytest.fixture
def stranger(make_user):
    return make_user("sam")
