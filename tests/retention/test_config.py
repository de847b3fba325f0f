"""retention-policies.yaml: checked and imported with stacks.yaml, exported
back, its items' precedence, and edited in the admin through the same
checks and the audit log."""

import pytest
import yaml
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse

from portal.choices import Role
from portal.models import AuditEntry, RoleAssignment
from retention.config import FILENAME, export_data
from retention.models import (
    EnvironmentRetention,
    RetentionItem,
    RetentionPolicy,
    RetentionSetting,
    VolumeRetention,
)
from retention.policies import cleanup_settings, environment_items
from stacks.config import import_configs, validate_configs
from stacks.models import Environment
from stacks.schema.loader import ConfigError
from tests.portal.helpers import admin_form_data
from tests.stacks.test_config_support import REAL_STACKS

pytestmark = pytest.mark.django_db

REAL_RETENTION = REAL_STACKS.parent / FILENAME


def copy_configs(tmp_path, change=None):
    """Copy the real files into ``tmp_path``, changing the retention file."""
    (tmp_path / "stacks.yaml").write_text(REAL_STACKS.read_text())
    data = yaml.safe_load(REAL_RETENTION.read_text())
    if change is not None:
        change(data)
    (tmp_path / FILENAME).write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path / "stacks.yaml", tmp_path / FILENAME


def issues(tmp_path, change):
    stacks_file, retention_file = copy_configs(tmp_path, change)
    with pytest.raises(ConfigError) as excinfo:
        validate_configs(stacks_file)
    return retention_file, [str(i) for i in excinfo.value.issues]


def staff(username, role=None, environment=None):
    """Return a staff user with every Django permission of the retention app."""
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="retention")
    )
    if role is not None:
        RoleAssignment.objects.create(user=user, role=role, environment=environment)
    return user


def test_import_writes_policies_items_volumes_and_environments():
    report = import_configs()
    assert list(RetentionPolicy.objects.values_list("service", flat=True)) == [
        "postgres",
        "redis",
        "qdrant",
        "minio",
        "vllm",
        "multimodal-worker",
        "allure",
        "jmeter",
        "elasticsearch",
        "prometheus",
    ]
    logs = RetentionItem.objects.get(policy__service="postgres", name="logs")
    assert (logs.group, logs.retention_days, logs.cleanup_strategy) == (
        "tables",
        7,
        "delete_old_rows",
    )
    token = RetentionItem.objects.get(policy__service="vllm", name="token_cache")
    assert token.settings == {"path": "vllm"}
    staging = EnvironmentRetention.objects.get(environment__name="staging")
    assert (staging.default_retention_days, staging.cleanup_schedule) == (
        14,
        "0 2 * * *",
    )
    assert VolumeRetention.objects.get(volume="vllm_cache").cleanup_strategy == (
        "delete_old_models"
    )
    assert RetentionSetting.objects.get(key="global").value["dry_run"] is False
    kinds = {e.kind for e in report.entries}
    assert {"retention policy", "retention item", "environment retention"} <= kinds
    again = import_configs()
    assert again.counts()["created"] == again.counts()["updated"] == 0


def test_export_then_import_round_trips(tmp_path):
    import_configs()
    call_command("export_configs", dir=str(tmp_path))
    exported = yaml.safe_load((tmp_path / FILENAME).read_text())
    assert exported == export_data()
    original = yaml.safe_load(REAL_RETENTION.read_text())
    assert exported["services"] == original["services"]
    assert exported["volumes"] == original["volumes"]
    report = import_configs(tmp_path / "stacks.yaml")
    assert report.counts()["created"] == report.counts()["updated"] == 0


@pytest.mark.parametrize(
    "change, path, message",
    [
        (
            lambda d: d["services"]["postgres"]["tables"]["logs"].update(
                cleanup_strategy="expire_keys"
            ),
            "services.postgres.tables.logs.cleanup_strategy",
            "cleanup strategy 'expire_keys' does not apply to table rows (postgresql) "
            "(the portal runs delete_old_rows, archive_then_delete there)",
        ),
        (
            lambda d: d["services"]["postgres"]["tables"]["logs"].update(
                date_column="created at"
            ),
            "services.postgres.tables.logs.date_column",
            "'created at' is not a table or column name",
        ),
        (
            lambda d: d["services"]["vllm"]["cache_types"]["model_cache"].update(
                path="../etc"
            ),
            "services.vllm.cache_types.model_cache.path",
            "'../etc' is not a path inside the volume (no '..')",
        ),
        (
            lambda d: d["services"]["allure"]["report_types"]["videos"].pop("volume"),
            "services.allure.report_types.videos.volume",
            "this service is not in stacks.yaml: name the volume its files are in",
        ),
        (
            lambda d: d["services"]["redis"].update(sessions={"a": {}}),
            "services.redis.sessions",
            "unknown key 'sessions'; items are listed under one of: tables, keys",
        ),
        (
            lambda d: d["services"].update(redys=d["services"].pop("redis")),
            "services.redys",
            "unknown service 'redys' (did you mean 'redis'?)",
        ),
        (
            lambda d: d["services"]["qdrant"].update(api_key="letmein"),
            "services.qdrant.api_key",
            "write a ${VAR} reference: secrets never go in the file",
        ),
        (
            lambda d: d["volumes"]["vllm_cache"].update(
                cleanup_strategy="delete_old_rows"
            ),
            "volumes.vllm_cache.cleanup_strategy",
            "cleanup strategy 'delete_old_rows' does not apply to a volume",
        ),
        (
            lambda d: d["global"].update(schedule_grace_minutes=0),
            "global.schedule_grace_minutes",
            "expected a number of minutes above 0, got 0",
        ),
    ],
)
def test_bad_retention_file_is_named(tmp_path, change, path, message):
    retention_file, found = issues(tmp_path, change)
    matching = [i for i in found if f": {path}: " in i]
    assert matching, found
    assert message in matching[0], matching[0]
    assert matching[0].startswith(f"{retention_file}:")
    assert int(matching[0].split(":")[1]) > 0


