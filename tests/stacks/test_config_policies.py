"""retention-policies.yaml and backup-strategies.yaml: checked at import."""

import shutil

import pytest
import yaml

from backups.schema import check_backup_strategies
from retention.schema import check_retention_policies
from stacks.config import validate_configs
from stacks.schema.loader import ConfigError, load_yaml

from .test_config_support import CONFIG_DIR, line_of, minimal, write_config

ENVIRONMENTS = {
    "development",
    "dev",
    "staging",
    "production",
    "prod",
    "testing",
    "demo",
}


def load(path):
    doc, issues = load_yaml(path)
    assert issues == []
    return doc


def copy_real(tmp_path, name):
    target = tmp_path / name
    shutil.copy(CONFIG_DIR / name, target)
    return target


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def retention_issues(path):
    volumes = {"postgres_data", "redis_data", "qdrant_data", "minio_data", "vllm_cache"}
    volumes |= {"multimodal_cache", "allure_results", "allure_history"}
    volumes |= {"elasticsearch_data"}
    return [
        str(i)
        for i in check_retention_policies(
            load(path), str(path), environments=ENVIRONMENTS, volumes=volumes
        )
    ]


def backup_issues(path):
    return [
        str(i)
        for i in check_backup_strategies(
            load(path), str(path), environments=ENVIRONMENTS
        )
    ]


def test_real_retention_file_is_valid(tmp_path):
    assert retention_issues(copy_real(tmp_path, "retention-policies.yaml")) == []


def test_real_backup_file_is_valid(tmp_path):
    assert backup_issues(copy_real(tmp_path, "backup-strategies.yaml")) == []


def test_real_retention_file_keeps_the_seed_values():
    doc = yaml.safe_load((CONFIG_DIR / "retention-policies.yaml").read_text())
    assert list(doc) == [
        "global",
        "environments",
        "services",
        "volumes",
        "cleanup_strategies",
        "backup_strategies",
        "notifications",
    ]
    assert doc["global"]["dry_run"] is False
    assert doc["global"]["backup_before_cleanup"] is True
    assert {k: v["default_retention_days"] for k, v in doc["environments"].items()} == {
        "development": 7,
        "staging": 14,
        "production": 90,
        "testing": 3,
    }
    assert doc["environments"]["production"]["cleanup_schedule"] == "0 3 * * 0"
    assert doc["services"]["postgres"]["tables"]["audit_logs"] == {
        "retention_days": 90,
        "cleanup_strategy": "archive_then_delete",
    }
    assert "archive_then_delete" in doc["cleanup_strategies"]
    assert doc["backup_strategies"]["redis"]["encryption"] is False


def test_real_backup_file_keeps_the_seed_values():
    doc = yaml.safe_load((CONFIG_DIR / "backup-strategies.yaml").read_text())
    assert list(doc) == [
        "global",
        "environments",
        "services",
        "storage_tiers",
        "verification",
        "notifications",
    ]
    assert doc["environments"]["production"]["storage_tiers"] == [
        "local",
        "remote",
        "cloud",
        "tape",
    ]
    assert doc["services"]["vllm"]["backup_frequency"] == "weekly"
    assert doc["services"]["postgres"]["compression"] is True
    assert {k: v["max_size"] for k, v in doc["storage_tiers"].items()} == {
        "local": "100GB",
        "remote": "1TB",
        "cloud": "10TB",
        "tape": "unlimited",
    }
    # The seed drilled postgres and redis; qdrant and minio have drills too now.
    assert doc["verification"]["restore_test"]["test_services"][:2] == [
        "postgres",
        "redis",
    ]


def test_undefined_cleanup_strategy(tmp_path):
    path = copy_real(tmp_path, "retention-policies.yaml")
    edit(
        path,
        "  archive_then_delete:\n    description: Back up",
        "  archived:\n    description: Back up",
    )
    line = line_of(path, "cleanup_strategy: archive_then_delete")
    issues = retention_issues(path)
    assert (
        f"{path}:{line}: services.postgres.cleanup_strategy: cleanup strategy "
        "'archive_then_delete' is not defined in cleanup_strategies"
    ) in issues[0]


