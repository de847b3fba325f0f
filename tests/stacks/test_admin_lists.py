"""The admin lists the whole imported configuration."""

import io
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db

ENVIRONMENTS = ["development", "staging", "production", "testing", "demo"]


@pytest.fixture
def imported():
    """Import the real configs/stacks.yaml; return its parsed content."""
    call_command("import_configs", stdout=io.StringIO())
    return yaml.safe_load(
        (Path(settings.PORTAL_CONFIG_DIR) / "stacks.yaml").read_text()
    )


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("root", password="pw")
    client.force_login(user)
    return client


def changelist(client, model):
    response = client.get(reverse(f"admin:stacks_{model}_changelist"))
    assert response.status_code == 200
    return response


def test_admin_lists_every_environment(admin_client, imported):
    response = changelist(admin_client, "environment")
    assert response.context["cl"].result_count == 5
    names = [env.name for env in response.context["cl"].result_list]
    assert sorted(names) == sorted(ENVIRONMENTS)
    content = response.content.decode()
    for name in ENVIRONMENTS:
        assert f">{name}</a>" in content


def test_admin_lists_every_stack(admin_client, imported):
    response = changelist(admin_client, "stack")
    assert response.context["cl"].result_count == 6
    assert sorted(s.name for s in response.context["cl"].result_list) == sorted(
        imported["stacks"]
    )


def test_admin_lists_every_service(admin_client, imported):
    response = changelist(admin_client, "service")
    expected = sorted(imported["services"])
    assert response.context["cl"].result_count == len(expected)
    assert sorted(s.name for s in response.context["cl"].result_list) == expected
    content = response.content.decode()
    for name in expected:
        assert f">{name}</a>" in content