def item(items, key):
    (found,) = [i for i in items if i.key == key]
    return found


def test_item_days_come_from_item_then_service_then_environment():
    import_configs()
    staging = Environment.objects.get(name="staging")
    logs = RetentionItem.objects.get(policy__service="postgres", name="logs")
    policy = logs.policy
    items = environment_items(staging)
    assert item(items, "postgres/tables/logs").describe_days() == "7 days (the item)"
    logs.retention_days = None
    logs.save()
    assert item(environment_items(staging), "postgres/tables/logs").describe_days() == (
        "30 days (service postgres)"
    )
    policy.retention_days = None
    policy.save()
    found = item(environment_items(staging), "postgres/tables/logs")
    assert found.describe_days() == "14 days (the environment's default)"
    assert (found.days, found.source) == (14, "environment")
    testing = Environment.objects.get(name="testing")
    assert item(environment_items(testing), "postgres/tables/logs").days == 3
    demo = Environment.objects.get(name="demo")
    # demo has no environments entry: the global default.
    assert item(environment_items(demo), "postgres/tables/logs").source == "global"
    assert cleanup_settings(demo).default_days == 30


def test_volume_items_leave_more_specific_items_their_files():
    import_configs()
    items = environment_items(Environment.objects.get(name="demo"))
    whole = item(items, "volumes/vllm_cache")
    assert whole.excludes == ("huggingface", "vllm") and whole.deletes
    cache = item(items, "volumes/multimodal_cache")
    assert cache.excludes == ("logs/application", "logs/debug", "logs/error")
    results = item(items, "allure/report_types/test_results")
    assert results.exclude_names == ("*.jpg", "*.mp4", "*.png", "*.webm")
    # test_results covers the whole allure_results volume: the volume's own
    # entry deletes nothing itself.
    shadowed = item(items, "volumes/allure_results")
    assert not shadowed.deletes
    assert "allure/report_types/test_results" in shadowed.note
    assert "bind mount" not in item(items, "jmeter/result_types/load_test_results").key
    assert not item(items, "jmeter/result_types/load_test_results").deletes
    assert not item(items, "prometheus/metric_types/system_metrics").deletes
    snapshots = item(items, "postgres/backups")
    assert (snapshots.kind, snapshots.days, snapshots.source) == (
        "snapshots",
        90,
        "service",
    )


def test_admin_edit_goes_through_the_checks_and_the_audit_log(client):
    """A staff user without the Admin role cannot edit an item; an Admin's
    edit that breaks the checks is refused on its field; a good one is
    saved and audited."""
    import_configs()
    logs = RetentionItem.objects.get(policy__service="postgres", name="logs")
    url = reverse("admin:retention_retentionitem_change", args=[logs.pk])
    ada = staff("ada", Role.ADMIN)
    client.force_login(ada)
    data = admin_form_data(client.get(url))
    client.force_login(staff("sam"))
    data["retention_days"] = "1"
    assert client.post(url, data).status_code == 403

    client.force_login(ada)
    data["retention_days"] = "7"
    data["cleanup_strategy"] = "expire_keys"
    response = client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(
        "services.postgres.tables.logs.cleanup_strategy: cleanup strategy "
        "'expire_keys' does not apply" in e
        for e in errors.get("cleanup_strategy", [])
    ), errors
    logs.refresh_from_db()
    assert logs.cleanup_strategy == "delete_old_rows"

    data["cleanup_strategy"] = "delete_old_rows"
    data["retention_days"] = "3"
    assert client.post(url, data).status_code == 302
    logs.refresh_from_db()
    assert logs.retention_days == 3
    entry = AuditEntry.objects.filter(action="object.changed").latest("id")
    assert entry.object_repr == "postgres.tables.logs"
    assert entry.actor_name == "ada"
    assert "retention_days" in str(entry.data)