def test_string_boolean_is_an_error(tmp_path):
    path = copy_real(tmp_path, "retention-policies.yaml")
    edit(path, "dry_run: false", 'dry_run: "false"')
    line = line_of(path, 'dry_run: "false"')
    assert retention_issues(path) == [
        f"{path}:{line}: global.dry_run: 'false' is a string; write false without "
        "quotes for a boolean"
    ]


def test_unknown_environment_in_retention(tmp_path):
    path = copy_real(tmp_path, "retention-policies.yaml")
    edit(path, "  staging:\n", "  stagign:\n")
    line = line_of(path, "  stagign:")
    assert retention_issues(path) == [
        f"{path}:{line}: environments.stagign: unknown environment 'stagign' (did you "
        "mean 'staging'?)"
    ]


def test_unknown_volume_in_retention(tmp_path):
    path = copy_real(tmp_path, "retention-policies.yaml")
    edit(
        path,
        "  redis_data:\n    retention_days: 1",
        "  redis_dat:\n    retention_days: 1",
    )
    assert (
        "volumes.redis_dat: unknown volume 'redis_dat' (did you mean 'redis_data'?)"
        in (retention_issues(path)[0])
    )


def test_unknown_top_level_key_in_retention(tmp_path):
    path = copy_real(tmp_path, "retention-policies.yaml")
    edit(path, "cleanup_strategies:\n", "cleanup_strategys:\n")
    issues = retention_issues(path)
    assert (
        "cleanup_strategys: unknown key 'cleanup_strategys' (did you mean "
        "'cleanup_strategies'?)"
    ) in issues[0]


def test_bad_cron_schedule(tmp_path):
    path = copy_real(tmp_path, "retention-policies.yaml")
    edit(path, '"0 1 * * *"', '"0 1 * *"')
    assert (
        "environments.development.cleanup_schedule: '0 1 * *' is not a five-field"
        in (retention_issues(path)[0])
    )


def test_undefined_storage_tier(tmp_path):
    path = copy_real(tmp_path, "backup-strategies.yaml")
    edit(path, "storage_tiers: [local, remote]", "storage_tiers: [local, nas]")
    line = line_of(path, "storage_tiers: [local, nas]")
    assert backup_issues(path) == [
        f"{path}:{line}: environments.development.storage_tiers: storage tier 'nas' is "
        "not defined in storage_tiers"
    ]


def test_unknown_restore_test_environment(tmp_path):
    path = copy_real(tmp_path, "backup-strategies.yaml")
    edit(path, "test_environment: testing", "test_environment: qa")
    line = line_of(path, "test_environment: qa")
    assert backup_issues(path) == [
        f"{path}:{line}: verification.restore_test.test_environment: unknown "
        "environment 'qa'"
    ]


def test_string_boolean_in_backup_file(tmp_path):
    path = copy_real(tmp_path, "backup-strategies.yaml")
    edit(
        path,
        "    compression: true\n    encryption: false\n    verification: true",
        '    compression: "true"\n    encryption: false\n    verification: true',
    )
    assert "services.postgres.compression: 'true' is a string" in backup_issues(path)[0]


def test_companion_files_are_checked_next_to_the_stacks_file(tmp_path):
    path = write_config(tmp_path, minimal())
    retention = copy_real(tmp_path, "retention-policies.yaml")
    with pytest.raises(ConfigError) as info:
        validate_configs(path)
    text = str(info.value)
    # The minimal file declares neither the testing environment nor most volumes.
    assert f"{retention}:" in text
    assert "environments.staging: unknown environment 'staging'" in text
    assert "volumes.qdrant_data: unknown volume 'qdrant_data'" in text
