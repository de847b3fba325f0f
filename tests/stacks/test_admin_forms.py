"""The admin's service and override forms: a field per common Compose key,
through the same gate and audit as any change of the configuration."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from portal.choices import Role
from portal.models import AuditEntry, RoleAssignment
from stacks.config import import_configs
from stacks.forms import CommandField, KeyValueField, LinesField
from stacks.models import Environment, Service, ServiceOverride
from tests.portal.helpers import admin_form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    import_configs()
    user = get_user_model().objects.create_superuser("ada", password="pw")
    RoleAssignment.objects.create(user=user, role=Role.ADMIN)
    client.force_login(user)
    return client


def change(client, obj, **fields):
    """Post ``obj``'s admin change form as rendered, with ``fields`` changed."""
    model = type(obj)._meta.model_name
    url = reverse(f"admin:stacks_{model}_change", args=[obj.pk])
    data = admin_form_data(client.get(url))
    data.update(fields)
    return client.post(url, data)


def errors(response):
    return {k: list(v) for k, v in response.context["adminform"].form.errors.items()}


# -- the fields ----------------------------------------------------------------


def test_key_value_field_reads_lines_and_names_a_bad_one():
    field = KeyValueField()
    assert field.clean("A=1\n\n# a comment\nB=x=y\nPASSTHROUGH") == {
        "A": "1",
        "B": "x=y",
        "PASSTHROUGH": None,
    }
    assert field.clean('{"A": 1}') == {"A": 1}
    with pytest.raises(Exception) as excinfo:
        field.clean("A=1\nBAD KEY=2")
    assert "Line 2: 'BAD KEY=2' is not KEY=value." in str(excinfo.value)
    with pytest.raises(Exception) as excinfo:
        field.clean("A=1\nA=2")
    assert "Line 2: A is set twice." in str(excinfo.value)


def test_lines_field_takes_lines_json_objects_or_a_json_list():
    field = LinesField()
    assert field.clean(' 8080:80 \n\n{"target": 9000}\n') == [
        "8080:80",
        {"target": 9000},
    ]
    assert field.clean('["a:/b", "c:/d:ro"]') == ["a:/b", "c:/d:ro"]
    with pytest.raises(Exception) as excinfo:
        field.clean("a:/b\n{oops")
    assert "Line 2: not a JSON object" in str(excinfo.value)


def test_command_field_keeps_text_or_a_list():
    field = CommandField()
    assert (
        field.clean("redis-server --appendonly yes") == "redis-server --appendonly yes"
    )
    assert field.clean('["--model", "x"]') == ["--model", "x"]
    assert field.clean("  ") is None
    assert field.prepare_value(["a", "b"]) == '["a", "b"]'


# -- services --------------------------------------------------------------------


def test_service_form_shows_each_common_key_as_text(admin_client):
    redis = Service.objects.get(name="redis")
    url = reverse("admin:stacks_service_change", args=[redis.pk])
    form = admin_client.get(url).context["adminform"].form
    assert form["ports"].value() == "${REDIS_PORT:-6379}:6379"
    assert form["volumes"].value() == "redis_data:/data"
    assert form["command"].value() == redis.command
    assert form["healthcheck"].value() == '["CMD", "redis-cli", "ping"]'
    assert form["healthcheck_interval"].value() == "30s"
    assert form["healthcheck_retries"].value() == 3


def test_service_edit_through_fields_saves_values_and_audits_the_diff(admin_client):
    redis = Service.objects.get(name="redis")
    before = dict(redis.healthcheck)
    response = change(
        admin_client,
        redis,
        environment="REDIS_LOG=notice\nREDIS_SECRET_TOKEN=${REDIS_TOKEN}",
        healthcheck_interval="15s",
    )
    assert response.status_code == 302, errors(response)
    redis.refresh_from_db()
    assert redis.environment == {
        "REDIS_LOG": "notice",
        "REDIS_SECRET_TOKEN": "${REDIS_TOKEN}",
    }
    # The other healthcheck keys are as they were.
    assert redis.healthcheck == {**before, "interval": "15s"}
    entry = AuditEntry.objects.filter(action="object.changed").latest("id")
    assert entry.object_repr == "redis" and entry.actor_name == "ada"
    assert set(entry.data["changes"]) == {"environment", "healthcheck"}


