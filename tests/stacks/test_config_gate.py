"""The one gate for configuration changes, through the Django admin.

A staff user with Django's model permissions but without the Admin role on
the environments a row belongs to cannot change it; an Admin cannot make a
change the importer would refuse (host policy included); what passes is
saved and audited with its diff.
"""

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse

from portal.choices import Role
from portal.models import AuditEntry, RoleAssignment
from stacks.config import import_configs
from stacks.models import Environment, Service, ServiceOverride
from tests.portal.helpers import admin_form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def configs():
    import_configs()


def staff(username, role=None, environment=None):
    """Return a staff user with every Django permission on the configuration
    apps (stacks and backups)."""
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label__in=["stacks", "backups"])
    )
    if role is not None:
        RoleAssignment.objects.create(user=user, role=role, environment=environment)
    return user


def changed_entries():
    return list(
        AuditEntry.objects.filter(action__startswith="object.").values_list(
            "action", "object_repr"
        )
    )


def post_change(client, model, obj, **changes):
    """Post the admin change form of ``obj`` with ``changes`` (JSON-encoded)."""
    url = reverse(f"admin:stacks_{model}_change", args=[obj.pk])
    response = client.get(url)
    data = admin_form_data(response)
    for key, value in changes.items():
        data[key] = value if isinstance(value, str) else json.dumps(value)
    return client.post(url, data)


def form_errors(response):
    form = response.context["adminform"].form
    return {field: list(errors) for field, errors in form.errors.items()}


def test_staff_without_the_admin_role_cannot_change_a_service(client, configs):
    """Django's change permission alone is not enough: 403, nothing saved."""
    client.force_login(staff("sam"))
    redis = Service.objects.get(name="redis")
    response = post_change(client, "service", redis, extra={"privileged": True})
    assert response.status_code == 403
    redis.refresh_from_db()
    assert "privileged" not in redis.extra
    assert changed_entries() == []


def test_admin_of_one_environment_cannot_change_what_every_environment_runs(
    client, configs
):
    demo = Environment.objects.get(name="demo")
    client.force_login(staff("dana", Role.ADMIN, demo))
    redis = Service.objects.get(name="redis")
    assert post_change(client, "service", redis, image="redis:8").status_code == 403

    prod_override = ServiceOverride.objects.get(
        environment__name="production", service__name="redis"
    )
    response = post_change(
        client, "serviceoverride", prod_override, values={"image": "redis:8"}
    )
    assert response.status_code == 403

    demo_override = ServiceOverride.objects.get(environment=demo, service=redis)
    values = {**demo_override.values, "shm_size": "64m"}
    response = post_change(client, "serviceoverride", demo_override, values=values)
    assert response.status_code == 302
    demo_override.refresh_from_db()
    assert demo_override.values["shm_size"] == "64m"
    assert changed_entries() == [("object.changed", "redis in demo")]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            {"privileged": True},
            "services.redis.privileged: in environment development, 'privileged' "
            "is not allowed (add it to environments.development.host_policy.allow)",
        ),
        (
            {"pid": "host"},
            # Production's override replaces extra: only the others are asked.
            "services.redis.pid: in environment testing, 'pid: host' is not "
            "allowed (add it to environments.testing.host_policy.allow)",
        ),
        (
            {"cap_add": ["SYS_ADMIN"]},
            "services.redis.cap_add: in environment staging, capability SYS_ADMIN "
            "is not allowed (add it to environments.staging.host_policy.capabilities)",
        ),
    ],
)
def test_admin_edit_refused_by_the_host_policy(client, configs, extra, message):
    """An Admin of every environment still cannot ask for what a policy does
    not allow: the form says which key, service and environment."""
    client.force_login(staff("ada", Role.ADMIN))
    redis = Service.objects.get(name="redis")
    response = post_change(client, "service", redis, extra=extra)
    assert response.status_code == 200
    errors = form_errors(response)
    assert message in errors["extra"]
    redis.refresh_from_db()
    assert redis.extra == {}
    assert changed_entries() == []


def test_bind_mount_edit_refused_outside_the_allowed_paths(client, configs):
    client.force_login(staff("ada", Role.ADMIN))
    redis = Service.objects.get(name="redis")
    volumes = [*redis.volumes, "/etc:/host-etc:ro"]
    response = post_change(client, "service", redis, volumes=volumes)
    assert response.status_code == 200
    assert (
        "services.redis.volumes: in environment production, bind mount source /etc "
        "is outside the project directory and "
        "environments.production.host_policy.bind_mounts (add it there to allow it)"
    ) in form_errors(response)["volumes"]
    redis.refresh_from_db()
    assert "/etc:/host-etc:ro" not in redis.volumes


def test_override_edit_refused_by_its_environments_policy(client, configs):
    client.force_login(staff("ada", Role.ADMIN))
    override = ServiceOverride.objects.get(
        environment__name="production", service__name="postgres"
    )
    values = {**override.values, "extra": {"pid": "host"}}
    response = post_change(client, "serviceoverride", override, values=values)
    assert response.status_code == 200
    assert form_errors(response)["values"] == [
        "environments.production.overrides.postgres.extra.pid: in environment "
        "production, 'pid: host' is not allowed (add it to "
        "environments.production.host_policy.allow)"
    ]


def test_policy_allowing_it_lets_the_edit_through_audited(client, configs):
    """The Admin allows privileged mode in every environment's policy (itself
    a gated, audited change), then the service edit is saved with its diff."""
    client.force_login(staff("ada", Role.ADMIN))
    for environment in Environment.objects.all():
        policy = {**environment.host_policy, "allow": ["privileged"]}
        response = post_change(client, "environment", environment, host_policy=policy)
        assert response.status_code == 302, form_errors(response)
    redis = Service.objects.get(name="redis")
    response = post_change(client, "service", redis, extra={"privileged": True})
    assert response.status_code == 302
    redis.refresh_from_db()
    assert redis.extra == {"privileged": True}
    entry = AuditEntry.objects.filter(object_repr="redis").latest("id")
    assert entry.action == "object.changed"
    assert entry.data["changes"] == {"extra": [{}, {"privileged": True}]}
    assert entry.actor_name == "ada"


def test_importer_rules_apply_to_admin_fields(client, configs):
    """The admin checks a field with the importer's own rule and message."""
    client.force_login(staff("ada", Role.ADMIN))
    redis = Service.objects.get(name="redis")
    response = post_change(client, "service", redis, ports=["http"])
    assert response.status_code == 200
    (message,) = form_errors(response)["ports"]
    assert message.startswith("services.redis.ports: ") and "'http'" in message
    redis.refresh_from_db()
    assert redis.ports != ["http"]
