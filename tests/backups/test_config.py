"""backup-strategies.yaml: checked and imported with stacks.yaml, exported
back, and edited in the admin through the same checks."""

import json

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

from backups.config import FILENAME, export_data
from backups.models import BackupPolicy, BackupStrategy, StorageTier
from portal.choices import Role
from stacks.config import import_configs, validate_configs
from stacks.schema.loader import ConfigError
from tests.portal.helpers import admin_form_data
from tests.stacks.test_config_gate import staff
from tests.stacks.test_config_support import REAL_STACKS, line_of

pytestmark = pytest.mark.django_db

REAL_BACKUPS = REAL_STACKS.parent / FILENAME


def copy_configs(tmp_path, change=None):
    """Copy the real files into ``tmp_path``, changing the backup file."""
    (tmp_path / "stacks.yaml").write_text(REAL_STACKS.read_text())
    data = yaml.safe_load(REAL_BACKUPS.read_text())
    if change is not None:
        change(data)
    (tmp_path / FILENAME).write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path / "stacks.yaml", tmp_path / FILENAME


def issues(tmp_path, change):
    stacks_file, backups_file = copy_configs(tmp_path, change)
    with pytest.raises(ConfigError) as excinfo:
        validate_configs(stacks_file)
    return backups_file, [str(i) for i in excinfo.value.issues]


def test_import_writes_tiers_strategies_and_policies():
    report = import_configs()
    assert [t.name for t in StorageTier.objects.all()] == [
        "local",
        "remote",
        "cloud",
        "tape",
    ]
    local = StorageTier.objects.get(name="local")
    assert (local.kind, local.location) == (
        "filesystem",
        "${BACKUP_LOCAL_PATH:-/backups}",
    )
    assert local.settings["password"] == "${BACKUP_REPOSITORY_PASSWORD}"
    postgres = BackupStrategy.objects.get(service="postgres")
    assert postgres.method == "pg_dump"
    assert postgres.settings["database_settings"]["format"] == "custom"
    assert BackupPolicy.objects.get(environment__name="production").tiers == [
        "local",
        "remote",
        "cloud",
        "tape",
    ]
    kinds = {e.kind for e in report.entries}
    assert {"storage tier", "backup strategy", "backup policy"} <= kinds
    # A second import changes nothing.
    again = import_configs()
    assert again.counts()["created"] == again.counts()["updated"] == 0


def test_export_then_import_round_trips(tmp_path):
    import_configs()
    call_command("export_configs", dir=str(tmp_path))
    exported = yaml.safe_load((tmp_path / FILENAME).read_text())
    assert exported == export_data()
    (tmp_path / "retention-policies.yaml").write_text(
        (REAL_STACKS.parent / "retention-policies.yaml").read_text()
    )
    report = import_configs(tmp_path / "stacks.yaml")
    assert report.counts()["created"] == report.counts()["updated"] == 0


@pytest.mark.parametrize(
    "change, path, message",
    [
        (
            lambda d: d["storage_tiers"]["local"].update(password="hunter2"),
            "storage_tiers.local.password",
            "write a ${VAR} reference: secrets of a repository never go in the file",
        ),
        (
            lambda d: d["storage_tiers"]["cloud"].update(type="ftp"),
            "storage_tiers.cloud.type",
            "unknown tier type 'ftp' (one of: filesystem, nfs, sftp, s3, tape)",
        ),
        (
            lambda d: d["services"].update(postgress=d["services"].pop("postgres")),
            "services.postgress",
            "unknown service 'postgress' (did you mean 'postgres'?)",
        ),
        (
            lambda d: d["environments"]["testing"].update(storage_tiers=["tape"]),
            "environments.testing.storage_tiers",
            "the first tier takes the backups and must be a repository",
        ),
        (
            lambda d: d["services"]["postgres"]["database_settings"].update(
                format="plain"
            ),
            "services.postgres.database_settings.format",
            "only the custom format is taken",
        ),
        (
            lambda d: d["services"]["redis"].update(backup_method="rsync"),
            "services.redis.backup_method",
            "unknown backup method 'rsync'",
        ),
    ],
)
def test_bad_backup_file_is_named(tmp_path, change, path, message):
    backups_file, found = issues(tmp_path, change)
    matching = [i for i in found if f": {path}: " in i]
    assert matching, found
    assert message in matching[0]
    assert matching[0].startswith(f"{backups_file}:")
    line = int(matching[0].split(":")[1])
    assert line > 0


def test_admin_edit_of_a_tier_goes_through_the_same_checks(client):
    """An Admin cannot put a literal password on a tier in the admin; a
    staff user without the role cannot edit a tier at all."""
    import_configs()
    tier = StorageTier.objects.get(name="local")
    url = reverse("admin:backups_storagetier_change", args=[tier.pk])
    ada = staff("ada", Role.ADMIN)
    client.force_login(ada)
    data = admin_form_data(client.get(url))
    data["settings"] = json.dumps({**tier.settings, "password": "hunter2"})

    client.force_login(staff("sam"))
    assert client.post(url, data).status_code == 403

    client.force_login(ada)
    response = client.post(url, data)
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(
        "storage_tiers.local.password: write a ${VAR} reference" in e
        for e in errors.get("settings", [])
    ), errors
    tier.refresh_from_db()
    assert tier.settings["password"] == "${BACKUP_REPOSITORY_PASSWORD}"

    data["settings"] = json.dumps({**tier.settings, "keep": {"daily": 3}})
    assert client.post(url, data).status_code == 302
    tier.refresh_from_db()
    assert tier.settings["keep"] == {"daily": 3}


def test_real_backup_file_lines_point_at_the_key(tmp_path):
    backups_file, found = issues(
        tmp_path, lambda d: d["storage_tiers"]["local"].update(password="x")
    )
    (issue,) = [i for i in found if "password" in i]
    assert issue.startswith(f"{backups_file}:{line_of(backups_file, 'password: x')}:")