def test_service_unchanged_fields_keep_their_stored_values(admin_client):
    """An integer or a mapping the text shows as a string is saved back as it
    was when its field is left alone."""
    qdrant = Service.objects.get(name="qdrant")
    qdrant.ports = [6333, {"target": 6334, "published": "6334"}]
    qdrant.save()
    response = change(admin_client, qdrant, user="1000")
    assert response.status_code == 302, errors(response)
    qdrant.refresh_from_db()
    assert qdrant.ports == [6333, {"target": 6334, "published": "6334"}]
    assert qdrant.user == "1000"


def test_service_gate_errors_land_on_their_field(admin_client):
    """The importer's rules still decide; a bad healthcheck interval is shown
    on the interval's field, a bad port on the ports field."""
    redis = Service.objects.get(name="redis")
    response = change(admin_client, redis, healthcheck_interval="soon", ports="http")
    assert response.status_code == 200
    found = errors(response)
    assert found["healthcheck_interval"] == [
        "services.redis.healthcheck.interval: invalid duration 'soon' "
        "(e.g. 30s, 1m30s, 500ms)"
    ]
    assert found["ports"][0].startswith("services.redis.ports: ")
    redis.refresh_from_db()
    assert redis.healthcheck["interval"] == "30s"


def test_service_text_that_is_not_valid_is_refused_with_its_line(admin_client):
    redis = Service.objects.get(name="redis")
    response = change(admin_client, redis, environment="OK=1\nNOT OK=2")
    assert errors(response)["environment"] == ["Line 2: 'NOT OK=2' is not KEY=value."]


# -- overrides ---------------------------------------------------------------------


def test_override_form_sets_keys_by_field_and_leaves_the_rest(admin_client):
    demo = Environment.objects.get(name="demo")
    override = ServiceOverride.objects.get(environment=demo, service__name="redis")
    before = dict(override.values)
    response = change(
        admin_client, override, ports="15999:6379", environment_variables="A=1"
    )
    assert response.status_code == 302, errors(response)
    override.refresh_from_db()
    assert override.values == {
        **before,
        "environment": {"A": "1"},
        "ports": ["15999:6379"],
    }
    # Stored in the file's key order.
    keys = list(override.values)
    assert keys.index("image") < keys.index("environment") < keys.index("ports")


def test_override_empty_field_removes_the_key(admin_client):
    demo = Environment.objects.get(name="demo")
    override = ServiceOverride.objects.get(environment=demo, service__name="redis")
    assert "image" in override.values
    response = change(admin_client, override, image="")
    assert response.status_code == 302, errors(response)
    override.refresh_from_db()
    assert "image" not in override.values


def test_override_other_keys_and_gate_errors(admin_client):
    """Keys without a field go in "Other keys"; the gate's issue about a key
    with a field is shown on that field."""
    demo = Environment.objects.get(name="demo")
    override = ServiceOverride.objects.get(environment=demo, service__name="redis")
    response = change(admin_client, override, values='{"shm_size": "64m"}')
    assert response.status_code == 302, errors(response)
    override.refresh_from_db()
    assert override.values["shm_size"] == "64m"

    response = change(admin_client, override, volumes="/etc:/host-etc:ro")
    assert response.status_code == 200
    [message] = errors(response)["volumes"]
    assert message.startswith("environments.demo.overrides.redis.volumes: ")
    assert "bind mount source /etc" in message


def test_environment_page_lists_overrides_without_their_json(admin_client):
    """Overrides are listed with links to their own page; the environment's
    page no longer holds a JSON box per service."""
    demo = Environment.objects.get(name="demo")
    url = reverse("admin:stacks_environment_change", args=[demo.pk])
    html = admin_client.get(url).content.decode()
    for override in ServiceOverride.objects.filter(environment=demo):
        assert (
            reverse("admin:stacks_serviceoverride_change", args=[override.pk]) in html
        )
    assert "service_overrides-0-values" not in html
    # Saving the environment still works with the list on the page.
    response = change(admin_client, demo, description="the demo")
    assert response.status_code == 302
    demo.refresh_from_db()
    assert demo.description == "the demo"


def test_audit_list_shows_a_short_summary(admin_client):
    response = admin_client.get(reverse("admin:portal_auditentry_changelist"))
    html = response.content.decode()
    assert 'class="field-summary"' in html
    assert "file=" in html  # config.imported's data, one line
