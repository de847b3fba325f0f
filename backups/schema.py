"""Checks of ``backup-strategies.yaml``.

Imported by ``import_configs`` as a companion of ``stacks.yaml``
(registered in :mod:`backups.apps`).
"""

from stacks.schema.files import FileChecker

__all__ = ["BACKUP_TOP_KEYS", "check_backup_strategies"]

BACKUP_TOP_KEYS = (
    "global",
    "environments",
    "services",
    "storage_tiers",
    "verification",
    "notifications",
)


def check_backup_strategies(doc, file, *, environments):
    """Return the issues of a loaded ``backup-strategies.yaml``."""
    checker = FileChecker(file, environments)
    if not checker.top(doc, BACKUP_TOP_KEYS):
        return checker.errors
    checker.booleans(doc, "")
    glob = checker.section(doc, "global")
    checker.days(glob, "default_retention_days", "global.default_retention_days")
    checker.schedule(glob, "backup_schedule", "global.backup_schedule")
    tiers = checker.section(doc, "storage_tiers")
    for name, values in checker.environment_names(doc, "environments").items():
        if not isinstance(values, dict):
            continue
        path = f"environments.{name}"
        checker.days(values, "retention_days", f"{path}.retention_days")
        checker.schedule(values, "backup_schedule", f"{path}.backup_schedule")
        listed = values.get("storage_tiers") or []
        for i, tier in enumerate(listed if isinstance(listed, list) else []):
            if tier not in tiers:
                checker.error(
                    listed,
                    i,
                    f"{path}.storage_tiers",
                    f"storage tier {tier!r} is not defined in storage_tiers",
                )
    for name, values in checker.section(doc, "services").items():
        if isinstance(values, dict):
            checker.days(values, "retention_days", f"services.{name}.retention_days")
    restore_test = checker.section(checker.section(doc, "verification"), "restore_test")
    target = restore_test.get("test_environment")
    if target is not None:
        checker.environment_name(
            restore_test,
            "test_environment",
            "verification.restore_test.test_environment",
            target,
        )
    return checker.errors
